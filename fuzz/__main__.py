"""``python -m fuzz [libFuzzer flags] [corpus dir]``: fuzz the server's dispatch with atheris.

Examples::

    python -m fuzz -runs=20000 -artifact_prefix=/tmp/ /tmp/corpus   # the CI budget
    python -m fuzz -max_total_time=3600 -jobs=2 fuzz-corpus          # a long run

libFuzzer prints ``#N DONE`` with the number of inputs tried; a crashing input
is written as ``crash-*`` under ``-artifact_prefix`` and should be copied into
``fuzz/regressions/``.
"""

from __future__ import annotations

import logging
import sys


def main() -> None:
    try:
        import atheris
    except ImportError:
        sys.exit("error: atheris is not installed; run `pip install -e .[test]` (or `ci/setup.sh`)")
    # Import the target under instrumentation so coverage guides the search.
    with atheris.instrument_imports(include=["vfio_bridge", "fuzz"]):
        from fuzz.dispatch import Harness
    logging.disable(logging.CRITICAL)  # every refusal is logged; that is not the point here
    harness = Harness()
    atheris.Setup(sys.argv, harness.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
