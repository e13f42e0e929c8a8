"""Builders for the standard capabilities a device model declares.

Each builder installs its bytes and masks into a :class:`ConfigSpace` and can
answer questions about the state software left in it (is MSI enabled, which
vectors are masked), so interrupt delivery reads the same bytes the guest wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .config import ConfigSpace

CAP_PM = 0x01
CAP_MSI = 0x05
CAP_EXPRESS = 0x10
CAP_MSIX = 0x11
#: Short names of the capabilities above, as device descriptions give them.
CAPABILITY_NAMES = {CAP_PM: "pm", CAP_MSI: "msi", CAP_EXPRESS: "pcie", CAP_MSIX: "msix"}


class Capability(Protocol):
    def install(self, config: ConfigSpace) -> int: ...


@dataclass(frozen=True, slots=True)
class PowerManagement:
    """PM capability v3: D0..D3hot, PME status is write-1-to-clear."""

    def install(self, config: ConfigSpace) -> int:
        pmc = 0x0003  # version 3
        body = pmc.to_bytes(2, "little") + bytes(4)
        wmask = bytes(2) + (0x0103).to_bytes(2, "little") + bytes(2)
        w1c = bytes(2) + (0x8000).to_bytes(2, "little") + bytes(2)
        return config.add_capability(CAP_PM, body, wmask, w1c)


MSI_CONTROL_ENABLE = 1 << 0
MSI_CONTROL_64BIT = 1 << 7
MSI_CONTROL_MASKABLE = 1 << 8


@dataclass(frozen=True, slots=True)
class Msi:
    """MSI with ``vectors`` (1..32, power of two), 64-bit addresses and optional masking."""

    vectors: int = 1
    maskable: bool = True

    def __post_init__(self) -> None:
        if self.vectors not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"MSI vector count {self.vectors} is not a power of two up to 32")

    def install(self, config: ConfigSpace) -> int:
        mmc = self.vectors.bit_length() - 1
        control = (mmc << 1) | MSI_CONTROL_64BIT | (MSI_CONTROL_MASKABLE if self.maskable else 0)
        control_wmask = MSI_CONTROL_ENABLE | (0x7 << 4)
        body = bytearray(control.to_bytes(2, "little"))
        wmask = bytearray(control_wmask.to_bytes(2, "little"))
        body += bytes(4 + 4 + 2 + 2)  # address low/high, data, reserved
        wmask += (0xFFFFFFFC).to_bytes(4, "little") + b"\xff" * 4 + b"\xff\xff" + bytes(2)
        if self.maskable:
            body += bytes(8)  # mask bits, pending bits
            wmask += ((1 << self.vectors) - 1).to_bytes(4, "little") + bytes(4)
        return config.add_capability(CAP_MSI, bytes(body), bytes(wmask))

    @staticmethod
    def enabled(config: ConfigSpace, offset: int) -> bool:
        return bool(config.data[offset + 2] & MSI_CONTROL_ENABLE)

    @staticmethod
    def enabled_vectors(config: ConfigSpace, offset: int) -> int:
        return 1 << ((config.data[offset + 2] >> 4) & 0x7)


MSIX_CONTROL_MASK_ALL = 1 << 14
MSIX_CONTROL_ENABLE = 1 << 15
MSIX_ENTRY_SIZE = 16


@dataclass(frozen=True, slots=True)
class MsiX:
    """MSI-X with its table and PBA at offsets inside BARs of the model."""

    vectors: int
    table_bar: int
    table_offset: int
    pba_bar: int
    pba_offset: int

    def __post_init__(self) -> None:
        if not 1 <= self.vectors <= 2048:
            raise ValueError(f"MSI-X vector count {self.vectors} is not 1..2048")
        if self.table_offset & 7 or self.pba_offset & 7:
            raise ValueError("MSI-X table and PBA offsets must be 8-byte aligned")

    @property
    def table_size(self) -> int:
        return self.vectors * MSIX_ENTRY_SIZE

    @property
    def pba_size(self) -> int:
        return ((self.vectors + 63) // 64) * 8

    def install(self, config: ConfigSpace) -> int:
        control = self.vectors - 1
        body = (
            control.to_bytes(2, "little")
            + (self.table_offset | self.table_bar).to_bytes(4, "little")
            + (self.pba_offset | self.pba_bar).to_bytes(4, "little")
        )
        wmask = (MSIX_CONTROL_ENABLE | MSIX_CONTROL_MASK_ALL).to_bytes(2, "little")
        return config.add_capability(CAP_MSIX, body, wmask)

    @staticmethod
    def enabled(config: ConfigSpace, offset: int) -> bool:
        # Asked on every interrupt: the enable bit (15) is bit 7 of the control's high byte.
        return bool(config.data[offset + 3] & (MSIX_CONTROL_ENABLE >> 8))

    @staticmethod
    def function_masked(config: ConfigSpace, offset: int) -> bool:
        return bool(config.read_int(offset + 2, 2) & MSIX_CONTROL_MASK_ALL)


PCIE_DEVCAP_FLR = 1 << 28
PCIE_DEVCTL_FLR = 1 << 15
PCIE_DEVCTL_OFFSET = 0x08


@dataclass(frozen=True, slots=True)
class PciExpress:
    """PCI Express capability v2 of an endpoint with function level reset, x1 at 2.5 GT/s."""

    def install(self, config: ConfigSpace) -> int:
        body = bytearray(0x3C - 2)
        wmask = bytearray(len(body))

        def put(off: int, size: int, value: int, mask: int = 0) -> None:
            body[off - 2 : off - 2 + size] = value.to_bytes(size, "little")
            wmask[off - 2 : off - 2 + size] = mask.to_bytes(size, "little")

        put(0x02, 2, 0x0002)  # version 2, device/port type 0: endpoint
        put(0x04, 4, PCIE_DEVCAP_FLR)  # max payload 128 B
        # Device control: error reporting, relaxed ordering, payload, no-snoop;
        # the FLR bit is write-only and handled by the device.
        put(PCIE_DEVCTL_OFFSET, 2, 0x2810, 0x7CFF)
        put(0x0C, 4, (1 << 4) | 1)  # link capabilities: x1, 2.5 GT/s
        put(0x10, 2, 0, 0x0FFB)  # link control
        put(0x12, 2, (1 << 4) | 1)  # link status: x1, 2.5 GT/s
        put(0x2C, 4, 1 << 1)  # link capabilities 2: 2.5 GT/s supported
        put(0x30, 2, 1, 0x0F)  # link control 2: target speed
        offset = config.add_capability(CAP_EXPRESS, bytes(body), bytes(wmask))
        status_off = offset + 0x0A
        config.w1cmask[status_off] = 0x0F  # device status error bits are W1C
        return offset
