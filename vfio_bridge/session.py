"""One vfio-user connection serving one device model: the loop at the I/O edge.

The protocol is answered by the sans-I/O :class:`~vfio_bridge.dispatch.Dispatcher`;
interrupts are kept by :class:`~vfio_bridge.interrupts.Interrupts`; the model's
bus is a :class:`~vfio_bridge.hostbus.HostBus`. What stays here is what waits:
polling and blocking on the :class:`~vfio_bridge.transport.Channel`, sending,
and the server's own requests (DMA_READ/DMA_WRITE) whose replies it waits for.

Ordering rules, each with a test in ``tests/test_server.py``:

1. Requests are served in the order they arrived, one at a time, each
   followed by the device work it deferred (after its reply, because that
   work may need the client to answer our DMA_READ/DMA_WRITE).
2. One receive may bring several requests; they wait in the channel's
   backlog. A DMA request that waits for its reply takes messages from the
   same backlog and serves the client's requests among them meanwhile, so
   what arrived behind the request being served keeps its place.
3. Interrupts held during a burst are signalled before any message goes to
   the client and when the burst is served (see ``interrupts``).
4. The log is flushed once per burst, before the loop waits again.

A region access that arrives alone, the common case of MMIO, is taken from the
channel already parsed (:meth:`~vfio_bridge.transport.Channel.take_access`) and
answered by :meth:`~vfio_bridge.dispatch.Dispatcher.region_access`; the rules
hold for it as for every other request.
"""

from __future__ import annotations

import logging
import os
import select
import time

from .device import DeviceModel, DmaError
from .dispatch import MAX_DATA_XFER, MAX_MESSAGE_SIZE, MAX_MSG_FDS, Dispatcher
from .dma import MessageDma
from .hostbus import HostBus
from .interrupts import Interrupts
from .polling import DEFAULT_POLL_MAX_US, PollBudget
from .protocol import DmaAccess, Message, VfioCommand, frame
from .recorder import Recorder
from .transport import Channel

log = logging.getLogger(__name__)


class Session:
    """Serve ``model`` to the client on ``channel`` until it disconnects.

    ``max_data_xfer`` bounds the client's region accesses (see
    :class:`~vfio_bridge.dispatch.Dispatcher`).
    """

    def __init__(
        self,
        model: DeviceModel,
        channel: Channel,
        recorder: Recorder,
        reply_timeout: float = 10.0,
        wakeup_fd: int = -1,
        poll_max_us: float = DEFAULT_POLL_MAX_US,
        max_data_xfer: int = MAX_DATA_XFER,
    ) -> None:
        self.model = model
        self.channel = channel
        self.recorder = recorder
        self.reply_timeout = reply_timeout
        self.wakeup_fd = wakeup_fd
        self.poll_budget = PollBudget(poll_max_us)
        self.interrupts = Interrupts(model)
        by_message = MessageDma(self._message_dma_read, self._message_dma_write)
        self.bus = HostBus(model, recorder, self.interrupts, by_message)
        self.dispatcher = Dispatcher(
            model, recorder, self.bus, self.interrupts, max_data_xfer=max_data_xfer
        )
        self._handle = self.dispatcher.handle
        # For waiting on a reply to our own request (with the wakeup fd, so that a
        # stop is not held up by a client that does not answer). Registered once:
        # select() would build its descriptor sets on every wait.
        self._poller = select.poll()
        self._poller.register(channel.fileno(), select.POLLIN)
        if wakeup_fd >= 0:
            self._poller.register(wakeup_fd, select.POLLIN)
        self._next_id = 0
        model.attach(self.bus)

    # --- the loop ----------------------------------------------------------------

    def run(self) -> None:
        """Serve requests until the peer closes or sends garbage.

        Between bursts it waits in the channel's blocking receive (one system
        call per request, not a poll and then a receive; after a burst that
        wanted no reply, without polling, one ``sched_yield()`` and a receive
        that does not wait come first), so the way to end it
        from outside is to shut the socket down for reading, as
        :meth:`VfioUserServer.stop() <vfio_bridge.server.VfioUserServer.stop>`
        does; the receive then sees the end of the stream. Raises
        :class:`~vfio_bridge.transport.PeerClosed` or
        :class:`~vfio_bridge.protocol.ProtocolError`; the caller closes the channel.
        """
        # Everything the loop calls per request is bound once, here.
        channel = self.channel
        take_access = channel.take_access
        next_message = channel.next_message
        clock = time.perf_counter
        budget = self.poll_budget
        interrupts = self.interrupts
        dispatch = self.dispatch
        region_access = self.dispatcher.region_access
        send = self._send  # held interrupts first (rule 3), then the reply
        # What the loop checks per burst before calling (most bursts leave them empty).
        backlog = channel.backlog
        held_interrupts = interrupts.pending
        deferred = self.bus.deferred
        run_deferred, deferred_work = deferred.run, deferred.waiting
        flush_log, unlogged = self.recorder.flush, self.recorder.unwritten
        polls = budget.limit > 0  # without polling, no clock to read around the wait
        yield_cpu = os.sched_yield
        unanswered = False  # the last burst was one access that wanted no reply
        while True:
            # The hot path: a region access that arrived alone comes back parsed
            # (take_access); anything else waits in the channel's backlog.
            access = None
            polled = False  # polling took messages into the backlog
            if budget.budget:
                until = clock() + budget.budget
                while (
                    (access := take_access(False)) is None
                    and not (polled := bool(backlog))
                    and clock() < until
                ):
                    yield_cpu()
            elif unanswered and not polls:
                # A posted write, and no polling: the client went on without waiting
                # and may be sending more. Give it the CPU once and take what came
                # meanwhile before sleeping, rather than be woken for each.
                yield_cpu()
                access = take_access(False)
                polled = bool(backlog)
            if access is None and not polled:
                # (The backlog is empty here: the burst below drains it.)
                started = clock() if polls else 0.0
                access = take_access()
                if polls:
                    budget.blocked(clock() - started)
            # Rule 2: handlers that wait for a reply take messages from the same
            # backlog, so what arrived behind this one is served in order either way.
            interrupts.in_burst = True
            unanswered = False
            try:
                if access is not None:
                    reply = region_access(*access)
                    if reply is not None:
                        send(reply)
                    else:
                        unanswered = not backlog
                    if deferred_work:
                        run_deferred()
                if backlog:
                    while (message := next_message()) is not None:
                        dispatch(message)
                        run_deferred()
            finally:
                interrupts.in_burst = False
            if held_interrupts:
                interrupts.flush()
            if unlogged:
                flush_log()

    def _wait_readable(self, timeout: float | None) -> bool:
        if self.channel.backlog:
            return True
        events = self._poller.poll(None if timeout is None else timeout * 1000)
        for fd, _ in events:
            if fd == self.wakeup_fd:
                return False
        return bool(events)

    def dispatch(self, message: Message) -> None:
        """Handle one request and send its reply, if it has one."""
        reply = self._handle(message)
        if reply is not None:
            self._send(*reply)

    def run_deferred(self) -> None:
        """Run the device work the requests served so far deferred (rule 1)."""
        self.bus.deferred.run()

    def _send(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        # Rule 3: a completion never passes the device's earlier posted writes.
        if self.interrupts.pending:
            self.interrupts.flush()
        self.channel.send(data, fds)

    # --- the server's requests: DMA to memory the client did not share -------------

    def _message_dma_read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        limit = self.dispatcher.client_max_data_xfer
        for pos in range(0, length, limit):
            count = min(limit, length - pos)
            reply = self._request(VfioCommand.DMA_READ, DmaAccess(addr + pos, count).pack())
            access = DmaAccess.unpack(reply.body, with_data=True)
            if access.count != count:
                raise DmaError(f"DMA_READ reply holds {access.count} bytes, asked {count}")
            out += access.data
        return bytes(out)

    def _message_dma_write(self, addr: int, data: bytes) -> None:
        limit = self.dispatcher.client_max_data_xfer
        for pos in range(0, len(data), limit):
            chunk = data[pos : pos + limit]
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
            message = self.channel.next_message()
            if message is None:
                continue
            header = message.header
            if header.is_reply and header.msg_id == msg_id:
                message.close_fds()
                if header.is_error:
                    raise DmaError(f"{command.name} failed: {os.strerror(header.error)}")
                return message
            self.dispatch(message)

    # --- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Release mappings and eventfds; the model stays usable for the next client."""
        self.recorder.flush()
        self.bus.close()
        self.interrupts.close()


__all__ = ["MAX_MESSAGE_SIZE", "MAX_MSG_FDS", "Session"]
