"""The macOS guest profile, checked against the installed QEMU (no macOS image needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from harness.machine import Machine, MachineSpec
from harness.macos import CPU, ENV, OVMF_VARS, MacosConfig, guest_args

pytestmark = pytest.mark.qemu


@pytest.fixture
def clean_env(monkeypatch):
    for variable in [*ENV.values(), "XVPCI_MACOS_CONFIG"]:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_missing_pieces_are_named_in_one_line(clean_env, tmp_path: Path) -> None:
    assert "set XVPCI_MACOS_IMAGE, XVPCI_OPENCORE_IMAGE" in MacosConfig.load().missing()
    config = tmp_path / "macos.toml"
    config.write_text(
        'macos_image = "/nope/macos.qcow2"\nopencore_image = "/nope/oc.qcow2"\nsmc_osk = "x"\n'
        'ssh_user = "admin"\nssh_key = "/nope/key"\nhost_key = "ssh-ed25519 AAAA"\n'
    )
    clean_env.setenv("XVPCI_MACOS_CONFIG", str(config))
    assert (
        MacosConfig.load().missing()
        == "macOS guest: XVPCI_MACOS_IMAGE=/nope/macos.qcow2 is not a file"
    )


def test_command_line_is_accepted_by_qemu(qemu, clean_env, tmp_path: Path) -> None:
    images = {}
    for name in ("macos", "opencore"):
        images[name] = tmp_path / f"{name}.qcow2"
        subprocess.run(
            qemu.img_argv("create", "-q", "-f", "qcow2", str(images[name]), "64M"), check=True
        )
    key = tmp_path / "key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(key))
    for variable, value in {
        "XVPCI_MACOS_IMAGE": images["macos"], "XVPCI_OPENCORE_IMAGE": images["opencore"],
        "XVPCI_MACOS_OSK": "not-the-real-key", "XVPCI_MACOS_USER": "admin",
        "XVPCI_MACOS_SSH_KEY": key, "XVPCI_MACOS_HOST_KEY": "ssh-ed25519 AAAA",
    }.items():  # fmt: skip
        clean_env.setenv(variable, str(value))
    config = MacosConfig.load()
    assert config.missing() is None
    vars_copy = tmp_path / "vars.fd"
    shutil.copyfile(qemu.firmware(OVMF_VARS), vars_copy)
    # Accepted and realized, without booting anything: TCG, CPU paused (-S).
    spec = MachineSpec(
        guest_args=guest_args(config, qemu, vars_copy),
        accel="tcg",
        cpu=CPU.replace(",kvm=on", ""),
        nic="vmxnet3",
        extra_args=["-S"],
    )
    with Machine(qemu, spec, tmp_path, name="macos") as machine:
        machine.start()
        devices = [d for bus in machine.command("query-pci") for d in bus["devices"]]
        vendors = {(d["id"]["vendor"], d["id"]["device"]) for d in devices}
        assert (0x15AD, 0x07B0) in vendors  # vmxnet3
        assert (0x8086, 0x2922) in vendors  # ich9-ahci
        assert (0x1B36, 0x000D) in vendors  # qemu-xhci
