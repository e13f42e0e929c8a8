"""One vfio-user connection serving one device model.

The session turns requests into model accesses and replies, owns the DMA
mappings and interrupt eventfds the client passed, and is the model's
:class:`~vfio_bridge.device.Bus`. Device-side work a model defers (DMA, queue
processing) runs after the reply to the request that caused it, because the
client may need that reply before it can serve our DMA_READ/DMA_WRITE.
"""

from __future__ import annotations

import collections
import errno
import functools
import logging
import os
import select
import time
from collections.abc import Callable, Sequence

from .device import DeviceModel, DmaError, IrqType
from .dma import DmaSpace, MessageDma
from .fdutil import close_quietly
from .polling import DEFAULT_POLL_MAX_US, PollBudget
from .protocol import (
    DeviceFlags,
    DeviceInfo,
    DmaAccess,
    DmaMap,
    DmaMapFlags,
    DmaUnmap,
    DmaUnmapFlags,
    Header,
    IrqIndex,
    IrqInfo,
    IrqInfoFlags,
    IrqSet,
    IrqSetFlags,
    Message,
    MsgFlags,
    ProtocolError,
    Region,
    RegionFlags,
    RegionInfo,
    Version,
    VfioCommand,
    frame,
)
from .protocol.constants import (
    DEFAULT_MAX_DATA_XFER,
    MAJOR_VERSION,
    MINOR_VERSION,
    NUM_IRQS,
    NUM_REGIONS,
    PAGE_SIZE,
)
from .protocol.messages import REGION_ACCESS
from .recorder import Recorder
from .transport import Channel

log = logging.getLogger(__name__)

MAX_MSG_FDS = 16
#: Room for a REGION_WRITE of the largest transfer plus headers.
MAX_MESSAGE_SIZE = DEFAULT_MAX_DATA_XFER + 4 * PAGE_SIZE
_IRQ_TYPE_INDEX = {
    IrqType.INTX: IrqIndex.INTX,
    IrqType.MSI: IrqIndex.MSI,
    IrqType.MSIX: IrqIndex.MSIX,
}
_EVENTFD_TICK = (1).to_bytes(8, "little")

Handler = Callable[[Message], tuple[bytes, list[int]] | bytes | None]


class Session:
    """Serve ``model`` to one connected client until it disconnects."""

    def __init__(
        self,
        model: DeviceModel,
        channel: Channel,
        recorder: Recorder,
        reply_timeout: float = 10.0,
        wakeup_fd: int = -1,
        poll_max_us: float = DEFAULT_POLL_MAX_US,
    ) -> None:
        self.model = model
        self.channel = channel
        self.recorder = recorder
        self.reply_timeout = reply_timeout
        self.wakeup_fd = wakeup_fd
        self.poll_budget = PollBudget(poll_max_us)
        self.negotiated = False
        self.max_data_xfer = DEFAULT_MAX_DATA_XFER
        self.dma = DmaSpace(MessageDma(self._message_dma_read, self._message_dma_write))
        self.eventfds: dict[tuple[int, int], int] = {}
        self.intx_masked = False
        self._deferred: collections.deque[Callable[[], None]] = collections.deque()
        self._draining = False
        self._in_burst = False
        # (irq index, vector) raised during the current burst, in order; see signal_irq.
        self._pending_irqs: dict[tuple[int, int], None] = {}
        self._next_id = 0
        self._handlers: dict[int, Handler] = {
            VfioCommand.VERSION: self._version,
            VfioCommand.DMA_MAP: self._dma_map,
            VfioCommand.DMA_UNMAP: self._dma_unmap,
            VfioCommand.DEVICE_GET_INFO: self._device_info,
            VfioCommand.DEVICE_GET_REGION_INFO: self._region_info,
            VfioCommand.DEVICE_GET_IRQ_INFO: self._irq_info,
            VfioCommand.DEVICE_SET_IRQS: self._set_irqs,
            VfioCommand.REGION_READ: self._region_read,
            VfioCommand.REGION_WRITE: self._region_write,
            VfioCommand.DEVICE_RESET: self._device_reset,
        }
        self._region_sizes = [0] * NUM_REGIONS
        for index, handler in model.bar_handlers.items():
            self._region_sizes[index] = handler.size
        self._region_sizes[Region.CONFIG] = model.config.size
        self._bars = model.bar_handlers
        if model.records_accesses:
            model.use_recorder(recorder)
            self._record_config = functools.partial(model.record_config, recorder)
            self._record_mmio = functools.partial(model.record_mmio, recorder)
        else:
            self._record_config = recorder.config
            self._record_mmio = recorder.mmio
        model.attach(self)

    # --- main loop -----------------------------------------------------------

    def run(self) -> None:
        """Serve requests until the peer closes, sends garbage, or the wakeup fd fires.

        Raises :class:`~vfio_bridge.transport.PeerClosed` or
        :class:`ProtocolError`; the caller closes the channel.
        """
        channel = self.channel
        fill = channel.fill
        next_message = channel.next_message
        clock = time.perf_counter
        budget = self.poll_budget
        while True:
            ready = False
            if budget.budget:
                until = clock() + budget.budget
                while not (ready := fill(False)) and clock() < until:
                    os.sched_yield()
            if not ready:
                started = clock()
                if not self._wait_readable(None):
                    return
                fill()
                budget.blocked(clock() - started)
            # Handlers that wait for a reply take messages from the same backlog,
            # so what arrived behind this one is served in order either way.
            self._in_burst = True
            try:
                while (message := next_message()) is not None:
                    self.dispatch(message)
                    self._drain_deferred()
            finally:
                self._in_burst = False
            if self._pending_irqs:
                self._signal_pending_irqs()
            self.recorder.flush()

    def _wait_readable(self, timeout: float | None) -> bool:
        if self.channel.has_backlog:
            return True
        watch = [self.channel.fileno()]
        if self.wakeup_fd >= 0:
            watch.append(self.wakeup_fd)
        readable, _, _ = select.select(watch, [], [], timeout)
        if self.wakeup_fd >= 0 and self.wakeup_fd in readable:
            return False
        return bool(readable)

    def dispatch(self, message: Message) -> None:
        """Handle one request and send its reply (unless NO_REPLY was asked)."""
        header = message.header
        if header.is_reply:
            message.close_fds()
            log.warning(
                "unexpected reply id %d to command %d; dropped", header.msg_id, header.command
            )
            return
        reply_fds: list[int] = []
        try:
            handler = self._handlers.get(header.command)
            if handler is None:
                raise ProtocolError(f"command {header.command} not supported", errno.ENOSYS)
            if not self.negotiated and header.command != VfioCommand.VERSION:
                raise ProtocolError("VERSION must be negotiated first", errno.EINVAL)
            result = handler(message)
            if isinstance(result, tuple):
                body, reply_fds = result
            else:
                body = result or b""
        except ProtocolError as exc:
            log.warning("command %d id %d refused: %s", header.command, header.msg_id, exc)
            self.recorder.device_error("refused", f"command {header.command}: {exc}")
            self._send(
                frame(
                    header.msg_id, header.command, b"", MsgFlags.REPLY | MsgFlags.ERROR, exc.errno
                )
            )
            return
        finally:
            message.close_fds()
        if not header.no_reply:
            self._send(frame(header.msg_id, header.command, body, MsgFlags.REPLY), reply_fds)

    def _send(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        # PCIe ordering: a completion never passes the device's earlier posted
        # writes, MSIs included, so interrupts held back go out first.
        if self._pending_irqs:
            self._signal_pending_irqs()
        self.channel.send(data, fds)

    def _signal_pending_irqs(self) -> None:
        for index, vector in self._pending_irqs:
            self._fire(index, vector)
        self._pending_irqs.clear()

    # --- negotiation and device info -----------------------------------------

    def _version(self, message: Message) -> bytes:
        request = Version.unpack(message.body)
        if request.major != MAJOR_VERSION:
            raise ProtocolError(
                f"protocol major version {request.major} unsupported", errno.ENOTSUP
            )
        caps = request.capabilities.get("capabilities", {})
        if not isinstance(caps, dict):
            raise ProtocolError("capabilities member is not an object")
        client_xfer = caps.get("max_data_xfer_size", DEFAULT_MAX_DATA_XFER)
        if not isinstance(client_xfer, int) or client_xfer <= 0:
            raise ProtocolError("max_data_xfer_size is not a positive integer")
        self.max_data_xfer = min(client_xfer, DEFAULT_MAX_DATA_XFER)
        self.negotiated = True
        reply = Version(
            MAJOR_VERSION,
            min(request.minor, MINOR_VERSION),
            {
                "capabilities": {
                    "max_msg_fds": MAX_MSG_FDS,
                    "max_data_xfer_size": self.max_data_xfer,
                    "pgsizes": PAGE_SIZE,
                    "max_dma_maps": self.dma.max_mappings,
                }
            },
        )
        return reply.pack()

    def _device_info(self, message: Message) -> bytes:
        request = DeviceInfo.unpack(message.body)
        if request.argsz < DeviceInfo._STRUCT.size:
            raise ProtocolError(f"DEVICE_GET_INFO argsz {request.argsz} too small")
        flags = DeviceFlags.PCI | DeviceFlags.RESET
        return DeviceInfo(DeviceInfo._STRUCT.size, flags, NUM_REGIONS, NUM_IRQS).pack()

    def _region_info(self, message: Message) -> bytes:
        request = RegionInfo.unpack(message.body)
        if request.argsz < RegionInfo.FIXED_SIZE:
            raise ProtocolError(f"REGION_INFO argsz {request.argsz} too small")
        if not 0 <= request.index < NUM_REGIONS:
            raise ProtocolError(f"region index {request.index} does not exist")
        size = self._region_sizes[request.index]
        # Regions are never mmappable: every access must reach the recorder.
        flags = RegionFlags.READ | RegionFlags.WRITE if size else 0
        return RegionInfo(RegionInfo.FIXED_SIZE, flags, request.index, 0, size, 0).pack()

    def _irq_info(self, message: Message) -> bytes:
        request = IrqInfo.unpack(message.body)
        if request.argsz < IrqInfo._STRUCT.size:
            raise ProtocolError(f"IRQ_INFO argsz {request.argsz} too small")
        if not 0 <= request.index < NUM_IRQS:
            raise ProtocolError(f"IRQ index {request.index} does not exist")
        count, flags = self._irq_shape(request.index)
        return IrqInfo(IrqInfo._STRUCT.size, flags, request.index, count).pack()

    def _irq_shape(self, index: int) -> tuple[int, int]:
        if index == IrqIndex.INTX:
            flags = IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.AUTOMASKED
            return (1 if self.model.intx else 0), int(flags)
        if index == IrqIndex.MSI:
            return self.model.msi_vectors, int(IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE)
        if index == IrqIndex.MSIX:
            return self.model.msix_vectors, int(IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE)
        return 1, int(IrqInfoFlags.EVENTFD)

    # --- interrupts ---------------------------------------------------------------

    def _set_irqs(self, message: Message) -> bytes:
        request = IrqSet.unpack(message.body)
        if not 0 <= request.index < NUM_IRQS:
            raise ProtocolError(f"IRQ index {request.index} does not exist")
        data_type = request.flags & IrqSetFlags.DATA_MASK
        action = request.flags & IrqSetFlags.ACTION_MASK_ALL
        if data_type not in (
            IrqSetFlags.DATA_NONE,
            IrqSetFlags.DATA_BOOL,
            IrqSetFlags.DATA_EVENTFD,
        ):
            raise ProtocolError(f"SET_IRQS flags {request.flags:#x}: not exactly one data type")
        if action not in (
            IrqSetFlags.ACTION_MASK,
            IrqSetFlags.ACTION_UNMASK,
            IrqSetFlags.ACTION_TRIGGER,
        ):
            raise ProtocolError(f"SET_IRQS flags {request.flags:#x}: not exactly one action")
        count, _ = self._irq_shape(request.index)
        if request.count == 0:
            if data_type == IrqSetFlags.DATA_NONE and action == IrqSetFlags.ACTION_TRIGGER:
                self._drop_eventfds(request.index, 0, count)
                return b""
            raise ProtocolError("SET_IRQS with count 0 is only valid to disable an index")
        if request.start + request.count > count:
            raise ProtocolError(
                f"SET_IRQS vectors {request.start}+{request.count} beyond the {count} of "
                f"index {request.index}"
            )
        if data_type == IrqSetFlags.DATA_EVENTFD:
            if action != IrqSetFlags.ACTION_TRIGGER:
                # Resample/unmask eventfds only matter with KVM irqfds; accept and drop.
                message.close_fds()
                return b""
            self._assign_eventfds(request, message)
            return b""
        if message.fds:
            raise ProtocolError("SET_IRQS passed descriptors without DATA_EVENTFD")
        chosen = list(range(request.start, request.start + request.count))
        if data_type == IrqSetFlags.DATA_BOOL:
            if len(request.data) < request.count:
                raise ProtocolError("SET_IRQS DATA_BOOL is shorter than count")
            chosen = [vector for i, vector in enumerate(chosen) if request.data[i]]
        if request.index == IrqIndex.INTX and action != IrqSetFlags.ACTION_TRIGGER:
            self.intx_masked = action == IrqSetFlags.ACTION_MASK
            if not self.intx_masked and self.model.intx_level:
                # Level-triggered: still asserted after the unmask, so signal again.
                self._fire(IrqIndex.INTX, 0)
            return b""
        if action == IrqSetFlags.ACTION_TRIGGER:
            for vector in chosen:
                self._fire(request.index, vector)
        return b""

    def _assign_eventfds(self, request: IrqSet, message: Message) -> None:
        fds = list(message.fds)
        if fds and len(fds) != request.count:
            raise ProtocolError(
                f"SET_IRQS announced {request.count} eventfds but passed {len(fds)}"
            )
        for fd in fds:
            try:
                os.fstat(fd)
            except OSError:
                raise ProtocolError("SET_IRQS passed an invalid descriptor", errno.EBADF) from None
        message.fds.clear()  # ownership moves to the session
        for i in range(request.count):
            key = (request.index, request.start + i)
            old = self.eventfds.pop(key, None)
            if old is not None:
                os.close(old)
            if fds:
                self.eventfds[key] = fds[i]

    def _drop_eventfds(self, index: int, start: int, count: int) -> None:
        for vector in range(start, start + count):
            fd = self.eventfds.pop((index, vector), None)
            if fd is not None:
                os.close(fd)

    def _fire(self, index: int, vector: int) -> bool:
        fd = self.eventfds.get((index, vector))
        if fd is None:
            return False
        if index == IrqIndex.INTX and self.intx_masked:
            return False
        try:
            os.write(fd, _EVENTFD_TICK)
        except OSError as exc:
            log.warning("eventfd for IRQ %d vector %d: %s", index, vector, exc)
            return False
        return True

    def signal_irq(self, irq_type: IrqType, vector: int, stream: str | None = None) -> bool:
        index = _IRQ_TYPE_INDEX[irq_type]
        if self._in_burst and index != IrqIndex.INTX:
            # Message interrupts raised while serving a burst are signalled when
            # it is served or before the next reply, whichever comes first, so
            # doorbells that arrive together cost the guest one interrupt, as
            # QEMU's own devices post completions from a bottom half. The log
            # still records each interrupt the model raised.
            self._pending_irqs[(index, vector)] = None
            delivered = (index, vector) in self.eventfds
        else:
            delivered = self._fire(index, vector)
        self.recorder.irq(irq_type, vector, stream)
        if index == IrqIndex.INTX and delivered:
            # VFIO INTx is automasked until the guest's EOI unmasks it.
            self.intx_masked = True
        return delivered

    # --- regions -----------------------------------------------------------------

    def _check_region(self, region: int, offset: int, count: int) -> None:
        if not 0 <= region < NUM_REGIONS:
            raise ProtocolError(f"region {region} does not exist")
        if count > self.max_data_xfer:
            raise ProtocolError(f"access of {count} bytes exceeds the transfer limit", errno.E2BIG)
        size = self._region_sizes[region]
        if count == 0 or offset + count > size:
            raise ProtocolError(
                f"access {offset:#x}+{count} outside region {region} of {size:#x} bytes",
                errno.EFAULT,
            )

    def _region_read(self, message: Message) -> bytes:
        body = message.body
        if len(body) < REGION_ACCESS.size:
            raise ProtocolError("REGION_READ body too short")
        offset, region, count = REGION_ACCESS.unpack_from(body)
        self._check_region(region, offset, count)
        if region == Region.CONFIG:
            data = self.model.config.read(offset, count)
            self._record_config(False, offset, count, data)
        else:
            data = self._bar_read(region, offset, count)
        return body[: REGION_ACCESS.size] + data

    def _bar_read(self, bar: int, offset: int, count: int) -> bytes:
        handler = self._bars[bar]
        record = self._record_mmio
        if count in (1, 2, 4, 8) and not offset % count:
            value = handler.read(offset, count)
            record(False, bar, offset, count, value)
            return value.to_bytes(count, "little")
        out = bytearray()
        for pos, size in _split(offset, count):
            value = handler.read(pos, size)
            record(False, bar, pos, size, value)
            out += value.to_bytes(size, "little")
        return bytes(out)

    def _region_write(self, message: Message) -> bytes:
        body = message.body
        if len(body) < REGION_ACCESS.size:
            raise ProtocolError("REGION_WRITE body too short")
        offset, region, count = REGION_ACCESS.unpack_from(body)
        if len(body) - REGION_ACCESS.size != count:
            raise ProtocolError(
                f"REGION_WRITE announces {count} bytes but carries {len(body) - REGION_ACCESS.size}"
            )
        self._check_region(region, offset, count)
        data = body[REGION_ACCESS.size :]
        if region == Region.CONFIG:
            self._record_config(True, offset, count, data)
            self.model.config.write(offset, data)
        else:
            handler = self._bars[region]
            record = self._record_mmio
            if count in (1, 2, 4, 8) and not offset % count:
                value = int.from_bytes(data, "little")
                record(True, region, offset, count, value)
                handler.write(offset, count, value)
            else:
                for pos, size in _split(offset, count):
                    rel = pos - offset
                    value = int.from_bytes(data[rel : rel + size], "little")
                    record(True, region, pos, size, value)
                    handler.write(pos, size, value)
        return body[: REGION_ACCESS.size]

    def _device_reset(self, message: Message) -> bytes:
        self.recorder.event("reset", reason="vfio")
        self.model.reset()
        self.intx_masked = False
        self._deferred.clear()
        return b""

    # --- DMA -------------------------------------------------------------------------

    def _dma_map(self, message: Message) -> bytes:
        request = DmaMap.unpack(message.body)
        if len(message.fds) > 1:
            raise ProtocolError("DMA_MAP passed more than one descriptor")
        if request.flags & ~(DmaMapFlags.READ | DmaMapFlags.WRITE):
            raise ProtocolError(f"DMA_MAP flags {request.flags:#x} unknown")
        fd = message.fds.pop() if message.fds else -1
        try:
            self.dma.add(
                request.iova,
                request.size,
                bool(request.flags & DmaMapFlags.WRITE),
                fd,
                request.offset,
            )
        except DmaError as exc:
            raise ProtocolError(f"DMA_MAP: {exc}") from None
        self.recorder.event(
            "dma_map", addr=request.iova, len=request.size, flags=request.flags, shared=fd >= 0
        )
        return b""

    def _dma_unmap(self, message: Message) -> bytes:
        request = DmaUnmap.unpack(message.body)
        if request.flags & DmaUnmapFlags.GET_DIRTY_BITMAP:
            raise ProtocolError("dirty page tracking is not supported", errno.ENOTSUP)
        if request.flags & DmaUnmapFlags.ALL:
            self.dma.clear()
        else:
            self.dma.remove(request.iova, request.size)
        self.recorder.event("dma_unmap", addr=request.iova, len=request.size, flags=request.flags)
        return message.body[: DmaUnmap._STRUCT.size]

    def dma_read(self, addr: int, length: int, tag: str | None = None) -> bytes:
        data = self.dma.read(addr, length)
        self.recorder.dma(False, addr, data, tag)
        return data

    def dma_write(self, addr: int, data: bytes, tag: str | None = None) -> None:
        self.dma.write(addr, data)
        self.recorder.dma(True, addr, data, tag)

    def dma_gather(self, segments: Sequence[tuple[int, int]], block: int = 0) -> bytes:
        data = b"".join(self.dma.read(addr, length) for addr, length in segments)
        if segments:
            self.recorder.dma(False, segments[0][0], data, None, block)
        return data

    def dma_scatter(self, segments: Sequence[tuple[int, int]], data: bytes, block: int = 0) -> None:
        pos = 0
        for addr, length in segments:
            self.dma.write(addr, data[pos : pos + length])
            pos += length
        if segments:
            self.recorder.dma(True, segments[0][0], data, None, block)

    def _message_dma_read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        for pos in range(0, length, self.max_data_xfer):
            count = min(self.max_data_xfer, length - pos)
            reply = self._request(VfioCommand.DMA_READ, DmaAccess(addr + pos, count).pack())
            access = DmaAccess.unpack(reply.body, with_data=True)
            if access.count != count:
                raise DmaError(f"DMA_READ reply holds {access.count} bytes, asked {count}")
            out += access.data
        return bytes(out)

    def _message_dma_write(self, addr: int, data: bytes) -> None:
        for pos in range(0, len(data), self.max_data_xfer):
            chunk = data[pos : pos + self.max_data_xfer]
            self._request(VfioCommand.DMA_WRITE, DmaAccess(addr + pos, len(chunk), chunk).pack())

    def _request(self, command: VfioCommand, body: bytes) -> Message:
        """Send a request to the client and wait for its reply, serving its requests meanwhile."""
        msg_id = self._next_id
        self._next_id = (msg_id + 1) & 0xFFFF
        self._send(frame(msg_id, command, body))
        deadline = time.monotonic() + self.reply_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._wait_readable(remaining):
                raise DmaError(f"no reply to {command.name} within {self.reply_timeout} s")
            if not self.channel.fill():
                continue  # only part of a message so far
            message = self.channel.receive()
            header: Header = message.header
            if header.is_reply and header.msg_id == msg_id:
                message.close_fds()
                if header.is_error:
                    raise DmaError(f"{command.name} failed: {os.strerror(header.error)}")
                return message
            self.dispatch(message)

    # --- deferred device work --------------------------------------------------------

    def defer(self, work: Callable[[], None]) -> None:
        self._deferred.append(work)

    def report_error(self, code: str, detail: str) -> None:
        self.recorder.device_error(code, detail)

    def _drain_deferred(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._deferred:
                work = self._deferred.popleft()
                try:
                    work()
                except DmaError as exc:
                    self.model.device_error("dma_fault", f"device work failed: {exc}")
        finally:
            self._draining = False

    # --- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Release mappings and eventfds; the model stays usable for the next client."""
        self.recorder.flush()
        self.dma.clear()
        close_quietly(self.eventfds.values())
        self.eventfds.clear()
        self._deferred.clear()
        self._pending_irqs.clear()  # the client that would take them is gone


def _split(offset: int, count: int) -> list[tuple[int, int]]:
    """Cut an access into naturally aligned pieces of at most 8 bytes."""
    pieces = []
    pos, end = offset, offset + count
    while pos < end:
        size = 8
        while size > 1 and (pos % size or pos + size > end):
            size //= 2
        pieces.append((pos, size))
        pos += size
    return pieces


__all__ = ["MAX_MESSAGE_SIZE", "MAX_MSG_FDS", "Session"]
