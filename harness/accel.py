"""Accelerator choice: TCG by default; KVM only after a probe guest boots under it.

On these machines /dev/kvm exists but nested guests hang, so KVM is never
assumed: ``probe_kvm()`` boots the Linux image under KVM with a timeout (and
kills it by pid when it hangs); the verdict is cached for this host boot.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .cache import cache_dir
from .errors import HarnessError
from .guest import KERNEL_ARGS
from .linux_image import LinuxImage
from .machine import GuestBootError, Machine, MachineSpec
from .qemu_install import QemuInstall

PROBE_TIMEOUT = 60.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(
    qemu: QemuInstall, image: LinuxImage, timeout: float = PROBE_TIMEOUT
) -> tuple[bool, str]:
    """Whether a guest boots under KVM here, and why not; cached per host boot."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    verdict_file = cache_dir() / "kvm-probe.json"
    try:
        cached = json.loads(verdict_file.read_text())
        if cached.get("boot_id") == _boot_id():
            return bool(cached["ok"]), str(cached["reason"])
    except (OSError, ValueError, KeyError):
        pass
    spec = MachineSpec(
        guest_args=image.boot_args(KERNEL_ARGS),
        accel="kvm",
        cpu="host",
        memory_mib=512,
    )
    with (
        tempfile.TemporaryDirectory(prefix="xvpci-kvm-") as tmp,
        Machine(qemu, spec, Path(tmp), "kvm-probe") as machine,
    ):
        try:
            machine.start()
            seconds = machine.wait_for_serial("XVPCI-GUEST-READY", timeout)
            ok, reason = True, f"probe guest booted under KVM in {seconds:.1f} s"
        except GuestBootError as exc:
            first_line = str(exc).splitlines()[0]
            ok, reason = False, f"no boot under KVM within {timeout:.0f} s ({first_line})"
    verdict_file.write_text(json.dumps({"boot_id": _boot_id(), "ok": ok, "reason": reason}))
    return ok, reason


def choose_accel(requested: str, qemu: QemuInstall, image: LinuxImage) -> str:
    """``tcg`` as asked; ``kvm`` only if the probe passes (else an error); ``auto`` picks."""
    if requested == "tcg":
        return "tcg"
    if requested not in ("kvm", "auto"):
        raise HarnessError(f"unknown accelerator {requested!r} (tcg, kvm or auto)")
    ok, reason = probe_kvm(qemu, image)
    if ok:
        return "kvm"
    if requested == "kvm":
        raise HarnessError(f"KVM is not usable here: {reason}; use --accel tcg")
    return "tcg"
