"""NVMe 1.4 data structures the controller model builds or walks: status codes,
Identify and log page payloads, and PRP lists. Pure functions, no device state.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

PAGE = 4096
SQE_SIZE = 64
CQE_SIZE = 16


class NvmeStatus(enum.IntEnum):
    """NvmeStatus field (SCT << 8 | SC) of a completion."""

    SUCCESS = 0x000
    INVALID_OPCODE = 0x001
    INVALID_FIELD = 0x002
    DATA_TRANSFER_ERROR = 0x004
    INTERNAL_ERROR = 0x006
    INVALID_NAMESPACE = 0x00B
    PRP_OFFSET_INVALID = 0x013
    LBA_OUT_OF_RANGE = 0x080
    COMPLETION_QUEUE_INVALID = 0x100
    INVALID_QUEUE_IDENTIFIER = 0x101
    INVALID_QUEUE_SIZE = 0x102
    ABORT_COMMAND_LIMIT_EXCEEDED = 0x103
    ASYNC_EVENT_LIMIT_EXCEEDED = 0x105
    INVALID_INTERRUPT_VECTOR = 0x108
    INVALID_LOG_PAGE = 0x109
    FEATURE_NOT_SAVEABLE = 0x10D


class NvmeError(Exception):
    """A command fails with ``status``; the message goes to the log."""

    def __init__(self, status: NvmeStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class NvmeCommand:
    """The fields of a 64-byte submission queue entry the model uses."""

    opcode: int
    cid: int
    nsid: int
    prp1: int
    prp2: int
    cdw10: int
    cdw11: int
    cdw12: int
    cdw13: int
    cdw14: int
    cdw15: int
    psdt: int

    _LAYOUT = struct.Struct("<BBHI8x8xQQIIIIII")

    @classmethod
    def parse(cls, raw: bytes) -> NvmeCommand:
        opcode, flags, cid, nsid, prp1, prp2, *cdws = cls._LAYOUT.unpack_from(raw)
        return cls(opcode, cid, nsid, prp1, prp2, *cdws, (flags >> 6) & 0x3)

    def lba_range(self) -> tuple[int, int]:
        """A Read, Write or Write Zeroes command's first LBA (CDW10-11) and number of
        blocks (CDW12 bits 15:0, zero-based), as the NVM Command Set lays them out."""
        return self.cdw10 | self.cdw11 << 32, (self.cdw12 & 0xFFFF) + 1


_CQE_LAYOUT = struct.Struct("<IIHHHH")


def completion(dw0: int, sq_head: int, sq_id: int, cid: int, phase: int, status: int) -> bytes:
    return _CQE_LAYOUT.pack(dw0, 0, sq_head, sq_id, cid, (status << 1) | phase)


@dataclass(frozen=True, slots=True)
class CompletionEntry:
    """The fields of a 16-byte completion queue entry (what :func:`completion` builds)."""

    dw0: int
    sq_head: int
    sq_id: int
    cid: int
    status: int
    phase: int

    @classmethod
    def parse(cls, raw: bytes) -> CompletionEntry:
        dw0, _, sq_head, sq_id, cid, status_phase = _CQE_LAYOUT.unpack_from(raw)
        return cls(dw0, sq_head, sq_id, cid, status_phase >> 1, status_phase & 1)


def _ascii(text: str, size: int) -> bytes:
    return text.encode().ljust(size, b" ")[:size]


def identify_controller(
    vendor_id: int,
    serial: str,
    model: str,
    firmware: str,
    mdts: int,
    namespaces: int,
    aerl: int,
) -> bytes:
    data = bytearray(PAGE)
    struct.pack_into("<HH", data, 0, vendor_id, vendor_id)
    data[4:24] = _ascii(serial, 20)
    data[24:64] = _ascii(model, 40)
    data[64:72] = _ascii(firmware, 8)
    data[72] = 6  # recommended arbitration burst
    data[77] = mdts
    struct.pack_into("<HI", data, 78, 1, 0x00010400)  # controller id, version 1.4
    data[258] = 3  # abort command limit (0-based)
    data[259] = aerl  # async event request limit (0-based)
    data[260] = 0x3  # firmware: slot 1 read-only, one slot
    data[261] = 0x0  # log pages: no per-namespace SMART, no effects log
    struct.pack_into("<HH", data, 266, 343, 373)  # warning/critical temperature, Kelvin
    data[512] = 0x66  # submission queue entries: 64 bytes
    data[513] = 0x44  # completion queue entries: 16 bytes
    struct.pack_into("<I", data, 516, namespaces)
    struct.pack_into("<H", data, 520, (1 << 2) | (1 << 3))  # dataset management, write zeroes
    data[525] = 1  # volatile write cache present
    nqn = f"nqn.2026-11.io.xvpci:nvme:{serial}".encode()
    data[768 : 768 + len(nqn)] = nqn
    struct.pack_into("<H", data, 2048, 2500)  # power state 0: 25 W
    return bytes(data)


def identify_namespace(blocks: int, block_size: int, nguid: bytes) -> bytes:
    data = bytearray(PAGE)
    struct.pack_into("<QQQ", data, 0, blocks, blocks, blocks)
    data[24] = 0  # no thin provisioning
    data[25] = 0  # one LBA format
    data[26] = 0  # formatted with LBA format 0
    data[33] = 0x1  # deallocated blocks read as zeroes
    data[104:120] = nguid
    struct.pack_into("<I", data, 128, (block_size.bit_length() - 1) << 16)
    return bytes(data)


def namespace_descriptors(uuid: bytes) -> bytes:
    data = bytearray(PAGE)
    data[0] = 3  # NIDT: UUID
    data[1] = 16
    data[4:20] = uuid
    return bytes(data)


def active_namespaces(after: int, namespaces: int) -> bytes:
    data = bytearray(PAGE)
    ids = [nsid for nsid in range(1, namespaces + 1) if nsid > after][:1024]
    struct.pack_into(f"<{len(ids)}I", data, 0, *ids)
    return bytes(data)


def smart_log(data_units_read: int, data_units_written: int, reads: int, writes: int) -> bytes:
    data = bytearray(512)
    struct.pack_into("<H", data, 1, 313)  # composite temperature, Kelvin
    data[3] = 100  # available spare
    data[4] = 10  # spare threshold
    struct.pack_into("<QQQQ", data, 32, data_units_read, 0, data_units_written, 0)
    struct.pack_into("<QQ", data, 64, reads, 0)
    struct.pack_into("<QQ", data, 80, writes, 0)
    return bytes(data)


ReadMemory = Callable[[int, int], bytes]


def prp_segments(
    prp1: int, prp2: int, length: int, read: ReadMemory, page: int = PAGE
) -> list[tuple[int, int]]:
    """Guest (address, length) segments of a PRP-described transfer, contiguous ones merged.

    Raises :class:`NvmeError` for entries with an offset where none is allowed.
    The walk is bounded by ``length``: a list that points back at itself just
    yields its entries again, it cannot loop forever.
    """
    if length <= 0:
        return []
    first = min(length, page - (prp1 % page))
    segments = [(prp1, first)]
    remaining = length - first
    if remaining == 0:
        return segments
    if remaining <= page:
        _check_aligned(prp2, page)
        return _merge([*segments, (prp2, remaining)])
    entries_needed = -(-remaining // page)
    list_addr = prp2
    if list_addr % 8:
        raise NvmeError(
            NvmeStatus.PRP_OFFSET_INVALID, f"PRP list pointer {list_addr:#x} is misaligned"
        )
    while entries_needed:
        room = (page - list_addr % page) // 8  # entries left in this list page
        chained = entries_needed > room  # then the last entry points to the next list
        count = room if chained else entries_needed
        pointers = struct.unpack(f"<{count}Q", read(list_addr, count * 8))
        for addr in pointers[:-1] if chained else pointers:
            _check_aligned(addr, page)
            chunk = min(page, remaining)
            segments.append((addr, chunk))
            remaining -= chunk
            entries_needed -= 1
        if chained:
            list_addr = pointers[-1]
            _check_aligned(list_addr, page)
    return _merge(segments)


def _check_aligned(addr: int, page: int) -> None:
    if addr % page:
        raise NvmeError(NvmeStatus.PRP_OFFSET_INVALID, f"PRP entry {addr:#x} has an offset")


def _merge(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for addr, size in segments:
        if merged and merged[-1][0] + merged[-1][1] == addr:
            merged[-1] = (merged[-1][0], merged[-1][1] + size)
        else:
            merged.append((addr, size))
    return merged
