"""The model's bus on the vfio-user server: guest memory, interrupts, deferred work.

A model hosted by the server sees only this :class:`~vfio_bridge.device.Bus`.
It records every DMA transfer and interrupt the model makes, so the log holds
what the device did whichever way it reached the guest. Guest memory is the
client's DMA mappings (:class:`~vfio_bridge.dma.DmaSpace`): shared mappings
are reached directly, the others through the ``message_dma`` the session
provides (DMA_READ/DMA_WRITE requests that wait for the client's reply).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .device import DeviceModel, DmaError, IrqType
from .device.hosting import DeferredWork, gather, scatter
from .dma import DmaSpace, MessageDma
from .interrupts import Interrupts
from .recorder import Recorder


class HostBus:
    """What ``model`` reaches through the server; also the client's DMA map table."""

    def __init__(
        self,
        model: DeviceModel,
        recorder: Recorder,
        interrupts: Interrupts,
        message_dma: MessageDma | None = None,
    ) -> None:
        self.model = model
        self.recorder = recorder
        self.interrupts = interrupts
        self.dma = DmaSpace(message_dma)
        self.deferred = DeferredWork(self._work_failed)

    # --- the client's mappings (DMA_MAP / DMA_UNMAP) --------------------------------

    def map(self, iova: int, size: int, flags: int, writable: bool, fd: int, offset: int) -> None:
        """Add a mapping (``fd`` -1: reached by messages); takes ownership of ``fd``.

        Raises :class:`DmaError` when the range is refused.
        """
        mapping = self.dma.add(iova, size, writable, fd, offset)
        # A descriptor that could be shrunk under us is served by messages: say so.
        why = {"reason": mapping.unshared_reason} if mapping.unshared_reason else {}
        shared = mapping.memory is not None
        self.recorder.event("dma_map", addr=iova, len=size, flags=flags, shared=shared, **why)

    def unmap(self, iova: int, size: int, flags: int, everything: bool) -> None:
        """Remove the mappings inside ``[iova, iova+size)``, or all of them."""
        if everything:
            self.dma.clear()
        else:
            self.dma.remove(iova, size)
        self.recorder.event("dma_unmap", addr=iova, len=size, flags=flags)

    # --- Bus --------------------------------------------------------------------------

    def dma_read(self, addr: int, length: int, tag: str | None = None) -> bytes:
        data = self.dma.read(addr, length)
        self.recorder.dma(False, addr, data, tag)
        return data

    def dma_write(self, addr: int, data: bytes, tag: str | None = None) -> None:
        self.dma.write(addr, data)
        self.recorder.dma(True, addr, data, tag)

    def dma_gather(self, segments: Sequence[tuple[int, int]], block: int = 0) -> bytes:
        # One log event for the whole buffer: the diff compares transfers, and
        # how a driver cut a buffer into pages legitimately differs between paths.
        # ``block``: the device's logical block size, for per-block digests.
        data = gather(self.dma.read, segments)
        if segments:
            self.recorder.dma(False, segments[0][0], data, None, block)
        return data

    def dma_scatter(self, segments: Sequence[tuple[int, int]], data: bytes, block: int = 0) -> None:
        scatter(self.dma.write, segments, data)
        if segments:
            self.recorder.dma(True, segments[0][0], data, None, block)

    def signal_irq(self, irq_type: IrqType, vector: int, stream: str | None = None) -> bool:
        delivered = self.interrupts.signal(irq_type, vector)
        # Recorded once per interrupt the model raised, even when held and coalesced.
        self.recorder.irq(irq_type, vector, stream)
        return delivered

    def defer(self, work: Callable[[], None]) -> None:
        self.deferred.add(work)

    def report_error(self, code: str, detail: str) -> None:
        self.recorder.device_error(code, detail)

    def _work_failed(self, exc: DmaError) -> None:
        self.model.device_error("dma_fault", f"device work failed: {exc}")

    # --- lifecycle ----------------------------------------------------------------------

    def reset(self) -> None:
        """DEVICE_RESET: work the old device state deferred must not run."""
        self.deferred.clear()

    def close(self) -> None:
        """Unmap all guest memory and drop pending work; the client is gone."""
        self.dma.clear()
        self.deferred.clear()
