"""Region accesses: which of the model's handlers serves them, cut into device-sized pieces.

VFIO's region indices are the model's BARs 0-5 and its config space (7).
An access of 1, 2, 4 or 8 bytes at a naturally aligned offset is one device
access, the hot path of every MMIO. Anything else (a 3-byte access, an
8-byte one across a 4-byte boundary, a 64-byte block) is cut into the
naturally aligned pieces of at most 8 bytes a CPU would issue, so a
register handler only ever sees the widths a bus can carry, and each piece
is logged as its own access. Config space takes any width in one piece.

Each access the client makes (region, offset, count) is checked once and
turned into an :class:`AccessPlan`, kept for the next time: the same few
registers are read and written over and over, and a plan answers them without
deciding again what the access is.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import NamedTuple, NoReturn

from .device import DeviceModel
from .protocol import ProtocolError, Region
from .protocol.constants import NUM_REGIONS
from .recorder import Recorder

_DEVICE_WIDTHS = (1, 2, 4, 8)
# A plain int: comparing with an IntEnum member looks it up on its class every time.
_CONFIG = int(Region.CONFIG)


#: Plans kept per :class:`Regions`; accesses beyond so many different ones are
#: planned each time (a guest walking a large BAR must not grow the cache without end).
PLAN_LIMIT = 4096


class AccessPlan(NamedTuple):
    """One checked access: ``read()`` gives its bytes, ``write(data)`` stores them
    (raising :class:`ProtocolError` unless ``data`` is as long as the access); both
    recorded."""

    read: Callable[[], bytes]
    write: Callable[[bytes], None]


class _Plans(dict[tuple[int, int, int], AccessPlan]):
    """Plans by (region, offset, count): a known access is one dict lookup, in C."""

    def __init__(self, regions: Regions) -> None:
        super().__init__()
        self._regions = regions

    def __missing__(self, key: tuple[int, int, int]) -> AccessPlan:
        plan = self._regions.make_plan(*key)
        if len(self) < PLAN_LIMIT:
            self[key] = plan
        return plan


class Regions:
    """The model's regions as the client sees them, every access recorded.

    ``limit`` is the largest access taken (E2BIG beyond it).
    """

    def __init__(self, model: DeviceModel, recorder: Recorder, limit: int) -> None:
        self.model = model
        self.limit = limit
        #: ``plans[region, offset, count]``: the access's plan, made on its first use.
        #: Raises :class:`ProtocolError` for an access outside the region (EINVAL, as
        #: libvfio-user) or over the limit (E2BIG).
        self.plans: dict[tuple[int, int, int], AccessPlan] = _Plans(self)
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

    def make_plan(self, region: int, offset: int, count: int) -> AccessPlan:
        """A new plan for an access (see :attr:`plans`); raises as :attr:`plans` does."""
        self._check(region, offset, count)
        if region == _CONFIG or count not in _DEVICE_WIDTHS or offset % count:
            return AccessPlan(
                functools.partial(self._read, region, offset, count),
                functools.partial(self._write, region, offset, count),
            )
        # One device access: what _read and _write would do, decided now.
        device_read, device_write = self._bars[region].accessors(offset, count)
        record = self._record_mmio

        def read() -> bytes:
            value = device_read()
            record(False, region, offset, count, value)
            return value.to_bytes(count, "little")

        def write(data: bytes) -> None:
            if len(data) != count:
                _refuse_length(count, data)
            value = int.from_bytes(data, "little")
            record(True, region, offset, count, value)
            device_write(value)

        return AccessPlan(read, write)

    def _check(self, region: int, offset: int, count: int) -> None:
        if not 0 <= region < NUM_REGIONS:
            raise ProtocolError(f"region {region} does not exist")
        if count > self.limit:
            raise ProtocolError(f"access of {count} bytes exceeds the transfer limit", errno.E2BIG)
        size = self.sizes[region]
        if count == 0 or offset + count > size:
            raise ProtocolError(
                f"access {offset:#x}+{count} outside region {region} of {size:#x} bytes"
            )

    # The plans of config space and of accesses cut into pieces (see the module).

    def _read(self, region: int, offset: int, count: int) -> bytes:
        if region == _CONFIG:
            data = self.model.config.read(offset, count)
            self._record_config(False, offset, count, data)
            return data
        handler = self._bars[region]
        record = self._record_mmio
        out = bytearray()
        for pos, size in split(offset, count):
            value = handler.read(pos, size)
            record(False, region, pos, size, value)
            out += value.to_bytes(size, "little")
        return bytes(out)

    def _write(self, region: int, offset: int, count: int, data: bytes) -> None:
        if len(data) != count:
            _refuse_length(count, data)
        if region == _CONFIG:
            self._record_config(True, offset, count, data)
            self.model.config.write(offset, data)
            return
        handler = self._bars[region]
        record = self._record_mmio
        for pos, size in split(offset, count):
            rel = pos - offset
            value = int.from_bytes(data[rel : rel + size], "little")
            record(True, region, pos, size, value)
            handler.write(pos, size, value)


def _refuse_length(count: int, data: bytes) -> NoReturn:
    raise ProtocolError(f"REGION_WRITE announces {count} bytes but carries {len(data)}")


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
