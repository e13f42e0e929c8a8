"""Streaming reader of xvpci transaction logs with precise errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vfio_bridge import logformat
from vfio_bridge.logformat import (
    END_KEY,
    LEGACY_DIGEST_ALGORITHM,
    READABLE_VERSIONS,
    VERSION_KEY,
    check_event,
)

from ..errors import HarnessError


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
            self._handle = open(self.path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise LogError(f"{self.path}: cannot read: {exc.strerror}") from None
        first = self._handle.readline()
        if not first:
            raise LogError(f"{self.path}:1: empty file, not an xvpci log")
        try:
            header = json.loads(first)
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

    def __iter__(self) -> Iterator[dict[str, Any]]:
        line_no = 1
        loads = json.loads
        for line in self._handle:
            line_no += 1
            try:
                record = loads(line)
            except json.JSONDecodeError:
                if not line.endswith("\n"):
                    break  # a last line cut in the middle: truncated
                raise LogError(f"{self.path}:{line_no}: not a JSON object") from None
            if "kind" not in record:
                if record.get(END_KEY):
                    self.info.complete = True
                    break
                raise LogError(f'{self.path}:{line_no}: event without a "kind"')
            if self._legacy and LEGACY_DIGEST_ALGORITHM in record:
                record["digest"] = record.pop(LEGACY_DIGEST_ALGORITHM)
            problem = check_event(record)
            if problem is not None:
                raise LogError(f"{self.path}:{line_no}: {problem}")
            self.info.events += 1
            yield record
        self._handle.close()
        if not self.info.complete and not self.allow_truncated:
            raise LogError(
                f"{self.path}:{line_no}: log is truncated after {self.info.events} events "
                "(no end marker: the server was killed or the disk filled up)"
            )
