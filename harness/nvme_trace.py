"""QEMU's own NVMe device (``-device nvme``) as transactions, read from its trace.

The reference the NVMe model is checked against: the same guest workload on
QEMU's built-in controller, run with ``-trace 'pci_nvme_*'`` (the ``log``
backend of Debian's build writes one line per event to the ``-D`` file),
converted here into the :class:`~vfio_bridge.transaction.Transaction` form the
model's decoder (:mod:`.nvme_transactions`) yields, so the transaction diff
can compare the two.

Theory of operation. QEMU announces each command when it takes it off a
queue (``pci_nvme_admin_cmd`` / ``pci_nvme_io_cmd``: queue, command id,
opcode), then what the command is (``pci_nvme_read``/``_write`` with LBA and
length, ``pci_nvme_identify``, ``pci_nvme_create_cq``...), then its completion
(``pci_nvme_enqueue_req_completion``: completion queue, command id, DW0,
status) and, once completions are posted, ``pci_nvme_irq_msix`` on the
queue's vector. Commands are keyed by (completion queue, command id), which
the host keeps unique among outstanding commands; a completion is signalled
by the first interrupt on its queue's vector after it (as in the decoder).

Rule 1: a trace carries no data, so block extents have no contents and
``"data"`` is in every transaction's ``unknown``. Writes still say which
blocks were written (:data:`UNKNOWN_CONTENT` per block) so that the set of
blocks a workload wrote is compared; Write Zeroes and deallocation do say what
they leave (zeroes).

Rule 2: a trace names fewer of a command's fields than its entry holds (no
FUA bit, no namespace on admin commands...). :data:`TRACED_PARAMS` lists, per
op, the parameters a trace supplies; :func:`project` reduces a decoded model
transaction to what a trace could have said, and the reference diff compares
the projections of both sides. Parameter names and values are those of
:func:`~.nvme_transactions.command_fields`.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from vfio_bridge.models.nvme import DATASET_MANAGEMENT, READ, WRITE, WRITE_ZEROES
from vfio_bridge.models.nvme_transactions import ADMIN_OPS, IO_OPS
from vfio_bridge.transaction import ZERO_BLOCK, Extent, Transaction

log = logging.getLogger(__name__)

#: The ``-trace`` pattern that enables every event this module reads.
TRACE_PATTERN = "pci_nvme_*"
#: Content of a written block the trace cannot tell (Rule 1).
UNKNOWN_CONTENT = "?"
#: Transaction fields a trace cannot supply.
UNKNOWN_FIELDS = frozenset({"data"})

#: Per op, the parameters (besides ``opcode``) a trace supplies (Rule 2).
TRACED_PARAMS: dict[str, tuple[str, ...]] = {
    "identify": ("cns", "cntid"),
    "get_log_page": ("dwords", "lid", "offset"),
    "set_features": ("fid", "save", "value"),
    "get_features": ("fid", "select"),
    "create_cq": ("ien", "pc", "qid", "qsize", "vector"),
    "create_sq": ("cqid", "pc", "prio", "qid", "qsize"),
    "delete_sq": ("qid",),
    "delete_cq": ("qid",),
    "abort": (),
    "async_event": (),
    "flush": ("nsid",),
    "read": ("nsid",),
    "write": ("nsid",),
    "write_zeroes": ("nsid",),
    "dataset_management": ("attributes", "nsid", "ranges"),
}
#: What the trace leaves out, for the report (parameters of ops in :data:`TRACED_PARAMS`).
NOT_TRACED = (
    "block data and Identify/log page contents (digests)",
    "FUA bit of reads and writes",
    "namespace ID of admin commands",
    "Abort's queue and command",
    "dwords of commands QEMU does not trace",
)

# One line of the log backend: an optional time (``-msg timestamp=on``: an ISO 8601 UTC
# time and a space; older QEMUs: ``pid@sec.usec:``), the event name, its text.
_LINE = re.compile(
    r"^(?:(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(?P<frac>\d+)Z "
    r"|\d+@(?P<sec>\d+)\.(?P<usec>\d+):)?"
    r"(?P<name>pci_nvme_\w+) ?(?P<text>.*)$"
)
_INT = r"(0x[0-9a-fA-F]+|\d+)"
_PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern.replace("N", _INT))
    for name, pattern in {
        "pci_nvme_admin_cmd": r"cid N sqid N opc N",
        "pci_nvme_io_cmd": r"cid N nsid N sqid N opc N",
        "pci_nvme_read": r"cid N nsid N nlb N count N lba N",
        "pci_nvme_write": r"cid N opname '[^']*' nsid N nlb N count N lba N",
        "pci_nvme_identify": r"cid N cns N ctrlid N csi N",
        "pci_nvme_get_log": r"cid N lid N lsp N rae N len N off N",
        "pci_nvme_getfeat": r"cid N nsid N fid N sel N cdw11 N",
        "pci_nvme_setfeat": r"cid N nsid N fid N save N cdw11 N",
        "pci_nvme_create_sq": r"addr=N, sqid=N, cqid=N, qsize=N, qflags=N",
        "pci_nvme_create_cq": r"addr=N, cqid=N, vector=N, qsize=N, qflags=N, ien=N",
        "pci_nvme_del_sq": r"sqid=N",
        "pci_nvme_del_cq": r"cqid=N",
        "pci_nvme_dsm": r"nr N attr N",
        "pci_nvme_dsm_deallocate": r"slba N nlb N",
        "pci_nvme_enqueue_req_completion": r"cid N cqid N dw0 N dw1 N status N",
        "pci_nvme_irq_msix": r"vector N",
    }.items()
}
#: Events after which the controller holds no commands (disable, reset).
_RESETS = frozenset({"pci_nvme_mmio_stopped", "pci_nvme_pci_reset"})


class TraceError(ValueError):
    """A trace line that names a known event but does not read as its format."""


def parse_line(line: str) -> tuple[str, tuple[int, ...], int] | None:
    """``(event, numbers, t_ns)`` of a line this module reads, or None for any other line.

    ``numbers`` are the event's numeric fields in format order; ``t_ns`` is the
    line's timestamp (``-msg timestamp=on``) or 0.
    """
    match = _LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    name = match["name"]
    pattern = _PATTERNS.get(name)
    if pattern is None:
        return (name, (), _t_ns(match)) if name in _RESETS else None
    fields = pattern.search(match["text"])
    if fields is None:
        raise TraceError(f"{name} line does not read as its trace format: {line.strip()!r}")
    return name, tuple(int(value, 0) for value in fields.groups()), _t_ns(match)


def _t_ns(match: re.Match[str]) -> int:
    if match["iso"] is not None:
        when = datetime.datetime.fromisoformat(match["iso"]).replace(tzinfo=datetime.UTC)
        fraction = int(match["frac"].ljust(9, "0")[:9])
        return int(when.timestamp()) * 1_000_000_000 + fraction
    if match["sec"] is not None:
        return int(match["sec"]) * 1_000_000_000 + int(match["usec"]) * 1000
    return 0


@dataclass
class _Command:
    sqid: int
    cid: int
    opcode: int
    nsid: int | None
    line: int
    t_ns: int
    op: str = ""
    params: dict[str, int] = field(default_factory=dict)
    written: list[Extent] = field(default_factory=list)
    read: list[Extent] = field(default_factory=list)
    status: int | None = None
    result: int | None = None


class QemuNvmeTrace:
    """Push trace lines, get transactions: a streaming converter (see the module doc)."""

    def __init__(self) -> None:
        self.sq_to_cq: dict[int, int] = {0: 0}
        self.cq_vector: dict[int, int | None] = {0: 0}
        self.current: _Command | None = None
        self.outstanding: dict[tuple[int, int], _Command] = {}
        self.awaiting_irq: dict[int, list[_Command]] = {}

    def push(self, line: str, number: int) -> list[Transaction]:
        parsed = parse_line(line)
        if parsed is None:
            return []
        name, values, t_ns = parsed
        if name == "pci_nvme_admin_cmd":
            cid, sqid, opcode = values
            return self._start(_Command(sqid, cid, opcode, None, number, t_ns))
        if name == "pci_nvme_io_cmd":
            cid, nsid, sqid, opcode = values
            return self._start(_Command(sqid, cid, opcode, nsid, number, t_ns))
        if name == "pci_nvme_enqueue_req_completion":
            return self._complete(values)
        if name == "pci_nvme_irq_msix":
            return self._irq(values[0])
        if name in _RESETS:
            return self._reset()
        if self.current is not None:
            self._describe(self.current, name, values)
        return []

    def finish(self) -> list[Transaction]:
        return self._reset()

    def _start(self, cmd: _Command) -> list[Transaction]:
        self.current = cmd
        admin = cmd.sqid == 0
        cmd.op = (ADMIN_OPS if admin else IO_OPS).get(
            cmd.opcode, f"{'admin' if admin else 'io'}_{cmd.opcode:#04x}"
        )
        if not admin:
            cmd.params["nsid"] = cmd.nsid or 0
        cqid = self.sq_to_cq.get(cmd.sqid, cmd.sqid)
        # A command id still outstanding is the host reusing it after a reset we missed.
        stale = self.outstanding.pop((cqid, cmd.cid), None)
        self.outstanding[(cqid, cmd.cid)] = cmd
        return [self._transaction(stale, None, None)] if stale else []

    def _describe(self, cmd: _Command, name: str, values: tuple[int, ...]) -> None:
        params = cmd.params
        if name == "pci_nvme_read" and cmd.opcode == READ:
            _, _, nlb, _, lba = values
            cmd.read.append(Extent(lba, nlb))
        elif name == "pci_nvme_write" and cmd.opcode in (WRITE, WRITE_ZEROES):
            _, _, nlb, _, lba = values
            content = UNKNOWN_CONTENT if cmd.opcode == WRITE else ZERO_BLOCK
            cmd.written.append(Extent(lba, nlb, (content,) * nlb))
        elif name == "pci_nvme_identify":
            _, cns, ctrlid, _ = values
            params.update(cns=cns, cntid=ctrlid)
        elif name == "pci_nvme_get_log":
            _, lid, _, _, length, offset = values
            params.update(lid=lid, dwords=length // 4, offset=offset)
        elif name == "pci_nvme_getfeat":
            _, _, fid, sel, _ = values
            params.update(fid=fid, select=sel)
        elif name == "pci_nvme_setfeat":
            _, _, fid, save, cdw11 = values
            params.update(fid=fid, save=save, value=cdw11)
        elif name == "pci_nvme_create_sq":
            _, sqid, cqid, qsize, qflags = values
            params.update(qid=sqid, cqid=cqid, qsize=qsize + 1, pc=qflags & 1)
            params["prio"] = (qflags >> 1) & 3
            self.sq_to_cq[sqid] = cqid
        elif name == "pci_nvme_create_cq":
            _, cqid, vector, qsize, qflags, ien = values
            params.update(qid=cqid, vector=vector, qsize=qsize + 1, pc=qflags & 1, ien=ien)
            self.cq_vector[cqid] = vector if ien else None
        elif name in ("pci_nvme_del_sq", "pci_nvme_del_cq"):
            params["qid"] = values[0]
        elif name == "pci_nvme_dsm" and cmd.opcode == DATASET_MANAGEMENT:
            nr, attr = values
            params.update(ranges=nr, attributes=attr & 0x7)
        elif name == "pci_nvme_dsm_deallocate" and cmd.opcode == DATASET_MANAGEMENT:
            slba, nlb = values
            if nlb:
                cmd.written.append(Extent(slba, nlb, (ZERO_BLOCK,) * nlb))

    def _complete(self, values: tuple[int, ...]) -> list[Transaction]:
        cid, cqid, dw0, _, status = values
        cmd = self.outstanding.pop((cqid, cid), None)
        if cmd is None:
            log.debug("completion of cid %d on CQ%d with no command", cid, cqid)
            return []
        if cmd is self.current:
            self.current = None
        cmd.status, cmd.result = status, dw0
        if self.cq_vector.get(cqid) is None:
            return [self._transaction(cmd, None, None)]
        self.awaiting_irq.setdefault(cqid, []).append(cmd)
        return []

    def _irq(self, vector: int) -> list[Transaction]:
        done = []
        for cqid in [q for q, v in self.cq_vector.items() if v == vector]:
            for cmd in self.awaiting_irq.pop(cqid, []):
                done.append(self._transaction(cmd, vector, vector))
        return done

    def _reset(self) -> list[Transaction]:
        done = []
        for cqid, waiting in self.awaiting_irq.items():
            done += [self._transaction(c, None, self.cq_vector.get(cqid)) for c in waiting]
        done += [self._transaction(c, None, None) for c in self.outstanding.values()]
        self.awaiting_irq.clear()
        self.outstanding.clear()
        self.current = None
        self.sq_to_cq = {0: 0}
        self.cq_vector = {0: 0}
        return done

    def _transaction(
        self, cmd: _Command | None, irq: int | None, irq_expected: int | None
    ) -> Transaction:
        assert cmd is not None
        traced = TRACED_PARAMS.get(cmd.op, ())
        params = tuple(sorted((k, v) for k, v in cmd.params.items() if k in traced))
        return Transaction(
            op=cmd.op,
            params=(("opcode", cmd.opcode), *params),
            written=tuple(cmd.written),
            read=tuple(cmd.read),
            status=cmd.status,
            result=cmd.result,
            irq=irq,
            irq_expected=irq_expected if cmd.status is not None else None,
            queue=cmd.sqid,
            cid=cmd.cid,
            seqs=(cmd.line,),
            t_ns=cmd.t_ns,
            unknown=UNKNOWN_FIELDS,
        )


def transactions(lines: Iterable[str]) -> Iterator[Transaction]:
    """The commands of a QEMU NVMe trace (``-trace 'pci_nvme_*'``), in completion order;
    ``seqs`` holds each command's line number in the trace (from 1)."""
    trace = QemuNvmeTrace()
    for number, line in enumerate(lines, 1):
        yield from trace.push(line, number)
    yield from trace.finish()


def project(txn: Transaction) -> Transaction:
    """A decoded model transaction reduced to what a trace could say of it (Rule 2)."""
    traced = TRACED_PARAMS.get(txn.op, ())
    params = tuple((k, v) for k, v in txn.params if k == "opcode" or k in traced)
    # A write's data is unknown to a trace even where it is zeroes; what Write Zeroes
    # and deallocation leave is not.
    blind = txn.op not in ("write_zeroes", "dataset_management")
    written = tuple(
        Extent(e.lba, e.blocks, (UNKNOWN_CONTENT,) * e.blocks if blind else e.digests)
        for e in txn.written
    )
    read = tuple(Extent(e.lba, e.blocks) for e in txn.read)
    return replace(
        txn,
        params=params,
        written=written,
        read=read,
        payload_in=None,
        payload_out=None,
        unknown=txn.unknown | UNKNOWN_FIELDS,
    )


__all__ = [
    "NOT_TRACED",
    "TRACED_PARAMS",
    "TRACE_PATTERN",
    "UNKNOWN_CONTENT",
    "QemuNvmeTrace",
    "TraceError",
    "parse_line",
    "project",
    "transactions",
]
