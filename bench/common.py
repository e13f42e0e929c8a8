"""Helpers shared by the benchmarks: machine description, tables, JSON results, the
server processes they measure."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from harness.served import start_ready, stop_ready

RESULTS = Path(__file__).resolve().parent / "results"


def machine_description() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d"),
    }


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def save(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_description(), **data}, indent=2) + "\n")
    return path


class SocketServer:
    """A server process on ``socket_path`` that prints "ready: ..." once it listens
    (started by ``argv``, its stderr beside the socket); ``stop()`` ends it by its pid."""

    def __init__(self, argv: Sequence[str], label: str, socket_path: Path, timeout: float) -> None:
        self.socket_path = socket_path
        self.name = socket_path.stem
        self.process = start_ready(
            list(argv),
            f"{label} {self.name}",
            self.name,
            socket_path.with_suffix(".stderr"),
            timeout,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        return stop_ready(self.process)
