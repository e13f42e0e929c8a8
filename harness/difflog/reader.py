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
import json
import re
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
)

from ..errors import HarnessError

#: An event line as the recorder writes it (``logformat.*_line``), its ``seq`` and
#: ``t_ns`` apart from the rest: what two paths' events must share to be the same event.
EVENT_LINE = re.compile(rb'^\{"seq":\d+,"t_ns":\d+,(.*)$', re.MULTILINE)


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
        self.info = LogInfo(self.path, header)
        self._legacy = header[VERSION_KEY] == 1
        self._lines_read = 1  # lines taken from the file, header included
        self._unread: collections.deque[bytes] = collections.deque()
        self.ended = False  # the end marker, a cut last line or the end of the file was met

    # --- raw lines

    @property
    def line_no(self) -> int:
        """The number of the last line handed out."""
        return self._lines_read - len(self._unread)

    def _fill(self, count: int) -> bool:
        """Read about ``count`` more lines into the buffer; False at the end of the file."""
        if self.ended:
            return False
        more = self._handle.readlines(count * 96)
        self._lines_read += len(more)
        self._unread.extend(more)
        return bool(more)

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

    def close(self) -> None:
        """Stop reading; a log that ended without its end marker is an error unless allowed."""
        self._handle.close()
        if not self.info.complete and not self.allow_truncated:
            raise LogError(
                f"{self.path}:{self.line_no}: log is truncated after {self.info.events} events "
                "(no end marker: the server was killed or the disk filled up)"
            )
