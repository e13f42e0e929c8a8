"""A reproducible newc cpio writer (the initramfs format), no root needed.

Device nodes and owners are written as headers, so an unprivileged build can
still ship ``/dev/console`` owned by root.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class Entry:
    path: str  # inside the archive, without a leading slash
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class CpioWriter:
    """Collects entries, then writes them sorted with fixed metadata."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def directory(self, path: str, mode: int = 0o755) -> None:
        """Add a directory and its missing parents; an explicit call sets its mode."""
        parts = [p for p in path.strip("/").split("/") if p and p != "."]
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            self.entries.setdefault(sub, Entry(sub, stat.S_IFDIR | 0o755))
        if parts:
            full = "/".join(parts)
            self.entries[full] = Entry(full, stat.S_IFDIR | mode)

    def _parent(self, path: str) -> None:
        parent = str(Path(path).parent)
        if parent not in (".", "") and parent not in self.entries:
            self.directory(parent)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self._parent(path)
        self.entries[path] = Entry(path, stat.S_IFREG | mode, data)

    def copy(self, path: str, source: Path, mode: int | None = None) -> None:
        self.file(
            path, source.read_bytes(), mode if mode is not None else source.stat().st_mode & 0o777
        )

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parent(path)
        self.entries[path] = Entry(path, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        path = path.strip("/")
        self._parent(path)
        self.entries[path] = Entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def write(self, out: BinaryIO) -> None:
        for ino, name in enumerate(sorted(self.entries), start=1):
            self._entry(out, ino, self.entries[name])
        self._entry(out, 0, Entry("TRAILER!!!", 0))

    def write_gzip(self, path: Path) -> None:
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz,
        ):
            self.write(gz)  # type: ignore[arg-type]

    @staticmethod
    def _entry(out: BinaryIO, ino: int, entry: Entry) -> None:
        name = entry.path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, *entry.rdev, len(name), 0)
        header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        out.write(header + name)
        out.write(b"\0" * (-(len(header) + len(name)) % 4))
        out.write(entry.data)
        out.write(b"\0" * (-len(entry.data) % 4))
