"""The adaptive polling budget: grows on short gaps, vanishes on long ones; off by
default for a server that may run on one CPU only."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vfio_bridge.polling import DEFAULT_POLL_MAX_US, PollBudget


def test_budget_grows_to_the_limit_and_shrinks_to_nothing() -> None:
    budget = PollBudget(200)
    assert budget.budget == 0  # an idle device costs no CPU
    for _ in range(10):
        budget.blocked(50e-6)  # requests 50 us apart: polling would have caught them
    assert budget.budget == pytest.approx(200e-6)
    budget.blocked(1.0)  # a long pause shrinks it
    assert 0 < budget.budget < 200e-6
    for _ in range(10):
        budget.blocked(1.0)
    assert budget.budget == 0


def test_zero_limit_never_polls_and_negative_is_refused() -> None:
    budget = PollBudget(0)
    budget.blocked(1e-6)
    assert budget.budget == 0
    with pytest.raises(ValueError):
        PollBudget(-1)


def serve_pinned(sockdir: Path, cpus: set[int], *args: str) -> tuple[str, str]:
    """Start the server with the CPU affinity ``cpus`` (set in the child before it
    runs) and ``args``; its ready line and its stderr once stopped by its pid."""
    argv = [sys.executable, "-m", "vfio_bridge", "serve", "--model", "edu"]
    argv += ["--socket", str(sockdir / "edu.sock"), "-v", *args]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no ready line within 30 s"
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    return line, stderr


def test_polling_is_off_by_default_on_one_cpu_and_says_so_once(sockdir: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    line, stderr = serve_pinned(sockdir, {cpu})
    assert line.endswith(", no polling (one CPU)\n")
    assert stderr.count("polling off") == 1
    assert f"may run on CPU {cpu} only" in stderr


def test_an_explicit_poll_limit_holds_on_one_cpu(sockdir: Path) -> None:
    line, stderr = serve_pinned(sockdir, {min(os.sched_getaffinity(0))}, "--poll-us", "50")
    assert line.endswith(", polling up to 50 us\n")
    assert "polling off" not in stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run on")
def test_polling_is_on_by_default_with_two_cpus(sockdir: Path) -> None:
    line, stderr = serve_pinned(sockdir, set(sorted(os.sched_getaffinity(0))[:2]))
    assert line.endswith(f", polling up to {DEFAULT_POLL_MAX_US} us\n")
    assert "polling off" not in stderr
