"""Run every benchmark: ``python -m bench`` (each prints its table and writes bench/results)."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    ("bench.mmio", []),
    ("bench.dma", []),
    ("bench.diff_engine", []),
    ("bench.boot_time", ["--runs", "2"]),
    ("bench.nvme_fio", []),
    ("bench.crossval_time", []),
)


def main() -> int:
    failed = []
    for module, args in BENCHMARKS:
        print(f"\n=== {module} ===", flush=True)
        if subprocess.run([sys.executable, "-m", module, *args], check=False).returncode:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
