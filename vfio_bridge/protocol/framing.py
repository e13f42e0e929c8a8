"""Sans-I/O message framing: bytes and file descriptors in, whole messages out.

The reader tells the socket edge how many bytes it needs next, so the edge can
read a header and its body exactly and attach the SCM_RIGHTS descriptors that
arrived with a header to that header's message, as QEMU's client does.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from ..fdutil import close_quietly
from .constants import HEADER_SIZE
from .messages import Header, ProtocolError


@dataclass(slots=True)
class Message:
    """One framed message. The receiver owns ``fds`` and must close them."""

    header: Header
    body: bytes
    fds: list[int] = field(default_factory=list)

    def close_fds(self) -> None:
        close_quietly(self.fds)
        self.fds.clear()


class MessageReader:
    """Incremental parser of a vfio-user byte stream."""

    def __init__(self, max_message_size: int, max_fds: int) -> None:
        self.max_message_size = max_message_size
        self.max_fds = max_fds
        self._buf = bytearray()
        self._header: Header | None = None
        self._fds: list[int] = []

    def bytes_needed(self) -> int:
        """How many more bytes complete the header or the current message."""
        if self._header is None:
            return HEADER_SIZE - len(self._buf)
        return self._header.size - HEADER_SIZE - len(self._buf)

    def feed(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> list[Message]:
        """Add received bytes (and the descriptors that came with them).

        Returns the messages completed by this data. On a malformed header the
        descriptors are closed and :class:`ProtocolError` is raised; the stream
        cannot be resynchronised after that.
        """
        self._fds.extend(fds)
        if len(self._fds) > self.max_fds:
            self._discard_fds()
            raise ProtocolError(f"more than {self.max_fds} file descriptors in one message")
        self._buf += data
        done: list[Message] = []
        while True:
            if self._header is None:
                if len(self._buf) < HEADER_SIZE:
                    break
                try:
                    header = Header.unpack(self._buf)
                    if header.size > self.max_message_size:
                        raise ProtocolError(
                            f"message of {header.size} bytes exceeds the limit of "
                            f"{self.max_message_size}",
                            errno.E2BIG,
                        )
                except ProtocolError:
                    self._discard_fds()
                    raise
                self._header = header
                del self._buf[:HEADER_SIZE]
            body_size = self._header.size - HEADER_SIZE
            if len(self._buf) < body_size:
                break
            body = bytes(self._buf[:body_size])
            del self._buf[:body_size]
            done.append(Message(self._header, body, self._fds))
            self._header = None
            self._fds = []
        return done

    def _discard_fds(self) -> None:
        close_quietly(self._fds)
        self._fds = []

    def close(self) -> None:
        """Drop buffered data and close descriptors of an unfinished message."""
        self._discard_fds()
        self._buf.clear()
        self._header = None
