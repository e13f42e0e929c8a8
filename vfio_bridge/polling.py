"""Adaptive busy-polling between requests, after QEMU's AioContext polling.

A client that issues synchronous MMIO reads back to back sends its next
request a few tens of microseconds after our reply. Sleeping in ``select()``
for that gap costs a wakeup, which on a small or virtualised machine is most
of a round trip. So after a burst of requests the session polls the socket
without blocking for up to ``budget`` seconds, yielding the CPU between
attempts so that a co-located QEMU keeps running. The budget grows while the
gaps between requests are short and shrinks to zero when they are long, so an
idle or slowly driven device costs no CPU.
"""

from __future__ import annotations

import os

#: Default upper bound of the polling budget, in microseconds.
DEFAULT_POLL_MAX_US = 200
_START = 25e-6
_GROW = 2.0
_SHRINK = 2.0


class PollBudget:
    """How long to poll before blocking; adapts to the observed request gaps."""

    __slots__ = ("budget", "limit")

    def __init__(self, max_us: float = DEFAULT_POLL_MAX_US) -> None:
        if max_us < 0:
            raise ValueError("the polling limit cannot be negative")
        self.limit = max_us / 1e6
        self.budget = 0.0

    def blocked(self, waited: float) -> None:
        """Polling missed and the session slept ``waited`` seconds for the next request."""
        if not self.limit:
            return
        if waited > self.limit:
            self.budget /= _SHRINK
            if self.budget < _START:
                self.budget = 0.0
        elif self.budget < self.limit:
            self.budget = min(self.limit, max(_START, self.budget * _GROW))


def default_poll_max_us() -> tuple[float, str | None]:
    """The polling limit for a server that was not given one, and why it is 0 when it is.

    Polling pays only while the client's vCPU runs elsewhere. A process that may
    run on one CPU alone (its affinity, or the machine) shares it with the vCPU
    whenever they meet, and each microsecond polled there is one the vCPU waits.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        cpus = list(range(os.cpu_count() or 1))
    if len(cpus) == 1:
        return 0, f"this process may run on CPU {cpus[0]} only, which a vCPU would share"
    return DEFAULT_POLL_MAX_US, None
