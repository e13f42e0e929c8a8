"""Diff engine throughput and peak memory on generated logs of 1M and 10M events.

Each size runs in a fresh process so its peak RSS is its own. The ratio of
peak memory between sizes shows whether memory stays bounded.
Usage: python -m bench.diff_engine [--sizes 1000000,10000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import print_table, save


def _child(a: str, b: str) -> None:
    from harness.difflog import diff_logs

    start = time.perf_counter()
    result = diff_logs(Path(a), Path(b))
    seconds = time.perf_counter() - start
    events = result.a.events + result.b.events
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "events": events,
                "seconds": seconds,
                "peak_bytes": peak,
                "equivalent": result.equivalent,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.loggen import stream_log

    rows, data = [], {}
    with tempfile.TemporaryDirectory(prefix="xvpci-diffbench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            a, b = Path(tmp) / f"a{size}.jsonl", Path(tmp) / f"b{size}.jsonl"
            stream_log(a, size)
            stream_log(b, size)
            done = subprocess.run(
                [sys.executable, "-m", "bench.diff_engine", "--child", str(a), str(b)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            figures = json.loads(done.stdout)
            rate = figures["events"] / figures["seconds"]
            rows.append([size, figures["seconds"], rate, figures["peak_bytes"] / 2**20])
            data[str(size)] = {**figures, "events_per_second": rate}
            a.unlink()
            b.unlink()
    if len(rows) > 1:
        growth = rows[-1][3] / rows[0][3]
        data["peak_memory_ratio_largest_to_smallest"] = growth
    print_table(
        "xvpci diff on generated log pairs (events counted over both logs)",
        ["events per log", "seconds", "events/s", "peak MiB"],
        rows,
    )
    if len(rows) > 1:
        size_ratio = rows[-1][0] / rows[0][0]
        print(f"\npeak memory, largest / smallest: {growth:.2f} (log size ratio {size_ratio:.0f})")
    print(f"result: {save('diff_engine', data)}")


if __name__ == "__main__":
    main()
