"""An in-process bus: guest memory is a bytearray, interrupts are a list.

It hosts a model without sockets, for unit tests of models and for measuring
model code alone in benchmarks. Deferred work runs after each access, as on
the vfio-user server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .device import DeviceModel, DmaError, IrqType
from .hosting import DeferredWork, gather, scatter

log = logging.getLogger(__name__)


class LocalBus:
    """Host ``model`` with ``memory_size`` bytes of guest memory at address 0."""

    def __init__(self, model: DeviceModel, memory_size: int = 1 << 20) -> None:
        self.model = model
        self.memory = bytearray(memory_size)
        self.irqs: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self._deferred = DeferredWork(self._work_failed)
        model.attach(self)

    # --- Bus -----------------------------------------------------------------

    def dma_read(self, addr: int, length: int, tag: str | None = None) -> bytes:
        self._check(addr, length)
        return bytes(self.memory[addr : addr + length])

    def dma_write(self, addr: int, data: bytes, tag: str | None = None) -> None:
        self._check(addr, len(data))
        self.memory[addr : addr + len(data)] = data

    def dma_gather(self, segments: Sequence[tuple[int, int]], block: int = 0) -> bytes:
        return gather(self.dma_read, segments)

    def dma_scatter(self, segments: Sequence[tuple[int, int]], data: bytes, block: int = 0) -> None:
        scatter(self.dma_write, segments, data)

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > len(self.memory):
            raise DmaError(f"DMA {addr:#x}+{length:#x} outside {len(self.memory):#x} bytes")

    def signal_irq(self, irq_type: IrqType, vector: int, stream: str | None = None) -> bool:
        self.irqs.append((irq_type, vector))
        return True

    def defer(self, work: Callable[[], None]) -> None:
        self._deferred.add(work)

    def report_error(self, code: str, detail: str) -> None:
        self.errors.append(f"{code}: {detail}")

    # --- the CPU side ----------------------------------------------------------

    def mmio_read(self, bar: int, offset: int, size: int) -> int:
        value = self.model.bar_handlers[bar].read(offset, size)
        self.run_deferred()
        return value

    def mmio_write(self, bar: int, offset: int, size: int, value: int) -> None:
        self.model.bar_handlers[bar].write(offset, size, value)
        self.run_deferred()

    def run_deferred(self) -> None:
        self._deferred.run()

    def _work_failed(self, exc: DmaError) -> None:
        log.warning("%s: device work failed: %s", self.model.name, exc)
        self.errors.append(str(exc))
