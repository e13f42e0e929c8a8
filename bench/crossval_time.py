"""Wall time of the main job, split into provisioning (cached), boot, workload and diff.

Usage: python -m bench.crossval_time [--workload W]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.progress import Progress
from harness.run import run

from .common import print_table, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", default="fs-verify")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xvpci-crossval-") as tmp:
        start = time.monotonic()
        result = run(
            "nvme",
            ["direct", "window"],
            args.workload,
            Path(tmp),
            [],
            progress=Progress("run", quiet=True),
        )
        total = time.monotonic() - start
    phases = {"provisioning (cached)": result.timings.get("provisioning", 0.0)}
    for path_result in result.results:
        phases[f"{path_result.path}: boot to SSH"] = path_result.boot_seconds
        phases[f"{path_result.path}: workload"] = path_result.workload_seconds
    phases["diff and reports"] = result.timings.get("diff", 0.0)
    accounted = sum(phases.values())
    phases["other (guest start/stop, servers)"] = total - accounted
    rows = [[name, seconds, seconds / total] for name, seconds in phases.items()]
    rows.append(["total", total, 1.0])
    print_table(
        f"xvpci run --model nvme --paths direct,window --workload {args.workload}",
        ["phase", "seconds", "share"],
        rows,
    )
    saved = save("crossval_time", {"workload": args.workload, "seconds": phases, "total": total})
    print(f"\nresult: {saved}")


if __name__ == "__main__":
    main()
