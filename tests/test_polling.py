"""The adaptive polling budget: grows on short gaps, vanishes on long ones; off by
default for a server that may run on one CPU only, which runs under SCHED_BATCH there."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vfio_bridge.polling import DEFAULT_POLL_MAX_US, PollBudget, use_scheduling


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


def serve_pinned(
    sockdir: Path, cpus: set[int], *args: str, python: tuple[str, ...] = ("-m", "vfio_bridge")
) -> tuple[str, str, int]:
    """Start the server with the CPU affinity ``cpus`` (set in the child before it
    runs) and ``args``; its ready line, its stderr once stopped by its pid, and the
    scheduling policy it ran under once ready (as the kernel reports it)."""
    argv = [sys.executable, *python, "serve", "--model", "edu"]
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
        policy = os.sched_getscheduler(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    return line, stderr, policy


def test_polling_is_off_and_scheduling_batch_by_default_on_one_cpu_and_says_so_once(
    sockdir: Path,
) -> None:
    cpu = min(os.sched_getaffinity(0))
    line, stderr, policy = serve_pinned(sockdir, {cpu})
    assert line.endswith(", no polling, batch scheduling (one CPU)\n")
    assert policy == os.SCHED_BATCH
    assert stderr.count("polling off") == 1
    assert stderr.count("batch scheduling: this process may run on") == 1
    assert f"may run on CPU {cpu} only" in stderr


def test_an_explicit_poll_limit_and_policy_hold_on_one_cpu(sockdir: Path) -> None:
    cpu = {min(os.sched_getaffinity(0))}
    line, stderr, policy = serve_pinned(sockdir, cpu, "--poll-us", "50", "--sched", "normal")
    assert line.endswith(", polling up to 50 us, normal scheduling (one CPU)\n")
    assert policy == os.SCHED_OTHER
    assert "polling off" not in stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run on")
def test_polling_is_on_and_scheduling_normal_by_default_with_two_cpus(sockdir: Path) -> None:
    line, stderr, policy = serve_pinned(sockdir, set(sorted(os.sched_getaffinity(0))[:2]))
    assert line.endswith(f", polling up to {DEFAULT_POLL_MAX_US} us, normal scheduling\n")
    assert policy == os.SCHED_OTHER
    assert "polling off" not in stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run on")
def test_batch_scheduling_on_request_with_two_cpus(sockdir: Path) -> None:
    line, _, policy = serve_pinned(
        sockdir, set(sorted(os.sched_getaffinity(0))[:2]), "--sched", "batch"
    )
    assert line.endswith(", batch scheduling\n")
    assert policy == os.SCHED_BATCH


def test_a_policy_the_platform_lacks_is_refused_and_the_server_still_serves(
    sockdir: Path,
) -> None:
    with pytest.raises(ValueError):
        use_scheduling("fifo")
    # A platform without SCHED_BATCH: the server says so once and runs as it is.
    no_batch = "import os, sys; del os.SCHED_BATCH; from vfio_bridge.cli import main; "
    no_batch += "sys.exit(main(sys.argv[1:]))"
    cpus = set(sorted(os.sched_getaffinity(0))[:1])
    line, stderr, policy = serve_pinned(sockdir, cpus, python=("-c", no_batch))
    assert line.endswith(", no polling, scheduling unchanged (one CPU)\n")
    assert stderr.count("scheduling policy batch refused") == 1
    assert policy == os.SCHED_OTHER
