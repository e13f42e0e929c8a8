"""Diff engine throughput and peak memory on generated logs of 1M and 10M events.

Each size runs in a fresh process so its peak RSS is its own. The ratio of
peak memory between sizes shows whether memory stays bounded.

The transaction level is measured beside it, on NVMe-shaped generated logs
(4 KiB writes and reads with per-block digests, ``tests.loggen.stream_nvme_log``)
of the same sizes: the raw diff and the transaction diff (decoding both logs
and comparing their commands and blocks) of the same pair, side by side.
Usage: python -m bench.diff_engine [--sizes 1000000,10000000] [--no-transactions]
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


def _child(a: str, b: str, level: str = "raw") -> None:
    from harness.difflog import diff_logs
    from harness.difflog.transactions import diff_transaction_logs

    diff = diff_transaction_logs if level == "transaction" else diff_logs
    start = time.perf_counter()
    result = diff(Path(a), Path(b))
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
    parser.add_argument("--no-transactions", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.loggen import stream_log, stream_nvme_log

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
    if not args.no_transactions:
        data["transactions"] = _transaction_level(args.sizes, stream_nvme_log)
    print(f"result: {save('diff_engine', data)}")


def _measure(a: Path, b: Path, level: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.diff_engine", "--child", str(a), str(b), level],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def _transaction_level(sizes: str, generate) -> dict:
    """Raw and transaction diffs of the same NVMe-shaped log pairs."""
    rows, data = [], {}
    with tempfile.TemporaryDirectory(prefix="xvpci-txnbench-") as tmp:
        for size in (int(s) for s in sizes.split(",")):
            a, b = Path(tmp) / f"a{size}.jsonl", Path(tmp) / f"b{size}.jsonl"
            generate(a, size, "direct")
            generate(b, size, "window")
            figures = {level: _measure(a, b, level) for level in ("raw", "transaction")}
            raw, txn = figures["raw"], figures["transaction"]
            rows.append([size, raw["seconds"], txn["seconds"], txn["seconds"] / raw["seconds"],
                         raw["peak_bytes"] / 2**20, txn["peak_bytes"] / 2**20])  # fmt: skip
            data[str(size)] = figures
            a.unlink()
            b.unlink()
    print_table(
        "raw vs transaction diff of the same NVMe-shaped log pair (both equivalent)",
        ["events per log", "raw s", "transaction s", "txn / raw", "raw MiB", "txn MiB"],
        rows,
    )
    return data


if __name__ == "__main__":
    main()
