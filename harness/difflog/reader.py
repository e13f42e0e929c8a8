"""Streaming reader of xvpci transaction logs with precise errors.

Lines are read as bytes and parsed with orjson (several times faster than the
standard library's json here, and than msgspec decoding to dicts; a line orjson
refuses, say an integer past 64 bits, is tried again with json, so both read
the same logs). Besides
iterating events, a reader hands out raw lines (:meth:`LogReader.take`) and
takes back those it was not asked to parse (:meth:`LogReader.unread`): the
diff compares the lines of two logs as bytes before it parses either, and
parses one side only where they agree.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from vfio_bridge import logformat
from vfio_bridge.logformat import (
    END_KEY,
    LEGACY_DIGEST_ALGORITHM,
    READABLE_VERSIONS,
    VERSION_KEY,
    check_event,
    check_header,
)

from ..errors import HarnessError
from . import cutter
from .cutter import EVENT_LINE

__all__ = ["ADDRESS_FIELD", "EVENT_LINE", "LogError", "LogInfo", "LogReader"]

#: Logs with less than this left to read are cut in this process (a second one
#: costs more to start than it saves).
CUT_ELSEWHERE = 32 << 20
PIPE_SIZE = 1 << 20  # bytes the cutter may write ahead (the most a user may ask for by default)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Python 3.10+ on Linux names it


#: The address field of an event line (DMA), to tell events apart by all but it.
ADDRESS_FIELD = re.compile(rb'"addr":(0|[1-9][0-9]*)(?=[,}])')


class LogError(HarnessError):
    """A log that cannot be compared; the message names the file and line."""


@dataclass
class LogInfo:
    path: Path
    header: dict[str, Any]
    events: int = 0
    complete: bool = False

    @property
    def digest_algorithm(self) -> str:
        """The algorithm of the payload digests, which only compare within one algorithm."""
        return logformat.digest_algorithm(self.header)


class LogReader:
    """Iterate the events of one log; ``info`` fills in as it goes.

    A log without its end marker is truncated: by default that is an error
    raised after the last readable event (``allow_truncated`` accepts it).
    """

    def __init__(self, path: Path, allow_truncated: bool = False) -> None:
        self.path = Path(path)
        self.allow_truncated = allow_truncated
        try:
            self._handle = open(self.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise LogError(f"{self.path}: cannot read: {exc.strerror}") from None
        first = self._handle.readline()
        if not first:
            raise LogError(f"{self.path}:1: empty file, not an xvpci log")
        try:
            header = json.loads(first.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            raise LogError(f"{self.path}:1: not an xvpci log header (not JSON)") from None
        if not isinstance(header, dict) or VERSION_KEY not in header:
            raise LogError(f'{self.path}:1: not an xvpci log header (no "{VERSION_KEY}" key)')
        if header[VERSION_KEY] not in READABLE_VERSIONS:
            raise LogError(
                f"{self.path}:1: unknown log format version {header[VERSION_KEY]!r} "
                f"(this xvpci reads {', '.join(map(str, READABLE_VERSIONS))})"
            )
        problem = check_header(header)
        if problem is not None:
            raise LogError(f"{self.path}:1: {problem}")
        self.info = LogInfo(self.path, header)
        self._legacy = header[VERSION_KEY] == 1
        self._lines_read = 1  # lines taken from the file, header included
        self._unread: collections.deque[bytes] = collections.deque()
        self.ended = False  # the end marker, a cut last line or the end of the file was met
        self._cutter: subprocess.Popen[bytes] | None = None  # reads on from here (cutter.py)
        self._cut_done = False  # the cutter reached the end of the file
        self._declared_events: object = None  # what the end marker says the log holds

    # --- raw lines

    @property
    def line_no(self) -> int:
        """The number of the last line handed out."""
        return self._lines_read - len(self._unread)

    def _fill(self, count: int) -> bool:
        """Read about ``count`` more lines into the buffer; False at the end of the file."""
        if self.ended:
            return False
        if self._cutter is not None:
            block = self._block()
            if block is None:
                return False
            more = _lines(block[1])
        else:
            more = self._handle.readlines(count * 96)
        self._lines_read += len(more)
        self._unread.extend(more)
        return bool(more)

    def take_block(self) -> tuple[int, bytes, bytes | None] | None:
        """The next block of lines as the cutter process (:mod:`.cutter`) read them:
        (number of lines, the raw lines, their bodies joined by newlines or None when
        some line is not shaped like an event). None when lines taken back are waiting
        (:meth:`take` hands them out), at the end of the file, or when too little is
        left to read for a second process to pay; it starts on the first call that
        finds the buffer empty and enough left."""
        if self._unread or self.ended:
            return None
        if self._cutter is None and not self._start_cutter():
            return None
        block = self._block()
        if block is not None:
            self._lines_read += block[0]
        return block

    def block_lines(self, raw: bytes) -> list[bytes]:
        """The lines of a block from :meth:`take_block`."""
        return _lines(raw)

    def _start_cutter(self) -> bool:
        offset = self._handle.tell()
        if self._handle.seek(0, io.SEEK_END) - offset < CUT_ELSEWHERE:
            self._handle.seek(offset)
            return False
        self._cutter = subprocess.Popen(
            [sys.executable, "-I", "-S", cutter.__file__, str(self.path), str(offset)],
            stdout=subprocess.PIPE,
        )
        assert self._cutter.stdout is not None
        # A pipe of two blocks lets either process run on while the other waits its turn;
        # where that is refused, the default pipe is slower, no worse.
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._cutter.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        return True

    def _block(self) -> tuple[int, bytes, bytes | None] | None:
        """The cutter's next block; None once it reached the end of the file."""
        assert self._cutter is not None and self._cutter.stdout is not None
        if self._cut_done:
            return None
        pipe = self._cutter.stdout
        head = pipe.read(cutter.HEADER.size)
        if len(head) < cutter.HEADER.size:
            self._cut_done = True
            if self._cutter.wait() != 0:
                raise LogError(f"{self.path}: cannot read past line {self._lines_read}")
            return None
        lines, raw_size, cut_size = cutter.HEADER.unpack(head)
        raw = pipe.read(raw_size)
        bodies = None if cut_size == cutter.NOT_CUT else pipe.read(cut_size)
        if len(raw) != raw_size or (bodies is not None and len(bodies) != cut_size):
            self._cut_done = True  # the cutter ended in the middle of a block
            self._cutter.wait()
            raise LogError(f"{self.path}: cannot read past line {self._lines_read}")
        return lines, raw, bodies

    def _stop_cutter(self) -> None:
        """End the cutter process (it may be blocked writing what is no longer needed)."""
        cut = self._cutter
        if cut is None or cut.returncode is not None:
            return
        assert cut.stdout is not None
        cut.stdout.close()  # a cutter still writing gets a broken pipe and ends
        try:
            cut.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cut.kill()
            cut.wait()

    def take(self, count: int) -> list[bytes]:
        """Up to ``count`` raw lines (fewer at the end of the file)."""
        unread = self._unread
        lines = list(unread)
        unread.clear()
        while len(lines) < count and self._fill(count - len(lines)):
            lines += unread
            unread.clear()
        if len(lines) > count:
            unread.extend(lines[count:])
            del lines[count:]
        return lines

    def unread(self, lines: list[bytes]) -> None:
        """Give back lines taken but not used; the next :meth:`take` returns them first."""
        self._unread.extendleft(reversed(lines))

    # --- events

    def parse(self, line: bytes, line_no: int) -> dict[str, Any] | None:
        """The event on ``line``, or None once the log has ended (end marker, cut line)."""
        try:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            if not line.endswith(b"\n"):
                self.ended = True  # a last line cut in the middle: truncated
                return None
            raise LogError(f"{self.path}:{line_no}: not a JSON object") from None
        if not isinstance(record, dict):
            raise LogError(f"{self.path}:{line_no}: not a JSON object")
        if "kind" not in record:
            if record.get(END_KEY):
                self.info.complete = True
                self.ended = True
                self._declared_events = record.get("events")
                return None
            raise LogError(f'{self.path}:{line_no}: event without a "kind"')
        if self._legacy and LEGACY_DIGEST_ALGORITHM in record:
            record["digest"] = record.pop(LEGACY_DIGEST_ALGORITHM)
        problem = check_event(record)
        if problem is not None:
            raise LogError(f"{self.path}:{line_no}: {problem}")
        self.info.events += 1
        return record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        unread = self._unread
        parse = self.parse
        while unread or self._fill(1024):
            line = unread.popleft()
            event = parse(line, self._lines_read - len(unread))
            if event is None:
                break
            yield event
        self.ended = True
        self.close()

    def stop(self) -> None:
        """Stop reading, whatever was read (the cutter process, if any, ends)."""
        self._stop_cutter()
        self._handle.close()

    def close(self) -> None:
        """Stop reading; a log that ended without its end marker is an error unless allowed."""
        self.stop()
        if not self.info.complete and not self.allow_truncated:
            raise LogError(
                f"{self.path}:{self.line_no}: log is truncated after {self.info.events} events "
                "(no end marker: the server was killed or the disk filled up)"
            )
        declared = self._declared_events
        if self.info.complete and type(declared) is int and declared != self.info.events:
            raise LogError(
                f"{self.path}: holds {self.info.events} events, its end marker says {declared} "
                "(lines lost or added after it was written)"
            )


def _lines(raw: bytes) -> list[bytes]:
    """Lines split at newlines only, as a file's are (``bytes.splitlines`` splits at
    carriage returns too)."""
    return io.BytesIO(raw).readlines()
