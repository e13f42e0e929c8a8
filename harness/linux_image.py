"""The Linux guest image: a Debian kernel and an initramfs assembled from .debs.

``build()`` downloads and unpacks (mmdebstrap ``--variant=extract``, no
package scripts run) the trixie kernel, busybox, dropbear, pciutils,
nvme-cli, fio and e2fsprogs, then writes an initramfs holding just those
programs, their shared libraries and the kernel modules the guest needs,
decompressed. Images are cached under ``<cache>/guests/linux-<hash>``, where
the hash covers every input in this package, so they are rebuilt only
when those change.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from . import assets
from .cache import cache_dir, locked
from .cpio import CpioWriter
from .elf import needed_libraries
from .errors import HarnessError
from .progress import Progress
from .qemu_install import MMDEBSTRAP_MISSING, require_root

GUEST_INIT = assets.guest_files() / "linux" / "init"
SUITE = "trixie"
PACKAGES = (
    "linux-image-amd64",
    "busybox-static",
    "dropbear-bin",
    "pciutils",
    "nvme-cli",
    "fio",
    "e2fsprogs",
)
#: Programs copied into the image: (path in the extracted root, path in the guest).
PROGRAMS = (
    ("usr/sbin/dropbear", "usr/bin/dropbear"),
    ("usr/sbin/nvme", "usr/bin/nvme"),
    ("usr/bin/fio", "usr/bin/fio"),
    ("usr/bin/lspci", "usr/bin/lspci"),
    ("usr/bin/setpci", "usr/bin/setpci"),
    ("usr/sbin/mke2fs", "usr/bin/mke2fs"),
    ("usr/sbin/e2fsck", "usr/bin/e2fsck"),
    ("usr/bin/chattr", "usr/bin/chattr"),  # busybox's has no -v (fs-verify pins generations)
)
PROGRAM_ALIASES = {"usr/bin/mkfs.ext4": "mke2fs", "usr/bin/fsck.ext4": "e2fsck"}
DATA_FILES = (("usr/share/misc/pci.ids", "usr/share/misc/pci.ids"),)
#: Kernel modules loaded at boot (dependencies are added in load order).
MODULES = ("virtio_net", "nvme", "vmd", "ext4", "crc32c_generic")
LIB_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu/ceph",
    "lib/x86_64-linux-gnu",
    "usr/lib",
)
LOADER = "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
BUILDER_VERSION = 1


@dataclass(frozen=True)
class LinuxImage:
    """A built image: kernel, initramfs, the guest's host key and our client key."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initramfs(self) -> Path:
        return self.directory / "initramfs.cpio.gz"

    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def host_key(self) -> str:
        """The guest sshd's public key line (``type base64``), pinned by the SSH client."""
        return (self.directory / "host_key.pub").read_text().strip()

    def boot_args(self, kernel_args: str) -> list[str]:
        """QEMU arguments booting this kernel and initramfs directly with the command
        line ``kernel_args`` (not part of the image: see ``harness.guest.KERNEL_ARGS``)."""
        return [
            "-kernel", str(self.kernel),
            "-initrd", str(self.initramfs),
            "-append", kernel_args,
        ]  # fmt: skip

    @property
    def manifest(self) -> dict:
        return json.loads((self.directory / "manifest.json").read_text())


def input_hash() -> str:
    """Hash of everything in this package the image is made from."""
    digest = hashlib.sha256()
    digest.update(json.dumps([BUILDER_VERSION, SUITE, PACKAGES, PROGRAMS, MODULES]).encode())
    for source in (GUEST_INIT, Path(__file__), Path(__file__).with_name("cpio.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def image_dir() -> Path:
    return cache_dir() / "guests" / f"linux-{input_hash()}"


def find_image() -> LinuxImage | None:
    directory = image_dir()
    return LinuxImage(directory) if (directory / "manifest.json").is_file() else None


def build(
    progress: Progress | None = None, mirror: str | None = None, force: bool = False
) -> LinuxImage:
    """Build the image unless an identical one is cached; safe to call concurrently."""
    progress = progress or Progress("guest build")
    with locked("guest-linux"):
        directory = image_dir()
        if (directory / "manifest.json").is_file() and not force:
            (directory / "manifest.json").touch()  # in use: not stale for other checkouts
            progress.step(f"Linux guest image up to date in {directory}")
            return LinuxImage(directory)
        require_root("building the guest image", "xvpci guest build linux")
        mirror = mirror or _default_mirror()
        with tempfile.TemporaryDirectory(prefix="xvpci-guest-", dir=cache_dir()) as tmp:
            root = Path(tmp) / "root"
            staging = Path(tmp) / "image"
            staging.mkdir()
            _extract_packages(root, mirror, progress)
            _assemble(root, staging, progress)
            if directory.exists():
                shutil.rmtree(directory)
            directory.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), directory)
        _drop_stale_images(directory)
        progress.step(f"image ready in {directory}")
        return LinuxImage(directory)


#: An image no build has asked for in this long is removed by the next build. Not
#: sooner: other checkouts or versions of xvpci may share the cache and boot theirs.
STALE_AFTER_SECONDS = 7 * 24 * 3600


def _drop_stale_images(current: Path) -> None:
    now = time.time()
    for other in current.parent.glob("linux-*"):
        manifest = other / "manifest.json"
        if other == current or not manifest.is_file():
            continue
        if now - manifest.stat().st_mtime > STALE_AFTER_SECONDS:
            shutil.rmtree(other, ignore_errors=True)


def _default_mirror() -> str:
    return os.environ.get("XVPCI_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _extract_packages(root: Path, mirror: str, progress: Progress) -> None:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise HarnessError(MMDEBSTRAP_MISSING)
    progress.step(f"downloading {', '.join(PACKAGES)} from {mirror}")
    argv = [
        mmdebstrap,
        "--variant=extract",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(root),
        f"deb {mirror} {SUITE} main",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("E:")]
        reason = errors[0][3:] if errors else done.stderr.strip()[-300:]
        raise HarnessError(f"downloading the guest packages failed: {reason}")


def _assemble(root: Path, out: Path, progress: Progress) -> None:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise HarnessError("linux-image-amd64 brought no kernel")
    kernel = kernels[-1]
    release = kernel.name.removeprefix("vmlinuz-")
    shutil.copyfile(kernel, out / "vmlinuz")
    progress.step(f"assembling the initramfs for kernel {release}")

    cpio = CpioWriter()
    for directory in ("dev", "proc", "sys", "tmp", "run", "var/log", "mnt", "etc/xvpci"):
        cpio.directory(directory)
    cpio.directory("root", 0o700)
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3, 0o666)
    cpio.file("init", GUEST_INIT.read_bytes(), 0o755)

    busybox = root / "usr/bin/busybox"
    cpio.copy("bin/busybox", busybox, 0o755)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            cpio.symlink(f"bin/{applet}", "busybox")
    cpio.symlink("sbin", "bin")
    cpio.symlink("usr/sbin", "bin")

    libraries: set[str] = set()
    for source, target in PROGRAMS:
        cpio.copy(target, root / source, 0o755)
        libraries |= _library_closure(root, root / source)
    for alias, target in PROGRAM_ALIASES.items():
        cpio.symlink(alias, target)
    for source, target in DATA_FILES:
        if (root / source).exists():
            cpio.copy(target, root / source)
    for name in sorted(libraries):
        cpio.copy(f"lib/x86_64-linux-gnu/{name}", _find_library(root, name), 0o755)
    cpio.copy("lib64/ld-linux-x86-64.so.2", root / LOADER, 0o755)
    cpio.symlink("usr/lib/x86_64-linux-gnu", "../../lib/x86_64-linux-gnu")

    modules = _module_load_order(root / "usr/lib/modules" / release, MODULES)
    for name, path in modules:
        cpio.file(f"lib/modules/{name}.ko", lzma.decompress(path.read_bytes()))
    cpio.file("etc/xvpci/modules", "".join(f"{name}\n" for name, _ in modules).encode())

    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    cpio.file("etc/shells", b"/bin/sh\n")
    cpio.file("etc/hosts", b"127.0.0.1 localhost xvpci-guest\n")
    host_pub = _make_host_key(root, cpio)
    client = paramiko.ECDSAKey.generate()
    client.write_private_key_file(str(out / "client_key"))
    cpio.file(
        "root/.ssh/authorized_keys", f"{client.get_name()} {client.get_base64()}\n".encode(), 0o600
    )
    cpio.directory("root/.ssh", 0o700)
    (out / "host_key.pub").write_text(host_pub + "\n")

    cpio.write_gzip(out / "initramfs.cpio.gz")
    manifest = {
        "kernel_release": release,
        "modules": [name for name, _ in modules],
        "packages": list(PACKAGES),
        "input_hash": input_hash(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _library_closure(root: Path, binary: Path) -> set[str]:
    found: set[str] = set()
    pending = list(needed_libraries(binary))
    while pending:
        name = pending.pop()
        if name in found or name.startswith("ld-linux"):
            continue
        found.add(name)
        pending += needed_libraries(_find_library(root, name))
    return found


def _find_library(root: Path, name: str) -> Path:
    for directory in LIB_DIRS:
        candidate = root / directory / name
        if candidate.exists():
            return candidate.resolve()
    raise HarnessError(f"library {name} is in none of the extracted packages")


def _module_load_order(moddir: Path, wanted: tuple[str, ...]) -> list[tuple[str, Path]]:
    """Modules and their dependencies (from each module's modinfo), dependencies first."""
    index: dict[str, Path] = {}
    for path in moddir.rglob("*.ko.xz"):
        index[path.name.removesuffix(".ko.xz").replace("-", "_")] = path
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        path = index.get(key)
        if path is None:
            raise HarnessError(f"kernel module {name} not found (built in, or misspelt?)")
        info = lzma.decompress(path.read_bytes())
        deps = re.search(rb"\0depends=([^\0]*)\0", info)
        for dep in deps.group(1).decode().split(",") if deps else []:
            if dep:
                visit(dep)
        soft = re.search(rb"\0softdep=pre: ([^\0]*?)(?: post:[^\0]*)?\0", info)
        for dep in soft.group(1).decode().split() if soft else []:
            if dep.replace("-", "_") in index:
                visit(dep)
        order.append((key, path))

    for name in wanted:
        visit(name)
    return order


def _make_host_key(root: Path, cpio: CpioWriter) -> str:
    loader = root / LOADER
    libs = str(root / "usr/lib/x86_64-linux-gnu")
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "host_key"
        done = subprocess.run(
            [
                str(loader),
                "--library-path",
                libs,
                str(root / "usr/bin/dropbearkey"),
                "-t",
                "ed25519",
                "-f",
                str(key_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        match = re.search(r"^(ssh-ed25519 \S+)", done.stdout, re.MULTILINE)
        if done.returncode != 0 or match is None:
            raise HarnessError(f"dropbearkey failed: {done.stderr.strip()[-300:]}")
        cpio.file("etc/dropbear/host_key", key_path.read_bytes(), 0o600)
        return match.group(1)
