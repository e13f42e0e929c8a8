"""The macOS guest profile: configuration, QEMU command line, readiness over SSH.

xvpci never ships macOS or OpenCore images; the user names theirs, through
the environment or a TOML file (``XVPCI_MACOS_CONFIG``)::

    macos_image = "/images/macos.qcow2"          # XVPCI_MACOS_IMAGE
    opencore_image = "/images/OpenCore.qcow2"    # XVPCI_OPENCORE_IMAGE (must auto-boot)
    smc_osk = "..."                              # XVPCI_MACOS_OSK: the SMC key of your Mac
    ssh_user = "admin"                           # XVPCI_MACOS_USER
    ssh_key = "~/.ssh/xvpci_macos"               # XVPCI_MACOS_SSH_KEY (ECDSA private key)
    host_key = "ssh-ed25519 AAAA..."             # XVPCI_MACOS_HOST_KEY (pinned)
    ovmf_code = "/fw/OVMF_CODE.fd"               # XVPCI_OVMF_CODE  } optional, both or
    ovmf_vars = "/fw/OVMF_VARS.fd"               # XVPCI_OVMF_VARS  } neither
    ssh_timeout = 900                            # XVPCI_MACOS_SSH_TIMEOUT (seconds)

A macOS guest needs working KVM with ``kvm.ignore_msrs=1`` and an OVMF CODE
and VARS pair of one build; :func:`preflight` checks all of it before anything
starts and says in one line what is absent. The kext that publishes the
window's child is deployed over SSH by ``macos_deploy``.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HarnessError
from .qemu_install import QemuInstall
from .ssh import parse_host_key

log = logging.getLogger(__name__)

ENV = {
    "macos_image": "XVPCI_MACOS_IMAGE",
    "opencore_image": "XVPCI_OPENCORE_IMAGE",
    "smc_osk": "XVPCI_MACOS_OSK",
    "ssh_user": "XVPCI_MACOS_USER",
    "ssh_key": "XVPCI_MACOS_SSH_KEY",
    "host_key": "XVPCI_MACOS_HOST_KEY",
    "ovmf_code": "XVPCI_OVMF_CODE",
    "ovmf_vars": "XVPCI_OVMF_VARS",
    "ssh_timeout": "XVPCI_MACOS_SSH_TIMEOUT",
}
REQUIRED = ("macos_image", "opencore_image", "smc_osk", "ssh_user", "ssh_key", "host_key")
# Debian's OVMF, relative to an install prefix (``usr`` in the QEMU root, or the
# prefix of the binary named by XVPCI_QEMU: /usr/bin/qemu-system-x86_64 -> /usr).
OVMF_CODE = "share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "share/OVMF/OVMF_VARS_4M.fd"
# vmware-cpuid-freq=on (with invtsc) publishes the TSC frequency in CPUID leaf 0x40000010,
# which macOS reads instead of calibrating; OSX-KVM and Docker-OSX both set it.
CPU = "Haswell-noTSX,vendor=GenuineIntel,+invtsc,+hypervisor,kvm=on,vmware-cpuid-freq=on"
# OpenCore and boot.efi need the firmware's graphics output (GOP) even with no display
# attached: every reference keeps vmware-svga headless (with -display none).
DISPLAY_DEVICE = "vmware-svga"
SSH_TIMEOUT = 900.0
IGNORE_MSRS = Path("/sys/module/kvm/parameters/ignore_msrs")

#: OVMF's flash layout per build, from edk2 ``OvmfPkg/Include/Fdf/OvmfPkgDefines.fdf.inc``:
#: CODE_SIZE -> (FD_SIZE_IN_KB, VARS_SIZE). The 1 MiB and 2 MiB builds share one
#: variable store layout (0x20000 bytes; OSX-KVM ships a 2 MiB CODE with 128 KiB VARS);
#: the 4 MiB build's store (0x84000 bytes; Debian's ``*_4M.fd``) is incompatible with both.
OVMF_BUILDS: dict[int, tuple[int, int]] = {
    0x0E0000: (1024, 0x20000),
    0x1E0000: (2048, 0x20000),
    0x37C000: (4096, 0x84000),
}


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
        try:
            parse_host_key(self.values["host_key"])
        except HarnessError as exc:
            return f"macOS guest: {ENV['host_key']}: {exc}"
        try:
            self.ssh_timeout  # noqa: B018 (validates the value)
        except HarnessError as exc:
            return str(exc)
        return None

    def path(self, key: str) -> Path:
        return Path(self.values[key]).expanduser()

    @property
    def ssh_timeout(self) -> float:
        """Seconds to wait for macOS to answer SSH after QEMU starts."""
        text = self.values.get("ssh_timeout")
        if not text:
            return SSH_TIMEOUT
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
        if not seconds > 0:
            raise HarnessError(
                f"macOS guest: {ENV['ssh_timeout']}={text} is not a positive number of seconds"
            )
        return seconds


@dataclass(frozen=True)
class OvmfPair:
    """The firmware a macOS boot uses: CODE (read-only) and the VARS template of its build."""

    code: Path
    vars: Path


def ovmf_pair(config: MacosConfig, qemu: QemuInstall) -> OvmfPair:
    """The OVMF pair the configuration names (both or neither), else the one QEMU ships.

    With neither named: the QEMU root's, or with ``XVPCI_QEMU`` the one under that
    binary's prefix (``/usr/bin/qemu-system-x86_64`` -> ``/usr/share/OVMF``) if present.
    Raises :class:`HarnessError` (one line) when there is none or they are not a pair.
    """
    code, vars_ = config.values.get("ovmf_code"), config.values.get("ovmf_vars")
    if code and vars_:
        pair = OvmfPair(Path(code).expanduser(), Path(vars_).expanduser())
    elif code or vars_:
        given, absent = ("ovmf_code", "ovmf_vars") if code else ("ovmf_vars", "ovmf_code")
        raise HarnessError(
            f"macOS guest: {ENV[given]} is set but {ENV[absent]} is not; "
            "name both OVMF files (a CODE and the VARS of the same build) or neither"
        )
    else:
        pair = _shipped_pair(qemu)
    check_pair(pair)
    log.info("OVMF CODE %s, VARS %s", pair.code, pair.vars)
    return pair


def _shipped_pair(qemu: QemuInstall) -> OvmfPair:
    if qemu.root is not None:
        prefix, where, fix = (
            qemu.root / "usr",
            f"the QEMU root {qemu.root}",
            "run `xvpci provision`",
        )
    else:
        prefix = qemu.binary.parent.parent
        where, fix = f"{prefix} (prefix of XVPCI_QEMU={qemu.binary})", "name your own"
    code, vars_ = prefix / OVMF_CODE, prefix / OVMF_VARS
    if not (code.is_file() and vars_.is_file()):
        raise HarnessError(
            f"macOS guest: no OVMF in {where} ({OVMF_CODE}, {OVMF_VARS}); {fix}: "
            f"set {ENV['ovmf_code']} and {ENV['ovmf_vars']} (or ovmf_code/ovmf_vars in the config)"
        )
    return OvmfPair(code, vars_)


def check_pair(pair: OvmfPair) -> None:
    """Raise :class:`HarnessError` (one line) unless CODE and VARS are raw images of one
    OVMF build: the sizes must match a row of :data:`OVMF_BUILDS`. QEMU accepts any
    sizes (it stacks the two flash images down from 4 GiB), but OVMF looks for its
    variable store at its own build's FW_BASE_ADDRESS, where a store of another size
    does not start."""
    sizes: dict[str, int] = {}
    for role, path in (("CODE", pair.code), ("VARS", pair.vars)):
        if not path.is_file():
            raise HarnessError(f"macOS guest: OVMF {role} {path} is not a file")
        sizes[role] = path.stat().st_size
    build = OVMF_BUILDS.get(sizes["CODE"])
    if build is None:
        known = ", ".join(
            f"{size:#x} ({kb // 1024} MiB build)" for size, (kb, _) in OVMF_BUILDS.items()
        )
        raise HarnessError(
            f"macOS guest: OVMF CODE {pair.code} has {sizes['CODE']:#x} bytes, not the size of "
            f"a raw OVMF CODE image of a known build ({known})"
        )
    kb, vars_size = build
    if sizes["VARS"] != vars_size:
        builds = [f"{k // 1024} MiB" for k, v in OVMF_BUILDS.values() if v == sizes["VARS"]]
        what = (
            f"the size of a {' or '.join(builds)} build's VARS" if builds else "no known VARS size"
        )
        raise HarnessError(
            f"macOS guest: OVMF CODE {pair.code} is a {kb // 1024} MiB build and needs "
            f"{vars_size:#x}-byte VARS, but VARS {pair.vars} has {sizes['VARS']:#x} bytes "
            f"({what}): use the VARS file shipped with that CODE"
        )


def ignore_msrs_problem(path: Path = IGNORE_MSRS) -> str | None:
    """None when KVM ignores the MSRs it does not emulate (macOS touches some); else one
    line saying how to set it. ``path`` is the sysfs parameter (a test names its own)."""
    fix = (
        f"echo 1 | sudo tee {IGNORE_MSRS} "
        "(to keep it: `options kvm ignore_msrs=1` in /etc/modprobe.d/kvm.conf)"
    )
    try:
        value = path.read_text().strip()
    except OSError as exc:
        return (
            f"macOS guest needs kvm.ignore_msrs=1 and {path} cannot be read "
            f"({exc.strerror}; is the kvm module loaded?): {fix}"
        )
    if value in ("Y", "1"):
        return None
    return f"macOS guest needs kvm.ignore_msrs=1 ({path} is {value}): {fix}"


def preflight(config: MacosConfig, qemu: QemuInstall, ignore_msrs: Path = IGNORE_MSRS) -> OvmfPair:
    """Everything a macOS boot needs that can be checked without booting (the
    configuration, ``kvm.ignore_msrs``, the OVMF pair); raises :class:`HarnessError`
    with one line for the first problem. Returns the OVMF pair to boot with."""
    for problem in (config.missing(), ignore_msrs_problem(ignore_msrs)):
        if problem:
            raise HarnessError(problem)
    return ovmf_pair(config, qemu)


def guest_args(config: MacosConfig, ovmf_code: Path, vars_copy: Path) -> list[str]:
    """The OS-specific QEMU arguments: firmware, display, OpenCore and macOS disks, SMC, input.

    ``vars_copy`` is a writable copy of the OVMF variable store (of ``ovmf_code``'s build)
    for this boot.
    """
    return [
        "-smbios", "type=2",
        "-drive", f"if=pflash,format=raw,readonly=on,file={ovmf_code}",
        "-drive", f"if=pflash,format=raw,file={vars_copy}",
        "-device", DISPLAY_DEVICE,
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
