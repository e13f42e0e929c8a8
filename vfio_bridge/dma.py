"""Guest memory as the client mapped it for DMA: shared mmaps or message fallback.

Ranges come from DMA_MAP. A range with a file descriptor is mmapped and
accessed with a slice copy (the fast path); a range without one is reached
through DMA_READ/DMA_WRITE messages by the ``fallback`` the server provides.
Every access is bounds-checked and may span adjacent mappings.

A descriptor is only mapped when it is sealed against shrinking
(``F_SEAL_SHRINK``, as QEMU's ``memory-backend-memfd`` seals by default): a
client that truncates the file under our mapping would make the next access
raise SIGBUS, which no Python code can catch. Other descriptors are closed and
their range is served through messages, slower but safe; the mapping says why.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass

from .device import DmaError

log = logging.getLogger(__name__)

MAX_ADDRESS = 1 << 64


@dataclass(slots=True)
class Mapping:
    iova: int
    size: int
    writable: bool
    memory: mmap.mmap | None
    #: Why a range that came with a descriptor is served by messages instead.
    unshared_reason: str | None = None

    @property
    def end(self) -> int:
        return self.iova + self.size


def _unsafe_to_map(fd: int) -> str | None:
    """Why mapping ``fd`` could let the client crash us, or None when it cannot."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        return "its descriptor is not a sealable memfd, so the client could truncate it"
    if not seals & fcntl.F_SEAL_SHRINK:
        return "its memfd is not sealed against shrinking (F_SEAL_SHRINK)"
    return None


class MessageDma:
    """How the server reaches memory that was not shared: DMA_READ/DMA_WRITE."""

    def __init__(
        self, read: Callable[[int, int], bytes], write: Callable[[int, bytes], None]
    ) -> None:
        self.read = read
        self.write = write


class DmaSpace:
    """The client's DMA mappings, sorted by IOVA."""

    def __init__(self, fallback: MessageDma | None = None, max_mappings: int = 65535) -> None:
        self._starts: list[int] = []
        self._maps: list[Mapping] = []
        self.fallback = fallback
        self.max_mappings = max_mappings

    def __len__(self) -> int:
        return len(self._maps)

    @property
    def mappings(self) -> list[Mapping]:
        return list(self._maps)

    def add(self, iova: int, size: int, writable: bool, fd: int = -1, offset: int = 0) -> Mapping:
        """Map a range; takes ownership of ``fd`` (it is closed here, mapped or not)."""
        try:
            if size <= 0 or iova < 0 or iova + size > MAX_ADDRESS:
                raise DmaError(f"DMA range {iova:#x}+{size:#x} is empty or overflows")
            if len(self._maps) >= self.max_mappings:
                raise DmaError(f"more than {self.max_mappings} DMA mappings")
            index = bisect.bisect_right(self._starts, iova)
            if index and self._maps[index - 1].end > iova:
                raise DmaError(f"DMA range {iova:#x}+{size:#x} overlaps an existing mapping")
            if index < len(self._maps) and self._maps[index].iova < iova + size:
                raise DmaError(f"DMA range {iova:#x}+{size:#x} overlaps an existing mapping")
            memory = None
            reason = _unsafe_to_map(fd) if fd >= 0 else None
            if reason is not None:
                log.warning(
                    "DMA range %#x+%#x is served by DMA_READ/DMA_WRITE messages, not shared "
                    "memory: %s",
                    iova,
                    size,
                    reason,
                )
            elif fd >= 0:
                prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
                try:
                    memory = mmap.mmap(fd, size, mmap.MAP_SHARED, prot, offset=offset)
                except (OSError, ValueError, OverflowError) as exc:
                    raise DmaError(f"cannot map DMA fd at offset {offset:#x}: {exc}") from None
            mapping = Mapping(iova, size, writable, memory, reason)
            self._starts.insert(index, iova)
            self._maps.insert(index, mapping)
            return mapping
        finally:
            if fd >= 0:
                os.close(fd)

    def remove(self, iova: int, size: int) -> int:
        """Unmap every mapping inside ``[iova, iova+size)``; returns how many."""
        end = iova + size
        keep_starts: list[int] = []
        keep: list[Mapping] = []
        removed = 0
        for mapping in self._maps:
            if mapping.iova >= iova and mapping.end <= end:
                if mapping.memory is not None:
                    mapping.memory.close()
                removed += 1
            else:
                keep_starts.append(mapping.iova)
                keep.append(mapping)
        self._starts, self._maps = keep_starts, keep
        return removed

    def clear(self) -> None:
        for mapping in self._maps:
            if mapping.memory is not None:
                mapping.memory.close()
        self._starts, self._maps = [], []

    def _pieces(self, addr: int, length: int) -> list[tuple[Mapping, int, int]]:
        """Split ``[addr, addr+length)`` into (mapping, offset, count) pieces, or fail."""
        if length < 0 or addr < 0 or addr + length > MAX_ADDRESS:
            raise DmaError(f"DMA range {addr:#x}+{length:#x} overflows")
        pieces: list[tuple[Mapping, int, int]] = []
        index = bisect.bisect_right(self._starts, addr) - 1
        pos = addr
        end = addr + length
        while pos < end:
            if index < 0 or index >= len(self._maps):
                raise DmaError(f"DMA address {pos:#x} is not mapped")
            mapping = self._maps[index]
            if not mapping.iova <= pos < mapping.end:
                raise DmaError(f"DMA address {pos:#x} is not mapped")
            count = min(end, mapping.end) - pos
            pieces.append((mapping, pos - mapping.iova, count))
            pos += count
            index += 1
        return pieces

    def read(self, addr: int, length: int) -> bytes:
        if length == 0:
            return b""
        index = bisect.bisect_right(self._starts, addr) - 1
        if index >= 0:
            mapping = self._maps[index]
            start = addr - mapping.iova
            # Fast path: one shared mapping holds the whole range.
            if mapping.memory is not None and start + length <= mapping.size:
                return mapping.memory[start : start + length]
        out = bytearray()
        for mapping, offset, count in self._pieces(addr, length):
            if mapping.memory is not None:
                out += mapping.memory[offset : offset + count]
            else:
                out += self._fallback().read(mapping.iova + offset, count)
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        length = len(data)
        if length == 0:
            return
        pieces = self._pieces(addr, length)
        for mapping, _, _ in pieces:
            if not mapping.writable:
                raise DmaError(f"DMA write to read-only mapping at {mapping.iova:#x}")
        pos = 0
        for mapping, offset, count in pieces:
            chunk = data[pos : pos + count]
            if mapping.memory is not None:
                mapping.memory[offset : offset + count] = chunk
            else:
                self._fallback().write(mapping.iova + offset, chunk)
            pos += count

    def _fallback(self) -> MessageDma:
        if self.fallback is None:
            raise DmaError("memory is not shared and no message transport is available")
        return self.fallback
