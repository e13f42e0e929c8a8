"""Diff engine throughput and peak memory on generated logs of 1M and 10M events.

For each size, side by side in one run: the events per second of merely reading
and parsing both logs (every line through the reader: the limit a diff that
looks at every event can approach), of diffing two logs that agree (their
clocks differ, as two paths' do), and, at the smallest size, of diffing a pair
where B lacks an early interrupt, which sends the rest down the item-by-item path
(the speed for logs that diverge). Events are counted over both logs.
Each measurement runs in a fresh process so its peak RSS is its own, and reports
its CPU time beside its wall time (on a shared machine the two part): the diff's
own and that of the process that reads and cuts log B beside it on big logs
(``harness/difflog/cutter.py``; cpu_seconds counts both, and the table shows
events per CPU-second of both and of the diff's process alone); the ratio of
peak memory between sizes shows whether memory stays bounded (the cutter's is
reported apart).

The transaction level is measured beside it, on NVMe-shaped generated logs
(4 KiB writes and reads with per-block digests, ``tests.loggen.stream_nvme_log``)
of the same sizes: the raw diff and the transaction diff (decoding both logs and
comparing their commands and blocks) of the same pair, side by side.
Usage: python -m bench.diff_engine [--sizes 1000000,10000000] [--no-transactions]
       [--transactions-only]  (only the transaction part, saved as diff_engine_transactions)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .common import print_table, save


def _child(mode: str, a: str, b: str) -> None:
    """One measurement: ``parse`` (read both logs), ``diff`` (raw) or ``transaction``."""
    from harness.difflog import diff_logs
    from harness.difflog.reader import LogReader
    from harness.difflog.transactions import diff_transaction_logs

    start = time.perf_counter()
    cpu = time.process_time()
    before = os.times()
    if mode == "parse":
        events = 0
        for path in (a, b):
            for _ in LogReader(Path(path)):
                events += 1
        equivalent = None
    else:
        diff = diff_transaction_logs if mode == "transaction" else diff_logs
        result = diff(Path(a), Path(b))
        events = result.a.events + result.b.events
        equivalent = result.equivalent
    seconds = time.perf_counter() - start
    own_cpu = time.process_time() - cpu
    after = os.times()
    # The raw diff reads log B in a cutter process (harness/difflog/cutter.py) on big logs.
    cutter_cpu = (after.children_user + after.children_system) - (
        before.children_user + before.children_system
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cutter_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "events": events,
                "seconds": seconds,
                "cpu_seconds": own_cpu + cutter_cpu,
                "diff_process_cpu_seconds": own_cpu,
                "cutter_cpu_seconds": cutter_cpu,
                "peak_bytes": peak,
                "cutter_peak_bytes": cutter_peak,
                "equivalent": equivalent,
            }
        )
    )


def _measure(mode: str, a: Path, b: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.diff_engine", "--child", mode, str(a), str(b)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = json.loads(done.stdout)
    figures["events_per_second"] = figures["events"] / figures["seconds"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--no-transactions", action="store_true")
    parser.add_argument("--transactions-only", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.loggen import stream_log, stream_nvme_log

    rows, data = [], {}
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.transactions_only:
        # Sizes measured by an earlier run are kept (the 10M pair takes long enough to
        # be run on its own).
        from .common import RESULTS

        earlier = RESULTS / "diff_engine_transactions.json"
        kept = json.loads(earlier.read_text()).get("transactions", {}) if earlier.exists() else {}
        data["load_average_before"] = os.getloadavg()
        data["transactions"] = {**kept, **_transaction_level(sizes, stream_nvme_log)}
        data["load_average_after"] = os.getloadavg()
        print(f"load average before / after: {data['load_average_before']} / {os.getloadavg()}")
        print(f"result: {save('diff_engine_transactions', data)}")
        return
    data["conditions"] = (
        "the 2 CPUs are shared with other sessions (QEMU guests, test suites): wall-clock "
        "rates depend on their load (load_average_*); cpu_seconds is each measurement's own "
        "time (the diff's process and its cutter's)"
    )
    data["load_average_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="xvpci-diffbench-") as tmp:
        for size in sizes:
            a, b = Path(tmp) / f"a{size}.jsonl", Path(tmp) / f"b{size}.jsonl"
            stream_log(a, size)
            stream_log(b, size, t0=7_000_000_000)  # another clock, as on another path
            parse = _measure("parse", a, b)
            diff = _measure("diff", a, b)
            entry: dict[str, object] = {"parse": parse, "diff": diff}
            ratio = diff["events_per_second"] / parse["events_per_second"]  # type: ignore[operator]
            entry["diff_to_parse"] = ratio
            rows.append(
                [size, "agree", diff["seconds"], diff["events_per_second"],
                 parse["events_per_second"], ratio, diff["peak_bytes"] / 2**20,  # type: ignore[operator]
                 diff["events"] / diff["cpu_seconds"],  # type: ignore[operator]
                 diff["events"] / diff["diff_process_cpu_seconds"]]  # type: ignore[operator]
            )  # fmt: skip
            if size == sizes[0]:
                stream_log(b, size, t0=7_000_000_000, skip=11)
                diverged = _measure("diff", a, b)
                entry["diff_one_missing"] = diverged
                rows.append(
                    [size, "B lacks #11", diverged["seconds"], diverged["events_per_second"],
                     parse["events_per_second"],
                     diverged["events_per_second"] / parse["events_per_second"],  # type: ignore[operator]
                     diverged["peak_bytes"] / 2**20,  # type: ignore[operator]
                     diverged["events"] / diverged["cpu_seconds"],  # type: ignore[operator]
                     diverged["events"] / diverged["diff_process_cpu_seconds"]]  # type: ignore[operator]
                )  # fmt: skip
            data[str(size)] = entry
            a.unlink()
            b.unlink()
    data["load_average_after"] = os.getloadavg()
    agreeing = [row for row in rows if row[1] == "agree"]
    if len(agreeing) > 1:
        growth = agreeing[-1][6] / agreeing[0][6]
        data["peak_memory_ratio_largest_to_smallest"] = growth
    print_table(
        "xvpci diff on generated log pairs (events counted over both logs)",
        ["events per log", "pair", "seconds", "diff events/s", "read+parse events/s",
         "diff / parse", "peak MiB", "diff events/CPU-s", "of the diff's process"],
        rows,
    )  # fmt: skip
    if len(agreeing) > 1:
        size_ratio = agreeing[-1][0] / agreeing[0][0]
        print(f"\npeak memory, largest / smallest: {growth:.2f} (log size ratio {size_ratio:.0f})")
    if not args.no_transactions:
        data["transactions"] = _transaction_level(sizes, stream_nvme_log)
    print(f"load average before / after: {data['load_average_before']} / {os.getloadavg()}")
    print(f"result: {save('diff_engine', data)}")


def _relabel(source: Path, target: Path, path_label: str) -> None:
    """``target``: ``source`` with another path in its header, the events copied (what
    generating it again would give: the generator's path only names the header's path,
    and a 10M-event log takes long to generate here)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        header = json.loads(src.readline())
        header["path"] = path_label
        dst.write(json.dumps(header).encode() + b"\n")
        shutil.copyfileobj(src, dst, 1 << 20)


def _transaction_level(sizes: list[int], generate: Callable[[Path, int, str], None]) -> dict:
    """Raw and transaction diffs of the same NVMe-shaped log pairs."""
    rows, data = [], {}
    with tempfile.TemporaryDirectory(prefix="xvpci-txnbench-") as tmp:
        for size in sizes:
            a, b = Path(tmp) / f"a{size}.jsonl", Path(tmp) / f"b{size}.jsonl"
            generate(a, size, "direct")
            _relabel(a, b, "window")
            figures = {mode: _measure(mode, a, b) for mode in ("diff", "transaction")}
            raw, txn = figures["diff"], figures["transaction"]
            rows.append([size, raw["seconds"], txn["seconds"], txn["seconds"] / raw["seconds"],  # type: ignore[operator]
                         raw["cpu_seconds"], txn["cpu_seconds"],
                         raw["peak_bytes"] / 2**20, txn["peak_bytes"] / 2**20])  # type: ignore[operator]  # fmt: skip
            data[str(size)] = {"raw": raw, "transaction": txn, "load_average": os.getloadavg()}
            a.unlink()
            b.unlink()
    print_table(
        "raw vs transaction diff of the same NVMe-shaped log pair (both equivalent)",
        [
            "events per log",
            "raw s",
            "transaction s",
            "txn / raw",
            "raw CPU s",
            "txn CPU s",
            "raw MiB",
            "txn MiB",
        ],
        rows,
    )
    return data


if __name__ == "__main__":
    main()
