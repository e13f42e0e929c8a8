"""The macOS guest profile: configuration, QEMU command line, readiness over SSH.

xvpci never ships macOS or OpenCore images; the user names theirs, through
the environment or a TOML file (``XVPCI_MACOS_CONFIG``)::

    macos_image = "/images/macos.qcow2"          # XVPCI_MACOS_IMAGE
    opencore_image = "/images/OpenCore.qcow2"    # XVPCI_OPENCORE_IMAGE
    smc_osk = "..."                              # XVPCI_MACOS_OSK: the SMC key of your Mac
    ssh_user = "admin"                           # XVPCI_MACOS_USER
    ssh_key = "~/.ssh/xvpci_macos"               # XVPCI_MACOS_SSH_KEY (ECDSA private key)
    host_key = "ssh-ed25519 AAAA..."             # XVPCI_MACOS_HOST_KEY (pinned)

A macOS guest needs working KVM; :func:`missing` says in one line what is
absent. The kext that publishes the window's child (issue 9) is not part of
this version: the profile boots macOS with the devices attached, nothing more.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HarnessError
from .qemu_install import QemuInstall

ENV = {
    "macos_image": "XVPCI_MACOS_IMAGE",
    "opencore_image": "XVPCI_OPENCORE_IMAGE",
    "smc_osk": "XVPCI_MACOS_OSK",
    "ssh_user": "XVPCI_MACOS_USER",
    "ssh_key": "XVPCI_MACOS_SSH_KEY",
    "host_key": "XVPCI_MACOS_HOST_KEY",
}
REQUIRED = ("macos_image", "opencore_image", "smc_osk", "ssh_user", "ssh_key", "host_key")
OVMF_CODE = "usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "usr/share/OVMF/OVMF_VARS_4M.fd"
CPU = "Haswell-noTSX,vendor=GenuineIntel,+invtsc,+hypervisor,kvm=on"


@dataclass
class MacosConfig:
    values: dict[str, str] = field(default_factory=dict)
    memory_mib: int = 4096
    cpus: int = 2

    @classmethod
    def load(cls) -> MacosConfig:
        """The config file named by ``XVPCI_MACOS_CONFIG``, then the environment on top."""
        values: dict[str, str] = {}
        path = os.environ.get("XVPCI_MACOS_CONFIG")
        if path:
            try:
                values.update({k: str(v) for k, v in tomllib.loads(Path(path).read_text()).items()})
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise HarnessError(f"XVPCI_MACOS_CONFIG={path}: {exc}") from None
        for key, env in ENV.items():
            if os.environ.get(env):
                values[key] = os.environ[env]
        return cls(values)

    def missing(self) -> str | None:
        """One line saying what is missing and how to provide it, or None."""
        absent = [key for key in REQUIRED if not self.values.get(key)]
        if absent:
            names = ", ".join(ENV[key] for key in absent)
            return (
                f"macOS guest not configured: set {names} "
                "(or name a TOML file in XVPCI_MACOS_CONFIG)"
            )
        for key in ("macos_image", "opencore_image", "ssh_key"):
            path = Path(self.values[key]).expanduser()
            if not path.is_file():
                return f"macOS guest: {ENV[key]}={path} is not a file"
        return None

    def path(self, key: str) -> Path:
        return Path(self.values[key]).expanduser()


def guest_args(config: MacosConfig, qemu: QemuInstall, vars_copy: Path) -> list[str]:
    """The OS-specific QEMU arguments: firmware, OpenCore and macOS disks, SMC, input.

    ``vars_copy`` is a writable copy of the OVMF variable store for this boot.
    """
    code = qemu.firmware(OVMF_CODE)
    if code is None:
        raise HarnessError(f"OVMF not found in the QEMU root ({OVMF_CODE}); run `xvpci provision`")
    return [
        "-smbios", "type=2",
        "-drive", f"if=pflash,format=raw,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,file={vars_copy}",
        "-device", f"isa-applesmc,osk={config.values['smc_osk']}",
        "-device", "ich9-ahci,id=sata",
        "-drive",
        f"id=opencore,if=none,snapshot=on,format=qcow2,file={config.path('opencore_image')}",
        "-device", "ide-hd,bus=sata.2,drive=opencore,bootindex=1",
        "-drive", f"id=macos,if=none,format=qcow2,file={config.path('macos_image')}",
        "-device", "ide-hd,bus=sata.3,drive=macos",
        "-device", "qemu-xhci,id=xhci",
        "-device", "usb-kbd,bus=xhci.0",
        "-device", "usb-tablet,bus=xhci.0",
    ]  # fmt: skip


def machine_options() -> dict[str, object]:
    """MachineSpec fields a macOS guest needs (KVM, a Haswell CPU, vmxnet3)."""
    return {"accel": "kvm", "cpu": CPU, "nic": "vmxnet3", "memory_mib": 4096, "cpus": 2}
