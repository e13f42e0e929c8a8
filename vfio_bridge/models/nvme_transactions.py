"""Decoder of the NVMe model's log into commands (:class:`~vfio_bridge.transaction.Transaction`).

Theory of operation. The model (:mod:`.nvme`) handles one command at a time,
as device-side work after the doorbell that rang its queue:

    SQ tail doorbell  ->  dma_read tag "sqe" (the entry)  ->  dma_read tag
    "prp_list" (address lists), untagged DMA (the data)  ->  dma_write tag
    "cqe" (the completion)  ->  irq (once per batch of completions)

so every untagged DMA between an entry's fetch and its completion belongs to
that entry. Which queue an entry was fetched from follows from its address
(the admin queue's base is the ASQ register, an I/O queue's is in its Create
I/O Submission Queue command); its completion names its queue and command id.
A completion is *signalled* by the first interrupt after it on its queue's
vector, before the driver moves that queue's head past it (a head doorbell):
a completion with none was not signalled. Asynchronous event requests stay
outstanding; what is outstanding at a controller reset or at the end of the
log is yielded with no status.

The decoder keeps only the outstanding commands and the queues: it streams,
and it needs nothing but the log's events (no server, no model instance).
What a command *is* (its op name and the parameters it is matched by) is
:func:`command_fields`, shared with whatever converts another source (QEMU's
trace of its own NVMe device) into the same transactions.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..logformat import BLOCK_DIGEST_WIDTH, WINDOW_STREAM, Kind, MalformedEvent, block_digests
from ..transaction import ZERO_BLOCK, Extent, Transaction
from .nvme import (
    ABORT,
    ASYNC_EVENT,
    CREATE_CQ,
    CREATE_SQ,
    DATASET_MANAGEMENT,
    DELETE_CQ,
    DELETE_SQ,
    DOORBELLS,
    FLUSH,
    GET_FEATURES,
    GET_LOG_PAGE,
    IDENTIFY,
    READ,
    SET_FEATURES,
    WRITE,
    WRITE_ZEROES,
)
from .nvme_spec import CQE_SIZE, SQE_SIZE, CompletionEntry, NvmeCommand

log = logging.getLogger(__name__)

ADMIN_OPS = {
    DELETE_SQ: "delete_sq",
    CREATE_SQ: "create_sq",
    GET_LOG_PAGE: "get_log_page",
    DELETE_CQ: "delete_cq",
    CREATE_CQ: "create_cq",
    IDENTIFY: "identify",
    ABORT: "abort",
    SET_FEATURES: "set_features",
    GET_FEATURES: "get_features",
    ASYNC_EVENT: "async_event",
}
IO_OPS = {
    FLUSH: "flush",
    WRITE: "write",
    READ: "read",
    WRITE_ZEROES: "write_zeroes",
    DATASET_MANAGEMENT: "dataset_management",
}
#: Byte offsets of the registers the decoder follows (BAR 0).
CC, ASQ, ACQ, AQA = 0x14, 0x28, 0x30, 0x24


def _admin_params(cmd: NvmeCommand) -> tuple[tuple[str, int], ...]:
    """What defines an admin command; addresses and the driver's ids are left out."""
    op = cmd.opcode
    c10, c11 = cmd.cdw10, cmd.cdw11
    if op == IDENTIFY:
        return (("cns", c10 & 0xFF), ("cntid", c10 >> 16), ("nsid", cmd.nsid))
    if op == GET_LOG_PAGE:
        dwords = ((c11 & 0xFFFF) << 16 | (c10 >> 16)) + 1
        return (("dwords", dwords), ("lid", c10 & 0xFF), ("nsid", cmd.nsid),
                ("offset", cmd.cdw12 | cmd.cdw13 << 32))  # fmt: skip
    if op == SET_FEATURES:
        return (("fid", c10 & 0xFF), ("save", c10 >> 31), ("value", c11))
    if op == GET_FEATURES:
        return (("fid", c10 & 0xFF), ("select", (c10 >> 8) & 0x7))
    if op == CREATE_CQ:
        return (("ien", (c11 >> 1) & 1), ("pc", c11 & 1), ("qid", c10 & 0xFFFF),
                ("qsize", (c10 >> 16) + 1), ("vector", c11 >> 16))  # fmt: skip
    if op == CREATE_SQ:
        return (("cqid", c11 >> 16), ("pc", c11 & 1), ("prio", (c11 >> 1) & 3),
                ("qid", c10 & 0xFFFF), ("qsize", (c10 >> 16) + 1))  # fmt: skip
    if op in (DELETE_SQ, DELETE_CQ):
        return (("qid", c10 & 0xFFFF),)
    if op == ABORT:
        return (("sqid", c10 & 0xFFFF),)
    if op == ASYNC_EVENT:
        return ()
    return (("cdw10", c10), ("cdw11", c11), ("cdw12", cmd.cdw12), ("cdw13", cmd.cdw13),
            ("cdw14", cmd.cdw14), ("cdw15", cmd.cdw15), ("nsid", cmd.nsid))  # fmt: skip


def command_fields(
    cmd: NvmeCommand, admin: bool
) -> tuple[str, tuple[tuple[str, int], ...], tuple[Extent, ...], tuple[Extent, ...]]:
    """``(op, params, written, read)`` of a submission entry; extents without data.

    ``params`` always starts with ``("opcode", n)``; the rest are sorted by name.
    Dataset Management's ranges are in its data, not in the entry: its extents
    come from :func:`dsm_extents`.
    """
    opcode = cmd.opcode
    if admin:
        op = ADMIN_OPS.get(opcode, f"admin_{opcode:#04x}")
        return op, (("opcode", opcode), *_admin_params(cmd)), (), ()
    op = IO_OPS.get(opcode, f"io_{opcode:#04x}")
    params: list[tuple[str, int]] = [("opcode", opcode), ("nsid", cmd.nsid)]
    written: tuple[Extent, ...] = ()
    read: tuple[Extent, ...] = ()
    if opcode in (READ, WRITE, WRITE_ZEROES):
        lba, count = cmd.lba_range()
        params.append(("fua", (cmd.cdw12 >> 30) & 1))
        if opcode == READ:
            read = (Extent(lba, count),)
        elif opcode == WRITE:
            written = (Extent(lba, count),)
        else:
            written = (Extent(lba, count, (ZERO_BLOCK,) * count),)
    elif opcode == DATASET_MANAGEMENT:
        params += [("attributes", cmd.cdw11 & 0x7), ("ranges", (cmd.cdw10 & 0xFF) + 1)]
    elif opcode != FLUSH:
        params += [(f"cdw{n}", getattr(cmd, f"cdw{n}")) for n in range(10, 16)]
    return op, (params[0], *sorted(params[1:])), written, read


def _entry(event: Mapping[str, Any], size: int, queue: str) -> bytes:
    """A queue entry's bytes from its DMA event; :class:`MalformedEvent` if they are
    fewer than the entry's ``size``."""
    raw = bytes.fromhex(event["data"])
    if len(raw) < size:
        raise MalformedEvent(
            f"#{event['seq']}: a {queue} queue entry of {len(raw)} bytes, not {size}"
        )
    return raw


def dsm_extents(cmd: NvmeCommand, ranges: bytes) -> tuple[Extent, ...]:
    """Blocks a Dataset Management command deallocates (read as zeroes afterwards)."""
    if not cmd.cdw11 & 0x4:
        return ()
    extents = []
    for i in range(min((cmd.cdw10 & 0xFF) + 1, len(ranges) // 16)):
        count = int.from_bytes(ranges[16 * i + 4 : 16 * i + 8], "little")
        lba = int.from_bytes(ranges[16 * i + 8 : 16 * i + 16], "little")
        if count:
            extents.append(Extent(lba, count, (ZERO_BLOCK,) * count))
    return tuple(extents)


@dataclass
class _Queue:
    qid: int
    base: int
    size: int
    cqid: int = 0  # SQ: its completion queue
    vector: int | None = 0  # CQ: interrupt vector, None when interrupts are off


class _Pending:
    """A command between its fetch and its transaction (a plain slotted class: one is
    made per command, a dataclass's defaults cost more)."""

    __slots__ = (
        "cmd",
        "completed",
        "cqe",
        "cqid",
        "data_in",
        "data_out",
        "late_data",
        "seqs",
        "sqid",
        "submitted",
        "t_ns",
    )  # fmt: skip

    def __init__(
        self,
        cmd: NvmeCommand,
        sqid: int | None,
        seqs: list[int],
        t_ns: int,
        submitted: int | None = None,
    ) -> None:
        self.cmd = cmd
        self.sqid = sqid
        self.seqs = seqs
        self.t_ns = t_ns
        self.data_in: list[Mapping[str, Any]] = []
        self.data_out: list[Mapping[str, Any]] = []
        self.cqe: CompletionEntry | None = None
        self.cqid: int | None = None
        self.submitted = submitted  # seq of the tail doorbell that submitted it
        self.completed: int | None = None  # seq of its completion entry
        self.late_data: list[int] = []  # data DMA after its completion


#: What most events finish: nothing (shared, so immutable).
_NOTHING: tuple[Transaction, ...] = ()
_zero_digests: dict[int, str] = {}


def _block_contents(event: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A data event's per-block digests, a block of zeroes as :data:`ZERO_BLOCK`."""
    text = event.get("blocks")
    if text is None:
        return None
    size = event["block"]
    zero = _zero_digests.get(size)
    if zero is None:
        zero = _zero_digests[size] = block_digests(bytes(size), size)
    digests = _DIGEST_TEXT.findall(text)  # one C call, not a slice per block
    if zero in text:  # (a match across two digests only costs this slower pass)
        return tuple(ZERO_BLOCK if d == zero else d for d in digests)
    return tuple(digests)


class NvmeDecoder:
    """Feed events in log order (:meth:`push`), collect finished commands (:meth:`finish`)."""

    def __init__(self) -> None:
        self.sqs: dict[int, _Queue] = {}
        self.cqs: dict[int, _Queue] = {}
        self.regs: dict[int, int] = {}  # BAR 0 register shadow, by byte offset (4-byte units)
        self.current: _Pending | None = None
        self.outstanding: dict[tuple[int | None, int], _Pending] = {}
        self.awaiting_irq: dict[int, list[_Pending]] = {}  # by CQ id
        # SQ id -> tail doorbells whose entries were not all fetched yet:
        # (seq, tail before, tail after); which one submitted an entry follows from its slot.
        self.doorbells: dict[int, collections.deque[tuple[int, int, int]]] = {}
        self.sq_tail: dict[int, int] = {}
        # The last command completed: data moved after it (before the next fetch) is
        # its data, moved out of order. A read or write completed with no data yet is
        # held back (``deferred``) until the next fetch, so that it carries that data.
        self.last_completed: _Pending | None = None
        self.deferred: list[tuple[_Pending, int | None, int | None]] = []
        self._last_sq: _Queue | None = None  # where the last entry came from (usually again)
        self._handlers: dict[str, Callable[[Mapping[str, Any]], Sequence[Transaction]]] = {
            Kind.DMA_READ.value: self._dma_read,
            Kind.DMA_WRITE.value: self._dma_write,
            Kind.IRQ.value: self._irq,
            Kind.MMIO_WRITE.value: self._mmio_event,
            Kind.DEVICE_ERROR.value: self._device_error,
            Kind.RESET.value: self._reset_event,
        }

    # --- events ---------------------------------------------------------------

    def push(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        # One dict lookup per event picks its handler (most kinds: none); this runs
        # for every event of a log.
        handler = self._handlers.get(event["kind"])
        if handler is None or event.get("stream") == WINDOW_STREAM:
            return _NOTHING
        return handler(event)

    def _device_error(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        if self.current is not None:
            self.current.seqs.append(event["seq"])
        return _NOTHING

    def _reset_event(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        return self._controller_reset()

    def _mmio_event(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        return self._mmio_write(event) if event["bar"] == 0 else _NOTHING

    def finish(self) -> Sequence[Transaction]:
        """What is still open at the end of the log."""
        return self._controller_reset()

    def _dma_read(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        current = self.current
        if current is not None and "tag" not in event:  # a write's data: most common
            current.seqs.append(event["seq"])
            current.data_in.append(event)
            return _NOTHING
        return self._dma(event, False)

    def _dma_write(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        current = self.current
        if current is not None and "tag" not in event:  # a read's data
            current.seqs.append(event["seq"])
            current.data_out.append(event)
            return _NOTHING
        return self._dma(event, True)

    def _dma(self, event: Mapping[str, Any], write: bool) -> Sequence[Transaction]:
        tag = event.get("tag")
        if tag == "sqe":
            return self._fetch(event)
        if tag == "cqe":
            return self._complete(event)
        current = self.current
        if current is not None:
            current.seqs.append(event["seq"])
            if tag is None:
                (current.data_out if write else current.data_in).append(event)
        elif tag is None and self.last_completed is not None:
            # Data moved after the completion that ended its command (one command is
            # handled at a time, so whose data it is is clear): out of order.
            late = self.last_completed
            late.late_data.append(event["seq"])
            late.seqs.append(event["seq"])
            (late.data_out if write else late.data_in).append(event)
        return _NOTHING

    def _fetch(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        if self.current is not None:
            self._close_current()
        done = self._release() if self.deferred else _NOTHING
        self.last_completed = None
        addr = event["addr"]
        queue = self._last_sq
        if queue is None or not queue.base <= addr < queue.base + queue.size * SQE_SIZE:
            queue = next(
                (q for q in self.sqs.values() if q.base <= addr < q.base + q.size * SQE_SIZE),
                None,
            )
            self._last_sq = queue
        cmd = NvmeCommand.parse(_entry(event, SQE_SIZE, "submission"))
        seq = event["seq"]
        if queue is None:
            self.current = _Pending(cmd, None, [seq], event["t_ns"])
            return done
        submitted = self._submitted_by(queue, (addr - queue.base) // SQE_SIZE)
        seqs = [seq] if submitted is None else [submitted, seq]
        self.current = _Pending(cmd, queue.qid, seqs, event["t_ns"], submitted)
        return done

    def _submitted_by(self, queue: _Queue, slot: int) -> int | None:
        """The seq of the tail doorbell that made ``slot`` of ``queue`` visible: the first
        unconsumed one whose range of new entries holds it (doorbells a fetch has gone
        past are dropped)."""
        pending = self.doorbells.get(queue.qid)
        size = queue.size
        while pending:
            seq, old, new = pending[0]
            count, k = (new - old) % size, (slot - old) % size
            if k < count:
                if k == count - 1:
                    pending.popleft()
                return seq
            pending.popleft()
        return None

    def _close_current(self) -> Sequence[Transaction]:
        """The command in hand did not complete right away (an async event request)."""
        current, self.current = self.current, None
        if current is not None and current.cqe is None:
            self.outstanding[(current.sqid, current.cmd.cid)] = current
        return []

    def _complete(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        cqe = CompletionEntry.parse(_entry(event, CQE_SIZE, "completion"))
        pending = self.current
        if pending is None or pending.cmd.cid != cqe.cid or pending.sqid not in (None, cqe.sq_id):
            self._close_current()
            pending = self.outstanding.pop((cqe.sq_id, cqe.cid), None)
            if pending is None:
                pending = self.outstanding.pop((None, cqe.cid), None)
            if pending is None:
                log.debug("completion of unknown command %d on SQ%d", cqe.cid, cqe.sq_id)
                return _NOTHING
        else:
            self.current = None
        pending.sqid = cqe.sq_id
        pending.cqe = cqe
        pending.completed = event["seq"]
        pending.seqs.append(event["seq"])
        self.last_completed = pending
        sq = self.sqs.get(cqe.sq_id)
        cqid = sq.cqid if sq is not None else 0
        pending.cqid = cqid
        if pending.sqid == 0:
            self._apply(pending)
        cq = self.cqs.get(cqid)
        if cq is None or cq.vector is None:
            return _built(self._transaction(pending, None, None))
        waiting = self.awaiting_irq.get(cqid)
        if waiting is None:
            self.awaiting_irq[cqid] = [pending]
        else:
            waiting.append(pending)
        return _NOTHING

    def _apply(self, pending: _Pending) -> None:
        """Queue creation and deletion take effect when they succeed."""
        cmd, cqe = pending.cmd, pending.cqe
        if pending.sqid != 0 or cqe is None or cqe.status != 0:
            return
        qid, size = cmd.cdw10 & 0xFFFF, (cmd.cdw10 >> 16) + 1
        if cmd.opcode == CREATE_CQ:
            vector = cmd.cdw11 >> 16 if cmd.cdw11 & 2 else None
            self.cqs[qid] = _Queue(qid, cmd.prp1, size, vector=vector)
        elif cmd.opcode == CREATE_SQ:
            self.sqs[qid] = _Queue(qid, cmd.prp1, size, cqid=cmd.cdw11 >> 16)
            self.sq_tail[qid] = 0
            self.doorbells.pop(qid, None)
        elif cmd.opcode == DELETE_SQ:
            self.sqs.pop(qid, None)
        elif cmd.opcode == DELETE_CQ:
            self.cqs.pop(qid, None)

    def _irq(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        if not self.awaiting_irq:
            return _NOTHING
        vector = event["vector"]
        intx = event["irq_type"] == "intx"
        done: list[Transaction] = []
        for cqid in list(self.awaiting_irq):
            cq = self.cqs.get(cqid)
            if intx or (cq is not None and cq.vector == vector):
                expected = cq.vector if cq else None
                # INTx is one line for every queue: it signals each queue's completions.
                raised = expected if intx else vector
                seq = event["seq"]
                for pending in self.awaiting_irq.pop(cqid):
                    pending.seqs.append(seq)
                    txn = self._transaction(pending, raised, expected)
                    if txn is not None:
                        done.append(txn)
        return done

    def _mmio_write(self, event: Mapping[str, Any]) -> Sequence[Transaction]:
        offset, size, value = event["offset"], event["size"], event["value"]
        if offset >= DOORBELLS:
            qid, is_cq = divmod(offset - DOORBELLS, 8)
            if not is_cq:
                old = self.sq_tail.get(qid, 0)
                self.sq_tail[qid] = value
                pending = self.doorbells.get(qid)
                if pending is None:
                    pending = self.doorbells[qid] = collections.deque()
                pending.append((event["seq"], old, value))
                return _NOTHING
            # The driver moved this CQ's head: what it consumed without an interrupt
            # was not signalled.
            waiting = self.awaiting_irq.pop(qid, None)
            if not waiting:
                return _NOTHING
            cq = self.cqs.get(qid)
            vector = cq.vector if cq else None
            return [t for p in waiting for t in _built(self._transaction(p, None, vector))]
        for i in range(0, size, 4):
            self.regs[offset + i] = (value >> (8 * i)) & 0xFFFFFFFF
        if offset <= CC < offset + size:
            enabled = self.regs.get(CC, 0) & 1
            if not enabled:
                return self._controller_reset()
            if 0 not in self.sqs:
                aqa = self.regs.get(AQA, 0)
                asq = self.regs.get(ASQ, 0) | self.regs.get(ASQ + 4, 0) << 32
                acq = self.regs.get(ACQ, 0) | self.regs.get(ACQ + 4, 0) << 32
                self.sqs[0] = _Queue(0, asq, (aqa & 0xFFF) + 1, cqid=0)
                self.sq_tail[0] = 0
                self.doorbells.pop(0, None)
                self.cqs[0] = _Queue(0, acq, ((aqa >> 16) & 0xFFF) + 1, vector=0)
        return []

    def _release(self) -> list[Transaction]:
        """Held-back commands, now that no more of their data can come (a fetch, a reset)."""
        self.last_completed = None
        if not self.deferred:
            return []
        done = [
            t
            for p, irq, expected in self.deferred
            for t in _built(self._transaction(p, irq, expected, hold=False))
        ]
        self.deferred.clear()
        return done

    def _controller_reset(self) -> list[Transaction]:
        self._close_current()
        done = self._release()
        for cqid, waiting in self.awaiting_irq.items():
            cq = self.cqs.get(cqid)
            vector = cq.vector if cq else None
            for p in waiting:
                done += _built(self._transaction(p, None, vector, hold=False))
        for p in self.outstanding.values():
            done += _built(self._transaction(p, None, None, hold=False))
        self.awaiting_irq.clear()
        self.outstanding.clear()
        self.sqs.clear()
        self.cqs.clear()
        self.doorbells.clear()
        self.sq_tail.clear()
        self.last_completed = None
        return done

    # --- building transactions ----------------------------------------------------

    def _transaction(
        self, pending: _Pending, irq: int | None, irq_expected: int | None, hold: bool = True
    ) -> Transaction | None:
        """The finished command; None when it is held back (``deferred``) for its data."""
        cmd, cqe = pending.cmd, pending.cqe
        if (
            hold
            and pending is self.last_completed
            and cqe is not None
            and cqe.status == 0
            and pending.sqid
            and cmd.opcode in (READ, WRITE)
            and not (pending.data_out if cmd.opcode == READ else pending.data_in)
        ):
            self.deferred.append((pending, irq, irq_expected))
            return None
        if pending.sqid and cmd.opcode in (READ, WRITE) and cqe is not None:
            return self._block_io(pending, cmd, cqe, irq, irq_expected)
        op, params, written, read = command_fields(cmd, pending.sqid == 0)
        unknown: set[str] = set()
        payload_in = payload_out = None
        if written and not written[0].digests:
            written, known = _with_data(written, pending.data_in)
            unknown |= set() if known else {"data"}
        if read:
            read, known = _with_data(read, pending.data_out)
            unknown |= set() if known else {"data"}
        if not written and not read:
            if cmd.opcode == DATASET_MANAGEMENT and pending.sqid != 0:
                raw = pending.data_in[0].get("data") if pending.data_in else None
                if raw is None and cmd.cdw11 & 0x4:
                    unknown.add("data")
                written = dsm_extents(cmd, bytes.fromhex(raw or ""))
            payload_in = _digest(pending.data_in)
            payload_out = _digest(pending.data_out)
        return Transaction(
            op=op,
            params=params,
            written=written,
            read=read,
            payload_in=payload_in,
            payload_out=payload_out,
            status=cqe.status if cqe else None,
            result=cqe.dw0 if cqe else None,
            irq=irq,
            irq_expected=irq_expected if cqe else None,
            queue=pending.sqid,
            cid=cmd.cid,
            seqs=tuple(pending.seqs),
            t_ns=pending.t_ns,
            unknown=frozenset(unknown),
            submitted=pending.submitted,
            completed=pending.completed,
            data_moved=_data_moved(pending),
        )

    def _block_io(
        self,
        pending: _Pending,
        cmd: NvmeCommand,
        cqe: CompletionEntry,
        irq: int | None,
        irq_expected: int | None,
    ) -> Transaction:
        """:meth:`_transaction` of a completed read or write: what ``command_fields`` and
        ``_with_data`` give it, without their generality (most of a log's commands)."""
        opcode = cmd.opcode
        lba, count = cmd.lba_range()
        fua = (cmd.cdw12 >> 30) & 1
        params = _RW_PARAMS.get((opcode, cmd.nsid, fua))
        if params is None:
            params = _RW_PARAMS[(opcode, cmd.nsid, fua)] = (
                ("opcode", opcode), ("fua", fua), ("nsid", cmd.nsid),
            )  # fmt: skip
        events = pending.data_out if opcode == READ else pending.data_in
        digests = _event_digests(events) if events else None
        if digests is None:
            extent, unknown = Extent(lba, count), _DATA_UNKNOWN
        else:
            extent, unknown = Extent(lba, count, digests[:count]), _KNOWN
        moved = None
        if events:
            first = events[0]["seq"]
            last = pending.late_data[-1] if pending.late_data else events[-1]["seq"]
            moved = (min(first, last), max(first, last))
        return Transaction(
            IO_OPS[opcode],
            params,
            (extent,) if opcode == WRITE else (),
            (extent,) if opcode == READ else (),
            None,
            None,
            cqe.status,
            cqe.dw0,
            irq,
            irq_expected,
            pending.sqid,
            cmd.cid,
            tuple(pending.seqs),
            pending.t_ns,
            submitted=pending.submitted,
            completed=pending.completed,
            data_moved=moved,
            unknown=unknown,
        )


_RW_PARAMS: dict[tuple[int, int, int], tuple[tuple[str, int], ...]] = {}
_KNOWN: frozenset[str] = frozenset()
_DATA_UNKNOWN = frozenset({"data"})
_DIGEST_TEXT = re.compile(f".{{{BLOCK_DIGEST_WIDTH}}}", re.DOTALL)


def _event_digests(events: list[Mapping[str, Any]]) -> tuple[str, ...] | None:
    """The per-block contents of a command's data events, in order; None if one has none."""
    if len(events) == 1:
        return _block_contents(events[0])
    contents: list[str] = []
    for event in events:
        blocks = _block_contents(event)
        if blocks is None:
            return None
        contents += blocks
    return tuple(contents)


def _built(txn: Transaction | None) -> list[Transaction]:
    return [] if txn is None else [txn]


def _data_moved(pending: _Pending) -> tuple[int, int] | None:
    """First and last seq of a read's or write's data transfers, late ones included."""
    if pending.sqid in (0, None) or pending.cmd.opcode not in (READ, WRITE):
        return None
    events = pending.data_out if pending.cmd.opcode == READ else pending.data_in
    seqs = [e["seq"] for e in events] + pending.late_data
    return (min(seqs), max(seqs)) if seqs else None


def _with_data(
    extents: tuple[Extent, ...], events: list[dict[str, Any]]
) -> tuple[tuple[Extent, ...], bool]:
    contents = _event_digests(events) if events else None
    if contents is None:
        return extents, False
    extent = extents[0]
    return (Extent(extent.lba, extent.blocks, contents[: extent.blocks]),), True


def _digest(events: list[dict[str, Any]]) -> str | None:
    if not events:
        return None
    if len(events) == 1:
        return events[0]["digest"]
    return "+".join(e["digest"] for e in events)


def decode(header: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> Iterator[Transaction]:
    """The commands of an NVMe model's log, in the order they finished (completion and
    interrupt); outstanding ones at the end."""
    decoder = NvmeDecoder()
    handlers = decoder._handlers  # push(), inlined: this loop runs once per event
    for event in events:
        handler = handlers.get(event["kind"])
        if handler is None or ("stream" in event and event["stream"] == WINDOW_STREAM):
            continue
        done = handler(event)
        if done:
            yield from done
    yield from decoder.finish()


__all__ = ["ADMIN_OPS", "IO_OPS", "NvmeDecoder", "command_fields", "decode", "dsm_extents"]
