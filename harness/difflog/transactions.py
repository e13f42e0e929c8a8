"""The transaction-level diff: two logs compared as the commands their device was given.

A model's decoder (``vfio_bridge.models.DECODERS``) turns each log into
:class:`~vfio_bridge.transaction.Transaction` objects; this module compares two
such streams. The rules:

Rule 1 (matching by content): a command is paired with a command of the other
side that asked for the same thing (:attr:`Transaction.key`: op, parameters,
blocks and the data written), never by queue, slot, command id or order. A
pair must agree on what the device did: status, result, non-block data
returned, and whether the completion was signalled by its interrupt (block
data read is judged per block, Rule 2, so that it is reported once).

Rule 2 (blocks, not commands): the host's block layer may merge or split
requests differently on each boot, so I/O commands that found no counterpart
are not divergences by themselves. What they did is compared per logical
block instead: the sequence of contents written to each block (repeats
collapsed), its content at the end (the end state), and every read, which
must return what its own side last wrote to that block (or, for a block not
yet written, the same as the other side's first read of it). An unpaired
command that failed, never completed or was not signalled is a divergence.
The specification orders only writes to one block (a host waits for one to
complete before issuing an overlapping one), so only that order is compared.

Rule 3 (end state): besides blocks, the final values of the registers the
model declares as ``state`` are compared, where both logs show them.

Rule 4: admin (queue 0) and other commands with no blocks (Identify, Create
I/O Queue, Flush is the exception: its count depends on batching) must all be
paired. Everything a source could not supply (``Transaction.unknown``) is
skipped and reported as not compared.

Rule 5 (order the specification imposes, checked within each side): a read's or
write's completion comes after its data (the completion tells the host the data
is in memory, or that its buffer is free); and a Flush covers the commands
completed before it was submitted (NVMe base specification, Flush command), so a
write completed before a Flush's submission must have moved its data before it.
Either broken is an ``order`` divergence at that command, on its side. Which
flush covers which write is not compared across sides: the page cache decides
when a write is issued relative to the journal's flushes, and on recorded
fs-verify pairs a few writes land in a neighbouring flush interval on each boot.

Memory: unpaired commands, per-block state (a few entries per block written)
and counters; the logs themselves are streamed.
"""

from __future__ import annotations

import collections
import gc
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfio_bridge.logformat import WINDOW_STREAM, Kind, MalformedEvent
from vfio_bridge.transaction import Transaction

from .phases import PreOs, os_phase, split_phases
from .reader import LogError, LogInfo, LogReader
from .rules import Rules

BATCH = 256
MAX_KEPT = 10_000
#: Ops whose number depends on how the host batched its writes (Rule 4).
BATCHING_OPS = frozenset({"flush"})
#: Ops that are not expected to complete (NVMe asynchronous event requests).
OPEN_ENDED_OPS = frozenset({"async_event"})
SUCCESS = 0

Decoder = Callable[[Mapping[str, Any], Iterable[Mapping[str, Any]]], Iterator[Transaction]]


def decoder_for(header: Mapping[str, Any]) -> Decoder | None:
    """The decoder of the model a log was recorded from, or None if it has none."""
    from vfio_bridge.models import DECODERS

    return DECODERS.get(str(header.get("model", "")))


@dataclass
class TxnDivergence:
    """One difference at the transaction level; ``side`` is where the odd one is."""

    # unmatched, status, result, data, interrupt, incomplete, order, blocks, end_state, register
    kind: str
    side: str  # "A", "B" or "both"
    a: Transaction | None
    b: Transaction | None
    detail: str
    lba: int | None = None
    blocks: int = 0

    @property
    def seqs_a(self) -> tuple[int, ...]:
        return self.a.seqs if self.a else ()

    @property
    def seqs_b(self) -> tuple[int, ...]:
        return self.b.seqs if self.b else ()

    @property
    def command(self) -> str:
        """The command it is about, as a person names it (op, LBA, length)."""
        txn = self.a or self.b
        if txn is not None:
            return txn.describe()
        return f"LBA {self.lba}+{self.blocks}" if self.lba is not None else "end state"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "side": self.side,
            "command": self.command,
            "lba": self.lba,
            "blocks": self.blocks,
            "detail": self.detail,
            "transaction_a": _txn_json(self.a),
            "transaction_b": _txn_json(self.b),
            "seqs_a": list(self.seqs_a),
            "seqs_b": list(self.seqs_b),
        }


def _txn_json(txn: Transaction | None) -> dict[str, Any] | None:
    if txn is None:
        return None
    out: dict[str, Any] = {"op": txn.op, "params": dict(txn.params)}
    if txn.written:
        out["written"] = [[e.lba, e.blocks] for e in txn.written]
    if txn.read:
        out["read"] = [[e.lba, e.blocks] for e in txn.read]
    out.update(status=txn.status, result=txn.result, irq=txn.irq, irq_expected=txn.irq_expected)
    out.update(queue=txn.queue, cid=txn.cid, seqs=list(txn.seqs))
    return out


@dataclass
class TransactionResult:
    a: LogInfo
    b: LogInfo
    model: str
    divergences: list[TxnDivergence] = field(default_factory=list)
    total_divergences: int = 0
    by_kind: collections.Counter = field(default_factory=collections.Counter)
    ops_a: collections.Counter = field(default_factory=collections.Counter)
    ops_b: collections.Counter = field(default_factory=collections.Counter)
    paired: int = 0
    unpaired_a: int = 0  # judged per block (Rule 2)
    unpaired_b: int = 0
    blocks_written: int = 0  # distinct blocks either side wrote
    blocks_read_checked: int = 0
    registers_compared: list[str] = field(default_factory=list)
    not_compared: set[str] = field(default_factory=set)
    #: Each side's pre-OS phase, cut from the comparison (phases.py); None: not looked for.
    pre_os: tuple[PreOs, PreOs] | None = None
    #: Per side, ``(t_ns since the side's first transaction, row, op)`` samples for the
    #: timeline (each side from its own first command: boots take different times).
    timeline: dict[str, list[tuple[int, str, str]]] = field(
        default_factory=lambda: {"A": [], "B": []}
    )
    #: Per side, the ``t_ns`` of its first transaction (the timeline's origin).
    timeline_origin: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})

    @property
    def equivalent(self) -> bool:
        return self.total_divergences == 0

    @property
    def first(self) -> TxnDivergence | None:
        return self.divergences[0] if self.divergences else None

    def add(self, divergence: TxnDivergence) -> None:
        self.total_divergences += 1
        self.by_kind[divergence.kind] += 1
        if len(self.divergences) < MAX_KEPT:
            self.divergences.append(divergence)


TIMELINE_LIMIT = 20_000  # samples per side kept for the picture


class _Side:
    """Per-block state of one log (Rule 2) and its register end state (Rule 3)."""

    def __init__(self, name: str, rules: Rules) -> None:
        self.name = name
        self.rules = rules
        self.start: int | None = None  # t_ns of the first transaction
        self.content: dict[int, str] = {}
        self.history: dict[int, int] = {}
        self.writes: collections.Counter[int] = collections.Counter()
        self.last_writer: dict[int, Transaction] = {}
        self.initial: dict[int, tuple[str, Transaction]] = {}
        self.unpaired: dict[tuple[object, ...], collections.deque[Transaction]] = {}
        self.ops: collections.Counter = collections.Counter()
        self.timeline: list[tuple[int, str, str]] = []
        self.stride = 1  # keep every stride-th transaction for the timeline
        self.seen = 0
        # Writes completed before their data moved, until a flush shows whether it
        # was submitted in between (Rule 5).
        self.late_writes: list[Transaction] = []

    def check_order(self, txn: Transaction, result: TransactionResult) -> None:
        """Rule 5 on one command of this side, from the positions its source gives."""
        if txn.op == "flush" and self.late_writes and txn.submitted is not None:
            submitted = txn.submitted
            covered = [w for w in self.late_writes if (w.completed or 0) < submitted]
            for write in covered:
                self.late_writes.remove(write)
                data = write.data_moved[1] if write.data_moved else None
                if data is not None and submitted < data:
                    self._order(
                        write,
                        result,
                        f"{write.describe()} on {self.name} completed (#{write.completed}) "
                        f"before its data moved (#{data}), and the flush submitted in "
                        f"between (#{submitted}) covers it: it covers data the device "
                        "did not have",
                    )
                else:
                    self._late(write, result)
            return
        if txn.completed is None or txn.status != SUCCESS or txn.op not in ("read", "write"):
            return
        if txn.data_moved is None:
            self._order(
                txn,
                result,
                f"{txn.describe()} on {self.name} completed (#{txn.completed}) with no data moved",
            )
        elif txn.data_moved[1] > txn.completed:
            if txn.op == "write":
                self.late_writes.append(txn)  # judged at the next flush, or at the end
            else:
                self._late(txn, result)

    def _late(self, txn: Transaction, result: TransactionResult) -> None:
        data = txn.data_moved[1] if txn.data_moved else "?"
        self._order(
            txn,
            result,
            f"{txn.describe()} on {self.name}: completion (#{txn.completed}) posted before "
            f"its data moved (#{data})",
        )

    def _order(self, txn: Transaction, result: TransactionResult, detail: str) -> None:
        a, b = (txn, None) if self.name == "A" else (None, txn)
        extent = (txn.written or txn.read or (None,))[0]
        result.add(
            TxnDivergence(
                "order",
                self.name,
                a,
                b,
                detail,
                extent.lba if extent else None,
                extent.blocks if extent else 0,
            )
        )

    def ignored(self, lba: int) -> bool:
        return any(start <= lba < end for start, end in self.rules.txn_ignore_blocks)

    def apply(self, txn: Transaction, result: TransactionResult) -> None:
        """Reads checked against this side's blocks, then writes applied.

        Runs for every command over every block: whole extents are looked up and
        stored with ``map``/``update`` (C loops), and only blocks whose content
        differs from what the side holds get a Python-level step."""
        if self.rules.txn_ignore_blocks:
            self._apply_ignoring(txn, result)
            return
        content = self.content
        get = content.get
        for extent in txn.read:
            digests = extent.digests
            if not digests:
                continue
            lbas = range(extent.lba, extent.lba + len(digests))
            result.blocks_read_checked += len(digests)
            known = list(map(get, lbas))
            if known != list(digests):
                for lba, digest, had in zip(lbas, digests, known, strict=True):
                    if had is None:
                        self.initial.setdefault(lba, (digest, txn))
                    elif had != digest:
                        self._stale_read(txn, lba, digest, had, result)
        if txn.status not in (SUCCESS, None):
            return  # a failed write stored nothing
        history = self.history
        for extent in txn.written:
            digests = extent.digests
            if not digests:
                continue
            lbas = range(extent.lba, extent.lba + len(digests))
            had = list(map(get, lbas))
            if had != list(digests):
                for lba, digest, old in zip(lbas, digests, had, strict=True):
                    if old != digest:
                        history[lba] = hash((history.get(lba, 0), digest))
                content.update(zip(lbas, digests, strict=True))
            self.writes.update(lbas)
            self.last_writer.update(dict.fromkeys(lbas, txn))

    def _apply_ignoring(self, txn: Transaction, result: TransactionResult) -> None:
        """:meth:`apply` when rules leave blocks out: one block at a time."""
        content = self.content
        for extent in txn.read:
            lba = extent.lba
            for digest in extent.digests:
                if self.ignored(lba):
                    lba += 1
                    continue
                result.blocks_read_checked += 1
                known = content.get(lba)
                if known is None:
                    self.initial.setdefault(lba, (digest, txn))
                elif known != digest:
                    self._stale_read(txn, lba, digest, known, result)
                lba += 1
        if txn.status not in (SUCCESS, None):
            return
        history, writes, last_writer = self.history, self.writes, self.last_writer
        for extent in txn.written:
            lba = extent.lba
            for digest in extent.digests:
                if content.get(lba) != digest:
                    content[lba] = digest
                    history[lba] = hash((history.get(lba, 0), digest))
                writes[lba] += 1
                last_writer[lba] = txn
                lba += 1

    def _stale_read(
        self, txn: Transaction, lba: int, digest: str, known: str, result: TransactionResult
    ) -> None:
        writer = self.last_writer.get(lba)
        where = f" (written by {_seqs(writer)})" if writer else ""
        result.add(
            TxnDivergence(
                "data",
                self.name,
                txn if self.name == "A" else None,
                txn if self.name == "B" else None,
                f"{txn.describe()} on {self.name} returned for LBA {lba} content "
                f"{digest[:12]}, not what {self.name} last wrote there ({known[:12]}{where})",
                lba,
                1,
            )
        )

    def sample(self, txn: Transaction) -> None:
        """Keep a bounded, evenly thinned sample of transactions for the timeline."""
        self.seen += 1
        if self.start is None:
            self.start = txn.t_ns
        if self.seen % self.stride:
            return
        if len(self.timeline) >= TIMELINE_LIMIT:
            del self.timeline[1::2]
            self.stride *= 2
        row = timeline_row(txn)
        self.timeline.append((txn.t_ns - self.start, row, txn.op))


def timeline_row(txn: Transaction) -> str:
    """The timeline row of a transaction: its queue, or one row for a device without queues."""
    if txn.queue is None:
        return "operations"
    return "admin" if txn.queue == 0 else f"queue {txn.queue}"


def _seqs(txn: Transaction | None) -> str:
    if txn is None:
        return "?"
    return f"{txn.op} #{txn.seqs[0]}" if txn.seqs else txn.op


class _Registers:
    """Follows the last value seen of each declared state register in a raw event stream."""

    def __init__(self, header: Mapping[str, Any], into: dict[tuple[int, int], int]) -> None:
        self.state: dict[tuple[int, int], str] = {}
        for bar in (header.get("device") or {}).get("bars", []):
            for reg in bar.get("registers", []):
                if reg.get("state"):
                    self.state[(bar["index"], reg["offset"])] = reg["name"]
        self.values = into

    def watch(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        state, values = self.state, self.values
        if not state:
            yield from events
            return
        mmio = _MMIO_KINDS
        for event in events:
            if event["kind"] in mmio and event.get("stream") != WINDOW_STREAM:
                key = (event["bar"], event["offset"])
                if key in state:
                    values[key] = event["value"]
            yield event


_MMIO_KINDS = frozenset({Kind.MMIO_WRITE.value, Kind.MMIO_READ.value})


def diff_transactions(
    txns_a: Iterable[Transaction],
    txns_b: Iterable[Transaction],
    info_a: LogInfo,
    info_b: LogInfo,
    rules: Rules | None = None,
    registers: tuple[Mapping[tuple[int, int], str], dict, dict] | None = None,
) -> TransactionResult:
    """Compare two transaction streams (Rules 1-4); ``registers``: declared state
    registers by ``(bar, offset)`` and each side's final values, filled as the
    streams are consumed."""
    rules = rules or Rules()
    result = TransactionResult(info_a, info_b, str(info_a.header.get("model", "?")))
    side_a, side_b = _Side("A", rules), _Side("B", rules)
    iter_a, iter_b = iter(txns_a), iter(txns_b)
    done_a = done_b = False
    while not (done_a and done_b):
        if not done_a:
            batch = list(itertools.islice(iter_a, BATCH))
            done_a = len(batch) < BATCH
            for txn in batch:
                _take(txn, side_a, side_b, result, rules)
        if not done_b:
            batch = list(itertools.islice(iter_b, BATCH))
            done_b = len(batch) < BATCH
            for txn in batch:
                _take(txn, side_b, side_a, result, rules)
    _leftovers(side_a, side_b, result)
    _compare_blocks(side_a, side_b, result)
    if registers is not None:
        _compare_registers(registers, result)
    result.ops_a, result.ops_b = side_a.ops, side_b.ops
    result.timeline = {"A": side_a.timeline, "B": side_b.timeline}
    result.timeline_origin = {"A": side_a.start or 0, "B": side_b.start or 0}
    result.divergences.sort(key=_order)
    return result


def _order(d: TxnDivergence) -> tuple[int, int]:
    seqs = d.seqs_a or d.seqs_b
    return (0 if d.seqs_a else 1, seqs[0] if seqs else 1 << 62)


def _take(
    txn: Transaction, side: _Side, other: _Side, result: TransactionResult, rules: Rules
) -> None:
    if txn.op in rules.txn_ignore_ops:
        return
    side.ops[txn.op] += 1
    side.sample(txn)
    result.not_compared |= txn.unknown
    side.apply(txn, result)
    side.check_order(txn, result)
    key = txn.key
    waiting = other.unpaired.get(key)
    if waiting:
        partner = waiting.popleft()
        if not waiting:
            del other.unpaired[key]
        result.paired += 1
        a, b = (txn, partner) if side.name == "A" else (partner, txn)
        _compare_pair(a, b, result, rules)
    else:
        side.unpaired.setdefault(key, collections.deque()).append(txn)


def _compare_pair(a: Transaction, b: Transaction, result: TransactionResult, rules: Rules) -> None:
    if (
        a.status == b.status
        and a.result == b.result
        and a.payload_out == b.payload_out
        and a.signalled == b.signalled
    ):
        return  # what nearly every pair does: nothing to describe
    unknown = a.unknown | b.unknown
    what = a.describe()
    if "status" not in unknown and a.status != b.status:
        result.add(
            TxnDivergence(
                "status",
                "both",
                a,
                b,
                f"{what}: status {_status(a.status)} in A, {_status(b.status)} in B",
            )
        )
        return
    if "result" not in unknown and a.result != b.result and a.op not in rules.txn_ignore_results:
        result.add(
            TxnDivergence(
                "result",
                "both",
                a,
                b,
                f"{what}: result {_hex(a.result)} in A, {_hex(b.result)} in B",
            )
        )
    if (
        "data" not in unknown
        and a.payload_out != b.payload_out
        and a.op not in rules.txn_ignore_results
    ):
        result.add(
            TxnDivergence(
                "data",
                "both",
                a,
                b,
                f"{what}: returned data {_short(a.payload_out)} in A, {_short(b.payload_out)} in B",
            )
        )
    if "irq" not in unknown and a.signalled != b.signalled:
        odd = b if a.signalled else a
        name = "B" if a.signalled else "A"
        result.add(
            TxnDivergence(
                "interrupt",
                name,
                a,
                b,
                f"{what}: completion signalled in {'A' if name == 'B' else 'B'} "
                f"(vector {_hex(odd.irq_expected)}) but not in {name}",
            )
        )


def _leftovers(side_a: _Side, side_b: _Side, result: TransactionResult) -> None:
    """Commands without a counterpart (Rules 2 and 4); late writes no flush followed (5)."""
    for side in (side_a, side_b):
        for write in side.late_writes:
            side._late(write, result)
        side.late_writes.clear()
        other = "B" if side.name == "A" else "A"
        count = 0
        for waiting in side.unpaired.values():
            for txn in waiting:
                count += 1
                a, b = (txn, None) if side.name == "A" else (None, txn)
                what = txn.describe()
                if (
                    txn.status is None
                    and txn.op not in OPEN_ENDED_OPS
                    and "status" not in txn.unknown
                ):
                    result.add(
                        TxnDivergence(
                            "incomplete", side.name, a, b, f"{what} never completed in {side.name}"
                        )
                    )
                elif txn.status not in (SUCCESS, None) and "status" not in txn.unknown:
                    result.add(
                        TxnDivergence(
                            "status",
                            side.name,
                            a,
                            b,
                            f"{what} completed with status {_status(txn.status)} "
                            f"in {side.name}; no such command in {other}",
                        )
                    )
                elif not txn.signalled and "irq" not in txn.unknown:
                    result.add(
                        TxnDivergence(
                            "interrupt",
                            side.name,
                            a,
                            b,
                            f"{what} in {side.name}: completion not signalled on "
                            f"vector {_hex(txn.irq_expected)}",
                        )
                    )
                elif not (txn.written or txn.read) and txn.op not in BATCHING_OPS:
                    result.add(
                        TxnDivergence(
                            "unmatched",
                            side.name,
                            a,
                            b,
                            f"{what} in {side.name} only (status {_status(txn.status)})",
                        )
                    )
        if side.name == "A":
            result.unpaired_a = count
        else:
            result.unpaired_b = count


def _compare_blocks(side_a: _Side, side_b: _Side, result: TransactionResult) -> None:
    """Per-block write history and end content (Rule 2), as runs of adjacent blocks."""
    result.blocks_written = len(side_a.history.keys() | side_b.history.keys())
    run: list[int] = []
    run_kind = ""

    def flush() -> None:
        if not run:
            return
        first, count = run[0], len(run)
        wa, wb = side_a.last_writer.get(first), side_b.last_writer.get(first)
        ca, cb = side_a.content.get(first), side_b.content.get(first)
        if run_kind == "end_state":
            detail = (
                f"LBA {first}+{count}: content at the end differs "
                f"(LBA {first}: {_short(ca)} in A, {_short(cb)} in B; last written by "
                f"{_writer(wa)} in A, {_writer(wb)} in B)"
            )
        else:
            detail = (
                f"LBA {first}+{count}: same end content, but written in a different sequence "
                f"(LBA {first}: {side_a.writes.get(first, 0)} writes in A, "
                f"{side_b.writes.get(first, 0)} in B)"
            )
        side = "A" if wb is None else "B" if wa is None else "both"
        result.add(TxnDivergence(run_kind, side, wa, wb, detail, first, count))
        run.clear()

    history = side_a.rules.txn_block_history
    # Only blocks whose end content (or write history) differs need a look: the
    # symmetric difference of the two sides' (block, value) items, in C.
    differ = {lba for lba, _ in side_a.content.items() ^ side_b.content.items()}
    if history:
        differ |= {lba for lba, _ in side_a.history.items() ^ side_b.history.items()}
    for lba in sorted(differ):
        if side_a.ignored(lba):
            continue
        # A block whose end content agrees is here because its history does not.
        kind = "end_state" if side_a.content.get(lba) != side_b.content.get(lba) else "blocks"
        if run and (kind != run_kind or lba != run[-1] + 1):
            flush()
        run_kind = kind
        run.append(lba)
    flush()
    for lba in sorted(side_a.initial.keys() & side_b.initial.keys()):
        (da, ta), (db, tb) = side_a.initial[lba], side_b.initial[lba]
        if da != db:
            result.add(
                TxnDivergence(
                    "data",
                    "both",
                    ta,
                    tb,
                    f"LBA {lba}, not written before: {ta.describe()} read "
                    f"{da[:12]} in A, {tb.describe()} read {db[:12]} in B",
                    lba,
                    1,
                )
            )


def _compare_registers(
    registers: tuple[Mapping[tuple[int, int], str], dict, dict], result: TransactionResult
) -> None:
    names, final_a, final_b = registers
    for key, name in sorted(names.items()):
        if key in final_a and key in final_b:
            result.registers_compared.append(name)
            if final_a[key] != final_b[key]:
                result.add(
                    TxnDivergence(
                        "register",
                        "both",
                        None,
                        None,
                        f"register {name} ends as {final_a[key]:#x} in A, {final_b[key]:#x} in B",
                    )
                )


def _writer(txn: Transaction | None) -> str:
    return f"{txn.describe()} (#{txn.seqs[0]})" if txn and txn.seqs else "nothing"


def _status(status: int | None) -> str:
    return "none (outstanding)" if status is None else f"{status:#05x}"


def _hex(value: int | None) -> str:
    return "none" if value is None else f"{value:#x}"


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:12]


def diff_transaction_logs(
    path_a: Path,
    path_b: Path,
    rules: Rules | None = None,
    allow_truncated: bool = False,
    phases: bool = True,
) -> TransactionResult:
    """Decode both logs with their model's decoder and compare them; with ``phases``,
    from the OS driver's takeover when firmware drove the device first (:mod:`.phases`).

    Raises :class:`LogError` for unreadable logs and for a model without a decoder.
    """
    pre_a, pre_b = split_phases(path_a, path_b) if phases else (PreOs(), PreOs())
    reader_a = LogReader(path_a, allow_truncated)
    reader_b = LogReader(path_b, allow_truncated)
    decode_a, decode_b = decoder_for(reader_a.info.header), decoder_for(reader_b.info.header)
    model_a, model_b = reader_a.info.header.get("model"), reader_b.info.header.get("model")
    if model_a != model_b:
        raise LogError(f"{path_a} is a log of model {model_a!r} and {path_b} of {model_b!r}")
    if decode_a is None or decode_b is None:
        raise LogError(f"model {model_a!r} has no transaction decoder: use --level raw")
    regs_a, regs_b = _Registers(reader_a.info.header, {}), _Registers(reader_b.info.header, {})
    # Millions of short-lived objects (events, commands) and a large long-lived
    # per-block state: the default thresholds run a collection every 700
    # allocations, about a tenth of the CPU here, for cycles this pass does not make.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        result = diff_transactions(
            os_phase(decoded(decode_a, reader_a, regs_a.watch(reader_a)), pre_a),
            os_phase(decoded(decode_b, reader_b, regs_b.watch(reader_b)), pre_b),
            reader_a.info,
            reader_b.info,
            rules,
            (regs_a.state, regs_a.values, regs_b.values),
        )
    finally:
        gc.set_threshold(*thresholds)
    result.pre_os = (pre_a, pre_b)
    if result.by_kind["blocks"]:
        again_a = LogReader(path_a, allow_truncated)
        again_b = LogReader(path_b, allow_truncated)
        explain_histories(
            result,
            os_phase(decoded(decode_a, again_a, again_a), pre_a),
            os_phase(decoded(decode_b, again_b, again_b), pre_b),
            rules or Rules(),
        )
    return result


def decoded(
    decode: Decoder, reader: LogReader, events: Iterable[Mapping[str, Any]]
) -> Iterator[Transaction]:
    """``decode`` of a log's ``events``; an event its decoder cannot read is named with
    the log (:class:`LogError`)."""
    try:
        yield from decode(reader.info.header, events)
    except MalformedEvent as exc:
        raise LogError(f"{reader.path}: {exc}") from None


EXPLAINED = 200  # block history divergences traced back to the write that differs


def explain_histories(
    result: TransactionResult, txns_a: Iterable[Transaction], txns_b: Iterable[Transaction],
    rules: Rules,
) -> None:  # fmt: skip
    """Name, for each block whose write sequence differs (the first :data:`EXPLAINED`), the
    first write where the two sides part: a second pass over both streams, which keeps
    only those blocks' sequences."""
    wanted = {d.lba: d for d in result.divergences if d.kind == "blocks" and d.lba is not None}
    wanted = dict(itertools.islice(wanted.items(), EXPLAINED))
    if not wanted:
        return
    sequences = []
    for txns in (txns_a, txns_b):
        seen: dict[int, list[tuple[str, Transaction]]] = {lba: [] for lba in wanted}
        for txn in txns:
            if txn.op in rules.txn_ignore_ops or txn.status not in (SUCCESS, None):
                continue
            for extent in txn.written:
                for lba in range(max(extent.lba, min(wanted)), min(extent.end, max(wanted) + 1)):
                    history = seen.get(lba)
                    if history is None or not extent.digests:
                        continue
                    digest = extent.digests[lba - extent.lba]
                    if not history or history[-1][0] != digest:
                        history.append((digest, txn))
        sequences.append(seen)
    for lba, divergence in wanted.items():
        seq_a, seq_b = sequences[0][lba], sequences[1][lba]
        k = next(
            (i for i, (x, y) in enumerate(zip(seq_a, seq_b, strict=False)) if x[0] != y[0]),
            min(len(seq_a), len(seq_b)),
        )
        wa = seq_a[k][1] if k < len(seq_a) else None
        wb = seq_b[k][1] if k < len(seq_b) else None
        divergence.a, divergence.b = wa, wb
        divergence.side = "A" if wb is None else "B" if wa is None else "both"
        what_a = f"{seq_a[k][0][:12]} by {_writer(wa)}" if wa else "nothing more"
        what_b = f"{seq_b[k][0][:12]} by {_writer(wb)}" if wb else "nothing more"
        divergence.detail = (
            f"LBA {lba}+{divergence.blocks}: same end content, but content #{k + 1} written to "
            f"LBA {lba} differs: {what_a} in A, {what_b} in B"
        )
    result.divergences.sort(key=_order)


def has_decoder(path: Path) -> bool:
    """Whether the model of the log at ``path`` has a transaction decoder."""
    try:
        with open(path, encoding="utf-8") as handle:
            header = json.loads(handle.readline())
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and decoder_for(header) is not None


__all__ = [
    "TransactionResult",
    "TxnDivergence",
    "decoded",
    "decoder_for",
    "diff_transaction_logs",
    "diff_transactions",
    "explain_histories",
    "has_decoder",
    "timeline_row",
]
