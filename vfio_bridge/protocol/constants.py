"""Numbers of the vfio-user protocol (QEMU ``docs/interop/vfio-user.rst``) and of VFIO's ABI."""

from __future__ import annotations

import enum
import struct

HEADER = struct.Struct("<HHIII")
HEADER_SIZE = HEADER.size

MAJOR_VERSION = 0
MINOR_VERSION = 0

#: The specification's default ``max_data_xfer_size`` of a peer that names none,
#: and the largest data transfer we accept (and advertise).
DEFAULT_MAX_DATA_XFER = 1024 * 1024
DEFAULT_MAX_MSG_FDS = 8
PAGE_SIZE = 4096


class VfioCommand(enum.IntEnum):
    VERSION = 1
    DMA_MAP = 2
    DMA_UNMAP = 3
    DEVICE_GET_INFO = 4
    DEVICE_GET_REGION_INFO = 5
    DEVICE_GET_REGION_IO_FDS = 6
    DEVICE_GET_IRQ_INFO = 7
    DEVICE_SET_IRQS = 8
    REGION_READ = 9
    REGION_WRITE = 10
    DMA_READ = 11
    DMA_WRITE = 12
    DEVICE_RESET = 13
    DIRTY_PAGES = 14  # migration v1, dropped from the specification
    REGION_WRITE_MULTI = 15
    DEVICE_FEATURE = 16
    MIG_DATA_READ = 17
    MIG_DATA_WRITE = 18


class MsgFlags(enum.IntFlag):
    REQUEST = 0x0
    REPLY = 0x1
    TYPE_MASK = 0xF
    NO_REPLY = 0x10
    ERROR = 0x20


class Region(enum.IntEnum):
    """VFIO PCI region indices."""

    BAR0 = 0
    BAR1 = 1
    BAR2 = 2
    BAR3 = 3
    BAR4 = 4
    BAR5 = 5
    ROM = 6
    CONFIG = 7
    VGA = 8


NUM_REGIONS = 9


class IrqIndex(enum.IntEnum):
    """VFIO PCI interrupt indices."""

    INTX = 0
    MSI = 1
    MSIX = 2
    ERR = 3
    REQ = 4


NUM_IRQS = 5


class DeviceFlags(enum.IntFlag):
    RESET = 1 << 0
    PCI = 1 << 1


class RegionFlags(enum.IntFlag):
    READ = 1 << 0
    WRITE = 1 << 1
    MMAP = 1 << 2
    CAPS = 1 << 3


REGION_CAP_SPARSE_MMAP = 1


class IrqInfoFlags(enum.IntFlag):
    EVENTFD = 1 << 0
    MASKABLE = 1 << 1
    AUTOMASKED = 1 << 2
    NORESIZE = 1 << 3


class IrqSetFlags(enum.IntFlag):
    DATA_NONE = 1 << 0
    DATA_BOOL = 1 << 1
    DATA_EVENTFD = 1 << 2
    ACTION_MASK = 1 << 3
    ACTION_UNMASK = 1 << 4
    ACTION_TRIGGER = 1 << 5

    DATA_MASK = DATA_NONE | DATA_BOOL | DATA_EVENTFD
    ACTION_MASK_ALL = ACTION_MASK | ACTION_UNMASK | ACTION_TRIGGER


class DmaMapFlags(enum.IntFlag):
    READ = 1 << 0
    WRITE = 1 << 1


class DmaUnmapFlags(enum.IntFlag):
    GET_DIRTY_BITMAP = 1 << 0
    ALL = 1 << 1
