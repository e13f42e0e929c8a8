"""The macOS deploy/run/unload sequence over a real sshd, with STAND-IN macOS tools.

No macOS guest can run here: a Linux guest provides the sshd, and the
scripts in tests/macos_standins (clearly named stand-ins) play make, sudo,
kmutil, kextutil and ioreg, so every branch of the sequence is exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.guest import LinuxGuest, ModelAttachment
from harness.macos_deploy import DeployReport, deploy_and_run

pytestmark = pytest.mark.qemu

STANDINS = Path(__file__).resolve().parent / "macos_standins"
WORKLOAD = "dd if=/dev/nvme0n1 of=/dev/null bs=4k count=16 && echo 'stand-in workload ok'\n"


@pytest.fixture(scope="module")
def fake_mac(qemu, linux_image, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("fake-mac")
    with LinuxGuest(qemu, linux_image, workdir, [ModelAttachment("nvme")]) as guest:
        guest.ssh.run("mkdir -p /usr/share/standin").check()
        guest.ssh.put((STANDINS / "common.sh").read_bytes(), "/usr/share/standin/common.sh")
        for tool in ("make", "sudo", "kmutil", "kextutil", "kextunload", "ioreg"):
            guest.ssh.put((STANDINS / tool).read_bytes(), f"/usr/bin/{tool}", 0o755)
        yield guest


def _scenario(guest: LinuxGuest, name: str) -> None:
    guest.ssh.run(f"echo {name} > /tmp/standin-scenario; rm -f /tmp/standin-*loaded").check()


def test_success_runs_every_step_and_unloads(fake_mac: LinuxGuest) -> None:
    _scenario(fake_mac, "ok")
    report = deploy_and_run(fake_mac.ssh, WORKLOAD)
    assert report.steps == [
        "copied kext sources", "built XvpciWindow.kext", "loaded the kext",
        "child nub published", "workload passed", "unloaded",
    ]  # fmt: skip
    assert "IONVMeController" in report.guest_view
    assert "stand-in workload ok" in report.workload_output
    copied = fake_mac.ssh.run("ls /tmp/xvpci-kext").check().stdout.split()
    assert {"XvpciWindow.cpp", "Info.plist", "Makefile"} <= set(copied)


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("sip", "SIP blocks unsigned kexts"),
        ("approval", "the kext needs approval"),
        ("signature", "signature was rejected"),
        ("nonub", "published no child nub"),
    ],
)
def test_each_failure_has_its_message(fake_mac: LinuxGuest, scenario: str, message: str) -> None:
    _scenario(fake_mac, scenario)
    report = DeployReport()
    with pytest.raises(HarnessError, match=message):
        deploy_and_run(fake_mac.ssh, WORKLOAD, report)
    if scenario == "nonub":  # loaded, so it must be unloaded again
        assert report.steps[-1] == "unloaded"
        assert fake_mac.ssh.run("test -e /tmp/standin-unloaded").status == 0
