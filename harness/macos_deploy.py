"""Deploy the window kext into a macOS guest over SSH, check it bound, run a workload, unload.

Every step runs over :class:`~harness.ssh.GuestSSH` (the same path as the
Linux guest) and turns the macOS tools' failures into one clear message:
SIP still enabled, the kext not approved, a bad signature, no nub published.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import assets
from .errors import HarnessError
from .ssh import GuestSSH

KEXT_DIR = assets.kext_files()
KEXT_FILES = (
    "XvpciWindow.cpp",
    "XvpciWindow.hpp",
    "XvpciRegs.hpp",
    "kmod_info.c.in",
    "Info.plist",
    "Makefile",
    "guest-view.sh",
)
BUNDLE_ID = "io.xvpci.window"
REMOTE = "/tmp/xvpci-kext"

#: (pattern in the tool's output, what to tell the user)
LOAD_FAILURES = (
    (
        r"System Integrity Protection|SIP",
        "SIP blocks unsigned kexts: set csr-active-config in OpenCore (e.g. 0x67000000) "
        "and reboot the guest",
    ),
    (
        r"not approved|user consent|approve",
        "the kext needs approval: allow it in System Settings > Privacy & Security, "
        "then reboot the guest",
    ),
    (
        r"signature|not signed|codesign",
        "the kext signature was rejected: boot with SIP off, or sign it with a "
        "kext-signing identity",
    ),
)


@dataclass
class DeployReport:
    steps: list[str] = field(default_factory=list)
    guest_view: str = ""
    workload_output: str = ""


def _fail_reason(output: str) -> str | None:
    for pattern, reason in LOAD_FAILURES:
        if re.search(pattern, output, re.IGNORECASE):
            return reason
    return None


def deploy_and_run(
    ssh: GuestSSH, workload: str, report: DeployReport | None = None
) -> DeployReport:
    """Copy, build, load, confirm, run ``workload`` (a shell script), collect, unload."""
    report = report or DeployReport()
    ssh.run(f"rm -rf {REMOTE} && mkdir -p {REMOTE}").check()
    for name in KEXT_FILES:
        ssh.put(
            (KEXT_DIR / name).read_bytes(),
            f"{REMOTE}/{name}",
            0o755 if name.endswith(".sh") else 0o644,
        )
    report.steps.append("copied kext sources")
    built = ssh.run(f"make -C {REMOTE}", timeout=600)
    if built.status != 0:
        raise HarnessError(
            f"building the kext in the guest failed:\n{built.stdout[-800:]}{built.stderr[-800:]}"
        )
    report.steps.append("built XvpciWindow.kext")
    kext = f"{REMOTE}/build/XvpciWindow.kext"
    loaded = ssh.run(f"sudo kmutil load -p {kext} || sudo kextutil {kext}", timeout=300)
    if loaded.status != 0:
        output = loaded.stdout + loaded.stderr
        reason = _fail_reason(output) or "see the tool's output"
        raise HarnessError(f"loading the kext failed: {reason}\n{output.strip()[-800:]}")
    report.steps.append("loaded the kext")
    try:
        view = ssh.run(f"sh {REMOTE}/guest-view.sh", timeout=60)
        report.guest_view = view.stdout
        if "<class XvpciWindow" not in view.stdout or "<class IOPCIDevice" not in view.stdout:
            raise HarnessError(
                "the kext loaded but published no child nub (ioreg shows no IOPCIDevice under it)"
            )
        report.steps.append("child nub published")
        ran = ssh.run("sh -s", timeout=900, stdin=workload.encode())
        report.workload_output = ran.stdout + ran.stderr
        if ran.status != 0:
            raise HarnessError(
                f"the workload failed with status {ran.status}:\n{report.workload_output[-800:]}"
            )
        report.steps.append("workload passed")
    finally:
        unloaded = ssh.run(
            f"sudo kmutil unload -b {BUNDLE_ID} || sudo kextunload -b {BUNDLE_ID}", timeout=120
        )
        report.steps.append(
            "unloaded"
            if unloaded.status == 0
            else f"unload failed: {unloaded.stderr.strip()[-200:]}"
        )
    return report


RAW_VERIFY = """
# raw-verify for macOS: write a pattern to the child's disk, read it back, compare.
set -e
disk=$(diskutil list | awk '/xvpci|NVMe/ && /\\/dev\\/disk/ {print $1; exit}')
[ -n "$disk" ] || { echo "FAIL: no disk from the window's NVMe child"; exit 1; }
dd if=/dev/urandom of=/tmp/pattern bs=1m count=4 2>/dev/null
sudo dd if=/tmp/pattern of="${disk/disk/rdisk}" bs=1m 2>/dev/null
sudo dd if="${disk/disk/rdisk}" of=/tmp/back bs=1m count=4 2>/dev/null
cmp /tmp/pattern /tmp/back && echo "raw-verify: 4 MiB verified on $disk"
"""
