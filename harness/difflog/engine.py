"""Alignment: per-stream matching of two normalised logs with a bounded reorder window.

Both logs are read in lockstep, in batches; each stream keeps a queue per
side that never grows past a fixed bound, so memory stays flat however long
the logs are. Heads that match are consumed; a head found a little further
on the other side is matched there (reordering within the window is not a
divergence); otherwise the pair is a changed value/width/payload when both
heads touch the same thing, or a missing/extra event. Guest addresses match
through the pairs matched before them (:mod:`.correspondence`): each match
binds its events' addresses, one address of A to one of B.

Placement among identical twins: when the heads of a stream are the same but
one side's next item is their twin (the same interrupt again, a doorbell
write of a value that repeats), matching heads in order may pair an event
with its twin's counterpart and report the odd one out at the end of the run.
So such a pair is checked against the events around it in other streams, in
log order on each side: if the heads' neighbours differ both before and after
them, and the next twin's neighbours are all those of the other head, the
head is missing (or the other head extra) here. A missing or extra event's
divergence also says where it belongs in the other log (``near``): between the
counterparts of its nearest matched neighbours.

Fast lane: while both logs agree, neither needs aligning. When every stream's
queue is empty, the two normalisers are in the same state and every address
paired so far is the same in both logs (:mod:`.correspondence`), the next lines
of both logs are compared as bytes without their ``seq`` and ``t_ns``; the
lines that agree are parsed and normalised on one side only (the normalisers
share their state meanwhile) and count as matched in their streams; an event
whose item depends on nothing but its line (a register access, an interrupt;
a DMA but for its address) is parsed once. The first line that differs, and a
few before it as context for placement, go the item by item way above, and the
lane opens again when the queues are empty and the normalisers agree. Results
are those of the item path alone (tests/test_diff_golden.py).
"""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .correspondence import Correspondence
from .normalize import (
    ADDRESS,
    CFG_WRITE,
    DMA_READ,
    DMA_WRITE,
    MMIO_READ,
    MMIO_WRITE,
    Item,
    Normalizer,
)
from .phases import PreOs, split_phases
from .reader import ADDRESS_FIELD, EVENT_LINE, LogError, LogInfo, LogReader
from .rules import Rules

BATCH = 500
LOOKAHEAD = 8  # events of context used to tell a missing event from a changed one
MAX_KEPT = 10_000  # divergences kept in full; all are counted
FAST_LINES = 4096  # lines of each log compared as bytes at once
FAST_CONTEXT = 16  # lines before a difference left to the item path, for placement
NEIGHBOURS = 3  # items of other streams on each side of a twin that place it
NEAR = 32  # how far (in seq) to look for those neighbours
CALM = 2  # rounds without a divergence before a log catches up on the other (waiting_on)
RECENT = 1 << 12  # items of each log kept by seq for placement (bounds memory)
MEMO_KEPT = 1 << 16  # event bodies whose items the fast lane keeps

#: Where an event belongs in the other log: between two of its seqs (None: open end).
Place = tuple[int | None, int | None]


@dataclass
class Divergence:
    kind: str  # changed_value, changed_width, changed_payload, changed_length, missing, extra
    stream: str
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    detail: str
    #: Where a missing (extra) event belongs in the log without it: the seqs of B's (A's)
    #: events just before and after that place, None where not known.
    near: Place | None = None

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
            "near": list(self.near) if self.near else None,
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
    #: Guest addresses of A paired with one of B's, and how many of those differ.
    addresses_paired: int = 0
    addresses_moved: int = 0

    @property
    def equivalent(self) -> bool:
        return self.total_divergences == 0

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None


class _Stream:
    __slots__ = ("a", "b", "diverged", "last_a", "last_b", "matched")

    def __init__(self) -> None:
        self.a: collections.deque[Item] = collections.deque()
        self.b: collections.deque[Item] = collections.deque()
        self.matched = 0
        self.diverged = 0
        self.last_a: int | None = None  # seqs of the last pair matched item by item
        self.last_b: int | None = None


class Aligner:
    place_twins = True  # place missing and extra twins by their neighbours (issue 19)

    def __init__(self, result: DiffResult, window: int) -> None:
        self.result = result
        self.window = max(1, window)
        self.limit = 64 * self.window  # per stream and side: bounds memory
        self.streams: dict[str, _Stream] = {}
        # The latest items of each log by seq: the neighbours that place twins.
        self.recent: dict[str, dict[int, Item]] = {"a": {}, "b": {}}
        # Missing and extra events, with where their own stream puts them in the other
        # log (see _near), to be placed once the round has matched their neighbours.
        self.unplaced: list[tuple[Divergence, Item, str, Place]] = []
        self.calm = 0  # rounds since the last divergence
        #: Which guest address of A is which of B's, learned from the pairs matched.
        self.corr = Correspondence()

    def agrees(self, a: Item, b: Item, corr: Correspondence | None = None) -> bool:
        """Whether ``a`` (of A) and ``b`` (of B) are the same event, their addresses
        through what the pairs matched so far say (:class:`Correspondence`)."""
        if a.key != b.key or a.width != b.width or a.value != b.value:
            return False
        if a.addr is None and not a.addrs and b.addr is None and not b.addrs:
            return True
        return (self.corr if corr is None else corr).agree_items(a, b)

    def stream(self, name: str) -> _Stream:
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = _Stream()
        return stream

    def add(self, item: Item, side: str) -> None:
        getattr(self.stream(item.stream), side).append(item)
        recent = self.recent[side]
        recent[item.seq] = item
        if len(recent) > RECENT:  # keep the newer half
            self.recent[side] = dict(itertools.islice(recent.items(), RECENT // 2, None))

    def empty(self) -> bool:
        return not any(s.a or s.b for s in self.streams.values())

    def settle(self, a_done: bool, b_done: bool) -> None:
        diverged = self.result.total_divergences
        for name, stream in self.streams.items():
            self._settle(name, stream, a_done, b_done)
        # Where missing and extra events belong, once their neighbours had the chance
        # to be matched in every stream.
        for divergence, item, side, in_stream in self.unplaced:
            divergence.near = self._near(item, side, in_stream)
        self.unplaced.clear()
        self.calm = self.calm + 1 if self.result.total_divergences == diverged else 0

    def _settle(self, name: str, s: _Stream, a_done: bool, b_done: bool) -> None:
        window = self.window
        look = LOOKAHEAD
        agrees, corr = self.agrees, self.corr
        while s.a and s.b:
            a, b = s.a[0], s.b[0]
            if agrees(a, b):
                if self.place_twins and _twins_ahead(s, a, b):
                    placed = self._place_twin(s)
                    if placed == "missing":
                        self._record(name, s, "missing", s.a.popleft(), None)
                        continue
                    if placed == "extra":
                        self._record(name, s, "extra", None, s.b.popleft())
                        continue
                self._match(s, s.a.popleft(), s.b.popleft())
                continue
            # Decide with some context: wait until both sides show enough of it.
            if (len(s.a) <= look and not a_done) or (len(s.b) <= look and not b_done):
                return
            # Which edit makes the following events line up best?
            edits = {
                "missing": self._agree(s.a, 1, s.b, 0, look),
                "extra": self._agree(s.a, 0, s.b, 1, look),
            }
            if a.key == b.key and corr.agree(a.addr, b.addr):
                edits["changed"] = self._agree(s.a, 1, s.b, 1, look, (a, b))
            best = max(edits, key=lambda e: (edits[e], e == "changed"))
            if edits[best] * 2 < min(look, len(s.a) - 1, len(s.b) - 1):
                # No edit explains what follows: maybe the heads just moved a little.
                j = _find(s.b, functools.partial(agrees, a), window)
                i = _find(s.a, lambda other, b=b: agrees(other, b), window)
                if j is not None and (i is None or j <= i):
                    moved = s.b[j]
                    del s.b[j]
                    self._match(s, s.a.popleft(), moved)
                    self.result.reordered += 1
                    continue
                if i is not None:
                    moved = s.a[i]
                    del s.a[i]
                    self._match(s, moved, s.b.popleft())
                    self.result.reordered += 1
                    continue
                if (len(s.b) < window and not b_done) or (len(s.a) < window and not a_done):
                    return
            if best == "changed":
                corr.bind(a.addr, b.addr)  # the same place, changed
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

    def _match(self, s: _Stream, a: Item, b: Item) -> None:
        if a.addr is not None or a.addrs:
            self.corr.bind_items(a, b)
        s.matched += 1
        a.partner = b.seq
        b.partner = a.seq
        s.last_a = a.seq
        s.last_b = b.seq

    def _neighbours(self, item: Item, side: str, step: int) -> list[Item]:
        """Up to :data:`NEIGHBOURS` items of other streams before (step -1) or after
        (step 1) ``item`` in its log, nearest first."""
        recent = self.recent[side]
        found = []
        seq = item.seq
        for distance in range(1, NEAR + 1):
            other = recent.get(seq + step * distance)
            if other is not None and other.stream != item.stream:
                found.append(other)
                if len(found) == NEIGHBOURS:
                    break
        return found

    def _misfits(self, a: Item, b: Item) -> tuple[int, int]:
        """How many of their neighbours in other streams two items do not share, place
        by place, before them and after them (-1 for a side where neither has any)."""
        misfits = []
        for step in (-1, 1):
            around_a, around_b = self._neighbours(a, "a", step), self._neighbours(b, "b", step)
            pairs = list(zip(around_a, around_b, strict=False))
            misfits.append(
                sum(1 for x, y in pairs if x.stream != y.stream or not self.agrees(x, y))
                if pairs
                else -1
            )
        return misfits[0], misfits[1]

    def _place_twin(self, s: _Stream) -> str | None:
        """Whether the same heads of a run of twins are not each other's counterparts:
        "missing" when A's head differs from B's in its neighbours on both sides and A's
        next twin shares all of them, "extra" the other way round, None otherwise (a
        swap of two neighbours, say, leaves one side alone)."""
        a, b = s.a[0], s.b[0]
        before, after = self._misfits(a, b)
        if before <= 0 or after <= 0:
            return None
        if len(s.a) > 1 and s.a[1].same(a) and self._misfits(s.a[1], b) == (0, 0):
            return "missing"
        if len(s.b) > 1 and s.b[1].same(b) and self._misfits(a, s.b[1]) == (0, 0):
            return "extra"
        return None

    def waiting_on(self) -> tuple[int, int]:
        """How many items to read next from each log: a batch from both, or from the
        one the most queued items are waiting for.

        Once the logs agree again after a divergence (a round without one), a log
        whose queues are all empty reads only as many items as the other has queued:
        when it catches up, the queues empty together and the fast lane can open again
        (after a missing event, one log would otherwise stay an event ahead for good).
        """
        streams = self.streams.values()
        waiting_for_b = sum(len(s.a) for s in streams if len(s.b) <= LOOKAHEAD)
        waiting_for_a = sum(len(s.b) for s in streams if len(s.a) <= LOOKAHEAD)
        if waiting_for_a == waiting_for_b:
            return BATCH, BATCH
        read_a = waiting_for_a > waiting_for_b
        if self.calm >= CALM and not any(s.a if read_a else s.b for s in streams):
            ahead = min(BATCH, sum(len(s.b) if read_a else len(s.a) for s in streams))
            return (ahead, 0) if read_a else (0, ahead)
        return (BATCH, 0) if read_a else (0, BATCH)

    def _near(self, item: Item, side: str, in_stream: Place) -> Place:
        """Where ``item`` (of log ``side``) belongs in the other log: after the counterpart
        of its nearest matched neighbour before it, before that of the one after it;
        where its own stream put it (``in_stream``, see :meth:`_record`) on a side
        whose neighbours have no counterparts."""
        before = next(
            (n.partner for n in self._neighbours(item, side, -1) if n.partner is not None),
            in_stream[0],
        )
        after = next(
            (n.partner for n in self._neighbours(item, side, 1) if n.partner is not None),
            in_stream[1],
        )
        return before, after

    def _record(self, stream: str, s: _Stream, kind: str, a: Item | None, b: Item | None) -> None:
        s.diverged += 1
        result = self.result
        result.total_divergences += 1
        result.by_kind[kind] += 1
        if len(result.divergences) < MAX_KEPT:
            divergence = Divergence(
                kind, stream, a.event if a else None, b.event if b else None, _describe(kind, a, b)
            )
            result.divergences.append(divergence)
            if a is None or b is None:
                # In its own stream, the event belongs after the other log's last match
                # and before its next item: known now, gone once the round goes on.
                if a is None:
                    in_stream = (s.last_a, s.a[0].seq if s.a else None)
                    self.unplaced.append((divergence, b, "b", in_stream))
                else:
                    in_stream = (s.last_b, s.b[0].seq if s.b else None)
                    self.unplaced.append((divergence, a, "a", in_stream))

    def _agree(
        self,
        qa: collections.deque[Item],
        ia: int,
        qb: collections.deque[Item],
        ib: int,
        n: int,
        changed: tuple[Item, Item] | None = None,
    ) -> int:
        """How many of the next ``n`` items agree when A starts at ``ia`` and B at ``ib``,
        each pair's addresses bound for the pairs after it (on trial: nothing is kept);
        ``changed``: heads taken as one event changed, whose places are bound first."""
        pairs = zip(
            itertools.islice(qa, ia, ia + n), itertools.islice(qb, ib, ib + n), strict=False
        )
        trial = self.corr.trial()
        if changed is not None:
            trial.bind(changed[0].addr, changed[1].addr)
        agreeing = 0
        for x, y in pairs:
            if self.agrees(x, y, trial):
                agreeing += 1
                trial.bind_items(x, y)
        return agreeing

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {"matched": s.matched, "diverged": s.diverged}
            for name, s in sorted(self.streams.items())
        }


def _twins_ahead(s: _Stream, a: Item, b: Item) -> bool:
    """Whether the item after a head is its twin (``a`` and ``b`` are the same heads)."""
    return (len(s.a) > 1 and s.a[1].same(a)) or (len(s.b) > 1 and s.b[1].same(b))


def _find(
    queue: collections.deque[Item], agrees: Callable[[Item], bool], window: int
) -> int | None:
    for index, other in enumerate(itertools.islice(queue, 1, window)):
        if agrees(other):
            return index + 1
    return None


def _changed_kind(a: Item, b: Item) -> str:
    if a.width != b.width:
        return "changed_length" if a.stream.startswith("dma") else "changed_width"
    return "changed_payload" if a.stream.startswith("dma") else "changed_value"


def _value(item: Item) -> str:
    value = item.value
    if value == ADDRESS and item.addrs:
        return f"{item.addrs[0]:#x}"
    if isinstance(value, int):
        return f"{value:#x}"
    if isinstance(value, str):
        return value[:12]
    return str(value)


def _describe(kind: str, a: Item | None, b: Item | None) -> str:
    item = a or b
    assert item is not None
    what = " ".join(str(part) if not isinstance(part, int) else f"{part:#x}" for part in item.key)
    if a is not None and b is not None and a.addr != b.addr:
        what += f" at {a.addr:#x} in A, {b.addr:#x} in B"
    elif item.addr is not None:
        what += f" at {item.addr:#x}"
    if kind == "missing":
        return f"{what} (width {item.width}) = {_value(item)} is in A but not in B"
    if kind == "extra":
        return f"{what} (width {item.width}) = {_value(item)} is in B but not in A"
    assert a is not None and b is not None
    if kind in ("changed_width", "changed_length"):
        return f"{what}: width {a.width} in A, {b.width} in B"
    if a.value == b.value and a.value != ADDRESS:
        return (
            f"{what}: holds addresses that do not correspond: "
            f"{_addresses(a.addrs)} in A, {_addresses(b.addrs)} in B"
        )
    return f"{what}: {_value(a)} in A, {_value(b)} in B"


def _addresses(addrs: tuple[int, ...], shown: int = 4) -> str:
    listed = ", ".join(f"{addr:#x}" for addr in addrs[:shown])
    return f"({listed}{', ...' if len(addrs) > shown else ''})"


def _normalised(
    reader: LogReader, normalizer: Normalizer, counts: collections.Counter, start: int | None = None
) -> Iterator[Item]:
    for event in reader:
        if start is not None and event["seq"] < start:
            continue  # the pre-OS phase: firmware's, reported apart (phases.py, Rule 3)
        counts[event["kind"]] += 1
        item = normalizer.push(event)
        if item is not None:
            yield item
    yield from normalizer.finish()


def _bodies(lines: list[bytes]) -> list[bytes | None]:
    """What follows ``seq`` and ``t_ns`` on each line; None for a line not shaped like
    an event (:data:`EVENT_LINE`)."""
    block = b"".join(lines)
    bodies: list[bytes | None] = EVENT_LINE.findall(block)
    if len(bodies) != len(lines):
        bodies = []
        for line in lines:
            match = EVENT_LINE.match(line)
            bodies.append(match[1] if match else None)
    return bodies


def _agreeing(bodies_a: list[bytes | None], bodies_b: list[bytes | None]) -> int:
    """How many leading lines of the two logs are the same event but for seq and t_ns."""
    if bodies_a == bodies_b and None not in bodies_a:
        return len(bodies_a)
    for index, (body_a, body_b) in enumerate(zip(bodies_a, bodies_b, strict=True)):
        if body_a is None or body_a != body_b:
            return index
    return len(bodies_a)


class _Diff:
    """Two logs read in lockstep: the fast lane while they agree, items otherwise."""

    def __init__(
        self,
        reader_a: LogReader,
        reader_b: LogReader,
        rules: Rules,
        pre_os: tuple[PreOs, PreOs] = (PreOs(), PreOs()),
    ) -> None:
        self.reader_a, self.reader_b = reader_a, reader_b
        self.pre_os = pre_os
        self.result = result = DiffResult(reader_a.info, reader_b.info, pre_os=pre_os)
        self.aligner = Aligner(result, rules.reorder_window)
        self.norm_a = Normalizer(reader_a.info.header, rules)
        self.norm_b = Normalizer(reader_b.info.header, rules)
        self.shared = False  # norm_b's state is norm_a's (fast lane)
        # The fast lane reads lines as they come; a firmware phase to skip is the item
        # path's (it filters by the takeover's seq).
        no_phases = all(pre.takeover is None for pre in pre_os)
        self.fast_open = no_phases and self.norm_a.profile == self.norm_b.profile
        self.fast_backoff = 0  # item rounds before the fast lane is tried again
        self.fast_wait = 0
        # Event bodies: (item, whether it is an MMIO access, outcome, outcome if collapsed).
        self.memo: dict[bytes | None, tuple[Any, bool, tuple, tuple]] = {}
        self.addressed: dict[bytes, tuple[Any, bool, tuple, tuple]] = {}  # DMA bodies less addr

    def run(self) -> DiffResult:
        result, aligner = self.result, self.aligner
        pre_a, pre_b = self.pre_os
        items_a = _normalised(self.reader_a, self.norm_a, result.events_a, pre_a.takeover)
        items_b = _normalised(self.reader_b, self.norm_b, result.events_b, pre_b.takeover)
        a_done = b_done = False
        while not (a_done and b_done):
            if self.fast_open and not (a_done or b_done) and aligner.empty() and self._fast():
                continue
            if self.shared:
                self.norm_b.unshare()
                self.shared = False
            # Read where a stream waits (one log may run ahead in some streams).
            need_a, need_b = aligner.waiting_on()
            if a_done or b_done:
                need_a = need_b = BATCH
            if need_a and not a_done:
                batch = list(itertools.islice(items_a, need_a))
                a_done = len(batch) < need_a
                for item in batch:
                    aligner.add(item, "a")
            if need_b and not b_done:
                batch = list(itertools.islice(items_b, need_b))
                b_done = len(batch) < need_b
                for item in batch:
                    aligner.add(item, "b")
            aligner.settle(a_done, b_done)
        result.streams = aligner.stats()
        result.matched = sum(s["matched"] for s in result.streams.values())
        result.addresses_paired = len(aligner.corr.a_to_b)
        result.addresses_moved = aligner.corr.crossed
        # Streams settle independently; report in log order (A's, else B's position;
        # at the same position A's event first).
        result.divergences.sort(
            key=lambda d: (d.seq_a if d.seq_a is not None else d.seq_b or 0, d.seq_a is None)
        )
        return result

    def _fast(self) -> bool:
        """Take the lines both logs agree on, if any; False when there were none."""
        if self.aligner.corr.crossed:
            # An address of A is another of B's: the same line in both logs no longer
            # means the same event, and no address is ever unbound.
            self.fast_open = False
            return False
        if self.fast_wait:
            self.fast_wait -= 1
            return False
        reader_a, reader_b = self.reader_a, self.reader_b
        # B's lines come a block at a time, cut by another process, when B is long
        # (LogReader.take_block); then as many of A's.
        block = reader_b.take_block()
        if block is None:
            lines_a, lines_b = reader_a.take(FAST_LINES), reader_b.take(FAST_LINES)
            size_b, raw_b, cut_b = len(lines_b), b"", None
        else:
            size_b, raw_b, cut_b = block
            lines_a, lines_b = reader_a.take(size_b), None
        count = min(len(lines_a), size_b)
        if count:
            if lines_b is not None:
                whole_b = lines_b[count - 1].endswith(b"\n")
            else:  # only a block's last line may lack its newline
                whole_b = count < size_b or raw_b.endswith(b"\n")
            if not (whole_b and lines_a[count - 1].endswith(b"\n")):
                count -= 1  # a last line cut short is the reader's to judge
        bodies = _bodies(lines_a[:count])
        if cut_b is not None and count == size_b and None not in bodies:
            # Lines agree exactly when the bodies joined by newlines (a body has none) do.
            same = b"\n".join(bodies) == cut_b  # type: ignore[arg-type]
            agreeing = count if same else _agreeing(bodies, cut_b.split(b"\n"))
        elif cut_b is not None:
            agreeing = _agreeing(bodies, cut_b.split(b"\n")[:count])
        else:
            if lines_b is None:
                lines_b = reader_b.block_lines(raw_b)
            agreeing = _agreeing(bodies, _bodies(lines_b[:count]))
        if agreeing < count:
            agreeing = max(0, agreeing - FAST_CONTEXT)
        if agreeing and not self.shared and not self.norm_a.same_state(self.norm_b):
            agreeing = 0
        first_line = reader_a.line_no - len(lines_a) + 1
        used = self._matched_lines(lines_a, bodies, agreeing, first_line) if agreeing else 0
        reader_a.unread(lines_a[used:])
        if lines_b is None and used < size_b:
            lines_b = reader_b.block_lines(raw_b)
        if lines_b is not None:
            reader_b.unread(lines_b[used:])
        if not used:
            self.fast_backoff = min(64, 2 * self.fast_backoff or 1)
            self.fast_wait = self.fast_backoff
            return False
        self.fast_backoff = 0
        return True

    def _matched_lines(
        self, lines: list[bytes], bodies: list[bytes | None], count: int, first_line: int
    ) -> int:
        """Normalise A's first ``count`` lines for both logs; how many were used (a config
        write stops the lane: the config state keeps each log's own events).

        An event whose item depends on nothing but itself (:meth:`Normalizer.stateless`)
        is parsed once: its body's next appearances reuse the item (``memo``). So is a
        DMA whose item depends on nothing else but its address
        (:meth:`Normalizer.addressed`): the next with the same body but for the address
        only has its address bound (``addressed``). While no address is crossed
        (:attr:`Correspondence.crossed`), an address in the same line of both logs is
        the same in both."""
        if not self.shared:
            self.norm_b.share(self.norm_a)
            self.shared = True
        reader, norm, memo, addressed = self.reader_a, self.norm_a, self.memo, self.addressed
        parse, push, stateless = reader.parse, norm.push, norm.stateless
        mmio_item, poll = norm.mmio_item, norm.poll
        same_address = self.aligner.corr.same_address
        search = ADDRESS_FIELD.search
        # One (kind, stream or None) per event, counted at the end.
        outcomes: list[tuple[str, str | None]] = []
        append = outcomes.append
        parsed = 0
        used = 0
        for used, known in enumerate(list(map(memo.get, bodies[:count]))):
            if known is None:
                body = bodies[used]
                field = search(body)  # type: ignore[arg-type]
                if field is not None:
                    unaddressed = body[: field.start()] + body[field.end() :]  # type: ignore[index]
                    known = addressed.get(unaddressed)
                    if known is not None:
                        same_address(int(field[1]))
            if known is None:
                event = parse(lines[used], first_line + used)
                assert event is not None  # an event line: EVENT_LINE matched it
                kind = event["kind"]
                if kind == CFG_WRITE:
                    reader.info.events -= 1
                    break
                parsed += 1
                mmio = kind in (MMIO_READ, MMIO_WRITE)
                item = mmio_item(event, kind) if mmio else push(event)
                if item is not None:
                    if item.addr is not None:
                        same_address(item.addr)
                    for address in item.addrs:
                        same_address(address)
                known = (
                    item,
                    mmio and item is not None,
                    (kind, item and item.stream),
                    (kind, None),
                )
                if kind in (DMA_READ, DMA_WRITE):
                    if field is not None and norm.addressed(event):
                        if len(addressed) >= MEMO_KEPT:
                            addressed.clear()
                        addressed[unaddressed] = known
                elif stateless(event):
                    if len(memo) >= MEMO_KEPT:
                        memo.clear()
                    memo[body] = known
            # An MMIO access may repeat the last read of its stream (a status poll).
            append(known[3] if known[1] and poll(known[0]) is None else known[2])
        else:
            used = count
        reader.info.events += used - parsed
        self.reader_b.info.events += used
        events = self.result.events_a, self.result.events_b
        for (kind, stream), number in collections.Counter(outcomes).items():
            for counts in events:
                counts[kind] += number
            if stream is not None:
                self.aligner.stream(stream).matched += number
        return used


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
    try:
        return _Diff(reader_a, reader_b, rules, (pre_a, pre_b)).run()
    finally:  # an error in one log leaves the other half read
        reader_a.stop()
        reader_b.stop()
