"""Faults mid-workload: the harness says which side failed, keeps the logs, leaves nothing."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from harness.difflog import LogError, diff_logs
from harness.guest import LinuxGuest, ModelAttachment
from harness.ssh import GuestCommandTimeout, GuestLinkError
from tests.conftest import assert_process_gone, read_log

pytestmark = pytest.mark.qemu


def _pids(guest: LinuxGuest) -> list[int]:
    return [guest.machine.process.pid, *(s.pid for s in guest.servers.values())]


def test_qemu_killed_mid_workload(qemu, linux_image, tmp_path: Path) -> None:
    guest = LinuxGuest(qemu, linux_image, tmp_path, [ModelAttachment("nvme")])
    with guest:
        pids = _pids(guest)
        threading.Timer(2.0, os.kill, (guest.machine.process.pid, signal.SIGKILL)).start()
        with pytest.raises((GuestLinkError, GuestCommandTimeout)):
            guest.ssh.run(
                "dd if=/dev/nvme0n1 of=/dev/null bs=4k count=2000 iflag=direct; sleep 60",
                timeout=30,
            )
        cause = guest.diagnose()
        assert "QEMU exited with status -9" in cause and str(guest.machine.serial_log) in cause
    for pid in pids:
        assert_process_gone(pid)
    header, events, trailer = read_log(tmp_path / "nvme.jsonl")
    assert header["model"] == "nvme" and events and trailer is not None  # the server closed it


def test_server_killed_mid_workload(qemu, linux_image, tmp_path: Path) -> None:
    guest = LinuxGuest(qemu, linux_image, tmp_path, [ModelAttachment("nvme")])
    with guest:
        pids = _pids(guest)
        os.kill(guest.servers["nvme"].pid, signal.SIGKILL)
        with pytest.raises((GuestLinkError, GuestCommandTimeout)):
            # The guest's I/O now goes nowhere: QEMU times out each access, the
            # command outlives its timeout.
            guest.ssh.run("dd if=/dev/nvme0n1 of=/dev/null bs=4k count=64 iflag=direct", timeout=15)
        cause = guest.diagnose()
        assert "the server for nvme exited with status -9" in cause
    for pid in pids:
        assert_process_gone(pid)
    log = tmp_path / "nvme.jsonl"
    _, events, trailer = read_log(log)
    assert events and trailer is None  # readable up to the kill, and marked as cut short
    with pytest.raises(LogError, match="truncated"):
        diff_logs(log, log)
    assert diff_logs(log, log, allow_truncated=True).equivalent
    assert (tmp_path / "nvme.server.stderr").exists()


def test_guest_kernel_panic_mid_workload(qemu, linux_image, tmp_path: Path) -> None:
    guest = LinuxGuest(qemu, linux_image, tmp_path, [ModelAttachment("nvme")])
    with guest:
        pids = _pids(guest)
        with pytest.raises((GuestLinkError, GuestCommandTimeout)):
            guest.ssh.run(
                "dd if=/dev/nvme0n1 of=/dev/null bs=4k count=500 iflag=direct && "
                "echo c > /proc/sysrq-trigger; sleep 60",
                timeout=30,
            )
        cause = guest.diagnose()
        assert "the guest kernel panicked" in cause, cause
    for pid in pids:
        assert_process_gone(pid)
    _, events, trailer = read_log(tmp_path / "nvme.jsonl")
    assert events and trailer is not None  # the server outlived the guest and closed its log


def test_ssh_link_dropped_mid_workload(qemu, linux_image, tmp_path: Path) -> None:
    guest = LinuxGuest(qemu, linux_image, tmp_path, [ModelAttachment("nvme")])
    with guest:
        pids = _pids(guest)
        with pytest.raises(GuestLinkError):
            # Kill the SSH server process that carries this very session.
            guest.ssh.run(
                "dd if=/dev/nvme0n1 of=/dev/null bs=4k count=500 iflag=direct; "
                "kill -9 $(cut -d' ' -f4 /proc/$$/stat); sleep 60",
                timeout=30,
            )
        assert "still running" in guest.diagnose()  # not QEMU, not a server
    for pid in pids:
        assert_process_gone(pid)
    _, events, trailer = read_log(tmp_path / "nvme.jsonl")
    assert events and trailer is not None
