"""Linux guest boot to console-ready and to SSH-ready under TCG, with and without a model.

Usage: python -m bench.boot_time [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.guest import LinuxGuest, ModelAttachment
from harness.linux_image import build
from harness.qemu_install import find_qemu

from .common import print_table, save


def measure(models: list[ModelAttachment], runs: int) -> dict[str, list[float]]:
    qemu, image = find_qemu(), build()
    figures: dict[str, list[float]] = {"console_ready_s": [], "ssh_ready_s": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="xvpci-bench-") as tmp:
            start = time.monotonic()
            with LinuxGuest(qemu, image, Path(tmp), models) as guest:
                figures["console_ready_s"].append(guest.boot_seconds)
                figures["ssh_ready_s"].append(time.monotonic() - start)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    plain, edu = [], []
    # Interleave the two variants so machine noise hits both alike.
    for _ in range(args.runs):
        plain.append(measure([], 1))
        edu.append(measure([ModelAttachment("edu")], 1))

    def median(results: list[dict[str, list[float]]], key: str) -> float:
        return statistics.median(v for r in results for v in r[key])

    rows = []
    data: dict[str, object] = {}
    for key in ("console_ready_s", "ssh_ready_s"):
        a, b = median(plain, key), median(edu, key)
        rows.append([key, a, b, b / a])
        data[key] = {"no_model": a, "edu_over_vfio_user": b, "ratio": b / a}
    print_table(
        f"Linux guest boot under TCG (median of {args.runs})",
        ["figure", "no model", "edu (vfio-user)", "ratio"],
        rows,
    )
    print(f"\nresult: {save('boot_time', data)}")


if __name__ == "__main__":
    main()
