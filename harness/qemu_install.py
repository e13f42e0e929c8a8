"""QEMU 11 from Debian trixie-backports, unpacked into the cache and run in place.

Debian 12 ships QEMU 7.2, which has no vfio-user. ``provision()`` builds a
small trixie root with mmdebstrap (about 15 s and 250 MB) and
:class:`QemuInstall` runs its binary through the root's own dynamic loader,
so nothing is installed on the host but mmdebstrap itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_dir, locked
from .errors import HarnessError
from .progress import Progress

MIN_VERSION = (10, 1)
ROOT_NAME = "qemu-root"
READY_MARKER = ".xvpci-ready.json"
PACKAGES = ("qemu-system-x86", "qemu-utils", "ovmf")
SUITE = "trixie"
MIN_FREE_BYTES = 1 << 30
_LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
_FIRMWARE_DIRS = ("usr/share/qemu", "usr/share/seabios", "usr/share/ovmf")
#: What needs root, said in one line with the command to run: installing mmdebstrap and
#: building Debian trees with it (unprivileged, it leaves trees owned by subordinate ids).
MMDEBSTRAP_MISSING = (
    "mmdebstrap is missing; as root, run `apt-get update && apt-get install -y mmdebstrap` "
    "(or `xvpci provision`, which installs it)"
)


def require_root(what: str, command: str) -> None:
    """Refuse in one line, naming ``command``, when not root (nothing else in xvpci needs it)."""
    if os.geteuid() != 0:
        raise HarnessError(
            f"{what} needs root (mmdebstrap builds Debian trees): run `{command}` as root"
        )


@dataclass(frozen=True)
class QemuInstall:
    """A usable ``qemu-system-x86_64``: a provisioned root, or a binary named by ``$XVPCI_QEMU``."""

    binary: Path
    root: Path | None = None

    def _in_root(self, program: Path) -> list[str]:
        """Run ``program`` of the root through the root's own loader and libraries."""
        assert self.root is not None
        loader = self.root / "lib64/ld-linux-x86-64.so.2"
        libs = ":".join(str(self.root / d) for d in _LIB_DIRS)
        return [str(loader), "--library-path", libs, str(program)]

    def argv(self, *args: str) -> list[str]:
        """The command line that runs this QEMU with ``args``."""
        if self.root is None:
            return [str(self.binary), *args]
        firmware: list[str] = []
        for d in _FIRMWARE_DIRS:
            if (self.root / d).is_dir():
                firmware += ["-L", str(self.root / d)]
        return [*self._in_root(self.binary), *firmware, *args]

    def img_argv(self, *args: str) -> list[str]:
        """The command line of the matching ``qemu-img``."""
        if self.root is None:
            return [str(self.binary.with_name("qemu-img")), *args]
        return [*self._in_root(self.root / "usr/bin/qemu-img"), *args]

    def version(self) -> tuple[int, int, int]:
        text = self._run("--version")
        match = re.search(r"version (\d+)\.(\d+)\.(\d+)", text)
        if not match:
            raise HarnessError(f"cannot read the version of {self.binary}: {text.strip()[:200]}")
        major, minor, micro = (int(g) for g in match.groups())
        return major, minor, micro

    @property
    def version_string(self) -> str:
        return ".".join(str(n) for n in self.version())

    def has_device(self, name: str) -> bool:
        return f'name "{name}"' in self._run("-device", "help")

    def firmware(self, relative: str) -> Path | None:
        """A firmware file shipped in the root (e.g. ``usr/share/OVMF/OVMF_CODE_4M.fd``)."""
        if self.root is None:
            return None
        path = self.root / relative
        return path if path.exists() else None

    def _run(self, *args: str) -> str:
        try:
            done = subprocess.run(
                self.argv(*args), capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HarnessError(f"cannot run {self.binary}: {exc}") from None
        if done.returncode != 0:
            raise HarnessError(
                f"{self.binary} {' '.join(args)} failed: {done.stderr.strip()[:300]}"
            )
        return done.stdout

    def check(self) -> None:
        """Raise :class:`HarnessError` unless this QEMU is >= 10.1 with vfio-user-pci."""
        version = self.version()
        if version[:2] < MIN_VERSION:
            raise HarnessError(
                f"QEMU {'.'.join(map(str, version))} at {self.binary} is older than "
                f"{'.'.join(map(str, MIN_VERSION))}; run `xvpci provision`"
            )
        if not self.has_device("vfio-user-pci"):
            raise HarnessError(f"QEMU at {self.binary} has no vfio-user-pci device")


def root_path() -> Path:
    return cache_dir() / ROOT_NAME


def find_qemu() -> QemuInstall:
    """The QEMU to use: ``$XVPCI_QEMU`` if set, else the provisioned root.

    Raises :class:`HarnessError` naming the fix when there is none.
    """
    explicit = os.environ.get("XVPCI_QEMU")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise HarnessError(f"XVPCI_QEMU={explicit} is not a file")
        return QemuInstall(path)
    root = root_path()
    if not (root / READY_MARKER).is_file():
        raise HarnessError(f"no QEMU provisioned in {root}; run `xvpci provision` (as root)")
    return QemuInstall(root / "usr/bin/qemu-system-x86_64", root)


def provision(mirror: str | None = None, progress: Progress | None = None) -> QemuInstall:
    """Build the QEMU root once per machine (idempotent, safe to run concurrently)."""
    progress = progress or Progress("provision")
    with locked("qemu-root"):
        root = root_path()
        if (root / READY_MARKER).is_file():
            install = QemuInstall(root / "usr/bin/qemu-system-x86_64", root)
            progress.step(f"QEMU root already provisioned in {root}")
            install.check()
            return install
        require_root("building the QEMU root", "xvpci provision")
        _build_root(
            root,
            mirror or os.environ.get("XVPCI_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
            progress,
        )
        install = QemuInstall(root / "usr/bin/qemu-system-x86_64", root)
        install.check()
        (root / READY_MARKER).write_text(
            json.dumps({"version": install.version_string, "packages": PACKAGES, "suite": SUITE})
        )
        return install


def _build_root(root: Path, mirror: str, progress: Progress) -> None:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        mmdebstrap = _install_mmdebstrap(progress)
    free = shutil.disk_usage(root.parent).free
    if free < MIN_FREE_BYTES:
        raise HarnessError(
            f"only {free >> 20} MiB free in {root.parent}; provisioning needs about 1 GiB"
        )
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    if root.exists():
        shutil.rmtree(root)
    argv = [
        mmdebstrap,
        "--variant=essential",
        '--aptopt=APT::Default-Release "trixie-backports"',
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(staging),
        f"deb {mirror} {SUITE} main",
        f"deb {mirror} {SUITE}-backports main",
    ]
    progress.step(f"building a {SUITE} root with {', '.join(PACKAGES)} from {mirror}")
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
    except OSError as exc:
        raise HarnessError(f"cannot run mmdebstrap: {exc}") from None
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if line.startswith("I: "):
                progress.step(line[3:])
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise HarnessError(_explain_failure(lines, mirror))
    staging.rename(root)


def _install_mmdebstrap(progress: Progress) -> str:
    if os.geteuid() != 0:
        raise HarnessError(MMDEBSTRAP_MISSING)
    progress.step("installing mmdebstrap with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "mmdebstrap"]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            break
    path = shutil.which("mmdebstrap")
    if done.returncode != 0 or path is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HarnessError(f"apt-get install mmdebstrap failed: {tail[0]}")
    return path


def _explain_failure(lines: list[str], mirror: str) -> str:
    text = "\n".join(lines)
    if "No space left on device" in text:
        return "provisioning failed: no space left on device in the cache directory"
    if re.search(r"Could not resolve|Failed to fetch|Temporary failure|Connection failed", text):
        return f"provisioning failed: cannot download from {mirror} (no network?)"
    if "root" in text and ("permission" in text.lower() or "EPERM" in text):
        return "provisioning failed: mmdebstrap needs root here; run `xvpci provision` as root"
    errors = [line for line in lines if line.startswith("E:")]
    return "provisioning failed: " + (errors[0][3:] if errors else (lines[-1] if lines else "?"))
