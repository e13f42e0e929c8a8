"""A vfio-user server: one device model behind one UNIX socket.

Clients are served one at a time, never two sessions on one model; when a
client disconnects or breaks the protocol its connection is closed, the device
is reset, and the next client can connect. A client that connects while
another is served waits up to :data:`HANDOVER_GRACE` seconds, in case the
served one is just leaving; then its first request is refused with EBUSY and
it is disconnected, and the server says so in its log. ``stop()`` (from a
signal handler or another thread) ends ``serve()`` promptly, and the socket
file is removed on close.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import stat
import threading
import time
from pathlib import Path

from .device import DeviceModel
from .dispatch import MAX_DATA_XFER, checked_max_data_xfer
from .fdutil import close_quietly
from .polling import DEFAULT_POLL_MAX_US
from .protocol import HEADER_SIZE, Header, MsgFlags, ProtocolError, frame
from .recorder import Recorder
from .session import MAX_MESSAGE_SIZE, MAX_MSG_FDS, Session
from .transport import PeerClosed, SocketChannel

log = logging.getLogger(__name__)

#: How long a client connecting while another is served waits for that one to leave.
HANDOVER_GRACE = 1.0
#: How long a refused client has to send its first request, which gets the EBUSY reply.
REFUSAL_TIMEOUT = 2.0
# A first request (VERSION) is a few hundred bytes; a refused client gets no more.
_REFUSAL_BODY_LIMIT = 64 * 1024


class ServerError(Exception):
    """The server cannot start (socket path in use, not a socket, no permission)."""


class VfioUserServer:
    """Serve ``model`` on the UNIX socket ``socket_path``."""

    def __init__(
        self,
        model: DeviceModel,
        socket_path: str | os.PathLike[str],
        recorder: Recorder,
        poll_max_us: float = DEFAULT_POLL_MAX_US,
        max_data_xfer: int = MAX_DATA_XFER,
    ) -> None:
        self.max_data_xfer = checked_max_data_xfer(max_data_xfer)  # before a client comes
        self.model = model
        self.socket_path = Path(socket_path)
        self.recorder = recorder
        self.poll_max_us = poll_max_us
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.connections = 0
        self.refused = 0
        # A connection accepted while the previous client was leaving; served next.
        self._handed_over: socket.socket | None = None
        # The connection being served, which stop() shuts down to end the session's
        # blocking receive.
        self._serving: socket.socket | None = None

    def listen(self) -> None:
        """Create the socket (mode 0600); a stale socket file is replaced, anything else refused."""
        path = self.socket_path
        try:
            info = path.lstat()
        except FileNotFoundError:
            info = None
        if info is not None:
            if not stat.S_ISSOCK(info.st_mode):
                raise ServerError(f"{path} exists and is not a socket; not touching it")
            if _socket_alive(path):
                raise ServerError(f"{path} is in use by another server")
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(path))
        except OSError as exc:
            listener.close()
            reason = exc.strerror or str(exc)  # a too-long path has no errno
            raise ServerError(f"cannot create socket {path}: {reason}") from None
        finally:
            os.umask(old_umask)
        listener.listen(1)
        self._listener = listener

    def stop(self) -> None:
        """Ask ``serve()`` to return; safe from signal handlers and other threads."""
        # A full pipe or a closed server already means "stop".
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        # The session waits in a blocking receive: the end of the stream ends it.
        # (Set before the pipe is checked in _serve_connection, so either this
        # sees the connection or that sees the pipe.)
        serving = self._serving
        if serving is not None:
            with contextlib.suppress(OSError):  # already closed
                serving.shutdown(socket.SHUT_RD)

    def serve(self, max_connections: int | None = None) -> None:
        """Accept and serve clients until ``stop()`` or ``max_connections`` were served."""
        if self._listener is None:
            self.listen()
        assert self._listener is not None
        while max_connections is None or self.connections < max_connections:
            conn, self._handed_over = self._handed_over, None
            if conn is None:
                readable, _, _ = select.select([self._listener, self._wake_r], [], [])
                if self._wake_r in readable:
                    return
                try:
                    conn, _ = self._listener.accept()
                except OSError as exc:
                    if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ECONNABORTED):
                        continue
                    raise
            self.connections += 1
            self._serve_connection(conn)
            if self._stopping():
                return

    def _stopping(self) -> bool:
        readable, _, _ = select.select([self._wake_r], [], [], 0)
        return bool(readable)

    def _serve_connection(self, conn: socket.socket) -> None:
        channel = SocketChannel(conn, MAX_MESSAGE_SIZE, MAX_MSG_FDS)
        session = Session(
            self.model,
            channel,
            self.recorder,
            wakeup_fd=self._wake_r,
            poll_max_us=self.poll_max_us,
            max_data_xfer=self.max_data_xfer,
        )
        log.info("client %d connected", self.connections)
        door = _BusyDoor(self, self.connections)
        door.start()
        self._serving = conn
        try:
            if not self._stopping():
                session.run()
        except PeerClosed:
            log.info("client %d disconnected", self.connections)
        except ProtocolError as exc:
            log.warning(
                "client %d broke the protocol (%s); connection closed", self.connections, exc
            )
        except OSError as exc:
            log.warning("client %d: socket error %s; connection closed", self.connections, exc)
        finally:
            self._serving = None
            session.close()
            channel.close()
            self.model.reset()
            door.close()

    def close(self) -> None:
        """Close the listener and remove the socket file we created."""
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None
                try:
                    if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                        self.socket_path.unlink()
                except FileNotFoundError:
                    pass
        if self._handed_over is not None:
            self._handed_over.close()  # accepted as the next client, never served
            self._handed_over = None
        close_quietly((self._wake_r, self._wake_w))
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> VfioUserServer:
        self.listen()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BusyDoor(threading.Thread):
    """Answers the listener while a client is served, so nobody waits silently.

    A connection that arrives is handed over if the served client leaves within
    :data:`HANDOVER_GRACE` (it may have closed already, before the session
    read its end of stream); otherwise it is refused. Runs on its own thread
    because the session's loop must not pay for watching the listener.
    """

    def __init__(self, server: VfioUserServer, serving: int) -> None:
        super().__init__(name=f"xvpci-busy-door-{serving}", daemon=True)
        self.server = server
        self.serving = serving
        self.session_over = threading.Event()
        self._stop_r, self._stop_w = os.pipe()

    def run(self) -> None:
        listener = self.server._listener
        assert listener is not None
        while True:
            readable, _, _ = select.select([listener, self._stop_r], [], [])
            if self._stop_r in readable:
                return
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            if self.session_over.wait(HANDOVER_GRACE):
                self.server._handed_over = conn
                return
            self._refuse(conn)

    def _refuse(self, conn: socket.socket) -> None:
        self.server.refused += 1
        log.warning(
            "a second client connected while client %d is served; refused (EBUSY): "
            "this server serves one client at a time",
            self.serving,
        )
        try:
            header = self._first_header(conn)
            if header is not None:
                conn.sendall(
                    frame(
                        header.msg_id,
                        header.command,
                        b"",
                        MsgFlags.REPLY | MsgFlags.ERROR,
                        errno.EBUSY,
                    )
                )
        except (OSError, ProtocolError):
            pass  # it is being turned away either way
        finally:
            conn.close()

    def _first_header(self, conn: socket.socket) -> Header | None:
        """The header of the refused client's first request, if it sends it in time.

        The request is read whole: closing a UNIX socket with unread data
        resets the connection, and the client would lose our reply.
        """
        deadline = time.monotonic() + REFUSAL_TIMEOUT
        head = self._read(conn, HEADER_SIZE, deadline)
        if head is None:
            return None
        header = Header.unpack(head)
        if header.size - HEADER_SIZE > _REFUSAL_BODY_LIMIT:
            return None
        if self._read(conn, header.size - HEADER_SIZE, deadline) is None:
            return None
        return header

    def _read(self, conn: socket.socket, count: int, deadline: float) -> bytes | None:
        data = b""
        while len(data) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([conn, self._stop_r], [], [], remaining)
            if self._stop_r in readable or not readable:
                return None
            chunk = conn.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def close(self) -> None:
        """The session is over: hand over a waiting connection, stop, release the pipe."""
        self.session_over.set()
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self.join()
        close_quietly((self._stop_r, self._stop_w))


def _socket_alive(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()
