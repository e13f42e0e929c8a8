"""What every host of a model does the same way: scatter lists and deferred work.

A model reaches memory and time through its :class:`~vfio_bridge.device.Bus`.
The vfio-user server's bus and :class:`~vfio_bridge.device.local.LocalBus`
differ in where memory lives and what they record, not in how a scatter list
is walked or when deferred work runs; that part lives here, once.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence

from .device import DmaError


def gather(read: Callable[[int, int], bytes], segments: Sequence[tuple[int, int]]) -> bytes:
    """The bytes of each (address, length) segment, in order, as one buffer."""
    return b"".join(read(addr, length) for addr, length in segments)


def scatter(
    write: Callable[[int, bytes], None], segments: Sequence[tuple[int, int]], data: bytes
) -> None:
    """Write ``data`` across the (address, length) segments, in order."""
    pos = 0
    for addr, length in segments:
        write(addr, data[pos : pos + length])
        pos += length


class DeferredWork:
    """Device work a model deferred (DMA, queue processing), run after the access that
    caused it, so the client has its reply before the work may ask it for memory.

    A DMA fault in one piece of work is handed to ``on_fault`` and the rest still
    runs. Work deferred while the queue runs (or from a request served while it
    waits for a reply) joins the same run instead of starting a nested one.
    """

    def __init__(self, on_fault: Callable[[DmaError], None]) -> None:
        self.on_fault = on_fault
        #: Work not run yet, oldest first (truthy when there is some); one deque for
        #: the life of this object, which the session loop holds.
        self.waiting: collections.deque[Callable[[], None]] = collections.deque()
        self._running = False

    def __len__(self) -> int:
        return len(self.waiting)

    def add(self, work: Callable[[], None]) -> None:
        self.waiting.append(work)

    def run(self) -> None:
        """Run queued work until none is left (a no-op when already running)."""
        if self._running or not self.waiting:
            return
        self._running = True
        try:
            while self.waiting:
                work = self.waiting.popleft()
                try:
                    work()
                except DmaError as exc:
                    self.on_fault(exc)
        finally:
            self._running = False

    def clear(self) -> None:
        self.waiting.clear()
