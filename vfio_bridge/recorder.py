"""Transaction recorder: every access of a device as one line of the log.

The format itself (header, event kinds and fields, digest, trailer) is
:mod:`vfio_bridge.logformat`'s; this module owns getting lines to disk.
Events are buffered and written whole lines at a time by :meth:`Recorder.flush`,
which the session calls whenever it has answered a burst of requests and
before it waits, so a killed server leaves a log that is readable line by
line and lacks at most the burst in flight. A short write (disk full) is cut
back to its last whole line and recording stops. A clean close appends the
trailer, so readers can tell a complete log from a truncated one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import logformat

if TYPE_CHECKING:
    from .device import IrqType

log = logging.getLogger(__name__)

#: Buffered bytes that force a flush even in the middle of a burst.
FLUSH_THRESHOLD = 256 * 1024


class Recorder:
    """Appends events to a JSON Lines log; with no path it only counts them."""

    def __init__(
        self,
        log_path: str | os.PathLike[str] | None,
        path_label: str | None = None,
        /,
        **header: Any,
    ) -> None:
        """Log to ``log_path`` (None: count only); ``header`` as for :func:`logformat.header`."""
        self.path = Path(log_path) if log_path is not None else None
        self.seq = 0
        self._fd = -1
        self._failed = False
        #: Event lines not written to the log yet (truthy when there are some); one
        #: list for the recorder's life, which the session loop holds.
        self.unwritten: list[str] = []
        self._unwritten_size = 0
        self._written = 0
        self._clock = time.monotonic_ns
        if self.path is not None:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644
            )
            self._write(logformat.dumps(logformat.header(path_label, **header)))
            self.flush()

    @property
    def enabled(self) -> bool:
        return self._fd >= 0

    def _write(self, line: str) -> None:
        if self._fd < 0:
            return
        self.unwritten.append(line)
        self._unwritten_size += len(line)
        if self._unwritten_size >= FLUSH_THRESHOLD:
            self.flush()

    def flush(self) -> None:
        """Write the buffered events to the log with as few ``write(2)`` calls as it takes."""
        if not self.unwritten:
            return
        data = "".join(self.unwritten).encode()
        self.unwritten.clear()
        self._unwritten_size = 0
        if self._fd < 0:
            return
        sent = 0
        try:
            while sent < len(data):
                sent += os.write(self._fd, data[sent:] if sent else data)
        except OSError as exc:
            # Disk full or a vanished file must not take the device down: keep
            # the whole lines written, stop logging, and say so once.
            whole = data.rfind(b"\n", 0, sent) + 1
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._written + whole)
            if not self._failed:
                log.error("transaction log %s: %s; recording stopped", self.path, exc)
                self._failed = True
            os.close(self._fd)
            self._fd = -1
        else:
            self._written += sent

    def _next(self) -> tuple[int, int]:
        seq = self.seq
        self.seq = seq + 1
        return seq, self._clock()

    # --- events -------------------------------------------------------------

    def config(
        self, write: bool, offset: int, size: int, data: bytes, stream: str | None = None
    ) -> None:
        seq, t = self._next()
        if self._fd >= 0:
            self._write(logformat.config_line(seq, t, write, offset, size, data, stream))

    def mmio(
        self, write: bool, bar: int, offset: int, size: int, value: int, stream: str | None = None
    ) -> None:
        # Called for every BAR access: _next() inlined, and no clock without a log.
        seq = self.seq
        self.seq = seq + 1
        if self._fd >= 0:
            line = logformat.mmio_line(seq, self._clock(), write, bar, offset, size, value, stream)
            self._write(line)

    def dma(
        self, write: bool, addr: int, data: bytes, tag: str | None = None, block: int = 0
    ) -> None:
        """A DMA transfer; tagged ones (descriptors) always carry their bytes, and with
        ``block`` > 0 it carries a digest per logical block of that size."""
        seq, t = self._next()
        if self._fd >= 0:
            self._write(logformat.dma_line(seq, t, write, addr, data, tag, block))

    def irq(self, irq_type: IrqType, vector: int, stream: str | None = None) -> None:
        seq, t = self._next()
        if self._fd >= 0:
            self._write(logformat.irq_line(seq, t, irq_type, vector, stream))

    def device_error(self, code: str, detail: str) -> None:
        """Guest or client input met a defined device error (refusal, DMA fault...)."""
        self.event(logformat.Kind.DEVICE_ERROR, error=code, detail=detail)

    def event(self, kind: str, **fields: Any) -> None:
        """Any other event (reset, dma_map, dma_unmap...); ValueError for an unknown kind."""
        if kind not in logformat.KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        seq, t = self._next()
        if self._fd >= 0:
            self._write(logformat.event_line(seq, t, kind, fields))

    def close(self) -> None:
        """Write the trailer and close; safe to call twice."""
        if self._fd >= 0:
            self._write(logformat.dumps(logformat.trailer(self.seq)))
            self.flush()
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
