"""PCI configuration space with per-byte write and write-1-to-clear masks.

Like real hardware (and QEMU's ``hw/pci``), behaviour is data: every byte has
a write mask and a W1C mask, so BAR sizing, read-only IDs and sticky status
bits need no special cases in the access path.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

CONFIG_SPACE_SIZE = 4096
LEGACY_CONFIG_SIZE = 256
FIRST_CAPABILITY = 0x40
FIRST_EXTENDED_CAPABILITY = 0x100

VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION_ID = 0x08
CLASS_PROG = 0x09
CACHE_LINE_SIZE = 0x0C
LATENCY_TIMER = 0x0D
HEADER_TYPE = 0x0E
BAR0 = 0x10
SUBSYSTEM_VENDOR_ID = 0x2C
SUBSYSTEM_ID = 0x2E
ROM_ADDRESS = 0x30
CAPABILITIES_POINTER = 0x34
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D


class PciCommand(enum.IntFlag):
    IO = 1 << 0
    MEMORY = 1 << 1
    BUS_MASTER = 1 << 2
    PARITY = 1 << 6
    SERR = 1 << 8
    INTX_DISABLE = 1 << 10


_BUS_MASTER = int(PciCommand.BUS_MASTER)


class PciStatus(enum.IntFlag):
    INTERRUPT = 1 << 3
    CAP_LIST = 1 << 4
    MASTER_DATA_PARITY = 1 << 8
    SIG_TARGET_ABORT = 1 << 11
    REC_TARGET_ABORT = 1 << 12
    REC_MASTER_ABORT = 1 << 13
    SIG_SYSTEM_ERROR = 1 << 14
    DETECTED_PARITY = 1 << 15


STATUS_W1C = (
    PciStatus.MASTER_DATA_PARITY
    | PciStatus.SIG_TARGET_ABORT
    | PciStatus.REC_TARGET_ABORT
    | PciStatus.REC_MASTER_ABORT
    | PciStatus.SIG_SYSTEM_ERROR
    | PciStatus.DETECTED_PARITY
)


class BarKind(enum.Enum):
    MEM32 = "mem32"
    MEM64 = "mem64"
    IO = "io"


@dataclass(frozen=True, slots=True)
class BarLayout:
    """Where a BAR lives in config space and how big it is (a power of two)."""

    index: int
    size: int
    kind: BarKind = BarKind.MEM32
    prefetchable: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.index <= 5:
            raise ValueError(f"BAR index {self.index} is not 0..5")
        if self.size & (self.size - 1) or self.size < (4 if self.kind is BarKind.IO else 16):
            raise ValueError(f"BAR{self.index} size {self.size:#x} is not a valid power of two")
        if self.kind is BarKind.MEM64 and self.index == 5:
            raise ValueError("a 64-bit BAR cannot start at BAR5")

    @property
    def type_bits(self) -> int:
        if self.kind is BarKind.IO:
            return 0x1
        bits = 0x4 if self.kind is BarKind.MEM64 else 0x0
        return bits | (0x8 if self.prefetchable else 0)


WriteHook = Callable[[int, int, int], None]


class ConfigSpace:
    """4 KiB of config space; reads and writes go through the byte masks."""

    def __init__(
        self, size: int = CONFIG_SPACE_SIZE, first_capability: int = FIRST_CAPABILITY
    ) -> None:
        self.size = size
        self.data = bytearray(size)
        self.wmask = bytearray(size)
        self.w1cmask = bytearray(size)
        self._reset_image = b""
        self._next_capability = first_capability
        self._last_capability = 0
        #: Length in bytes of each standard capability, by offset.
        self.capability_lengths: dict[int, int] = {}
        self._next_extended = FIRST_EXTENDED_CAPABILITY
        self._last_extended = 0
        self.bars: dict[int, BarLayout] = {}
        self.write_hooks: list[WriteHook] = []

    # --- building -------------------------------------------------------------

    def set(self, offset: int, size: int, value: int, wmask: int = 0, w1c: int = 0) -> None:
        """Define ``size`` bytes at ``offset``: value and which bits software may change."""
        self.data[offset : offset + size] = value.to_bytes(size, "little")
        self.wmask[offset : offset + size] = wmask.to_bytes(size, "little")
        self.w1cmask[offset : offset + size] = w1c.to_bytes(size, "little")

    def init_header(
        self,
        vendor_id: int,
        device_id: int,
        class_code: int,
        revision: int = 0,
        subsystem_vendor_id: int = 0,
        subsystem_id: int = 0,
        interrupt_pin: int = 1,
    ) -> None:
        """A type-0 header; ``class_code`` is the 24-bit class/subclass/prog-if."""
        self.set(VENDOR_ID, 2, vendor_id)
        self.set(DEVICE_ID, 2, device_id)
        writable = (
            PciCommand.IO
            | PciCommand.MEMORY
            | PciCommand.BUS_MASTER
            | PciCommand.PARITY
            | PciCommand.SERR
            | PciCommand.INTX_DISABLE
        )
        self.set(COMMAND, 2, 0, wmask=int(writable))
        self.set(STATUS, 2, 0, w1c=int(STATUS_W1C))
        self.set(REVISION_ID, 1, revision)
        self.set(CLASS_PROG, 3, class_code)
        self.set(CACHE_LINE_SIZE, 1, 0, wmask=0xFF)
        self.set(LATENCY_TIMER, 1, 0, wmask=0xFF)
        self.set(HEADER_TYPE, 1, 0)
        self.set(SUBSYSTEM_VENDOR_ID, 2, subsystem_vendor_id)
        self.set(SUBSYSTEM_ID, 2, subsystem_id)
        self.set(INTERRUPT_LINE, 1, 0, wmask=0xFF)
        self.set(INTERRUPT_PIN, 1, interrupt_pin)

    def add_bar(self, bar: BarLayout) -> None:
        """Declare a BAR: the size mask is its write mask, so sizing needs no code."""
        offset = BAR0 + 4 * bar.index
        low_mask = ~(bar.size - 1) & 0xFFFFFFFF & ~(0x3 if bar.kind is BarKind.IO else 0xF)
        if bar.kind is BarKind.MEM64:
            high_mask = (~(bar.size - 1) >> 32) & 0xFFFFFFFF
            self.set(offset, 4, bar.type_bits, wmask=low_mask)
            self.set(offset + 4, 4, 0, wmask=high_mask)
        else:
            self.set(offset, 4, bar.type_bits, wmask=low_mask)
        self.bars[bar.index] = bar

    def add_capability(self, cap_id: int, body: bytes, wmask: bytes = b"", w1c: bytes = b"") -> int:
        """Append a standard capability; ``body`` excludes the id/next bytes. Returns its offset."""
        length = 2 + len(body)
        offset = self._next_capability
        if offset + length > LEGACY_CONFIG_SIZE:
            raise ValueError("capability list does not fit in the legacy config space")
        self.data[offset] = cap_id
        self.data[offset + 1] = 0
        self.data[offset + 2 : offset + length] = body
        self.wmask[offset + 2 : offset + 2 + len(wmask)] = wmask
        self.w1cmask[offset + 2 : offset + 2 + len(w1c)] = w1c
        if self._last_capability:
            self.data[self._last_capability + 1] = offset
        else:
            self.data[CAPABILITIES_POINTER] = offset
            self.data[STATUS] |= PciStatus.CAP_LIST
        self._last_capability = offset
        self.capability_lengths[offset] = length
        self._next_capability = (offset + length + 3) & ~3
        return offset

    def add_extended_capability(self, cap_id: int, version: int, body: bytes) -> int:
        """Append a PCIe extended capability at 0x100 and up. Returns its offset."""
        offset = self._next_extended
        if offset + 4 + len(body) > self.size:
            raise ValueError("extended capability does not fit in config space")
        header = cap_id | (version << 16)
        self.data[offset : offset + 4] = header.to_bytes(4, "little")
        self.data[offset + 4 : offset + 4 + len(body)] = body
        if self._last_extended:
            prev = int.from_bytes(
                self.data[self._last_extended : self._last_extended + 4], "little"
            )
            prev = (prev & 0x000FFFFF) | (offset << 20)
            self.data[self._last_extended : self._last_extended + 4] = prev.to_bytes(4, "little")
        self._last_extended = offset
        self._next_extended = (offset + 4 + len(body) + 3) & ~3
        return offset

    def capabilities(self) -> list[tuple[int, int]]:
        """Walk the capability list: ``[(offset, cap_id), ...]``; stops on loops."""
        found: list[tuple[int, int]] = []
        seen: set[int] = set()
        offset = self.data[CAPABILITIES_POINTER] & ~3
        while offset and offset not in seen and offset < LEGACY_CONFIG_SIZE:
            seen.add(offset)
            found.append((offset, self.data[offset]))
            offset = self.data[offset + 1] & ~3
        return found

    def find_capability(self, cap_id: int) -> int | None:
        for offset, found_id in self.capabilities():
            if found_id == cap_id:
                return offset
        return None

    def seal(self) -> None:
        """Remember the current contents as the reset state."""
        self._reset_image = bytes(self.data)

    def reset(self) -> None:
        if self._reset_image:
            self.data[:] = self._reset_image

    # --- access ----------------------------------------------------------------

    def check(self, offset: int, size: int) -> None:
        if offset < 0 or size <= 0 or offset + size > self.size:
            raise IndexError(f"config access {offset:#x}+{size} outside {self.size:#x} bytes")

    def read(self, offset: int, size: int) -> bytes:
        self.check(offset, size)
        return bytes(self.data[offset : offset + size])

    def read_int(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset : offset + size], "little")

    def write(self, offset: int, data: bytes) -> None:
        """Apply a software write; then let the hooks see it."""
        size = len(data)
        self.check(offset, size)
        buf, wmask, w1c = self.data, self.wmask, self.w1cmask
        for i, byte in enumerate(data):
            pos = offset + i
            old = buf[pos]
            new = (old & ~wmask[pos]) | (byte & wmask[pos])
            buf[pos] = new & ~(byte & w1c[pos])
        value = int.from_bytes(data, "little")
        for hook in self.write_hooks:
            hook(offset, size, value)

    # --- views -------------------------------------------------------------------

    @property
    def command(self) -> int:
        return self.read_int(COMMAND, 2)

    @property
    def bus_master(self) -> bool:
        """Bus mastering on: checked before every DMA, so without enum arithmetic."""
        return bool(self.data[COMMAND] & _BUS_MASTER)

    def bar_address(self, index: int) -> int | None:
        """Address software programmed into a BAR, or None when not decoded."""
        bar = self.bars.get(index)
        if bar is None:
            return None
        low = self.read_int(BAR0 + 4 * index, 4)
        if bar.kind is BarKind.IO:
            return low & ~0x3
        address = low & ~0xF
        if bar.kind is BarKind.MEM64:
            address |= self.read_int(BAR0 + 4 * index + 4, 4) << 32
        return address

    def set_interrupt_status(self, asserted: bool) -> None:
        if asserted:
            self.data[STATUS] |= PciStatus.INTERRUPT
        else:
            self.data[STATUS] &= ~PciStatus.INTERRUPT & 0xFF
