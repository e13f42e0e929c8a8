"""The socket edge: moves framed messages and SCM_RIGHTS descriptors.

Reads exactly what :class:`MessageReader` asks for, so descriptors that arrive
with a header belong to that header's message. Everything else is sans-I/O.
"""

from __future__ import annotations

import array
import contextlib
import socket

from .fdutil import close_quietly
from .protocol import Message, MessageReader, ProtocolError

_FD_SIZE = array.array("i").itemsize
# Plain ints: socket.MSG_* are IntFlags, and their arithmetic is slow on the hot path.
_MSG_CTRUNC = int(socket.MSG_CTRUNC)
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)


class PeerClosed(Exception):
    """The other end closed the connection."""


class Channel:
    """A connected vfio-user stream socket."""

    def __init__(self, sock: socket.socket, max_message_size: int, max_fds: int) -> None:
        self.sock = sock
        self.reader = MessageReader(max_message_size, max_fds)
        self._ancillary = socket.CMSG_SPACE(max_fds * _FD_SIZE)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[Message]:
        """Read what the socket holds of the next message; returns the messages completed.

        Blocks until some data arrives. Raises :class:`PeerClosed` at end of
        stream and :class:`~vfio_bridge.protocol.ProtocolError` on a malformed
        stream.
        """
        return self._with_body(self._receive_some(0))

    def poll(self) -> list[Message] | None:
        """Like :meth:`receive` but never blocks: ``None`` when nothing has arrived."""
        try:
            return self._with_body(self._receive_some(_MSG_DONTWAIT))
        except BlockingIOError:
            return None

    def _with_body(self, done: list[Message]) -> list[Message]:
        # The header is read alone so that descriptors arriving with it belong
        # to its message; the body, sent in the same sendmsg, is usually there
        # already and is taken without another wait.
        if not done and self.reader.bytes_needed():
            with contextlib.suppress(BlockingIOError):
                return self._receive_some(_MSG_DONTWAIT)
        return done

    def _receive_some(self, flags: int) -> list[Message]:
        want = self.reader.bytes_needed()
        data, ancdata, msg_flags, _ = self.sock.recvmsg(max(want, 1), self._ancillary, flags)
        fds = _collect_fds(ancdata) if ancdata else []
        if msg_flags & _MSG_CTRUNC:
            close_quietly(fds)
            raise ProtocolError("too many file descriptors in one message")
        if not data:
            close_quietly(fds)
            raise PeerClosed()
        return self.reader.feed(data, fds)

    def send(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            sent = self.sock.sendmsg([data], ancillary)
        else:
            sent = self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def close(self) -> None:
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
