"""Alignment: per-stream matching of two normalised logs with a bounded reorder window.

Both logs are read in lockstep, in batches; each stream keeps a queue per
side that never grows past a fixed bound, so memory stays flat however long
the logs are. Heads that match are consumed; a head found a little further
on the other side is matched there (reordering within the window is not a
divergence); otherwise the pair is a changed value/width/payload when both
heads touch the same thing, or a missing/extra event.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .normalize import Item, Normalizer
from .phases import PreOs, split_phases
from .reader import LogError, LogInfo, LogReader
from .rules import Rules

BATCH = 500
LOOKAHEAD = 8  # events of context used to tell a missing event from a changed one
MAX_KEPT = 10_000  # divergences kept in full; all are counted


@dataclass
class Divergence:
    kind: str  # changed_value, changed_width, changed_payload, changed_length, missing, extra
    stream: str
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    detail: str

    @property
    def seq_a(self) -> int | None:
        return self.a["seq"] if self.a else None

    @property
    def seq_b(self) -> int | None:
        return self.b["seq"] if self.b else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stream": self.stream,
            "index_a": self.seq_a,
            "index_b": self.seq_b,
            "event_a": self.a,
            "event_b": self.b,
            "detail": self.detail,
        }


@dataclass
class DiffResult:
    a: LogInfo
    b: LogInfo
    divergences: list[Divergence] = field(default_factory=list)
    total_divergences: int = 0
    by_kind: collections.Counter = field(default_factory=collections.Counter)
    events_a: collections.Counter = field(default_factory=collections.Counter)
    events_b: collections.Counter = field(default_factory=collections.Counter)
    matched: int = 0
    reordered: int = 0
    streams: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Each side's pre-OS phase, cut from the comparison (phases.py); None: not looked for.
    pre_os: tuple[PreOs, PreOs] | None = None

    @property
    def equivalent(self) -> bool:
        return self.total_divergences == 0

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None


class _Stream:
    __slots__ = ("a", "b", "diverged", "matched")

    def __init__(self) -> None:
        self.a: collections.deque[Item] = collections.deque()
        self.b: collections.deque[Item] = collections.deque()
        self.matched = 0
        self.diverged = 0


class Aligner:
    def __init__(self, result: DiffResult, window: int) -> None:
        self.result = result
        self.window = max(1, window)
        self.limit = 64 * self.window  # per stream and side: bounds memory
        self.streams: dict[str, _Stream] = {}

    def add(self, item: Item, side: str) -> None:
        stream = self.streams.get(item.stream)
        if stream is None:
            stream = self.streams[item.stream] = _Stream()
        getattr(stream, side).append(item)

    def settle(self, a_done: bool, b_done: bool) -> None:
        for name, stream in self.streams.items():
            self._settle(name, stream, a_done, b_done)

    def _settle(self, name: str, s: _Stream, a_done: bool, b_done: bool) -> None:
        window = self.window
        look = LOOKAHEAD
        while s.a and s.b:
            a, b = s.a[0], s.b[0]
            if a.same(b):
                s.a.popleft()
                s.b.popleft()
                s.matched += 1
                continue
            # Decide with some context: wait until both sides show enough of it.
            if (len(s.a) <= look and not a_done) or (len(s.b) <= look and not b_done):
                return
            # Which edit makes the following events line up best?
            edits = {"missing": _agree(s.a, 1, s.b, 0, look), "extra": _agree(s.a, 0, s.b, 1, look)}
            if a.key == b.key:
                edits["changed"] = _agree(s.a, 1, s.b, 1, look)
            best = max(edits, key=lambda e: (edits[e], e == "changed"))
            if edits[best] * 2 < min(look, len(s.a) - 1, len(s.b) - 1):
                # No edit explains what follows: maybe the heads just moved a little.
                j = _find(s.b, a, window)
                i = _find(s.a, b, window)
                if j is not None and (i is None or j <= i):
                    del s.b[j]
                    s.a.popleft()
                    s.matched += 1
                    self.result.reordered += 1
                    continue
                if i is not None:
                    del s.a[i]
                    s.b.popleft()
                    s.matched += 1
                    self.result.reordered += 1
                    continue
                if (len(s.b) < window and not b_done) or (len(s.a) < window and not a_done):
                    return
            if best == "changed":
                self._record(name, s, _changed_kind(a, b), s.a.popleft(), s.b.popleft())
            elif best == "missing":
                self._record(name, s, "missing", s.a.popleft(), None)
            else:
                self._record(name, s, "extra", None, s.b.popleft())
        # One side is empty: the other's head is missing/extra once the empty
        # side can no longer supply it (finished, or silent for too long).
        while s.a and (b_done or len(s.a) > self.limit):
            self._record(name, s, "missing", s.a.popleft(), None)
        while s.b and (a_done or len(s.b) > self.limit):
            self._record(name, s, "extra", None, s.b.popleft())

    def waiting_on(self) -> tuple[bool, bool]:
        """Which log to read next: the one the most queued items are waiting for."""
        waiting_for_b = sum(len(s.a) for s in self.streams.values() if len(s.b) <= LOOKAHEAD)
        waiting_for_a = sum(len(s.b) for s in self.streams.values() if len(s.a) <= LOOKAHEAD)
        if waiting_for_a == waiting_for_b:
            return True, True
        return waiting_for_a > waiting_for_b, waiting_for_b > waiting_for_a

    def _record(self, stream: str, s: _Stream, kind: str, a: Item | None, b: Item | None) -> None:
        s.diverged += 1
        result = self.result
        result.total_divergences += 1
        result.by_kind[kind] += 1
        if len(result.divergences) < MAX_KEPT:
            result.divergences.append(
                Divergence(
                    kind,
                    stream,
                    a.event if a else None,
                    b.event if b else None,
                    _describe(kind, a, b),
                )
            )

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {"matched": s.matched, "diverged": s.diverged}
            for name, s in sorted(self.streams.items())
        }


def _find(queue: collections.deque[Item], item: Item, window: int) -> int | None:
    for index, other in enumerate(itertools.islice(queue, 1, window)):
        if other.same(item):
            return index + 1
    return None


def _agree(
    qa: collections.deque[Item], ia: int, qb: collections.deque[Item], ib: int, n: int
) -> int:
    """How many of the next ``n`` items agree when A starts at ``ia`` and B at ``ib``."""
    pairs = zip(itertools.islice(qa, ia, ia + n), itertools.islice(qb, ib, ib + n), strict=False)
    return sum(1 for x, y in pairs if x.same(y))


def _changed_kind(a: Item, b: Item) -> str:
    if a.width != b.width:
        return "changed_length" if a.stream.startswith("dma") else "changed_width"
    return "changed_payload" if a.stream.startswith("dma") else "changed_value"


def _value(item: Item) -> str:
    value = item.value
    if isinstance(value, int):
        return f"{value:#x}"
    if isinstance(value, str):
        return value[:12]
    return str(value)


def _describe(kind: str, a: Item | None, b: Item | None) -> str:
    item = a or b
    assert item is not None
    what = " ".join(str(part) if not isinstance(part, int) else f"{part:#x}" for part in item.key)
    if kind == "missing":
        return f"{what} (width {item.width}) = {_value(item)} is in A but not in B"
    if kind == "extra":
        return f"{what} (width {item.width}) = {_value(item)} is in B but not in A"
    assert a is not None and b is not None
    if kind in ("changed_width", "changed_length"):
        return f"{what}: width {a.width} in A, {b.width} in B"
    return f"{what}: {_value(a)} in A, {_value(b)} in B"


def _normalised(
    reader: LogReader, normalizer: Normalizer, counts: collections.Counter, start: int | None = None
) -> Iterator[Item]:
    for event in reader:
        if start is not None and event["seq"] < start:
            continue  # the pre-OS phase (its addresses would shift the canonical numbering)
        counts[event["kind"]] += 1
        item = normalizer.push(event)
        if item is not None:
            yield item
    yield from normalizer.finish()


def diff_logs(
    path_a: Path,
    path_b: Path,
    rules: Rules | None = None,
    allow_truncated: bool = False,
    phases: bool = True,
) -> DiffResult:
    """Compare two logs; raises :class:`LogError` on unreadable or truncated input.
    ``phases``: compare from the OS driver's takeover when firmware drove the device
    first (:mod:`.phases`)."""
    rules = rules or Rules()
    pre_a, pre_b = split_phases(path_a, path_b) if phases else (PreOs(), PreOs())
    reader_a = LogReader(path_a, allow_truncated)
    reader_b = LogReader(path_b, allow_truncated)
    digests = (reader_a.info.digest_algorithm, reader_b.info.digest_algorithm)
    if digests[0] != digests[1]:
        raise LogError(
            f"{path_a} digests payloads with {digests[0]} and {path_b} with {digests[1]}: "
            "their payloads cannot be compared; record both with the same xvpci version"
        )
    result = DiffResult(reader_a.info, reader_b.info, pre_os=(pre_a, pre_b))
    aligner = Aligner(result, rules.reorder_window)
    normalizer_a = Normalizer(reader_a.info.header, rules)
    normalizer_b = Normalizer(reader_b.info.header, rules)
    items_a = _normalised(reader_a, normalizer_a, result.events_a, pre_a.takeover)
    items_b = _normalised(reader_b, normalizer_b, result.events_b, pre_b.takeover)
    a_done = b_done = False
    while not (a_done and b_done):
        # Read where a stream waits (one log may run ahead in some streams).
        need_a, need_b = aligner.waiting_on()
        if a_done or b_done:
            need_a = need_b = True
        if need_a and not a_done:
            batch = list(itertools.islice(items_a, BATCH))
            a_done = len(batch) < BATCH
            for item in batch:
                aligner.add(item, "a")
        if need_b and not b_done:
            batch = list(itertools.islice(items_b, BATCH))
            b_done = len(batch) < BATCH
            for item in batch:
                aligner.add(item, "b")
        aligner.settle(a_done, b_done)
    result.streams = aligner.stats()
    result.matched = sum(s["matched"] for s in result.streams.values())
    # Streams settle independently; report in log order (A's, else B's position).
    result.divergences.sort(key=lambda d: d.seq_a if d.seq_a is not None else d.seq_b or 0)
    return result
