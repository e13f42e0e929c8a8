"""What the diff needs to know about a device, derived from a log's header.

The model describes itself (``DeviceModel.declaration()``, logged under
``device``); deciding which of its accesses are path-specific is the diff's
business, so it is done here:

- the MSI-X table and PBA live in a BAR, but on the direct path QEMU absorbs
  the guest's accesses to them, so neither path's are compared;
- the interrupt capabilities (MSI, MSI-X) are programmed per path, and QEMU
  emulates parts of the PCI Express capability for vfio devices;
- registers declared to hold guest addresses are mapped like DMA addresses;
- DMA descriptors name the fields that hold addresses or driver-chosen ids.

Format 1 and 2 logs carried these conclusions in the header instead of the
description; :meth:`DeviceProfile.from_header` reads both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Capabilities whose config bytes differ between paths for reasons of the platform.
PATH_SPECIFIC_CAPABILITIES = frozenset({"pcie", "msi", "msix"})


@dataclass(frozen=True)
class DeviceProfile:
    """The facts about one device that normalisation and reports use."""

    #: ``(bar, start, end)`` ranges whose accesses are not compared.
    skip_mmio: tuple[tuple[int, int, int], ...] = ()
    #: ``(start, end)`` config ranges whose accesses are not compared.
    path_specific_config: tuple[tuple[int, int], ...] = ()
    #: ``(bar, offset)`` of registers holding guest addresses.
    address_registers: frozenset[tuple[int, int]] = frozenset()
    #: Descriptor layouts by DMA tag.
    descriptors: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Register names by ``(bar, offset)``, for people.
    register_names: dict[tuple[int, int], str] = field(default_factory=dict)

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> DeviceProfile:
        device = header.get("device")
        if device is None:
            return cls._from_legacy_header(header)
        skip_mmio: list[tuple[int, int, int]] = []
        config: list[tuple[int, int]] = []
        for cap in device.get("capabilities", []):
            if cap["name"] in PATH_SPECIFIC_CAPABILITIES:
                config.append((cap["offset"], cap["offset"] + cap["length"]))
            for part in ("table", "pba"):
                if part in cap:
                    bar, start, size = cap[part]
                    skip_mmio.append((bar, start, start + size))
        addresses = set()
        names = {}
        for bar in device.get("bars", []):
            for reg in bar.get("registers", []):
                names[(bar["index"], reg["offset"])] = reg["name"]
                if reg.get("address"):
                    addresses.add((bar["index"], reg["offset"]))
            for window in bar.get("ranges", []):
                names.update(_range_names(bar["index"], window))
        return cls(
            tuple(skip_mmio),
            tuple(config),
            frozenset(addresses),
            {d["tag"]: d for d in device.get("descriptors", [])},
            names,
        )

    def register_name(self, bar: int, offset: int) -> str:
        """The model's name for a BAR offset (``cc``, ``SQ1TDBL``), else ``barN+0x...``."""
        return self.register_names.get((bar, offset)) or f"bar{bar}+{offset:#x}"

    @classmethod
    def _from_legacy_header(cls, header: dict[str, Any]) -> DeviceProfile:
        msix = header.get("msix") or {}
        skip_mmio = []
        for part in ("table", "pba"):
            if part in msix:
                bar, start, size = msix[part]
                skip_mmio.append((bar, start, start + size))
        return cls(
            tuple(skip_mmio),
            tuple(tuple(r) for r in header.get("path_specific_config", [])),  # type: ignore[misc]
            frozenset((bar, offset) for bar, offset, _ in header.get("address_registers", [])),
            {d["tag"]: d for d in header.get("descriptors", [])},
        )


def _range_names(bar: int, window: dict[str, Any]) -> dict[tuple[int, int], str]:
    """Names of the registers of a declared range (doorbells...), by ``(bar, offset)``."""
    patterns = window.get("names") or []
    stride = window.get("stride", 4)
    if not patterns:
        return {}
    return {
        (bar, window["offset"] + i * stride): patterns[i % len(patterns)].format(
            n=i // len(patterns)
        )
        for i in range(window["size"] // stride)
    }
