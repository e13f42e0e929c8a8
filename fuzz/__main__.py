"""``python -m fuzz [libFuzzer flags] [corpus dir]``: fuzz the server's dispatch with atheris.

Examples::

    python -m fuzz -max_total_time=60 -seed=1 -artifact_prefix=/tmp/ corpus  # what CI runs
    python -m fuzz -max_total_time=3600 -jobs=2 fuzz-corpus                   # a long run

libFuzzer prints ``Done N runs`` with the number of inputs tried; a crashing
input is written under ``-artifact_prefix`` as ``crash-*`` (an exception, a
MemoryError past :data:`ADDRESS_SPACE_LEFT` among them), ``oom-*``, ``leak-*`` or
``timeout-*``, and belongs in ``fuzz/regressions/`` with what it must do now
(``tests/test_fuzz.py``).
"""

from __future__ import annotations

import logging
import resource
import sys

#: How much more address space the fuzzing process gets than it has mapped when the
#: target is set up (90 MiB here; more on machines whose interpreter maps more): ten
#: times that, far below what an allocation an input chose must not reach.
ADDRESS_SPACE_LEFT = 1 << 30


def main() -> None:
    try:
        import atheris
    except ImportError:
        sys.exit("error: atheris is not installed; run `pip install -e .[test]` (or `ci/setup.sh`)")
    # Import the target under instrumentation so coverage guides the search.
    with atheris.instrument_imports(include=["vfio_bridge", "fuzz"]):
        from fuzz.dispatch import Harness
    logging.disable(logging.CRITICAL)  # every refusal is logged; that is not the point here
    # An allocation the input chose fails at once (MemoryError, a crash with its input):
    # libFuzzer's -rss_limit_mb samples the RSS once a second: a short-lived
    # allocation of gigabytes may pass between two samples, or not.
    limit = _mapped() + ADDRESS_SPACE_LEFT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    harness = Harness()
    atheris.Setup(sys.argv, harness.run)
    atheris.Fuzz()


def _mapped() -> int:
    """The bytes of address space this process has mapped (VmSize)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


if __name__ == "__main__":
    main()
