"""The reference path: the workload on QEMU's own NVMe controller, traced, and the
model's commands diffed against it.

``run_reference`` boots the same guest image with ``-device nvme`` (a raw disk
the size of the model's namespace, the model's serial number) instead of a
model, with QEMU's ``pci_nvme_*`` trace events going to ``nvme.trace`` through
the ``log`` trace backend (``-trace``, ``-D``; Debian's QEMU 11 is built with
it). ``diff_reference`` turns that trace into transactions
(:mod:`harness.nvme_trace`), reduces the model's decoded log to
what a trace can say, and runs the transaction diff on the two. The report
says which fields were compared and which the trace cannot supply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from vfio_bridge.models import get_model, parse_options

from . import nvme_trace as qtrace
from . import workloads
from .difflog import LogError, Rules
from .difflog.reader import LogInfo, LogReader
from .difflog.reports import (
    add_suite,
    kind_counts,
    op_counts,
    txn_json,
    txn_summary_line,
    write_reference_html,
    write_reference_junit,
)
from .difflog.transactions import TransactionResult, decoded, decoder_for, diff_transactions
from .errors import HarnessError
from .guest import LinuxGuest, run_workload
from .linux_image import LinuxImage
from .progress import Progress
from .qemu_install import QemuInstall

#: Models that have a reference device in QEMU, and its ``-device`` name.
REFERENCE_DEVICES = {"nvme": "nvme"}
TRACE_NAME = "nvme.trace"
#: What the reference diff compares (the trace supplies these), for the report.
COMPARED = (
    "commands by op and the parameters QEMU traces (per op: "
    + "; ".join(
        f"{op} {', '.join(params) or '-'}" for op, params in sorted(qtrace.TRACED_PARAMS.items())
    )
    + ")",
    "LBA ranges read and written, and which blocks were written, in which order",
    "completion status and DW0",
    "completion interrupts (vector raised after the completion)",
)


@dataclass
class ReferenceRun:
    passed: bool
    status: int
    trace: Path
    output: str
    boot_seconds: float
    workload_seconds: float


def reference_namespace(model: str, options: Sequence[str]) -> tuple[str, int, int, str]:
    """QEMU's device for ``model`` and the namespace the model's ``options`` describe:
    ``(device, size in bytes, block size, serial)``."""
    device = REFERENCE_DEVICES.get(model)
    if device is None:
        known = ", ".join(sorted(REFERENCE_DEVICES))
        raise HarnessError(
            f"model {model} has no reference device in QEMU (models with one: {known})"
        )
    try:
        opts = parse_options(get_model(model), options)
    except (KeyError, ValueError) as exc:
        raise HarnessError(f"reference path: {exc.args[0] if exc.args else exc}") from None
    defaults = {opt.name: opt.default for opt in get_model(model).options}
    size = int(opts.get("size", defaults["size"]))
    block = int(opts.get("block_size", defaults["block_size"]))
    return device, size, block, str(opts.get("serial", defaults["serial"]))


def reference_args(device: str, block: int, serial: str, disk: Path, trace: Path) -> list[str]:
    """QEMU arguments attaching QEMU's ``device`` on the raw ``disk``, traced to ``trace``."""
    return [
        "-drive", f"file={disk},if=none,id=reference,format=raw",
        "-device", f"{device},drive=reference,serial={serial},"
                   f"logical_block_size={block},physical_block_size={block}",
        "-trace", qtrace.TRACE_PATTERN,
        "-D", str(trace),
        "-msg", "timestamp=on",
    ]  # fmt: skip


def run_reference(
    qemu: QemuInstall,
    image: LinuxImage,
    workdir: Path,
    model: str,
    options: Sequence[str],
    workload: str,
    accel: str,
    progress: Progress,
) -> ReferenceRun:
    """Run ``workload`` on QEMU's own device for ``model``; its trace lands in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    trace = workdir / TRACE_NAME
    device, size, block, serial = reference_namespace(model, options)
    disk = workdir / "reference.img"
    with open(disk, "wb") as handle:
        handle.truncate(size)  # sparse, like the model's memory-backed namespace: zeroes
    args = reference_args(device, block, serial, disk, trace)
    with LinuxGuest(
        qemu, image, workdir, (), accel=accel, extra_args=args, progress=progress
    ) as guest:
        progress.step(f"reference: running workload {workload} on QEMU's {model}")
        outcome, seconds = run_workload(
            guest, "reference path", workdir, partial(workloads.run, guest.ssh, workload)
        )
        boot = guest.boot_seconds
    (workdir / f"{workload}.out").write_text(outcome.stdout + outcome.stderr)
    disk.unlink(missing_ok=True)
    return ReferenceRun(outcome.status == 0, outcome.status, trace, outcome.stdout, boot, seconds)


def trace_transactions(trace: Path) -> Iterator[qtrace.Transaction]:
    try:
        with open(trace, encoding="utf-8", errors="replace") as handle:
            yield from qtrace.transactions(handle)
    except OSError as exc:
        raise LogError(f"{trace}: cannot read: {exc.strerror}") from None
    except qtrace.TraceError as exc:
        raise LogError(f"{trace}: {exc}") from None


def _trace_info(trace: Path, model: str) -> LogInfo:
    """A LogInfo for a trace, so the transaction diff and its reports can name it."""
    start = 0
    lines = 0
    try:
        with open(trace, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                lines += 1
                parsed = qtrace.parse_line(line) if not start else None
                if parsed and parsed[2]:
                    start = parsed[2]
    except OSError as exc:
        raise LogError(f"{trace}: cannot read: {exc.strerror}") from None
    header = {"model": model, "path": "reference", "source": "qemu trace", "start_t_ns": start}
    return LogInfo(trace, header, lines, True)


def diff_reference(log: Path, trace: Path, rules: Rules | None = None) -> TransactionResult:
    """The model's log (A) against QEMU's trace of its own device (B), both reduced to
    what the trace can say (:func:`~harness.nvme_trace.project`)."""
    reader = LogReader(log)
    header = reader.info.header
    model = str(header.get("model", ""))
    decode = decoder_for(header)
    if decode is None or model not in REFERENCE_DEVICES:
        raise LogError(f"{log}: model {model!r} has no reference device to compare with")
    info_b = _trace_info(trace, model)
    projected = (qtrace.project(txn) for txn in decoded(decode, reader, reader))
    return diff_transactions(projected, trace_transactions(trace), reader.info, info_b, rules)


def _summary(result: TransactionResult, trace: Path, shown: int = 12) -> list[str]:
    """The verdict, then the first divergences with the model's events (by seq) and the
    trace lines (by number) that make them up."""
    lines = txn_summary_line(result).split("; ", 1)
    out = [
        f"commands (model/QEMU): {op_counts(result)}",
        f"{lines[0]} (reference); {lines[-1]}",
    ]
    if result.by_kind:
        out.append(f"divergences by kind: {kind_counts(result.by_kind)}")
    for divergence in result.divergences[:shown]:
        where = []
        if divergence.seqs_a:
            where.append(f"model events #{divergence.seqs_a[0]}")
        if divergence.seqs_b:
            where.append(f"trace line {divergence.seqs_b[0]}")
        suffix = f" [{', '.join(where)}]" if where else ""
        out.append(f"  [{divergence.kind}] {divergence.detail}{suffix}")
    if result.total_divergences > shown:
        out.append(f"  ... {result.total_divergences - shown} more in reference.json")
    return out


def report_reference(
    log: Path, trace: Path, report: Path, rules: Rules | None = None
) -> tuple[bool, str]:
    """Diff ``log`` against the reference ``trace``; writes ``reference.json``,
    ``reference.txt``, ``reference.html`` and ``reference.xml`` (JUnit) into ``report``,
    and adds the JUnit suite to the run's ``junit.xml`` when there is one. Returns the
    verdict and the summary text."""
    result = diff_reference(log, trace, rules)
    compared = "compared: " + "; ".join(COMPARED)
    not_compared = "not compared (QEMU's trace does not carry them): " + "; ".join(
        qtrace.NOT_TRACED
    )
    text = "\n".join(
        [
            f"reference: the model's log (A: {log}) against QEMU's own device (B: {trace})",
            *_summary(result, trace),
            compared,
            not_compared,
        ]
    )
    report.mkdir(parents=True, exist_ok=True)
    data = txn_json(result)
    data.update(
        a=str(log), b=str(trace), compared=list(COMPARED), not_traced=list(qtrace.NOT_TRACED)
    )
    (report / "reference.json").write_text(json.dumps(data, indent=1) + "\n")
    (report / "reference.txt").write_text(text + "\n")
    write_reference_html(result, report / "reference.html", log, trace, COMPARED, qtrace.NOT_TRACED)
    suite = write_reference_junit(
        result, report / "reference.xml", log, trace, COMPARED, qtrace.NOT_TRACED
    )
    if (report / "junit.xml").exists():  # the run's direct/window diff: one file for CI
        add_suite(report / "junit.xml", suite)
    text += f"\nreports: {report / 'reference.html'}, reference.xml, reference.json"
    return result.equivalent, text


__all__ = [
    "COMPARED",
    "REFERENCE_DEVICES",
    "ReferenceRun",
    "diff_reference",
    "reference_args",
    "reference_namespace",
    "report_reference",
    "run_reference",
]
