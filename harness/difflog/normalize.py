"""Normalisation: turn raw events into comparable items, one log at a time.

Items carry a *stream* (aligned independently), a *key* (what was accessed),
a *width* and a *value* (what was seen). Path-specific detail is dropped or
mapped here, so alignment compares only what both paths must agree on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vfio_bridge.logformat import Kind, payload_digest

from .profile import DeviceProfile
from .rules import PATH_SPECIFIC_CONFIG, Rules


@dataclass(slots=True)
class Item:
    stream: str
    key: tuple
    width: int
    value: Any
    seq: int
    event: dict[str, Any]
    count: int = 1

    def same(self, other: Item) -> bool:
        return self.key == other.key and self.width == other.width and self.value == other.value


class Normalizer:
    """Stateful normaliser for one log (DMA address map, poll collapsing, config state)."""

    def __init__(self, header: dict[str, Any], rules: Rules) -> None:
        self.rules = rules
        self._addresses: dict[int, int] = {}
        self._last_read: dict[str, Item] = {}  # the last read of each MMIO stream
        self._config: dict[tuple[int, int], Item] = {}
        profile = DeviceProfile.from_header(header)
        self._skip_mmio = profile.skip_mmio
        self._skip_config = PATH_SPECIFIC_CONFIG + profile.path_specific_config
        # Registers holding guest addresses: their low dword is mapped like a DMA address.
        self._address_regs = profile.address_registers
        self._descriptors = profile.descriptors
        self.dropped = 0

    def canonical(self, addr: int) -> int:
        """Guest addresses numbered by first appearance. Exact addresses, not pages:
        the guest's allocators place buffers at different offsets on each path."""
        return self._addresses.setdefault(addr, len(self._addresses))

    def _payload(self, event: dict[str, Any]) -> str | None:
        """The payload digest, with a declared descriptor's addresses and tags canonicalised."""
        spec = self._descriptors.get(event.get("tag"))
        if spec is None or "data" not in event:
            return event.get("digest")
        data = bytearray.fromhex(event["data"])
        for start, end in spec["ignore"]:
            data[start:end] = bytes(end - start)
        offsets = range(0, len(data) - 7, 8) if spec.get("address_list") else spec["addresses"]
        for offset in offsets:
            addr = int.from_bytes(data[offset : offset + 8], "little")
            if addr:
                data[offset : offset + 8] = self.canonical(addr).to_bytes(8, "little")
        return payload_digest(data)

    def push(self, event: dict[str, Any]) -> Item | None:
        """The item for ``event``, or None when it is dropped, collapsed or deferred."""
        rules = self.rules
        if event.get("stream") in rules.ignore_streams or event["kind"] in rules.ignore_kinds:
            self.dropped += 1
            return None
        kind = event["kind"]
        if kind in (Kind.MMIO_READ, Kind.MMIO_WRITE):
            return self._mmio(event, kind)
        if kind in (Kind.DMA_READ, Kind.DMA_WRITE):
            canonical = self.canonical(event["addr"])
            payload = self._payload(event)
            # Descriptors (queue entries, address lists) and data buffers align separately.
            stream = f"dma:{event['tag']}" if "tag" in event else "dma"
            return Item(stream, (kind, canonical), event["len"], payload, event["seq"], event)
        if kind == Kind.IRQ:
            key = (
                ("irq", event["irq_type"], event["vector"])
                if rules.compare_irq_type
                else ("irq", event["vector"])
            )
            return Item("irq", key, 0, None, event["seq"], event)
        if kind in (Kind.CFG_READ, Kind.CFG_WRITE):
            return self._config_event(event, kind)
        if kind == Kind.DEVICE_ERROR:
            # The code is what must agree; the detail names path-specific addresses.
            return Item("other", (kind, event.get("error")), 0, None, event["seq"], event)
        return Item("other", (kind,), 0, None, event["seq"], event)

    def _mmio(self, event: dict[str, Any], kind: str) -> Item | None:
        bar, offset, size, value = event["bar"], event["offset"], event["size"], event["value"]
        for skip_bar, start, end in self._skip_mmio:
            if bar == skip_bar and start <= offset < end:
                self.dropped += 1
                return None
        value = self._apply_rules("mmio", bar, offset, size, value)
        if value is None:
            return None
        if (bar, offset) in self._address_regs and value:
            value = self.canonical(value)
        # Registers of one 4 KiB page form a group (e.g. NVMe registers vs doorbells).
        stream = f"mmio:bar{bar}:{offset >> 12:x}"
        item = Item(stream, (kind, bar, offset), size, value, event["seq"], event)
        # A run of reads returning the same value is a status poll: one item,
        # whatever the count (how long the guest waited depends on timing).
        # A read that saw "busy" at all, on one path only, stays a divergence.
        last = self._last_read.get(stream)
        if kind == Kind.MMIO_READ:
            if last is not None and last.same(item):
                last.count += 1
                return None
            self._last_read[stream] = item
        else:
            self._last_read.pop(stream, None)
        return item

    def _config_event(self, event: dict[str, Any], kind: str) -> Item | None:
        offset, size = event["offset"], event["size"]
        if "value" not in event or any(start <= offset < end for start, end in self._skip_config):
            self.dropped += 1
            return None
        value = self._apply_rules("cfg", None, offset, size, event["value"])
        if value is None:
            return None
        if kind == Kind.CFG_READ:
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

    def finish(self) -> list[Item]:
        """Items only known at the end: the final config state."""
        return [self._config[key] for key in sorted(self._config)]
