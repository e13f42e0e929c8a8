"""Phases of a log: what firmware did with the device before the OS driver took it over.

Firmware may drive a device on one path and not on the other (SeaBIOS and
OVMF's NvmExpressDxe drive an NVMe function of the guest, but not one behind a
window device). The model declares where an OS driver takes the device over
(``takeover`` in the log header's ``device``, from
:class:`vfio_bridge.device.Takeover`):

Rule 1: writes to the declared register whose masked value equals the declared
value (NVMe: CC with EN clear) reset the device's use and divide the log into
sessions: the first such write, and each one after a write that set it again
(a driver may write the register twice while disabled). The OS phase starts
at the reset opening the first session in which the device signals a
message-signalled interrupt (firmware polls; an OS driver takes interrupts).
Everything before it is the pre-OS phase.

Rule 2: a log with no such session (no declaration, no reset, no MSI/MSI-X)
is all one phase: nothing is cut.

Rule 3: the diff compares both logs from their takeovers, and reports each
side's pre-OS phase apart (:class:`PreOs`), when either log shows firmware
driving the device (a reset before the takeover's). Otherwise nothing is cut:
two logs of OS-only use (qboot, or the window path) keep the OS's own probing
before its driver's first reset in the comparison.

Finding the takeover is a streaming pass over the log, before the diff's own.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfio_bridge.logformat import WINDOW_STREAM, Kind
from vfio_bridge.transaction import Transaction

#: Interrupt types that only an OS driver enables.
MESSAGE_SIGNALLED = frozenset({"msi", "msix"})


@dataclass
class PreOs:
    """A log's pre-OS phase: where the OS phase starts and what came before it."""

    takeover: int | None = None  # seq of the reset opening the OS phase; None: Rule 2
    kinds: collections.Counter = field(default_factory=collections.Counter)
    sessions: int = 0  # resets before the takeover (firmware's own, typically)

    @property
    def events(self) -> int:
        return sum(self.kinds.values())

    def describe(self) -> str:
        if self.takeover is None:
            return "no takeover found: the whole log is compared"
        if not self.events:
            return f"the OS driver took the device over at #{self.takeover} (first event)"
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        return (
            f"{self.events} events before the OS driver took the device over at "
            f"#{self.takeover} ({self.sessions} earlier resets; {kinds})"
        )


def takeover_rule(header: Mapping[str, Any]) -> tuple[int, int, int, int] | None:
    """``(bar, offset, mask, value)`` the model declared, or None."""
    device = header.get("device")
    rule = device.get("takeover") if isinstance(device, Mapping) else None
    if not isinstance(rule, Mapping):
        return None
    try:
        return int(rule["bar"]), int(rule["offset"]), int(rule["mask"]), int(rule["value"])
    except (KeyError, TypeError, ValueError):
        return None


def find_pre_os(header: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> PreOs:
    """The pre-OS phase of a log (Rules 1 and 2); reads ``events`` up to the takeover."""
    rule = takeover_rule(header)
    if rule is None:
        return PreOs()
    bar, offset, mask, value = rule
    session_start: int | None = None
    resets = 0
    in_use = True  # a reset is a write that clears what was set (or the first such write)
    before: list[str] = []  # kinds of events before the current session
    current: list[str] = []  # kinds of events in the current session
    for event in events:
        kind = event["kind"]
        own = event.get("stream") != WINDOW_STREAM
        if kind == Kind.MMIO_WRITE and own and event["bar"] == bar and event["offset"] == offset:
            if event["value"] & mask != value:
                in_use = True
            elif in_use:
                in_use = False
                before += current
                current = []
                session_start = event["seq"]
                resets += 1
        elif kind == Kind.IRQ and own and event.get("irq_type") in MESSAGE_SIGNALLED:
            if session_start is None:
                return PreOs()  # interrupts before any reset: no firmware phase to cut
            return PreOs(session_start, collections.Counter(before), resets - 1)
        current.append(kind)
    return PreOs()


def find_pre_os_in(path: Path) -> PreOs:
    """:func:`find_pre_os` of the log at ``path`` (a truncated log is read as far as it goes)."""
    from .reader import LogReader

    reader = LogReader(path, allow_truncated=True)
    return find_pre_os(reader.info.header, reader)


def split_phases(path_a: Path, path_b: Path) -> tuple[PreOs, PreOs]:
    """Each log's pre-OS phase to cut (Rule 3); empty ``PreOs()`` when nothing is cut."""
    pre_a, pre_b = find_pre_os_in(path_a), find_pre_os_in(path_b)
    found = pre_a.takeover is not None and pre_b.takeover is not None
    if found and (pre_a.sessions or pre_b.sessions):
        return pre_a, pre_b
    return PreOs(), PreOs()


def os_phase(transactions: Iterable[Transaction], pre_os: PreOs) -> Iterator[Transaction]:
    """The transactions that began at or after the takeover (a command the firmware
    left outstanding ends at the takeover's reset, so it began before)."""
    start = pre_os.takeover
    if start is None:
        yield from transactions
        return
    for txn in transactions:
        if not txn.seqs or txn.seqs[0] >= start:
            yield txn


def phase_line(pre_os: tuple[PreOs, PreOs] | None) -> str | None:
    """One line for the reports when a pre-OS phase was cut, else None."""
    if pre_os is None or (pre_os[0].takeover is None and pre_os[1].takeover is None):
        return None
    a, b = pre_os
    return f"pre-OS phase (reported apart, not compared): A: {a.describe()}; B: {b.describe()}"


__all__ = [
    "MESSAGE_SIGNALLED",
    "PreOs",
    "find_pre_os",
    "find_pre_os_in",
    "os_phase",
    "phase_line",
    "split_phases",
    "takeover_rule",
]
