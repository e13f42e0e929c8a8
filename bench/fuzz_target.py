"""CPU time per input of the fuzz target as `python -m fuzz` runs it, and with each speed-up undone.

The target's modules are instrumented by atheris as in ``python -m fuzz``, then
every input of a corpus runs through :class:`fuzz.dispatch.Harness` in each
configuration, interleaved round by round so that other load on the machine
falls on all of them alike; the table gives CPU ms per input (best round) and
the ratio to the target as fuzzed:

- ``target``: a pickled copy of each model per input, 4 KiB transfers, 64 KiB namespaces;
- ``built models``: each model constructed per input;
- ``1 MiB transfers``: the server's default ``max_data_xfer_size``;
- ``previous target``: all three undone, with 1 MiB NVMe namespaces.

Usage: python -m bench.fuzz_target [--rounds N] [CORPUS_DIR]  (default corpus: the seeds
and ``fuzz/regressions/``; a grown corpus from a campaign is more telling).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .common import print_table, save

DEFAULT_XFER = 1 << 20
OLD_MODELS = (
    ("edu", ()),
    ("nvme", ("size=1m",)),
    ("window", ("child_options=size=1m",)),
)


def _corpus(directory: str | None) -> list[bytes]:
    from fuzz.dispatch import seed_inputs

    if directory:
        return [p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()]
    regressions = Path(__file__).resolve().parents[1] / "fuzz" / "regressions"
    return list(seed_inputs().values()) + [p.read_bytes() for p in sorted(regressions.iterdir())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", help="directory of inputs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import atheris
    except ImportError:
        raise SystemExit("error: atheris is not installed; run `pip install -e .[test]`") from None
    with atheris.instrument_imports(include=["vfio_bridge", "fuzz"]):
        from fuzz.dispatch import Harness
    logging.disable(logging.CRITICAL)  # as python -m fuzz does
    inputs = _corpus(args.corpus)
    if not inputs:
        raise SystemExit(f"error: no inputs in {args.corpus}")
    harnesses = {
        "target": Harness(),
        "built models": Harness(snapshot=False),
        "1 MiB transfers": Harness(max_data_xfer=DEFAULT_XFER),
        "previous target": Harness(snapshot=False, max_data_xfer=DEFAULT_XFER, models=OLD_MODELS),
    }
    best = dict.fromkeys(harnesses, float("inf"))
    for _ in range(args.rounds):
        for name, harness in harnesses.items():
            started = time.process_time()
            for data in inputs:
                harness.run(data)
            best[name] = min(best[name], (time.process_time() - started) / len(inputs))
    base = best["target"]
    rows = [[name, seconds * 1000, 1 / seconds, seconds / base] for name, seconds in best.items()]
    print_table(
        f"fuzz target, {len(inputs)} inputs, best of {args.rounds} rounds (CPU time)",
        ["configuration", "ms per input", "inputs per CPU s", "x target"],
        rows,
    )
    save(
        "fuzz_target",
        {
            "inputs": len(inputs),
            "rounds": args.rounds,
            "cpu_ms_per_input": {name: seconds * 1000 for name, seconds in best.items()},
        },
    )


if __name__ == "__main__":
    main()
