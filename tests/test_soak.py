"""Soak: repeated cross-validation runs keep the harness's memory and descriptors flat.

On demand only, bounded in time: ``XVPCI_SOAK_MINUTES=30 pytest tests/test_soak.py``.
Each round is a whole ``xvpci run`` (both paths, the default workload, the
diff); after a warm-up round, the harness process must hold the same
descriptors, no child processes, no new temporary socket directories, and
its resident memory may not keep growing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import pytest

from harness.run import run
from tests.conftest import child_pids

pytestmark = pytest.mark.qemu
MINUTES = float(os.environ.get("XVPCI_SOAK_MINUTES", "0"))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def _fds() -> set[str]:
    targets = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the descriptor listdir used
            targets.add(f"{fd} {os.readlink(f'/proc/self/fd/{fd}')}")
    return targets


def _temp_dirs() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("xvpci-")}


@pytest.mark.skipif(not MINUTES, reason="on demand: set XVPCI_SOAK_MINUTES")
def test_repeated_cross_validation_stays_flat(tmp_path: Path, linux_image) -> None:
    os.environ.setdefault("XVPCI_CACHE", str(linux_image.directory.parents[1]))
    deadline = time.monotonic() + MINUTES * 60
    samples: list[tuple[int, int]] = []
    baseline: tuple[set[str], set[str]] | None = None
    rounds = 0
    while not rounds or time.monotonic() < deadline:
        result = run("nvme", ["direct", "window"], "fio-pattern", tmp_path / f"r{rounds}", [])
        rounds += 1
        assert result.passed, f"round {rounds}: {result.verdict}"
        assert child_pids() == set(), f"round {rounds} left processes behind"
        if baseline is None:
            baseline = (_fds(), _temp_dirs())  # after a warm-up round: caches, imports
            continue
        assert _fds() == baseline[0], f"round {rounds}: descriptors changed"
        assert _temp_dirs() == baseline[1], f"round {rounds}: temporary directories left"
        samples.append((rounds, _rss_kib()))
    print(f"soak: {rounds} rounds; RSS KiB by round: {samples}")
    if len(samples) >= 3:
        growth = samples[-1][1] - samples[0][1]
        assert growth < 16 * 1024, f"resident memory grew {growth} KiB over {rounds} rounds"
