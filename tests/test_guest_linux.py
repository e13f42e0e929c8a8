"""A real Linux guest under QEMU 11 with the edu model on vfio-user-pci, and its failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest import LinuxGuest, ModelAttachment
from harness.machine import GuestBootError
from harness.qtest import vfio_user_device
from harness.ssh import GuestCommandTimeout, GuestLinkError
from tests.conftest import assert_process_gone, has, read_log

pytestmark = pytest.mark.qemu

FIND_EDU = "d=$(grep -l 0x11e8 /sys/bus/pci/devices/*/device); d=${d%/device}"


def test_edu_model_in_a_linux_guest(qemu, linux_image, tmp_path: Path) -> None:
    with LinuxGuest(qemu, linux_image, tmp_path, [ModelAttachment("edu")]) as guest:
        lspci = guest.ssh.run("lspci -nn").check().stdout
        assert "[1234:11e8]" in lspci
        # The boot's timer count, which panics a guest on a loaded host, is skipped.
        assert "no_timer_check" in guest.ssh.run("cat /proc/cmdline").check().stdout.split()
        script = f"""{FIND_EDU}
            echo 1 > $d/enable
            bar=$(head -1 $d/resource | cut -d' ' -f1)
            devmem $bar 32
            devmem $((bar + 4)) 32 0x12345678
            devmem $((bar + 4)) 32
            devmem $((bar + 8)) 32 10
            devmem $((bar + 8)) 32
        """
        out = guest.ssh.run(script).check().stdout.split()
        assert [int(v, 16) for v in out] == [0x010000ED, 0xEDCBA987, 3628800]
        with pytest.raises(GuestCommandTimeout):
            guest.ssh.run("sleep 30", timeout=1)
        assert guest.ssh.run("echo still here").check().stdout == "still here\n"
        guest.ssh.put(b"\x00\x01binary\xff", "/tmp/blob")
        assert guest.ssh.get("/tmp/blob") == b"\x00\x01binary\xff"
        server_pid = guest.servers["edu"].pid
        qemu_pid = guest.machine.process.pid
    assert_process_gone(server_pid)
    assert_process_gone(qemu_pid)

    header, events, trailer = read_log(tmp_path / "edu.jsonl")
    assert header["model"] == "edu" and trailer is not None
    # The guest kernel enumerated the device: config reads of its IDs and BARs.
    assert any(has(e, kind="cfg_read", offset=0) for e in events)
    assert any(e["kind"] == "cfg_write" and e["offset"] == 0x10 for e in events)
    assert any(has(e, kind="mmio_read", bar=0, offset=0, size=4, value=0x010000ED) for e in events)
    assert any(has(e, kind="mmio_write", bar=0, offset=8, size=4, value=10) for e in events)
    assert any(has(e, kind="mmio_read", bar=0, offset=8, size=4, value=3628800) for e in events)


def _pids(guest: LinuxGuest) -> list[int]:
    pids = [served.pid for served in guest.servers.values()]
    if guest.machine is not None and guest.machine.process is not None:
        pids.append(guest.machine.process.pid)
    return pids


def test_kernel_panic_is_reported_with_the_serial_log(qemu, linux_image, tmp_path: Path) -> None:
    guest = LinuxGuest(
        qemu, linux_image, tmp_path, kernel_args="console=ttyS0 panic=-1 rdinit=/no/such/init"
    )
    with pytest.raises(GuestBootError) as info, guest:
        pass
    message = str(info.value)
    assert "panic" in message and str(guest.machine.serial_log) in message
    for pid in _pids(guest):
        assert_process_gone(pid)


def test_qemu_refusing_an_option_names_its_stderr(qemu, linux_image, tmp_path: Path) -> None:
    guest = LinuxGuest(
        qemu,
        linux_image,
        tmp_path,
        [ModelAttachment("edu")],
        extra_args=["-device", "no-such-device"],
    )
    with pytest.raises(GuestBootError) as info, guest:
        pass
    message = str(info.value)
    assert "QEMU exited with status 1" in message and "no-such-device" in message
    assert str(guest.machine.stderr_log) in message
    for pid in _pids(guest):
        assert_process_gone(pid)


def test_missing_vfio_user_socket(qemu, linux_image, tmp_path: Path) -> None:
    device = vfio_user_device(tmp_path / "nobody-listens.sock")
    guest = LinuxGuest(qemu, linux_image, tmp_path, extra_args=["-device", device])
    with pytest.raises(GuestBootError, match="Failed to connect") as info, guest:
        pass
    assert "QEMU stderr" in str(info.value)
    for pid in _pids(guest):
        assert_process_gone(pid)


def test_guest_that_never_reaches_sshd(qemu, linux_image, tmp_path: Path) -> None:
    # e1000 has no driver in the image: the guest boots but its sshd is unreachable.
    guest = LinuxGuest(qemu, linux_image, tmp_path, nic="e1000", ssh_timeout=15)
    with pytest.raises(GuestLinkError, match="no SSH"), guest:
        pass
    for pid in _pids(guest):
        assert_process_gone(pid)
