"""DMA mappings: memfd-backed fast path, spanning, bounds, ownership of fds."""

from __future__ import annotations

import mmap
import os

import pytest

from vfio_bridge.client import sealed_memfd
from vfio_bridge.device import DmaError
from vfio_bridge.dma import DmaSpace, MessageDma


def memfd(size: int, fill: bytes = b"") -> tuple[int, mmap.mmap]:
    """Guest memory as QEMU's memory-backend-memfd makes it: sealed against shrinking."""
    fd = sealed_memfd("test-guest", size)
    view = mmap.mmap(os.dup(fd), size)
    view[: len(fill)] = fill
    return fd, view


def test_shared_mapping_reads_and_writes_guest_memory() -> None:
    fd, view = memfd(2 * 4096, b"hello")
    space = DmaSpace()
    space.add(0x10000, 4096, writable=True, fd=fd, offset=4096)
    view[4096:4101] = b"world"
    assert space.read(0x10000, 5) == b"world"
    space.write(0x10002, b"RL")
    assert view[4096:4101] == b"woRLd"
    with pytest.raises(OSError):
        os.fstat(fd)  # the space took the descriptor and closed it after mapping


def test_access_spanning_adjacent_mappings_and_message_fallback() -> None:
    backing = bytearray(4096)
    calls: list[tuple[str, int, int]] = []

    def read(addr: int, n: int) -> bytes:
        calls.append(("r", addr, n))
        return bytes(backing[addr - 0x1000 : addr - 0x1000 + n])

    def write(addr: int, data: bytes) -> None:
        calls.append(("w", addr, len(data)))
        backing[addr - 0x1000 : addr - 0x1000 + len(data)] = data

    fd, view = memfd(4096, b"A" * 4096)
    space = DmaSpace(MessageDma(read, write))
    space.add(0x0000, 4096, True, fd)
    space.add(0x1000, 4096, True)  # not shared: reached by messages
    space.write(0x0FFC, b"12345678")
    assert view[0xFFC:0x1000] == b"1234" and backing[:4] == b"5678"
    assert space.read(0x0FFE, 4) == b"3456"
    assert calls == [("w", 0x1000, 4), ("r", 0x1000, 2)]


@pytest.mark.parametrize(
    ("addr", "length"),
    [(0x3000, 4), (0x1FFE, 4), (0xFFFF_FFFF_FFFF_FFFE, 4), (-1, 1)],
)
def test_unmapped_or_overflowing_ranges_fail(addr: int, length: int) -> None:
    space = DmaSpace()
    space.add(0x1000, 4096, True)
    with pytest.raises(DmaError):
        space.read(addr, length)
    with pytest.raises(DmaError):
        space.write(addr, bytes(length))


def test_read_only_mapping_refuses_writes() -> None:
    fd, _ = memfd(4096)
    space = DmaSpace()
    space.add(0, 4096, writable=False, fd=fd)
    with pytest.raises(DmaError, match="read-only"):
        space.write(0, b"x")


def test_overlapping_and_bad_maps_are_refused_and_close_the_fd() -> None:
    space = DmaSpace(max_mappings=2)
    space.add(0x1000, 0x2000, True)
    fd, _ = memfd(4096)
    with pytest.raises(DmaError, match="overlaps"):
        space.add(0x2000, 0x1000, True, fd)
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(DmaError, match="empty or overflows"):
        space.add(0x8000, 0, True)
    fd, _ = memfd(4096)
    with pytest.raises(DmaError, match="cannot map"):
        space.add(0x8000, 4096, True, fd, offset=123)  # not page aligned
    space.add(0x8000, 4096, True)
    with pytest.raises(DmaError, match="more than 2"):
        space.add(0x10000, 4096, True)


def test_remove_unmaps_contained_ranges() -> None:
    space = DmaSpace()
    space.add(0x1000, 0x1000, True)
    space.add(0x2000, 0x1000, True)
    space.add(0x5000, 0x1000, True)
    assert space.remove(0x1000, 0x2000) == 2
    assert [m.iova for m in space.mappings] == [0x5000]
    space.clear()
    assert len(space) == 0


def test_no_fallback_means_a_clear_error() -> None:
    space = DmaSpace()
    space.add(0, 4096, True)
    with pytest.raises(DmaError, match="not shared"):
        space.read(0, 4)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: os.memfd_create("unsealed"), "not sealed against shrinking"),
        (lambda: os.memfd_create("sealable", os.MFD_ALLOW_SEALING), "not sealed against shrinking"),
        (lambda: os.open("/dev/zero", os.O_RDWR), "not a sealable memfd"),
    ],
    ids=["memfd", "memfd-sealable-but-unsealed", "not-a-memfd"],
)
def test_a_descriptor_the_client_could_shrink_is_served_by_messages(
    make, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    fd = make()
    if fd >= 0 and reason != "not a sealable memfd":
        os.ftruncate(fd, 4096)
    reads: list[tuple[int, int]] = []
    space = DmaSpace(MessageDma(lambda a, n: reads.append((a, n)) or bytes(n), lambda a, d: None))
    mapping = space.add(0x10000, 4096, True, fd)
    assert mapping.memory is None and reason in (mapping.unshared_reason or "")
    assert reason in caplog.text  # said once, when the range is mapped
    with pytest.raises(OSError):
        os.fstat(fd)  # closed, not mapped
    assert space.read(0x10000, 8) == bytes(8) and reads == [(0x10000, 8)]
