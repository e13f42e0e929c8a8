"""A VMD-style window device (Intel VMD, 8086:A77F) that hosts any child model.

Why not 8086:201D: QEMU's vfio code adds a MEMBAR shadow capability for
201D, 467F, 4C3D and 9A0B by pread()ing the device's fd, which a vfio-user
device does not have; QEMU 11 then fails ("cannot read MEMBARs") and crashes.
A77F is driven by the same Linux vmd driver (client feature set: MEMBAR
shadow through a vendor capability we do not provide, bus-number
restrictions off in VMCAP, first MSI-X vector reserved) and has no QEMU quirk.

The guest's window driver (Linux ``vmd``, or the xvpci kext on macOS) finds
the child's config space in CFGBAR (ECAM layout: bus << 20 | devfn << 12 |
reg; only bus 0 device 0 function 0 exists, every other function reads as
all-ones) and its BARs in MEMBAR1/MEMBAR2, at the bus addresses it programs
into the child's BAR registers. The child's MSI-X messages (address
0xFEE00000 | vector << 12, as the vmd driver composes them) become the
window's own MSI-X vectors.

The log shows the child exactly as the direct path does (its config offsets,
its BARs, its DMA and interrupt vectors); the window's own config space,
absent-function probes, MSI-X and interrupts are tagged ``"stream":"window"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..device import (
    Bar,
    BarKind,
    BarRange,
    DeviceModel,
    IrqType,
    MsiX,
    Option,
    PciExpress,
    PowerManagement,
)
from ..logformat import WINDOW_STREAM
from ..pci.config import COMMAND, PciCommand

CFGBAR, MEMBAR1, MEMBAR2 = 0, 2, 4
_MEMORY_ENABLE = int(PciCommand.MEMORY)
CFGBAR_SIZE = 1 << 20
MEMBAR_SIZE = 4 << 20
MEMBAR2_RESERVED = 0x2000  # the window's own MSI-X table (+0) and PBA (+0x1000)
WINDOW_VECTORS = 8
MSI_ADDRESS = 0xFEE00000


def _child_options(text: str) -> list[str]:
    return [pair for pair in text.split(";") if pair]


class ChildBus:
    """The child's view of the world: DMA upstream, MSI-X through the window."""

    def __init__(self, window: VmdWindow) -> None:
        self.window = window

    def dma_read(self, addr: int, length: int, tag: str | None = None) -> bytes:
        return self.window.bus.dma_read(addr, length, tag)

    def dma_write(self, addr: int, data: bytes, tag: str | None = None) -> None:
        self.window.bus.dma_write(addr, data, tag)

    def dma_gather(self, segments: Sequence[tuple[int, int]], block: int = 0) -> bytes:
        return self.window.bus.dma_gather(segments, block)

    def dma_scatter(self, segments: Sequence[tuple[int, int]], data: bytes, block: int = 0) -> None:
        self.window.bus.dma_scatter(segments, data, block)

    def signal_irq(self, irq_type: IrqType, vector: int, stream: str | None = None) -> bool:
        return self.window.child_interrupt(irq_type, vector)

    def defer(self, work: Callable[[], None]) -> None:
        self.window.bus.defer(work)

    def report_error(self, code: str, detail: str) -> None:
        self.window.bus.report_error(code, detail)


class VmdWindow(DeviceModel):
    name = "window"
    description = "VMD-style window (8086:a77f) publishing a child model behind CFGBAR/MEMBARs"
    vendor_id = 0x8086
    device_id = 0xA77F
    class_code = 0x010400
    subsystem_vendor_id = 0x8086
    subsystem_id = 0x0000
    intx = False
    first_capability = 0x80  # 0x40..0x7F hold VMCAP, VMCONFIG and friends
    records_accesses = True
    capabilities = (
        PowerManagement(),
        MsiX(
            vectors=WINDOW_VECTORS,
            table_bar=MEMBAR2,
            table_offset=0,
            pba_bar=MEMBAR2,
            pba_offset=0x1000,
        ),
        PciExpress(),
    )
    options = (
        Option("child", "nvme", "model published behind the window"),
        Option("child_options", "", "the child's options, NAME=VALUE;NAME=VALUE", str),
    )
    bars = (
        Bar(
            CFGBAR,
            size=CFGBAR_SIZE,
            kind=BarKind.MEM64,
            ranges=(
                BarRange("cfgbar", 0, CFGBAR_SIZE, read="_cfgbar_read", write="_cfgbar_write"),
            ),
        ),
        Bar(
            MEMBAR1,
            size=MEMBAR_SIZE,
            ranges=(
                BarRange("membar1", 0, MEMBAR_SIZE, read="_membar1_read", write="_membar1_write"),
            ),
        ),
        Bar(
            MEMBAR2,
            size=MEMBAR_SIZE,
            kind=BarKind.MEM64,
            ranges=(
                BarRange(
                    "membar2",
                    MEMBAR2_RESERVED,
                    MEMBAR_SIZE - MEMBAR2_RESERVED,
                    read="_membar2_read",
                    write="_membar2_write",
                ),
            ),
        ),
    )

    def __init__(self, child_model: DeviceModel | None = None, **options: Any) -> None:
        """Host ``child_model``, or the model the ``child``/``child_options`` options name."""
        super().__init__(**options)
        child = child_model
        if child is None:
            from . import create_model  # the registry imports this module

            name = str(self.opts["child"])
            if name == self.name:
                raise ValueError("a window cannot host another window")
            try:
                child = create_model(name, _child_options(str(self.opts["child_options"])))
            except KeyError as exc:
                raise ValueError(str(exc).strip("'\"")) from None
        self.child = child
        self.child.attach(ChildBus(self))
        self.config.set(0x40, 4, 0)  # VMCAP
        self.config.set(0x44, 4, 0, wmask=0xFFFFFFFF)  # VMCONFIG
        self.config.seal()
        self.recorder: Any = None
        self._last_decode: tuple[int, int, int, int] | None = None

    def declaration(self) -> dict[str, Any]:
        """The child's description (the log is in the child's terms) naming the window."""
        return {**self.child.declaration(), "window": f"{self.vendor_id:04x}:{self.device_id:04x}"}

    # --- recording -------------------------------------------------------------
    # The session hands us every access of the window; we log the child's share
    # in the child's terms while performing it, and tag the rest as the window's.

    def use_recorder(self, recorder: Any) -> None:
        self.recorder = recorder

    def record_config(
        self, recorder: Any, write: bool, offset: int, size: int, data: bytes
    ) -> None:
        recorder.config(write, offset, size, data, WINDOW_STREAM)

    def record_mmio(
        self, recorder: Any, write: bool, bar: int, offset: int, size: int, value: int
    ) -> None:
        if bar == MEMBAR2 and offset < MEMBAR2_RESERVED:
            recorder.mmio(write, bar, offset, size, value, WINDOW_STREAM)
        # Everything else is logged by the handlers below, once decoded.

    # --- CFGBAR: the child's config space --------------------------------------

    def _cfgbar_read(self, offset: int, size: int) -> int:
        reg = offset & 0xFFF
        if offset >> 12 or reg + size > self.child.config.size:
            value = (1 << (8 * size)) - 1  # no such function
            self._log_window(False, CFGBAR, offset, size, value)
            return value
        data = self.child.config.read(reg, size)
        if self.recorder is not None:
            self.recorder.config(False, reg, size, data)
        return int.from_bytes(data, "little")

    def _cfgbar_write(self, offset: int, size: int, value: int) -> None:
        reg = offset & 0xFFF
        if offset >> 12 or reg + size > self.child.config.size:
            self._log_window(True, CFGBAR, offset, size, value)
            return
        data = value.to_bytes(size, "little")
        if self.recorder is not None:
            self.recorder.config(True, reg, size, data)
        self.child.config.write(reg, data)
        self._last_decode = None  # the child's BARs or decode enable may have moved
        self._deliver_unmasked()

    # --- MEMBARs: the child's BARs ----------------------------------------------

    def _membar1_read(self, offset: int, size: int) -> int:
        return self._child_read(MEMBAR1, offset, size)

    def _membar1_write(self, offset: int, size: int, value: int) -> None:
        self._child_write(MEMBAR1, offset, size, value)

    def _membar2_read(self, offset: int, size: int) -> int:
        return self._child_read(MEMBAR2, offset + MEMBAR2_RESERVED, size)

    def _membar2_write(self, offset: int, size: int, value: int) -> None:
        self._child_write(MEMBAR2, offset + MEMBAR2_RESERVED, size, value)

    def _child_read(self, membar: int, offset: int, size: int) -> int:
        target = self.decode(membar, offset)
        if target is None:
            value = (1 << (8 * size)) - 1
            self._log_window(False, membar, offset, size, value)
            return value
        bar, child_offset = target
        value = self.child.bar_handlers[bar].read(child_offset, size)
        if self.recorder is not None:
            self.recorder.mmio(False, bar, child_offset, size, value)
        return value

    def _child_write(self, membar: int, offset: int, size: int, value: int) -> None:
        target = self.decode(membar, offset)
        if target is None:
            self._log_window(True, membar, offset, size, value)
            return
        bar, child_offset = target
        if self.recorder is not None:
            self.recorder.mmio(True, bar, child_offset, size, value)
        self.child.bar_handlers[bar].write(child_offset, size, value)
        self._deliver_unmasked()

    def decode(self, membar: int, offset: int) -> tuple[int, int] | None:
        """Which child BAR (and offset in it) a MEMBAR offset reaches, if any.

        The driver programs the child's BARs with bus addresses inside the
        MEMBAR: either the MEMBAR's own address plus an offset, or, when QEMU's
        VMD quirk reports a shadow MEMBAR address of zero, the offset alone.
        """
        last = self._last_decode
        if last is not None and last[0] == membar and last[1] <= offset < last[2]:
            return last[3], offset - last[1]
        child = self.child.config
        if not child.data[COMMAND] & _MEMORY_ENABLE:  # the config byte: no IntFlag arithmetic
            return None
        membar_base = self.config.bar_address(membar) or 0
        for index, layout in child.bars.items():
            if layout.kind is BarKind.IO:
                continue
            address = child.bar_address(index)
            if not address:
                continue
            for bus_base in (membar_base, 0):
                start = address - bus_base
                if 0 <= start < MEMBAR_SIZE and start <= offset < start + layout.size:
                    self._last_decode = (membar, start, start + layout.size, index)
                    return index, offset - start
        return None

    def on_config_write(self, offset: int, size: int, value: int) -> None:
        self._last_decode = None

    def _log_window(self, write: bool, bar: int, offset: int, size: int, value: int) -> None:
        if self.recorder is not None:
            self.recorder.mmio(write, bar, offset, size, value, WINDOW_STREAM)

    # --- interrupts ------------------------------------------------------------------

    def child_interrupt(self, irq_type: IrqType, vector: int) -> bool:
        """The child raised ``vector``: log it as the child's, route it to a window vector."""
        if self.recorder is not None:
            self.recorder.irq(irq_type, vector)
        if irq_type != IrqType.MSIX or self.child.msix is None:
            self.device_error(
                "dropped_irq", f"child raised {irq_type} vector {vector}; only MSI-X crosses"
            )
            return False
        msix = self.child.msix
        if msix.masked(vector) or self._child_function_masked():
            msix.pending |= 1 << vector
            return False
        return self._route(vector)

    def _route(self, vector: int) -> bool:
        address, _data = self.child.msix.entry(vector)  # type: ignore[union-attr]
        if address & 0xFFF00000 != MSI_ADDRESS:
            self.device_error(
                "dropped_irq", f"child vector {vector} has MSI-X address {address:#x} outside"
            )
            return False
        window_vector = (address >> 12) & 0xFF
        if window_vector >= WINDOW_VECTORS:
            self.device_error(
                "dropped_irq", f"child vector {vector} targets window vector {window_vector}"
            )
            return False
        return self.raise_irq_on(window_vector)

    def raise_irq_on(self, window_vector: int) -> bool:
        if self.irq_mode() != IrqType.MSIX:
            self.device_error("dropped_irq", "the window's MSI-X is not enabled")
            return False
        return self.bus.signal_irq(IrqType.MSIX, window_vector, WINDOW_STREAM)

    def _child_function_masked(self) -> bool:
        offset = self.child.config.find_capability(0x11)
        return offset is not None and MsiX.function_masked(self.child.config, offset)

    def _deliver_unmasked(self) -> None:
        msix = self.child.msix
        if msix is None or not msix.pending or self._child_function_masked():
            return
        for vector in range(msix.cap.vectors):
            if msix.pending & (1 << vector) and not msix.masked(vector):
                msix.pending &= ~(1 << vector)
                self._route(vector)

    # --- lifecycle ---------------------------------------------------------------------

    def on_reset(self) -> None:
        self.child.reset()
        self._last_decode = None


__all__ = ["VmdWindow"]
