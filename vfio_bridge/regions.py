"""Region accesses: which of the model's handlers serves them, cut into device-sized pieces.

VFIO's region indices are the model's BARs 0-5 and its config space (7).
An access of 1, 2, 4 or 8 bytes at a naturally aligned offset is one device
access, the hot path of every MMIO. Anything else (a 3-byte access, an
8-byte one across a 4-byte boundary, a 64-byte block) is cut into the
naturally aligned pieces of at most 8 bytes a CPU would issue, so a
register handler only ever sees the widths a bus can carry, and each piece
is logged as its own access. Config space takes any width in one piece.
"""

from __future__ import annotations

import errno
import functools

from .device import DeviceModel
from .protocol import ProtocolError, Region
from .protocol.constants import NUM_REGIONS
from .recorder import Recorder

_DEVICE_WIDTHS = (1, 2, 4, 8)
# A plain int: comparing with an IntEnum member looks it up on its class every time.
_CONFIG = int(Region.CONFIG)


class Regions:
    """The model's regions as the client sees them, every access recorded."""

    def __init__(self, model: DeviceModel, recorder: Recorder) -> None:
        self.model = model
        self._bars = model.bar_handlers
        #: Bytes per region index; 0 for regions the model does not have.
        self.sizes = [0] * NUM_REGIONS
        for index, handler in self._bars.items():
            self.sizes[index] = handler.size
        self.sizes[Region.CONFIG] = model.config.size
        # A model that records its own accesses (the window, which knows which
        # share is its child's) gets the recorder; others are recorded here.
        if model.records_accesses:
            model.use_recorder(recorder)
            self._record_config = functools.partial(model.record_config, recorder)
            self._record_mmio = functools.partial(model.record_mmio, recorder)
        else:
            self._record_config = recorder.config
            self._record_mmio = recorder.mmio

    def check(self, region: int, offset: int, count: int, limit: int) -> None:
        """Refuse an access outside the region (EINVAL, as libvfio-user) or over ``limit``
        bytes (E2BIG)."""
        if not 0 <= region < NUM_REGIONS:
            raise ProtocolError(f"region {region} does not exist")
        if count > limit:
            raise ProtocolError(f"access of {count} bytes exceeds the transfer limit", errno.E2BIG)
        size = self.sizes[region]
        if count == 0 or offset + count > size:
            raise ProtocolError(
                f"access {offset:#x}+{count} outside region {region} of {size:#x} bytes"
            )

    def read(self, region: int, offset: int, count: int) -> bytes:
        """Read a checked access (see :meth:`check`)."""
        if region == _CONFIG:
            data = self.model.config.read(offset, count)
            self._record_config(False, offset, count, data)
            return data
        handler = self._bars[region]
        record = self._record_mmio
        if count in _DEVICE_WIDTHS and not offset % count:
            value = handler.read(offset, count)
            record(False, region, offset, count, value)
            return value.to_bytes(count, "little")
        out = bytearray()
        for pos, size in split(offset, count):
            value = handler.read(pos, size)
            record(False, region, pos, size, value)
            out += value.to_bytes(size, "little")
        return bytes(out)

    def write(self, region: int, offset: int, data: bytes) -> None:
        """Write a checked access (see :meth:`check`)."""
        count = len(data)
        if region == _CONFIG:
            self._record_config(True, offset, count, data)
            self.model.config.write(offset, data)
            return
        handler = self._bars[region]
        record = self._record_mmio
        if count in _DEVICE_WIDTHS and not offset % count:
            value = int.from_bytes(data, "little")
            record(True, region, offset, count, value)
            handler.write(offset, count, value)
            return
        for pos, size in split(offset, count):
            rel = pos - offset
            value = int.from_bytes(data[rel : rel + size], "little")
            record(True, region, pos, size, value)
            handler.write(pos, size, value)


def split(offset: int, count: int) -> list[tuple[int, int]]:
    """Cut an access into naturally aligned (offset, size) pieces of at most 8 bytes."""
    pieces = []
    pos, end = offset, offset + count
    while pos < end:
        size = 8
        while size > 1 and (pos % size or pos + size > end):
            size //= 2
        pieces.append((pos, size))
        pos += size
    return pieces
