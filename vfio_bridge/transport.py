"""The socket edge: moves framed messages and SCM_RIGHTS descriptors.

:class:`Channel` is what a session needs from a connection; :class:`SocketChannel`
is the real one (the fuzz target plugs in a socketless one). Each receive
takes whatever the socket holds (up to :data:`RECEIVE_CHUNK`) into one reused
buffer, so a burst of requests costs one system call, and hands it to the
sans-I/O :class:`MessageReader`, which knows whose descriptors they are, unless
it begins with a region access (:meth:`SocketChannel.take_access`).
"""

from __future__ import annotations

import array
import collections
import contextlib
import socket
from collections.abc import Sequence
from typing import Protocol

from .fdutil import close_quietly
from .protocol import (
    ACCESS_MESSAGE_SIZE,
    AccessRequest,
    Message,
    MessageReader,
    ProtocolError,
    access_request,
)

_FD_SIZE = array.array("i").itemsize
# Plain ints: socket.MSG_* are IntFlags, and their arithmetic is slow on the hot path.
_MSG_CTRUNC = int(socket.MSG_CTRUNC)
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
#: Bytes taken per receive: many small requests, or a good piece of a large one.
RECEIVE_CHUNK = 64 * 1024


class PeerClosed(Exception):
    """The other end closed the connection."""


class Channel(Protocol):
    """A connection to one client: messages in through a backlog, bytes and descriptors out."""

    def fileno(self) -> int:
        """A descriptor that is readable when :meth:`fill` has something to take."""
        ...

    #: Received messages not taken yet, oldest first; while some wait,
    #: :meth:`fileno` need not be readable.
    backlog: collections.deque[Message]

    def fill(self, block: bool = True) -> bool:
        """Take what has arrived into the backlog (waiting for it when ``block``);
        whether a message waits. Raises :class:`PeerClosed` at end of stream."""
        ...

    def take_access(self, block: bool = True) -> AccessRequest | None:
        """As :meth:`fill`, but a REGION_READ/WRITE request that arrives first, with
        nothing waiting before it and no descriptors, is returned parsed instead of
        joining the backlog (what came after it does join). None otherwise."""
        ...

    def next_message(self) -> Message | None:
        """The oldest message of the backlog, or None."""
        ...

    def send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        """Send framed bytes, with descriptors passed alongside."""
        ...

    def close(self) -> None:
        """Close the connection and every descriptor not handed out yet."""
        ...


def ancillary_size(max_fds: int) -> int:
    """The ancillary buffer a receive needs to take up to ``max_fds`` descriptors."""
    return socket.CMSG_SPACE(max_fds * _FD_SIZE)


class SocketChannel:
    """A connected vfio-user stream socket (a :class:`Channel`)."""

    def __init__(self, sock: socket.socket, max_message_size: int, max_fds: int) -> None:
        self.sock = sock
        self.reader = MessageReader(max_message_size, max_fds)
        self._max_message_size = max_message_size
        self._ancillary = ancillary_size(max_fds)
        self._chunk = bytearray(RECEIVE_CHUNK)
        self._chunks = [self._chunk]  # recvmsg_into's buffer list, built once
        self._chunk_view = memoryview(self._chunk)
        #: Messages taken off the socket but not yet handed out, oldest first. One
        #: receive may complete several; they are handed out one at a time, so a
        #: handler that waits for a reply mid-burst still sees them in order.
        self.backlog: collections.deque[Message] = collections.deque()

    def fileno(self) -> int:
        return self.sock.fileno()

    def fill(self, block: bool = True) -> bool:
        """Read what the socket holds into the backlog unless messages already wait.

        Returns whether a message waits. Raises :class:`PeerClosed` at end of
        stream and :class:`~vfio_bridge.protocol.ProtocolError` on a malformed
        stream.
        """
        if not self.backlog:
            try:
                self.backlog.extend(self._receive(0 if block else _MSG_DONTWAIT))
            except BlockingIOError:
                return False
        return bool(self.backlog)

    def take_access(self, block: bool = True) -> AccessRequest | None:
        """Read what the socket holds, unless messages already wait; a REGION_READ or
        REGION_WRITE request at its start is returned parsed, the rest joins the backlog.

        The hot path of every MMIO: it skips the :class:`Message` and the backlog
        when the receive begins a message (nothing half-received before it), brought
        no descriptors, and begins with a whole access request
        (:func:`~vfio_bridge.protocol.access_request`). Everything else is framed
        into the backlog as by :meth:`fill` and None is returned; so is None when
        nothing arrived (``block`` false). Raises as :meth:`fill`.
        """
        if self.backlog:
            return None
        try:
            size, ancdata, msg_flags, _ = self.sock.recvmsg_into(
                self._chunks, self._ancillary, 0 if block else _MSG_DONTWAIT
            )
        except BlockingIOError:
            return None
        if not ancdata and not msg_flags and self.reader.at_boundary:
            access = access_request(self._chunk, size)
            # (Over the size limit: the reader refuses it.)
            if access is not None and (
                (used := ACCESS_MESSAGE_SIZE + len(access[6])) <= self._max_message_size
            ):
                if used < size:  # later messages, framed before this one is served
                    self.backlog.extend(self.reader.feed(self._chunk_view[used:size]))
                return access
        self.backlog.extend(self.messages_from(self._chunk_view[:size], ancdata, msg_flags))
        return None

    def next_message(self) -> Message | None:
        """The oldest received message not taken yet, or None."""
        return self.backlog.popleft() if self.backlog else None

    def receive(self) -> Message:
        """The next message, blocking until one is complete."""
        while not self.fill():
            pass
        return self.backlog.popleft()

    def _receive(self, flags: int) -> list[Message]:
        size, ancdata, msg_flags, _ = self.sock.recvmsg_into(self._chunks, self._ancillary, flags)
        return self.messages_from(self._chunk_view[:size], ancdata, msg_flags)

    def messages_from(
        self, data: memoryview, ancdata: list[tuple[int, int, bytes]], msg_flags: int
    ) -> list[Message]:
        """The messages one ``recvmsg`` of this socket completed: the bytes it brought
        (none: the end of the stream, :class:`PeerClosed`), its ancillary data and flags
        (descriptors cut short: :class:`ProtocolError`). For a receive made here, or by
        someone reading the socket on their own (the MMIO bench's floor server)."""
        fds = _collect_fds(ancdata) if ancdata else []
        if msg_flags & _MSG_CTRUNC:
            close_quietly(fds)
            raise ProtocolError("too many file descriptors in one message")
        if not len(data):
            close_quietly(fds)
            raise PeerClosed()
        return self.reader.feed(data, fds)

    def send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            sent = self.sock.sendmsg([data], ancillary)
        else:
            sent = self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def close(self) -> None:
        for message in self.backlog:
            message.close_fds()
        self.backlog.clear()
        self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()


def _collect_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds.extend(array.array("i", payload[:usable]))
    return fds
