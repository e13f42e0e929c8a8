"""Sans-I/O message framing: bytes and file descriptors in, whole messages out.

The socket edge reads whatever has arrived, several messages at a time when
the peer sends faster than we answer. SCM_RIGHTS descriptors are attached to
the message whose first byte they arrived with; a stream socket never
delivers descriptors together with bytes of a later ``sendmsg``, so in one
chunk of the stream they belong to the last message that *begins* in it (or,
when none does, to the one the chunk continues). This is how QEMU's client
sends them: with the message's first byte.
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
        if self.fds:
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
        #: No part of a message is held: the next byte fed begins a message. (An
        #: attribute, kept by :meth:`feed` and :meth:`close`: the channel asks on
        #: every receive.)
        self.at_boundary = True

    def feed(
        self, data: bytes | bytearray | memoryview, fds: list[int] | tuple[int, ...] = ()
    ) -> list[Message]:
        """Add a chunk of the stream and the descriptors that came with it.

        Returns the messages completed by this data. On a malformed header or
        too many descriptors, every descriptor held is closed and
        :class:`ProtocolError` is raised; the stream cannot be resynchronised
        after that.
        """
        # Parse straight from the chunk unless part of a message waits in the
        # buffer (then the chunk joins it first): usually a chunk holds whole
        # messages, and each body is copied out once.
        buf = self._buf
        if buf:
            buf += data
            data = buf
        # Who owns this chunk's descriptors, as an index into the returned list
        # (its length: the unfinished message): the last message beginning in
        # the chunk, else the one it continues; both are 0 until another begins.
        owner = 0
        done: list[Message] = []
        pos = 0
        end = len(data)
        while True:
            header = self._header
            if header is None:
                if end - pos < HEADER_SIZE:
                    break
                try:
                    header = Header.unpack(data, pos)
                    if header.size > self.max_message_size:
                        raise ProtocolError(
                            f"message of {header.size} bytes exceeds the limit of "
                            f"{self.max_message_size}",
                            errno.E2BIG,
                        )
                except ProtocolError:
                    close_quietly(fds)
                    self._abandon(done)
                    raise
                self._header = header
                pos += HEADER_SIZE
            body_end = pos + header.size - HEADER_SIZE
            if body_end > end:
                break
            done.append(Message(header, bytes(data[pos:body_end]), self._fds))
            self._header = None
            self._fds = []
            pos = body_end
            if pos < end:
                owner = len(done)
        if data is buf:
            del buf[:pos]
        elif pos < end:
            buf += data[pos:]
        if fds:
            self._attach(done, owner, fds)
        self.at_boundary = self._header is None and not buf and not self._fds
        return done

    def _attach(self, done: list[Message], owner: int, fds: list[int] | tuple[int, ...]) -> None:
        held = done[owner].fds if owner < len(done) else self._fds
        held.extend(fds)
        if len(held) > self.max_fds:
            self._abandon(done)
            raise ProtocolError(f"more than {self.max_fds} file descriptors in one message")

    def _abandon(self, done: list[Message]) -> None:
        """Close the descriptors of this feed's messages and of the unfinished one."""
        for message in done:
            message.close_fds()
        self._discard_fds()

    def _discard_fds(self) -> None:
        close_quietly(self._fds)
        self._fds = []

    def close(self) -> None:
        """Drop buffered data and close descriptors of an unfinished message."""
        self._discard_fds()
        self._buf.clear()
        self._header = None
        self.at_boundary = True
