"""A vfio-user server: one device model behind one UNIX socket.

Clients are served one at a time; when a client disconnects or breaks the
protocol its connection is closed, the device is reset, and the next client
can connect. ``stop()`` (from a signal handler or another thread) ends
``serve()`` promptly, and the socket file is removed on close.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import stat
from pathlib import Path

from .device import DeviceModel
from .fdutil import close_quietly
from .polling import DEFAULT_POLL_MAX_US
from .protocol import ProtocolError
from .recorder import Recorder
from .session import MAX_MESSAGE_SIZE, MAX_MSG_FDS, Session
from .transport import PeerClosed, SocketChannel

log = logging.getLogger(__name__)


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
    ) -> None:
        self.model = model
        self.socket_path = Path(socket_path)
        self.recorder = recorder
        self.poll_max_us = poll_max_us
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.connections = 0

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

    def serve(self, max_connections: int | None = None) -> None:
        """Accept and serve clients until ``stop()`` or ``max_connections`` were served."""
        if self._listener is None:
            self.listen()
        assert self._listener is not None
        while max_connections is None or self.connections < max_connections:
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
        )
        log.info("client %d connected", self.connections)
        try:
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
            session.close()
            channel.close()
            self.model.reset()

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
        close_quietly((self._wake_r, self._wake_w))
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> VfioUserServer:
        self.listen()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
