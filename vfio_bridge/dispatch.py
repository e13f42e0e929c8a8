"""The server's side of the protocol, sans I/O: a request in, the reply to send out.

:class:`Dispatcher` is fed one :class:`~vfio_bridge.protocol.Message` at a time
and returns the framed reply and the descriptors to pass with it, or None when
nothing is to be sent. It never touches a socket; what a request does to the
device goes through the model, the :class:`~vfio_bridge.interrupts.Interrupts`
table and the :class:`~vfio_bridge.hostbus.HostBus`. Region accesses, the
requests of every MMIO, have a second way in that skips the
:class:`~vfio_bridge.protocol.Message`: :meth:`Dispatcher.region_access`, fed by
:func:`~vfio_bridge.protocol.access_request`, with the same checks and answers.

Rules:

1. VERSION comes first; any other request before it is refused (EINVAL).
2. A refused request gets an error reply carrying the errno of the
   :class:`ProtocolError`, is logged as a ``device_error`` event, and the
   connection stays up. Errnos follow libvfio-user where the specification
   names none: EINVAL for an access outside a region and for the migration
   commands (we do not support migration), ENOSYS for unknown commands.
3. A request with NO_REPLY gets no reply, whether it succeeds or fails
   (QEMU posts BAR writes that way and reports any reply as unexpected).
4. Each side's ``max_data_xfer_size`` bounds what the *other* side sends:
   region accesses from the client are held to ours (:attr:`max_data_xfer`,
   at most :data:`MAX_DATA_XFER`, advertised in the VERSION reply), our
   DMA_READ/DMA_WRITE requests to the client's (:attr:`client_max_data_xfer`).
5. Replies the client sends unasked are dropped with a warning.
6. Descriptors that came with a request are closed once it is handled,
   except those a handler took ownership of (DMA_MAP's, SET_IRQS' eventfds).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from .device import DeviceModel, DmaError
from .hostbus import HostBus
from .interrupts import Interrupts
from .protocol import (
    DeviceFlags,
    DeviceInfo,
    DmaMap,
    DmaMapFlags,
    DmaUnmap,
    DmaUnmapFlags,
    IrqInfo,
    IrqSet,
    Message,
    MsgFlags,
    ProtocolError,
    RegionAccess,
    RegionFlags,
    RegionInfo,
    Version,
    VfioCommand,
    access_reply,
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
from .recorder import Recorder
from .regions import Regions

log = logging.getLogger(__name__)

MAX_MSG_FDS = 16
#: The largest region access a server may accept (its message size limit follows).
MAX_DATA_XFER = DEFAULT_MAX_DATA_XFER
#: Room for a REGION_WRITE of the largest transfer plus headers.
MAX_MESSAGE_SIZE = MAX_DATA_XFER + 4 * PAGE_SIZE

#: A framed reply and the descriptors to pass with it.
Reply = tuple[bytes, list[int]]
_Handler = Callable[[Message], Reply | bytes]
_REPLY = int(MsgFlags.REPLY)
_ERROR_REPLY = int(MsgFlags.REPLY | MsgFlags.ERROR)
_ACCESS_SIZE = RegionAccess.FIXED_SIZE
_REGION_READ = int(VfioCommand.REGION_READ)
_access_fields = RegionAccess.fields


def checked_max_data_xfer(value: int) -> int:
    """``value`` as a transfer limit we may advertise; ValueError unless it is in
    1..:data:`MAX_DATA_XFER`."""
    if not 0 < value <= MAX_DATA_XFER:
        raise ValueError(f"max_data_xfer {value} is not in 1..{MAX_DATA_XFER}")
    return value


class Dispatcher:
    """Answers the requests of one client for ``model``.

    ``max_data_xfer`` is the largest region access accepted (and advertised as
    ``max_data_xfer_size``), whatever the client accepts; ValueError unless it is
    between 1 and :data:`MAX_DATA_XFER`, which the framing's message limit is sized for.
    """

    def __init__(
        self,
        model: DeviceModel,
        recorder: Recorder,
        bus: HostBus,
        interrupts: Interrupts,
        max_data_xfer: int = MAX_DATA_XFER,
    ) -> None:
        self.max_data_xfer = checked_max_data_xfer(max_data_xfer)
        self.model = model
        self.recorder = recorder
        self.bus = bus
        self.interrupts = interrupts
        self.regions = Regions(model, recorder, max_data_xfer)
        self._plans = self.regions.plans
        self.negotiated = False
        #: Largest data transfer the client accepts in one of our DMA requests (rule 4).
        self.client_max_data_xfer = DEFAULT_MAX_DATA_XFER
        self._handlers: dict[int, _Handler] = {
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
            VfioCommand.DIRTY_PAGES: _no_migration,
            VfioCommand.DEVICE_FEATURE: _no_migration,
            VfioCommand.MIG_DATA_READ: _no_migration,
            VfioCommand.MIG_DATA_WRITE: _no_migration,
        }

    def handle(self, message: Message) -> Reply | None:
        """Serve one message; the reply to send, or None when there is none to send."""
        header = message.header
        if header.is_reply:
            message.close_fds()
            log.warning(
                "unexpected reply id %d to command %d; dropped", header.msg_id, header.command
            )
            return None
        try:
            handler = self._handlers.get(header.command)
            if handler is None:
                raise ProtocolError(f"command {header.command} not supported", errno.ENOSYS)
            if not self.negotiated and header.command != VfioCommand.VERSION:
                raise ProtocolError("VERSION must be negotiated first", errno.EINVAL)
            result = handler(message)
        except ProtocolError as exc:
            refusal = self._refuse(header.msg_id, header.command, header.no_reply, exc)
            return None if refusal is None else (refusal, [])
        finally:
            message.close_fds()
        if header.no_reply:
            return None
        if isinstance(result, tuple):
            body, fds = result
            return frame(header.msg_id, header.command, body, _REPLY), fds
        return frame(header.msg_id, header.command, result, _REPLY), []

    def region_access(
        self,
        msg_id: int,
        command: int,
        flags: int,
        offset: int,
        region: int,
        count: int,
        data: bytes,
    ) -> bytes | None:
        """:meth:`handle` for a REGION_READ or REGION_WRITE request parsed by
        :func:`~vfio_bridge.protocol.access_request` (flags 0 or NO_REPLY, nothing
        else): the framed reply, or None when there is none to send.

        The hot path of every MMIO, answering exactly as :meth:`handle` would, through
        the same plans (:attr:`Regions.plans <vfio_bridge.regions.Regions.plans>`:
        their checks, refusals and records).
        """
        try:
            if not self.negotiated:
                raise ProtocolError("VERSION must be negotiated first", errno.EINVAL)
            if command == _REGION_READ:
                out = self._plans[region, offset, count].read()
            else:
                self._plans[region, offset, count].write(data)
                out = b""
        except ProtocolError as exc:
            return self._refuse(msg_id, command, flags, exc)
        if flags:  # NO_REPLY, the only flag access_request lets through
            return None
        return access_reply(msg_id, command, offset, region, count, out)

    def _refuse(
        self, msg_id: int, command: int, no_reply: object, exc: ProtocolError
    ) -> bytes | None:
        """Rule 2: log and record a refused request; its error reply unless NO_REPLY."""
        log.warning("command %d id %d refused: %s", command, msg_id, exc)
        self.recorder.device_error("refused", f"command {command}: {exc}")
        if no_reply:
            return None
        return frame(msg_id, command, b"", _ERROR_REPLY, exc.errno)

    # --- negotiation and device description ------------------------------------------

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
        if isinstance(client_xfer, bool) or not isinstance(client_xfer, int) or client_xfer <= 0:
            raise ProtocolError("max_data_xfer_size is not a positive integer")
        self.client_max_data_xfer = client_xfer
        self.negotiated = True
        reply = Version(
            MAJOR_VERSION,
            min(request.minor, MINOR_VERSION),
            {
                "capabilities": {
                    "max_msg_fds": MAX_MSG_FDS,
                    "max_data_xfer_size": self.max_data_xfer,
                    "pgsizes": PAGE_SIZE,
                    "max_dma_maps": self.bus.dma.max_mappings,
                }
            },
        )
        return reply.pack()

    def _device_info(self, message: Message) -> bytes:
        request = DeviceInfo.unpack(message.body)
        if request.argsz < DeviceInfo.FIXED_SIZE:
            raise ProtocolError(f"DEVICE_GET_INFO argsz {request.argsz} too small")
        flags = DeviceFlags.PCI | DeviceFlags.RESET
        return DeviceInfo(DeviceInfo.FIXED_SIZE, flags, NUM_REGIONS, NUM_IRQS).pack()

    def _region_info(self, message: Message) -> bytes:
        request = RegionInfo.unpack(message.body)
        fixed = RegionInfo.FIXED_SIZE
        _check_query("REGION_INFO", request.argsz, fixed, request.index, NUM_REGIONS)
        size = self.regions.sizes[request.index]
        # Regions are never mmappable: every access must reach the recorder.
        flags = RegionFlags.READ | RegionFlags.WRITE if size else 0
        return RegionInfo(RegionInfo.FIXED_SIZE, flags, request.index, 0, size, 0).pack()

    def _irq_info(self, message: Message) -> bytes:
        request = IrqInfo.unpack(message.body)
        _check_query("IRQ_INFO", request.argsz, IrqInfo.FIXED_SIZE, request.index, NUM_IRQS)
        count, flags = self.interrupts.shape(request.index)
        return IrqInfo(IrqInfo.FIXED_SIZE, flags, request.index, count).pack()

    def _set_irqs(self, message: Message) -> bytes:
        self.interrupts.set_irqs(IrqSet.unpack(message.body), message.fds)
        return b""

    # --- region accesses in general (the hot path is region_access, above) ------------

    def _region_read(self, message: Message) -> bytes:
        body = message.body
        offset, region, count = _access_fields(body)
        return body[:_ACCESS_SIZE] + self._plans[region, offset, count].read()

    def _region_write(self, message: Message) -> bytes:
        body = message.body
        offset, region, count = _access_fields(body)
        self._plans[region, offset, count].write(body[_ACCESS_SIZE:])
        return body[:_ACCESS_SIZE]

    def _device_reset(self, message: Message) -> bytes:
        self.recorder.event("reset", reason="vfio")
        self.model.reset()
        self.interrupts.reset()
        self.bus.reset()
        return b""

    # --- DMA mappings ---------------------------------------------------------------------

    def _dma_map(self, message: Message) -> bytes:
        request = DmaMap.unpack(message.body)
        if len(message.fds) > 1:
            raise ProtocolError("DMA_MAP passed more than one descriptor")
        if request.flags & ~(DmaMapFlags.READ | DmaMapFlags.WRITE):
            raise ProtocolError(f"DMA_MAP flags {request.flags:#x} unknown")
        fd = message.fds.pop() if message.fds else -1
        try:
            self.bus.map(
                request.iova,
                request.size,
                request.flags,
                bool(request.flags & DmaMapFlags.WRITE),
                fd,
                request.offset,
            )
        except DmaError as exc:
            raise ProtocolError(f"DMA_MAP: {exc}") from None
        return b""

    def _dma_unmap(self, message: Message) -> bytes:
        request = DmaUnmap.unpack(message.body)
        if request.flags & DmaUnmapFlags.GET_DIRTY_BITMAP:
            raise ProtocolError("dirty page tracking is not supported", errno.ENOTSUP)
        everything = bool(request.flags & DmaUnmapFlags.ALL)
        self.bus.unmap(request.iova, request.size, request.flags, everything)
        return message.body[: DmaUnmap.FIXED_SIZE]


def _check_query(what: str, argsz: int, fixed: int, index: int, count: int) -> None:
    """Refuse an info query whose reply would not fit or whose index does not exist."""
    if argsz < fixed:
        raise ProtocolError(f"{what} argsz {argsz} too small")
    if not 0 <= index < count:
        raise ProtocolError(f"{what} index {index} does not exist")


def _no_migration(message: Message) -> bytes:
    raise ProtocolError("migration is not supported", errno.EINVAL)
