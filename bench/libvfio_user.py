"""libvfio-user, built from a source checkout into the cache, serving the bench's edu.

Debian does not package libvfio-user (nutanix/libvfio-user), so the MMIO
benchmark builds it: a release build (no debug logging) with meson and ninja
from PyPI (``pip install -e '.[bench]'``) against Debian's json-c and cmocka
headers, into ``<cache>/libvfio-user/<revision>/``, once per revision. The
server, ``libvfio_user_edu.c`` beside this file, is compiled against that
build and linked to it by rpath; it serves an edu-like BAR0 (identification
at 0, a register at 4 that reads back inverted), the registers the benchmark
touches on every device it compares.

Anything missing is an :class:`Unavailable` whose message says what to do,
so the benchmark can still run and leave the libvfio-user column empty.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.cache import cache_dir, locked

from .common import SocketServer

#: Environment variable naming a clone of nutanix/libvfio-user.
SOURCE_ENV = "XVPCI_LIBVFIO_USER_SRC"
DEBIAN_PACKAGES = "libjson-c-dev libcmocka-dev"
SERVER_SOURCE = Path(__file__).resolve().with_name("libvfio_user_edu.c")


class Unavailable(Exception):
    """libvfio-user cannot be measured here; the message says why and what to do."""


class Build:
    """A built libvfio-user and the bench's edu server linked to it."""

    def __init__(self, source: Path, revision: str, server: Path) -> None:
        self.source = source
        self.revision = revision
        self.server = server


def source_from(option: str | None) -> Path:
    """The checkout named by ``--libvfio-user-src`` or ``$XVPCI_LIBVFIO_USER_SRC``."""
    named = option or os.environ.get(SOURCE_ENV)
    if not named:
        raise Unavailable(
            f"no libvfio-user source named: pass --libvfio-user-src DIR or set {SOURCE_ENV} "
            "to a clone of nutanix/libvfio-user"
        )
    source = Path(named).expanduser().resolve()
    if not (source / "meson.build").is_file() or not (source / "include/libvfio-user.h").is_file():
        raise Unavailable(f"{source} is not a libvfio-user checkout (no meson.build and include/)")
    return source


def build(source: Path) -> Build:
    """Build libvfio-user from ``source`` and the edu server, unless the cache has them."""
    tools = _tool_path()
    for tool in ("meson", "ninja"):
        if shutil.which(tool, path=tools) is None:
            raise Unavailable(f"{tool} not found: pip install -e '.[bench]' (meson, ninja)")
    compiler = shutil.which("cc", path=tools)
    if compiler is None:
        raise Unavailable("no C compiler: apt-get install gcc")
    missing = [lib for lib in ("json-c", "cmocka") if not _pkg_config_has(lib)]
    if missing:
        raise Unavailable(
            f"{' and '.join(missing)} development files missing: apt-get install {DEBIAN_PACKAGES}"
        )
    revision = _revision(source)
    home = cache_dir() / "libvfio-user" / revision
    server_hash = hashlib.sha256(SERVER_SOURCE.read_bytes()).hexdigest()[:12]
    server = home / f"libvfio_user_edu-{server_hash}"
    env = {**os.environ, "PATH": tools}
    meson = shutil.which("meson", path=tools)
    with locked("libvfio-user"):
        build_dir = home / "build"
        # build.ninja calls meson by the path it was set up with: a build set up by
        # a meson that is gone (another virtualenv) fails, so it is set up again.
        stamp = home / "meson-path"
        stale = not stamp.is_file() or stamp.read_text() != meson
        if stale or not (build_dir / "build.ninja").is_file():
            shutil.rmtree(build_dir, ignore_errors=True)
            home.mkdir(parents=True, exist_ok=True)
            _run(
                [
                    "meson",
                    "setup",
                    str(build_dir),
                    str(source),
                    "--buildtype=release",
                    "-Ddebug-logs=disabled",
                ],
                home / "meson-setup.log",
                env,
            )
            stamp.write_text(str(meson))
        _run(["ninja", "-C", str(build_dir)], home / "ninja.log", env)
        if not server.is_file():
            lib = build_dir / "lib"
            _run(
                [
                    compiler,
                    "-O2",
                    "-Wall",
                    "-Wextra",
                    "-I",
                    str(source / "include"),
                    "-o",
                    str(server),
                    str(SERVER_SOURCE),
                    "-L",
                    str(lib),
                    "-lvfio-user",
                    f"-Wl,-rpath,{lib}",
                ],
                home / "server-cc.log",
                env,
            )
    return Build(source, revision, server)


def _tool_path() -> str:
    """PATH with this interpreter's scripts first, where pip puts meson and ninja."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _pkg_config_has(library: str) -> bool:
    try:
        return subprocess.run(["pkg-config", "--exists", library], check=False).returncode == 0
    except FileNotFoundError:
        return False


def _revision(source: Path) -> str:
    """The checkout's commit (with a hash of local changes), else a hash of its path."""
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(source), "diff", "HEAD"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "src-" + hashlib.sha256(str(source).encode()).hexdigest()[:12]
    if changes:
        return f"{head[:12]}-dirty-{hashlib.sha256(changes).hexdigest()[:8]}"
    return head[:12]


def _run(argv: Sequence[str], log_path: Path, env: dict[str, str]) -> None:
    with open(log_path, "wb") as log:
        status = subprocess.run(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode
    if status:
        raise Unavailable(f"{Path(argv[0]).name} failed with status {status}; see {log_path}")


class EduServer(SocketServer):
    """The edu server on ``socket_path``; ``stop()`` ends it by its pid."""

    def __init__(self, built: Build, socket_path: Path, timeout: float = 15.0) -> None:
        argv = [str(built.server), str(socket_path)]
        super().__init__(argv, "libvfio-user", socket_path, timeout)
