"""The device-model API: identity, BARs, capabilities, interrupts and DMA.

A model is one subclass of :class:`DeviceModel` that declares what it is
(class attributes) and implements what it does (methods named by its
registers). It reaches the outside world only through a :class:`Bus`: the
vfio-user server in production, :class:`~vfio_bridge.device.local.LocalBus` in
unit tests and benchmarks, or a window device hosting it as a child.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..pci.capabilities import (
    CAP_EXPRESS,
    CAP_MSIX,
    CAPABILITY_NAMES,
    MSIX_ENTRY_SIZE,
    PCIE_DEVCTL_FLR,
    PCIE_DEVCTL_OFFSET,
    Capability,
    Msi,
    MsiX,
    PowerManagement,
)
from ..pci.config import BarKind, BarLayout, ConfigSpace, PciCommand
from .registers import Register, RegisterFile

log = logging.getLogger(__name__)


class IrqType(enum.StrEnum):
    """A PCI interrupt mechanism; the value is how the transaction log names it."""

    INTX = "intx"
    MSI = "msi"
    MSIX = "msix"


class DmaError(Exception):
    """A DMA address range that is not (entirely) mapped guest memory."""


class Bus(Protocol):
    """What a model needs from whatever hosts it."""

    def dma_read(self, addr: int, length: int, tag: str | None = None) -> bytes: ...

    def dma_write(self, addr: int, data: bytes, tag: str | None = None) -> None: ...

    def dma_gather(self, segments: Sequence[tuple[int, int]], block: int = 0) -> bytes: ...

    def dma_scatter(
        self, segments: Sequence[tuple[int, int]], data: bytes, block: int = 0
    ) -> None: ...

    def signal_irq(self, irq_type: IrqType, vector: int, stream: str | None = None) -> bool: ...

    def defer(self, work: Callable[[], None]) -> None: ...

    def report_error(self, code: str, detail: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Buffer:
    """A plain memory window inside a BAR (for example edu's DMA buffer)."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class BarRange:
    """A BAR range handled by model methods: ``read(offset, size) -> int`` and
    ``write(offset, size, value)``, offsets relative to the window (e.g. doorbells)."""

    name: str
    offset: int
    size: int
    read: str | None = None
    write: str | None = None
    #: Names of the registers in the range, one per ``stride`` bytes, cycling with
    #: ``{n}`` counting the cycles: ``("SQ{n}TDBL", "CQ{n}HDBL")`` names doorbells.
    names: tuple[str, ...] = ()
    stride: int = 4


@dataclass(frozen=True, slots=True)
class Bar:
    """A BAR declaration: layout plus what lives in it."""

    index: int
    size: int
    kind: BarKind = BarKind.MEM32
    prefetchable: bool = False
    registers: tuple[Register, ...] = ()
    buffers: tuple[Buffer, ...] = ()
    ranges: tuple[BarRange, ...] = ()

    @property
    def layout(self) -> BarLayout:
        return BarLayout(self.index, self.size, self.kind, self.prefetchable)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A structure the device DMAs under ``tag`` (a queue entry, an address list) and
    which of its fields are guest addresses or driver-chosen ids, so the diff can
    pair the addresses and ignore the ids: they legitimately differ between paths."""

    tag: str
    addresses: tuple[int, ...] = ()  # offsets of 8-byte address fields
    ignore: tuple[tuple[int, int], ...] = ()  # [start, end) byte ranges to ignore
    address_list: bool = False  # the whole payload is 8-byte addresses


@dataclass(frozen=True, slots=True)
class Takeover:
    """Where an OS driver takes the device over from firmware that drove it first.

    Writes to ``register`` whose ``mask`` bits equal ``value`` reset the device's
    use (NVMe: CC with EN clear, the controller disabled) and divide a log into
    sessions. Firmware polls; an OS driver takes interrupts: the OS phase starts
    at the reset that opens the first session in which the device signals a
    message-signalled interrupt (MSI or MSI-X). Everything before is the pre-OS
    phase (firmware, and the OS's own enumeration before its driver binds).
    """

    register: str
    mask: int
    value: int


def whole_number(text: str) -> int:
    """An :class:`Option` parser for integers, whose error a user can read (``int``'s
    own is Python's: "invalid literal for int() with base 10")."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


@dataclass(frozen=True, slots=True)
class Option:
    """A model option settable from the command line (``--opt name=value``)."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str


class DetachedBus:
    """The bus of a model nobody hosts yet: DMA fails, interrupts go nowhere."""

    def dma_read(self, addr: int, length: int, tag: str | None = None) -> bytes:
        raise DmaError("model is not attached to a bus")

    def dma_write(self, addr: int, data: bytes, tag: str | None = None) -> None:
        raise DmaError("model is not attached to a bus")

    def dma_gather(self, segments: Sequence[tuple[int, int]], block: int = 0) -> bytes:
        raise DmaError("model is not attached to a bus")

    def dma_scatter(self, segments: Sequence[tuple[int, int]], data: bytes, block: int = 0) -> None:
        raise DmaError("model is not attached to a bus")

    def signal_irq(self, irq_type: IrqType, vector: int, stream: str | None = None) -> bool:
        return False

    def defer(self, work: Callable[[], None]) -> None:
        work()

    def report_error(self, code: str, detail: str) -> None:
        pass


class MsixState:
    """The MSI-X table and PBA of a model, as seen at its BAR offsets."""

    def __init__(self, cap: MsiX) -> None:
        self.cap = cap
        self.table = bytearray(cap.table_size)
        self.pending = 0
        self.reset()

    def reset(self) -> None:
        self.table[:] = bytes(len(self.table))
        for vector in range(self.cap.vectors):
            self.table[vector * MSIX_ENTRY_SIZE + 12] = 1  # masked at reset
        self.pending = 0

    def masked(self, vector: int) -> bool:
        return bool(self.table[vector * MSIX_ENTRY_SIZE + 12] & 1)

    def entry(self, vector: int) -> tuple[int, int]:
        """``(address, data)`` software programmed for a vector."""
        base = vector * MSIX_ENTRY_SIZE
        address = int.from_bytes(self.table[base : base + 8], "little")
        data = int.from_bytes(self.table[base + 8 : base + 12], "little")
        return address, data

    def pba_bytes(self) -> bytes:
        return self.pending.to_bytes(self.cap.pba_size, "little")


class BarHandler:
    """Routes accesses to one BAR: registers, buffers, MSI-X table and PBA."""

    def __init__(self, model: DeviceModel, bar: Bar) -> None:
        self.bar = bar
        self.size = bar.size
        self.registers = RegisterFile(bar.registers, owner=model)
        self.buffers: dict[str, bytearray] = {}
        self._buffer_ranges: list[tuple[int, int, bytearray]] = []
        for buf in bar.buffers:
            if buf.offset + buf.size > bar.size:
                raise ValueError(f"buffer {buf.name} does not fit in BAR{bar.index}")
            memory = bytearray(buf.size)
            self.buffers[buf.name] = memory
            self._buffer_ranges.append((buf.offset, buf.offset + buf.size, memory))
        self._window_ranges: list[tuple[int, int, Callable | None, Callable | None]] = []
        for win in bar.ranges:
            if win.offset + win.size > bar.size:
                raise ValueError(f"window {win.name} does not fit in BAR{bar.index}")
            read = getattr(model, win.read) if win.read else None
            write = getattr(model, win.write) if win.write else None
            self._window_ranges.append((win.offset, win.offset + win.size, read, write))
        self.msix: MsixState | None = None
        self._table = (0, 0)
        self._pba = (0, 0)
        self.model = model

    def attach_msix(self, msix: MsixState, table: bool, pba: bool) -> None:
        self.msix = msix
        cap = msix.cap
        if table:
            self._table = (cap.table_offset, cap.table_offset + cap.table_size)
        if pba:
            self._pba = (cap.pba_offset, cap.pba_offset + cap.pba_size)

    def accessors(self, offset: int, size: int) -> tuple[Callable[[], int], Callable[[int], None]]:
        """How to read and write ``size`` bytes at ``offset``, as :meth:`read` and
        :meth:`write` would, decided once (a register's own, when one is exactly there)."""
        exact = self.registers.accessors(offset, size)
        if exact is not None:
            return exact
        return functools.partial(self.read, offset, size), functools.partial(
            self.write, offset, size
        )

    def read(self, offset: int, size: int) -> int:
        regs = self.registers
        if regs.covers(offset):
            return regs.read(offset, size)
        for start, end, memory in self._buffer_ranges:
            if start <= offset and offset + size <= end:
                return int.from_bytes(memory[offset - start : offset - start + size], "little")
        for start, end, read, _ in self._window_ranges:
            if start <= offset < end:
                return read(offset - start, size) if read is not None else 0
        if self.msix is not None:
            if self._table[0] <= offset < self._table[1]:
                pos = offset - self._table[0]
                return int.from_bytes(self.msix.table[pos : pos + size], "little")
            if self._pba[0] <= offset < self._pba[1]:
                pos = offset - self._pba[0]
                return int.from_bytes(self.msix.pba_bytes()[pos : pos + size], "little")
        return self.model.unmapped_read(self.bar.index, offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        if self.registers.write(offset, size, value):
            return
        for start, end, memory in self._buffer_ranges:
            if start <= offset and offset + size <= end:
                memory[offset - start : offset - start + size] = value.to_bytes(size, "little")
                return
        for start, end, _, write in self._window_ranges:
            if start <= offset < end:
                if write is not None:
                    write(offset - start, size, value)
                return
        if self.msix is not None and self._table[0] <= offset < self._table[1]:
            pos = offset - self._table[0]
            self.msix.table[pos : pos + size] = value.to_bytes(size, "little")
            self.model.msix_table_written(pos // MSIX_ENTRY_SIZE)
            return
        self.model.unmapped_write(self.bar.index, offset, size, value)


class DeviceModel:
    """Base class of every device model; see ``vfio_bridge/models/edu.py`` for an example."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    vendor_id: ClassVar[int] = 0
    device_id: ClassVar[int] = 0
    class_code: ClassVar[int] = 0
    revision: ClassVar[int] = 0
    subsystem_vendor_id: ClassVar[int] = 0
    subsystem_id: ClassVar[int] = 0
    bars: ClassVar[tuple[Bar, ...]] = ()
    capabilities: ClassVar[tuple[Capability, ...]] = (PowerManagement(),)
    intx: ClassVar[bool] = True
    options: ClassVar[tuple[Option, ...]] = ()
    first_capability: ClassVar[int] = 0x40
    descriptors: ClassVar[tuple[Descriptor, ...]] = ()
    #: Where an OS driver takes the device over (see :class:`Takeover`); None: no rule.
    takeover: ClassVar[Takeover | None] = None
    #: True when the model writes its own region accesses to the log (the window
    #: device records its child's accesses in the child's terms).
    records_accesses: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        known = {opt.name: opt for opt in self.options}
        unknown = set(options) - set(known)
        if unknown:
            raise ValueError(f"model {self.name} has no option(s) {', '.join(sorted(unknown))}")
        self.opts: dict[str, Any] = {
            name: options.get(name, opt.default) for name, opt in known.items()
        }
        self.bus: Bus = DetachedBus()
        self.config = ConfigSpace(first_capability=self.first_capability)
        self.config.init_header(
            self.vendor_id,
            self.device_id,
            self.class_code,
            self.revision,
            self.subsystem_vendor_id,
            self.subsystem_id,
            interrupt_pin=1 if self.intx else 0,
        )
        self.bar_handlers: dict[int, BarHandler] = {}
        for bar in self.bars:
            self.config.add_bar(bar.layout)
            self.bar_handlers[bar.index] = BarHandler(self, bar)
        self.msix: MsixState | None = None
        self._msi_offset: int | None = None
        self._msix_offset: int | None = None
        self._pcie_offset: int | None = None
        for cap in self.capabilities:
            offset = cap.install(self.config)
            if isinstance(cap, MsiX):
                self._msix_offset = offset
                self.msix = MsixState(cap)
                for index, handler in self.bar_handlers.items():
                    handler.attach_msix(
                        self.msix, table=index == cap.table_bar, pba=index == cap.pba_bar
                    )
            elif isinstance(cap, Msi):
                self._msi_offset = offset
        self._pcie_offset = self.config.find_capability(CAP_EXPRESS)
        self.config.seal()
        self.config.write_hooks.append(self._config_written)
        self.intx_level = False

    # --- hosting -------------------------------------------------------------

    def attach(self, bus: Bus) -> None:
        """Connect the model to the host that carries its DMA and interrupts."""
        self.bus = bus

    def registers(self, bar: int) -> RegisterFile:
        return self.bar_handlers[bar].registers

    @property
    def msi_vectors(self) -> int:
        for cap in self.capabilities:
            if isinstance(cap, Msi):
                return cap.vectors
        return 0

    @property
    def msix_vectors(self) -> int:
        return self.msix.cap.vectors if self.msix else 0

    # --- services for subclasses ---------------------------------------------

    def dma_read(self, addr: int, length: int, tag: str | None = None) -> bytes:
        """Read guest memory; raises :class:`DmaError` when it is not mapped.

        ``tag`` names what is read (a queue entry...) for the log and the diff."""
        if not self.config.bus_master:
            raise DmaError(f"DMA read of {length} bytes at {addr:#x} with bus mastering off")
        return self.bus.dma_read(addr, length, tag)

    def dma_write(self, addr: int, data: bytes, tag: str | None = None) -> None:
        """Write guest memory; raises :class:`DmaError` when it is not mapped."""
        if not self.config.bus_master:
            raise DmaError(f"DMA write of {len(data)} bytes at {addr:#x} with bus mastering off")
        self.bus.dma_write(addr, data, tag)

    def dma_gather(self, segments: Sequence[tuple[int, int]], block: int = 0) -> bytes:
        """Read a scatter list as one transfer (logged as one DMA of the whole buffer, so
        how guest memory happened to be fragmented does not show in the log).

        ``block`` > 0: the data is a block device's, logged with a digest per
        logical block of that size (``logformat`` Rule 5)."""
        if not self.config.bus_master:
            raise DmaError("DMA read with bus mastering off")
        return self.bus.dma_gather(segments, block)

    def dma_scatter(self, segments: Sequence[tuple[int, int]], data: bytes, block: int = 0) -> None:
        """Write ``data`` across a scatter list as one transfer (see :meth:`dma_gather`)."""
        if not self.config.bus_master:
            raise DmaError("DMA write with bus mastering off")
        self.bus.dma_scatter(segments, data, block)

    def defer(self, work: Callable[[], None]) -> None:
        """Run ``work`` after the current access completed (device-side work)."""
        self.bus.defer(work)

    def device_error(self, code: str, detail: str) -> None:
        """Record that guest input drove the device into a defined error.

        ``code`` is a short stable name (``dma_fault``, ``bad_vector``...) that the
        diff compares; ``detail`` is for people. Logged and written to the log.
        """
        log.warning("%s: %s: %s", self.name, code, detail)
        self.bus.report_error(code, detail)

    def irq_mode(self) -> str:
        """Which interrupt mechanism the guest enabled: ``msix``, ``msi`` or ``intx``."""
        if self._msix_offset is not None and MsiX.enabled(self.config, self._msix_offset):
            return IrqType.MSIX
        if self._msi_offset is not None and Msi.enabled(self.config, self._msi_offset):
            return IrqType.MSI
        return IrqType.INTX

    def raise_irq(self, vector: int = 0) -> bool:
        """Signal interrupt ``vector`` the way the guest configured; False if not delivered."""
        mode = self.irq_mode()
        if mode == IrqType.MSIX:
            assert self.msix is not None
            if vector >= self.msix.cap.vectors:
                self.device_error("bad_vector", f"MSI-X vector {vector} out of range")
                return False
            # Masking and the PBA belong to whoever owns the table: QEMU on the
            # direct path, the window device on the window path.
            return self.bus.signal_irq(IrqType.MSIX, vector)
        if mode == IrqType.MSI:
            assert self._msi_offset is not None
            if vector >= Msi.enabled_vectors(self.config, self._msi_offset):
                self.device_error("bad_vector", f"MSI vector {vector} beyond the enabled ones")
                return False
            return self.bus.signal_irq(IrqType.MSI, vector)
        if not self.intx:
            return False
        self.intx_level = True
        self.config.set_interrupt_status(True)
        if self.config.command & PciCommand.INTX_DISABLE:
            return False
        return self.bus.signal_irq(IrqType.INTX, 0)

    def lower_irq(self) -> None:
        """Deassert the INTx line (message interrupts are edges and need no lowering)."""
        self.intx_level = False
        self.config.set_interrupt_status(False)

    # --- hooks for subclasses ------------------------------------------------

    def on_reset(self) -> None:
        """Restore model state beyond registers (queues, buffers...)."""

    def on_config_write(self, offset: int, size: int, value: int) -> None:
        """Called after every config write with the value software wrote."""

    def msix_table_written(self, vector: int) -> None:
        """An MSI-X entry changed; whoever owns the table delivers pending vectors."""

    def unmapped_read(self, bar: int, offset: int, size: int) -> int:
        log.info("%s: read of unmapped BAR%d offset %#x size %d", self.name, bar, offset, size)
        return 0

    def unmapped_write(self, bar: int, offset: int, size: int, value: int) -> None:
        log.info(
            "%s: write of unmapped BAR%d offset %#x size %d value %#x",
            self.name,
            bar,
            offset,
            size,
            value,
        )

    # --- lifecycle -----------------------------------------------------------

    def reset(self) -> None:
        """Device reset (VFIO reset, FLR): config, registers and model state."""
        self.config.reset()
        for handler in self.bar_handlers.values():
            handler.registers.reset()
            for memory in handler.buffers.values():
                memory[:] = bytes(len(memory))
        if self.msix is not None:
            self.msix.reset()
        self.intx_level = False
        self.on_reset()

    def _config_written(self, offset: int, size: int, value: int) -> None:
        pcie = self._pcie_offset
        if pcie is not None:
            # FLR is bit 15 of Device Control: bit 7 of its high byte.
            flr_byte = pcie + PCIE_DEVCTL_OFFSET + 1
            if offset <= flr_byte < offset + size:
                written = (value >> ((flr_byte - offset) * 8)) & 0xFF
                if written & (PCIE_DEVCTL_FLR >> 8):
                    log.info("%s: function level reset", self.name)
                    self.reset()
                    return
        self.on_config_write(offset, size, value)

    def declaration(self) -> dict[str, Any]:
        """What this device declares itself to be, as plain data for the log header:
        identity, BARs with their named registers and ranges, capabilities where they
        sit in config space, and the structures it exchanges by DMA. Readers of the
        log derive what they need from it (the diff: which accesses are path-specific)."""
        capabilities: list[dict[str, Any]] = []
        for offset, cap_id in self.config.capabilities():
            entry: dict[str, Any] = {
                "id": cap_id,
                "name": CAPABILITY_NAMES.get(cap_id, f"{cap_id:#04x}"),
                "offset": offset,
                "length": self.config.capability_lengths.get(offset, 2),
            }
            if cap_id == CAP_MSIX and self.msix is not None:
                cap = self.msix.cap
                entry["table"] = [cap.table_bar, cap.table_offset, cap.table_size]
                entry["pba"] = [cap.pba_bar, cap.pba_offset, cap.pba_size]
            capabilities.append(entry)
        declared: dict[str, Any] = {
            "model": self.name,
            "vendor_id": self.vendor_id,
            "device_id": self.device_id,
            "class_code": self.class_code,
            "bars": [_describe_bar(bar) for bar in self.bars],
            "capabilities": capabilities,
            "descriptors": [
                {
                    "tag": d.tag,
                    "addresses": list(d.addresses),
                    "ignore": [list(r) for r in d.ignore],
                    "address_list": d.address_list,
                }
                for d in self.descriptors
            ],
        }
        if self.takeover is not None:
            declared["takeover"] = self._describe_takeover(self.takeover)
        return declared

    def _describe_takeover(self, takeover: Takeover) -> dict[str, Any]:
        for bar in self.bars:
            for reg in bar.registers:
                if reg.name == takeover.register:
                    return {
                        "register": reg.name, "bar": bar.index, "offset": reg.offset,
                        "mask": takeover.mask, "value": takeover.value,
                    }  # fmt: skip
        raise ValueError(f"model {self.name}: takeover register {takeover.register!r} undeclared")

    def use_recorder(self, recorder: Any) -> None:
        """The log a self-recording model writes to (``records_accesses``)."""

    def record_config(
        self, recorder: Any, write: bool, offset: int, size: int, data: bytes
    ) -> None:
        """Log a config access (called instead of the default when ``records_accesses``)."""
        raise NotImplementedError

    def record_mmio(
        self, recorder: Any, write: bool, bar: int, offset: int, size: int, value: int
    ) -> None:
        """Log a BAR access (called instead of the default when ``records_accesses``)."""
        raise NotImplementedError

    @classmethod
    def describe(cls) -> str:
        caps = ", ".join(type(c).__name__ for c in cls.capabilities) or "none"
        return (
            f"{cls.name}: {cls.description}\n"
            f"  ids {cls.vendor_id:04x}:{cls.device_id:04x} class {cls.class_code:06x}, "
            f"BARs {', '.join(f'{b.index}:{b.size:#x}' for b in cls.bars) or 'none'}, "
            f"capabilities {caps}"
        )


def _describe_bar(bar: Bar) -> dict[str, Any]:
    registers = []
    for reg in bar.registers:
        entry: dict[str, Any] = {"name": reg.name, "offset": reg.offset, "size": reg.size}
        if reg.address:
            entry["address"] = True
        if reg.state:
            entry["state"] = True
        registers.append(entry)
    ranges = []
    for r in bar.ranges:
        entry = {"name": r.name, "offset": r.offset, "size": r.size}
        if r.names:
            entry["names"] = list(r.names)
            entry["stride"] = r.stride
        ranges.append(entry)
    return {"index": bar.index, "size": bar.size, "registers": registers, "ranges": ranges}


__all__ = [
    "Bar",
    "BarHandler",
    "BarRange",
    "Buffer",
    "Bus",
    "Descriptor",
    "DeviceModel",
    "DmaError",
    "IrqType",
    "Option",
    "Takeover",
]
