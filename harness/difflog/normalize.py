"""Normalisation: turn raw events into comparable items, one log at a time.

Items carry a *stream* (aligned independently), a *key* (what was accessed),
a *width* and a *value* (what was seen). Path-specific detail is dropped or
mapped here, so alignment compares only what both paths must agree on.

What the rules and the device profile decide for a register (dropped, masked,
holding an address, which stream) depends only on where the access goes, so
it is worked out once per register and kept (:meth:`Normalizer._mmio_place`);
per event only what depends on the log so far is done: status-poll collapsing,
the config state.

Guest addresses (DMA addresses, registers the profile declares as holding one,
the address fields of declared descriptors) stay as the log has them, apart
from what an item compares by equality: the guest's allocators place buffers
differently on each path, so which address of one log is which of the other's
is learned while aligning (:mod:`.correspondence`), not decided here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vfio_bridge.logformat import Kind, payload_digest

from .profile import DeviceProfile
from .rules import PATH_SPECIFIC_CONFIG, Rules

MMIO_READ = Kind.MMIO_READ.value
MMIO_WRITE = Kind.MMIO_WRITE.value
DMA_READ = Kind.DMA_READ.value
DMA_WRITE = Kind.DMA_WRITE.value
IRQ = Kind.IRQ.value
CFG_READ = Kind.CFG_READ.value
CFG_WRITE = Kind.CFG_WRITE.value
DEVICE_ERROR = Kind.DEVICE_ERROR.value

#: Per-register decisions kept at most; a log touching more registers recomputes them.
PLACES_KEPT = 1 << 16
#: The value of an item whose value is a guest address (in ``addrs``), and what stands
#: for a descriptor's non-zero address fields in its payload digest.
ADDRESS = "address"
_ADDRESS_SLOT = (1).to_bytes(8, "little")


@dataclass(slots=True)
class Item:
    stream: str
    key: tuple
    width: int
    value: Any
    seq: int
    event: dict[str, Any]
    count: int = 1
    partner: int | None = None  # the seq of the item it matched on the other side
    #: The guest address it accesses (DMA), compared through a
    #: :class:`~.correspondence.Correspondence`.
    addr: int | None = None
    #: Guest addresses its value holds (an address register's value, a descriptor's
    #: address fields in order), compared the same way.
    addrs: tuple[int, ...] = ()

    def same(self, other: Item) -> bool:
        """The same as ``other``, an item of the same log (addresses compare as they are)."""
        return (
            self.key == other.key
            and self.width == other.width
            and self.value == other.value
            and self.addr == other.addr
            and self.addrs == other.addrs
        )


@dataclass(frozen=True, slots=True)
class _Place:
    """What normalisation does with accesses of one kind to one register."""

    stream: str
    key: tuple
    mask: int | None  # the rules' masks, combined
    address: bool  # the register holds a guest address


class Normalizer:
    """Stateful normaliser for one log (DMA address map, poll collapsing, config state)."""

    def __init__(self, header: dict[str, Any], rules: Rules) -> None:
        self.rules = rules
        self._last_read: dict[str, Item] = {}  # the last read of each MMIO stream
        self._config: dict[tuple[int, int], Item] = {}
        self.profile = profile = DeviceProfile.from_header(header)
        self._skip_mmio = profile.skip_mmio
        self._skip_config = PATH_SPECIFIC_CONFIG + profile.path_specific_config
        # Registers holding guest addresses: their low dword is mapped like a DMA address.
        self._address_regs = profile.address_registers
        self._descriptors = profile.descriptors
        self._ignore_streams = rules.ignore_streams
        self._ignore_kinds = rules.ignore_kinds
        self._places: dict[tuple[str, int, int, int], _Place | None] = {}
        self._irq_keys: dict[tuple[str, int], tuple] = {}
        self.dropped = 0

    def _payload(self, event: dict[str, Any]) -> tuple[str | None, tuple[int, ...]]:
        """The payload digest, with a declared descriptor's ignored fields cleared and its
        address fields taken out (a marker in the digest where one is not zero), and the
        addresses taken out, in order."""
        spec = self._descriptors.get(event.get("tag"))
        if spec is None or "data" not in event:
            return event.get("digest"), ()
        data = bytearray.fromhex(event["data"])
        for start, end in spec["ignore"]:
            data[start:end] = bytes(end - start)
        offsets = range(0, len(data) - 7, 8) if spec.get("address_list") else spec["addresses"]
        addrs = []
        for offset in offsets:
            addr = int.from_bytes(data[offset : offset + 8], "little")
            if addr:
                addrs.append(addr)
                data[offset : offset + 8] = _ADDRESS_SLOT
        return payload_digest(data), tuple(addrs)

    def push(self, event: dict[str, Any]) -> Item | None:
        """The item for ``event``, or None when it is dropped, collapsed or deferred."""
        kind = event["kind"]
        if kind in self._ignore_kinds or event.get("stream") in self._ignore_streams:
            self.dropped += 1
            return None
        if kind in (MMIO_WRITE, MMIO_READ):
            item = self.mmio_item(event, kind)
            return None if item is None else self.poll(item)
        if kind in (DMA_READ, DMA_WRITE):
            payload, addrs = self._payload(event)
            # Descriptors (queue entries, address lists) and data buffers align separately.
            stream = f"dma:{event['tag']}" if "tag" in event else "dma"
            return Item(
                stream, (kind,), event["len"], payload, event["seq"], event, 1, None,
                event["addr"], addrs,
            )  # fmt: skip
        if kind == IRQ:
            return Item("irq", self._irq_key(event), 0, None, event["seq"], event)
        if kind in (CFG_READ, CFG_WRITE):
            return self._config_event(event, kind)
        if kind == DEVICE_ERROR:
            # The code is what must agree; the detail names path-specific addresses.
            return Item("other", (kind, event.get("error")), 0, None, event["seq"], event)
        return Item("other", (kind,), 0, None, event["seq"], event)

    def _irq_key(self, event: dict[str, Any]) -> tuple:
        irq_type, vector = event["irq_type"], event["vector"]
        key = self._irq_keys.get((irq_type, vector))
        if key is None:
            key = ("irq", irq_type, vector) if self.rules.compare_irq_type else ("irq", vector)
            if len(self._irq_keys) < PLACES_KEPT:
                self._irq_keys[(irq_type, vector)] = key
        return key

    def _mmio_place(self, kind: str, bar: int, offset: int, size: int) -> _Place | None:
        """Where accesses of ``kind`` to ``bar``+``offset`` of ``size`` go; None: dropped."""
        for skip_bar, start, end in self._skip_mmio:
            if bar == skip_bar and start <= offset < end:
                return None
        if any(rule.matches("mmio", bar, offset, size) for rule in self.rules.ignore):
            return None
        mask = None
        for rule in self.rules.masks:
            if rule.mask is not None and rule.matches("mmio", bar, offset, size):
                mask = rule.mask if mask is None else mask & rule.mask
        # Registers of one 4 KiB page form a group (e.g. NVMe registers vs doorbells).
        stream = f"mmio:bar{bar}:{offset >> 12:x}"
        return _Place(stream, (kind, bar, offset), mask, (bar, offset) in self._address_regs)

    def mmio_item(self, event: dict[str, Any], kind: str) -> Item | None:
        """The item of an MMIO access before :meth:`poll`; None when it is dropped."""
        bar, offset, size, value = event["bar"], event["offset"], event["size"], event["value"]
        where = (kind, bar, offset, size)
        try:
            place = self._places[where]
        except KeyError:
            place = self._mmio_place(kind, bar, offset, size)
            if len(self._places) >= PLACES_KEPT:
                self._places.clear()
            self._places[where] = place
        if place is None:
            self.dropped += 1
            return None
        if place.mask is not None:
            value &= place.mask
        if place.address and value:
            return Item(
                place.stream, place.key, size, ADDRESS, event["seq"], event, 1, None, None,
                (value,),
            )  # fmt: skip
        return Item(place.stream, place.key, size, value, event["seq"], event)

    def poll(self, item: Item) -> Item | None:
        """``item`` (an MMIO access), or None when it repeats the last read of its stream.

        A run of reads returning the same value is a status poll: one item,
        whatever the count (how long the guest waited depends on timing).
        A read that saw "busy" at all, on one path only, stays a divergence.
        """
        stream = item.stream
        if item.key[0] == MMIO_READ:
            last = self._last_read.get(stream)
            if last is not None and last.same(item):
                last.count += 1
                return None
            self._last_read[stream] = item
        else:
            self._last_read.pop(stream, None)
        return item

    def stateless(self, event: dict[str, Any]) -> bool:
        """Whether what :meth:`push` made of ``event`` (just now) depends on nothing but
        the event, and changes nothing but the last read of an MMIO stream (:meth:`poll`):
        then the same event again makes the same item, and is not worth parsing."""
        kind = event["kind"]
        if kind in (MMIO_READ, MMIO_WRITE):
            place = self._places.get((kind, event["bar"], event["offset"], event["size"]))
            return place is None or not place.address
        return kind not in (DMA_READ, DMA_WRITE, CFG_WRITE)

    def _config_event(self, event: dict[str, Any], kind: str) -> Item | None:
        offset, size = event["offset"], event["size"]
        if "value" not in event or any(start <= offset < end for start, end in self._skip_config):
            self.dropped += 1
            return None
        value = self._apply_rules("cfg", None, offset, size, event["value"])
        if value is None:
            return None
        if kind == CFG_READ:
            if not self.rules.compare_config_reads:
                self.dropped += 1
                return None
            return Item("config", (kind, offset), size, value, event["seq"], event)
        # Writes are compared by the state they leave: firmware on the direct
        # path programs the device more often than the window driver does.
        self._config[(offset, size)] = Item(
            "config", (kind, offset), size, value, event["seq"], event
        )
        return None

    def _apply_rules(
        self, kind: str, bar: int | None, offset: int, size: int, value: int
    ) -> int | None:
        for rule in self.rules.ignore:
            if rule.matches(kind, bar, offset, size):
                self.dropped += 1
                return None
        for rule in self.rules.masks:
            if rule.mask is not None and rule.matches(kind, bar, offset, size):
                value &= rule.mask
        return value

    def addressed(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` is a DMA whose item depends on nothing but the event, and on
        nothing of the event but its address beyond what equal lines share (not a
        descriptor, whose payload holds addresses too)."""
        return event["kind"] in (DMA_READ, DMA_WRITE) and (
            self._descriptors.get(event.get("tag")) is None or "data" not in event
        )

    # --- sharing state while two logs agree

    def share(self, other: Normalizer) -> None:
        """Take ``other``'s last reads as this log's own, the same object: while both
        logs' events are the same, one normaliser does for both."""
        self._last_read = other._last_read

    def unshare(self) -> None:
        """Own copies of the state :meth:`share` took, before the logs differ."""
        self._last_read = dict(self._last_read)

    def same_state(self, other: Normalizer) -> bool:
        """Whether the same events would make the same items here and in ``other``
        (the config state, compared at the end, does not count). Addresses compare as
        they are: the fast lane, which asks, opens only while the logs' addresses are
        the same (:attr:`Correspondence.crossed`)."""
        if self.profile != other.profile:
            return False
        mine, theirs = self._last_read, other._last_read
        if mine.keys() != theirs.keys():
            return False
        return all(item.same(theirs[stream]) for stream, item in mine.items())

    def finish(self) -> list[Item]:
        """Items only known at the end: the final config state."""
        return [self._config[key] for key in sorted(self._config)]
