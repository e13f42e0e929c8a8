"""Interrupt delivery to the client: eventfds per (IRQ index, vector), INTx masking, bursts.

The client hands us one eventfd per vector with DEVICE_SET_IRQS; signalling
a vector is writing 1 to its eventfd. Everything here is bookkeeping and can
be tested without descriptors: the one write is the injected ``notify``.

Rules:

1. INTx is level-triggered and automasked, as VFIO's is: a delivered INTx
   masks the line until the client unmasks it (the guest's EOI), and an
   unmask while the model still asserts the line signals it again.
2. Message interrupts (MSI, MSI-X) raised while a burst of requests is being
   served are held and signalled once each, when the burst is served or
   before the next message to the client, whichever comes first (PCIe: a
   completion never passes the device's earlier posted writes, MSIs
   included). Doorbells that arrive together then cost the guest one
   interrupt, as QEMU's own devices post completions from a bottom half.
   INTx is never held: its masking state must follow each assertion.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from .device import DeviceModel, IrqType
from .fdutil import close_quietly
from .protocol import IrqIndex, IrqInfoFlags, IrqSet, IrqSetFlags, ProtocolError
from .protocol.constants import NUM_IRQS

log = logging.getLogger(__name__)

_IRQ_TYPE_INDEX = {
    IrqType.INTX: IrqIndex.INTX,
    IrqType.MSI: IrqIndex.MSI,
    IrqType.MSIX: IrqIndex.MSIX,
}
_EVENTFD_TICK = (1).to_bytes(8, "little")
_DATA_TYPES = (IrqSetFlags.DATA_NONE, IrqSetFlags.DATA_BOOL, IrqSetFlags.DATA_EVENTFD)
_ACTIONS = (IrqSetFlags.ACTION_MASK, IrqSetFlags.ACTION_UNMASK, IrqSetFlags.ACTION_TRIGGER)


def write_eventfd(fd: int) -> None:
    """Signal an eventfd (the edge: the only system call of interrupt delivery)."""
    os.write(fd, _EVENTFD_TICK)


class Interrupts:
    """The client's interrupt eventfds for ``model`` and what is held during a burst."""

    def __init__(self, model: DeviceModel, notify: Callable[[int], None] = write_eventfd) -> None:
        self.model = model
        self.notify = notify
        #: (IRQ index, vector) -> eventfd; owned here, closed on replacement and close().
        self.eventfds: dict[tuple[int, int], int] = {}
        self.intx_masked = False
        #: Set by the loop while it serves a burst of requests (rule 2).
        self.in_burst = False
        #: Message interrupts held in this burst, in the order they were raised; one
        #: dict for the life of this object, which the session loop holds.
        self.pending: dict[tuple[int, int], None] = {}

    def shape(self, index: int) -> tuple[int, int]:
        """(vector count, IrqInfoFlags) of an IRQ index, for DEVICE_GET_IRQ_INFO."""
        if index == IrqIndex.INTX:
            flags = IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.AUTOMASKED
            return (1 if self.model.intx else 0), int(flags)
        if index == IrqIndex.MSI:
            return self.model.msi_vectors, int(IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE)
        if index == IrqIndex.MSIX:
            return self.model.msix_vectors, int(IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE)
        return 1, int(IrqInfoFlags.EVENTFD)

    # --- the model's side ------------------------------------------------------

    def signal(self, irq_type: IrqType, vector: int) -> bool:
        """Deliver (or hold, rule 2) an interrupt; whether an eventfd will carry it."""
        index = _IRQ_TYPE_INDEX[irq_type]
        if self.in_burst and index != IrqIndex.INTX:
            self.pending[(index, vector)] = None
            return (index, vector) in self.eventfds
        delivered = self._fire(index, vector)
        if index == IrqIndex.INTX and delivered:
            self.intx_masked = True  # rule 1: automasked until the guest's EOI
        return delivered

    def flush(self) -> None:
        """Signal the interrupts held in this burst (before any message to the client)."""
        for index, vector in self.pending:
            self._fire(index, vector)
        self.pending.clear()

    def _fire(self, index: int, vector: int) -> bool:
        fd = self.eventfds.get((index, vector))
        if fd is None:
            return False
        if index == IrqIndex.INTX and self.intx_masked:
            return False
        try:
            self.notify(fd)
        except OSError as exc:
            log.warning("eventfd for IRQ %d vector %d: %s", index, vector, exc)
            return False
        return True

    # --- the client's side: DEVICE_SET_IRQS ------------------------------------------

    def set_irqs(self, request: IrqSet, fds: list[int]) -> None:
        """Apply a DEVICE_SET_IRQS request; raises :class:`ProtocolError` to refuse it.

        Descriptors kept as eventfds are removed from ``fds``; the caller closes
        whatever is left there.
        """
        if not 0 <= request.index < NUM_IRQS:
            raise ProtocolError(f"IRQ index {request.index} does not exist")
        data_type = request.flags & IrqSetFlags.DATA_MASK
        action = request.flags & IrqSetFlags.ACTION_MASK_ALL
        if data_type not in _DATA_TYPES:
            raise ProtocolError(f"SET_IRQS flags {request.flags:#x}: not exactly one data type")
        if action not in _ACTIONS:
            raise ProtocolError(f"SET_IRQS flags {request.flags:#x}: not exactly one action")
        count, _ = self.shape(request.index)
        if request.count == 0:
            if data_type == IrqSetFlags.DATA_NONE and action == IrqSetFlags.ACTION_TRIGGER:
                self._drop_eventfds(request.index, 0, count)
                return
            raise ProtocolError("SET_IRQS with count 0 is only valid to disable an index")
        if request.start + request.count > count:
            raise ProtocolError(
                f"SET_IRQS vectors {request.start}+{request.count} beyond the {count} of "
                f"index {request.index}"
            )
        if data_type == IrqSetFlags.DATA_EVENTFD:
            # Resample/unmask eventfds only matter with KVM irqfds; accept and drop them.
            if action == IrqSetFlags.ACTION_TRIGGER:
                self._assign_eventfds(request, fds)
            return
        if fds:
            raise ProtocolError("SET_IRQS passed descriptors without DATA_EVENTFD")
        chosen = list(range(request.start, request.start + request.count))
        if data_type == IrqSetFlags.DATA_BOOL:
            if len(request.data) < request.count:
                raise ProtocolError("SET_IRQS DATA_BOOL is shorter than count")
            chosen = [vector for i, vector in enumerate(chosen) if request.data[i]]
        if request.index == IrqIndex.INTX and action != IrqSetFlags.ACTION_TRIGGER:
            self.intx_masked = action == IrqSetFlags.ACTION_MASK
            if not self.intx_masked and self.model.intx_level:
                self._fire(IrqIndex.INTX, 0)  # rule 1: still asserted after the unmask
            return
        if action == IrqSetFlags.ACTION_TRIGGER:
            for vector in chosen:
                self._fire(request.index, vector)

    def _assign_eventfds(self, request: IrqSet, fds: list[int]) -> None:
        if fds and len(fds) != request.count:
            raise ProtocolError(
                f"SET_IRQS announced {request.count} eventfds but passed {len(fds)}"
            )
        for fd in fds:
            try:
                os.fstat(fd)
            except OSError:
                raise ProtocolError("SET_IRQS passed an invalid descriptor", errno.EBADF) from None
        taken = list(fds)
        fds.clear()  # ownership moves here
        for i in range(request.count):
            key = (request.index, request.start + i)
            old = self.eventfds.pop(key, None)
            if old is not None:
                os.close(old)
            if taken:
                self.eventfds[key] = taken[i]

    def _drop_eventfds(self, index: int, start: int, count: int) -> None:
        for vector in range(start, start + count):
            fd = self.eventfds.pop((index, vector), None)
            if fd is not None:
                os.close(fd)

    # --- lifecycle ------------------------------------------------------------------------

    def reset(self) -> None:
        """DEVICE_RESET: the line is unmasked again; eventfds stay assigned."""
        self.intx_masked = False

    def close(self) -> None:
        """Close every eventfd; drop held interrupts, as the client that would take them is gone."""
        close_quietly(self.eventfds.values())
        self.eventfds.clear()
        self.pending.clear()
