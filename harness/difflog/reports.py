"""Reports of a diff: terminal summary, JSON, self-contained HTML, JUnit XML, Chrome trace."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from vfio_bridge.logformat import Kind

from .engine import DiffResult, Divergence
from .phases import phase_line
from .profile import DeviceProfile
from .reader import LogReader
from .transactions import TransactionResult, timeline_row

CONTEXT = 4
#: Raw events (or trace lines) listed per transaction divergence in the HTML reports.
EVENTS_SHOWN = 16


def context(
    path: Path, seqs: Iterable[int], radius: int = CONTEXT
) -> dict[int, list[dict[str, Any]]]:
    """Raw events around each wanted sequence number (one streaming pass)."""
    wanted = sorted(set(seqs))
    out: dict[int, list[dict[str, Any]]] = {seq: [] for seq in wanted}
    if not wanted:
        return out
    low, high = wanted[0] - radius, wanted[-1] + radius
    reader = LogReader(path, allow_truncated=True)
    for event in reader:
        seq = event["seq"]
        if seq < low:
            continue
        if seq > high:
            break
        for target in wanted:
            if abs(seq - target) <= radius:
                out[target].append(event)
    return out


def _event_text(event: dict[str, Any] | None, profile: DeviceProfile | None = None) -> str:
    if event is None:
        return "—"
    kind = event["kind"]
    if kind in (Kind.MMIO_READ, Kind.MMIO_WRITE):
        if profile is not None and "stream" not in event:
            where = f"{profile.register_name(event['bar'], event['offset'])}/{event['size']}"
        else:
            where = f"bar{event['bar']}+{event['offset']:#x}/{event['size']}"
        return f"#{event['seq']} {kind} {where} = {event['value']:#x}"
    if kind in (Kind.CFG_READ, Kind.CFG_WRITE):
        value = f"{event['value']:#x}" if "value" in event else event.get("digest", "")[:12]
        return f"#{event['seq']} {kind} {event['offset']:#x}/{event['size']} = {value}"
    if kind in (Kind.DMA_READ, Kind.DMA_WRITE):
        digest = event["digest"][:12]
        return f"#{event['seq']} {kind} {event['addr']:#x} len {event['len']} digest {digest}"
    if kind == Kind.IRQ:
        return f"#{event['seq']} irq {event['irq_type']} vector {event['vector']}"
    return f"#{event['seq']} {kind}"


def kind_counts(by_kind: Mapping[str, int]) -> str:
    """``kind n, kind n, ...`` in kind order: how many divergences of each kind."""
    return ", ".join(f"{kind} {n}" for kind, n in sorted(by_kind.items()))


def op_counts(txn: TransactionResult) -> str:
    """``op a/b, ...`` in op order: how many of each operation each side's log holds."""
    return ", ".join(f"{op} {txn.ops_a[op]}/{txn.ops_b[op]}" for op in ops_of(txn))


def ops_of(txn: TransactionResult) -> list[str]:
    """The operations either side performed, in order."""
    return sorted(set(txn.ops_a) | set(txn.ops_b))


def summary(result: DiffResult, path_a: Path, path_b: Path) -> str:
    lines = [
        f"A: {path_a} ({result.a.header.get('path', '?')}, {result.a.events} events)",
        f"B: {path_b} ({result.b.header.get('path', '?')}, {result.b.events} events)",
    ]
    phases = phase_line(result.pre_os)
    if phases:
        lines.append(phases)
    kinds = sorted(set(result.events_a) | set(result.events_b))
    lines.append(
        "events per kind (A / B): "
        + ", ".join(f"{k} {result.events_a[k]}/{result.events_b[k]}" for k in kinds)
    )
    if result.addresses_paired:
        lines.append(
            f"guest addresses paired: {result.addresses_paired}, "
            f"{result.addresses_moved} of them at another address in B"
        )
    if result.equivalent:
        lines.append(
            f"EQUIVALENT: {result.matched} items matched "
            f"({result.reordered} reordered within the window)"
        )
        return "\n".join(lines)
    lines.append(
        f"DIVERGED: {result.total_divergences} divergences ("
        + kind_counts(result.by_kind)
        + f"); {result.matched} items matched"
    )
    first = result.first
    assert first is not None
    profile = DeviceProfile.from_header(result.a.header)
    lines.append(f"first divergence [{first.kind}] in stream {first.stream}: {first.detail}")
    ctx_a = context(path_a, [first.seq_a] if first.seq_a is not None else [])
    ctx_b = context(path_b, [first.seq_b] if first.seq_b is not None else [])
    for label, ctx, seq in (("A", ctx_a, first.seq_a), ("B", ctx_b, first.seq_b)):
        if seq is None:
            lines.append(f"  {label}: (no counterpart)")
            continue
        lines.append(f"  {label} around #{seq}:")
        for event in ctx[seq]:
            marker = ">>" if event["seq"] == seq else "  "
            lines.append(f"   {marker} {_event_text(event, profile)}")
    return "\n".join(lines)


def txn_summary(result: TransactionResult, path_a: Path, path_b: Path) -> str:
    """The transaction level in a few lines, with the raw events of the first divergence."""
    lines = [
        f"transactions ({result.model}): {sum(result.ops_a.values())} in A, "
        f"{sum(result.ops_b.values())} in B: " + op_counts(result)
    ]
    judged = (
        f"{result.paired} paired by content, {result.unpaired_a}/{result.unpaired_b} unpaired "
        f"(merged, split or batched: judged per block), {result.blocks_written} blocks' writes "
        f"compared, {result.blocks_read_checked} block reads checked"
    )
    phases = phase_line(result.pre_os)
    if phases:
        lines.append(phases)
    if result.registers_compared:
        judged += f", end state of {', '.join(result.registers_compared)}"
    if result.not_compared:
        judged += f"; not compared (a log lacks them): {', '.join(sorted(result.not_compared))}"
    if result.equivalent:
        lines.append(f"EQUIVALENT (transactions): {judged}")
        return "\n".join(lines)
    lines.append(
        f"DIVERGED (transactions): {result.total_divergences} divergences ("
        + kind_counts(result.by_kind)
        + f"); {judged}"
    )
    first = result.first
    assert first is not None
    lines.append(f"first divergence [{first.kind}] in {first.side}: {first.detail}")
    profile = DeviceProfile.from_header(result.a.header)
    for label, path, seqs in (("A", path_a, first.seqs_a), ("B", path_b, first.seqs_b)):
        if not seqs:
            continue
        events = context(path, seqs, radius=0)
        lines.append(f"  {label} events of {first.command}:")
        for seq in seqs[:12]:
            for event in events.get(seq, [])[:1]:
                lines.append(f"      {_event_text(event, profile)}")
    return "\n".join(lines)


def txn_json(result: TransactionResult) -> dict[str, Any]:
    return {
        "equivalent": result.equivalent,
        "model": result.model,
        "operations": {"a": dict(result.ops_a), "b": dict(result.ops_b)},
        "paired": result.paired,
        "unpaired": {"a": result.unpaired_a, "b": result.unpaired_b},
        "blocks_written": result.blocks_written,
        "block_reads_checked": result.blocks_read_checked,
        "registers_compared": result.registers_compared,
        "not_compared": sorted(result.not_compared),
        "divergence_counts": dict(result.by_kind),
        "total_divergences": result.total_divergences,
        "divergences": [d.to_json() for d in result.divergences],
    }


def write_json(
    result: DiffResult,
    path: Path,
    path_a: Path,
    path_b: Path,
    txn: TransactionResult | None = None,
    level: str = "raw",
) -> None:
    verdict = txn if level == "transaction" and txn is not None else result
    data = {
        "verdict": {"level": level, "equivalent": verdict.equivalent},
        "equivalent": result.equivalent,
        "logs": {"a": str(path_a), "b": str(path_b)},
        "headers": {"a": result.a.header, "b": result.b.header},
        "events": {"a": dict(result.events_a), "b": dict(result.events_b)},
        "matched": result.matched,
        "reordered": result.reordered,
        "addresses": {"paired": result.addresses_paired, "moved": result.addresses_moved},
        "divergence_counts": dict(result.by_kind),
        "total_divergences": result.total_divergences,
        "divergences_listed": len(result.divergences),
        "streams": result.streams,
        "divergences": [d.to_json() for d in result.divergences],
    }
    if txn is not None:
        data["transaction"] = txn_json(txn)
    if result.pre_os is not None and phase_line(result.pre_os):
        data["pre_os"] = {
            side: {"takeover": pre.takeover, "resets": pre.sessions, "events": dict(pre.kinds)}
            for side, pre in zip(("a", "b"), result.pre_os, strict=True)
        }
    path.write_text(json.dumps(data, indent=1) + "\n")


TXN_CASES = {
    "commands": ("status", "result", "data", "interrupt", "incomplete", "unmatched", "order"),
    "blocks": ("blocks", "end_state"),
    "registers": ("register",),
}


def _txn_suite(
    txn: TransactionResult,
    path_a: Path,
    path_b: Path,
    name: str = "",
    head: str = "",
    tail: str = "",
) -> str:
    """One ``<testsuite>``; ``head`` (properties) and ``tail`` (system-out) go inside it."""
    cases = []
    failures = 0
    for case_name, kinds in TXN_CASES.items():
        listed = [d for d in txn.divergences if d.kind in kinds]
        count = sum(txn.by_kind[k] for k in kinds)
        case = f'    <testcase classname="xvpci.transactions" name={quoteattr(case_name)}>'
        if count:
            failures += 1
            text = "\n".join(f"[{d.kind}] {d.side}: {d.detail}" for d in listed[:50])
            first = listed[0].detail if listed else "?"
            message = quoteattr(f"{count} divergences; first: {first}")
            case += f"\n      <failure message={message}>{escape(text)}</failure>\n    "
        cases.append(case + "</testcase>")
    suite = quoteattr(name or f"xvpci transactions {path_a.name} vs {path_b.name}")
    return (
        f'  <testsuite name={suite} tests="{len(TXN_CASES)}" failures="{failures}">\n'
        + head
        + "\n".join(cases)
        + "\n"
        + tail
        + "  </testsuite>\n"
    )


def write_reference_junit(
    txn: TransactionResult,
    path: Path,
    log: Path,
    trace: Path,
    compared: Iterable[str],
    not_compared: Iterable[str],
) -> str:
    """JUnit XML of the model's log against QEMU's trace of its own device: one suite,
    one case per kind of check, the fields compared and not compared as properties
    (JUnit readers show them) and in ``system-out``. Returns the suite."""
    compared, not_compared = list(compared), list(not_compared)
    properties = [("verdict", "EQUIVALENT" if txn.equivalent else "DIVERGED")]
    properties += [("compared", text) for text in compared]
    properties += [("not compared", text) for text in not_compared]
    properties += [("not compared (a side lacks them)", f) for f in sorted(txn.not_compared)]
    props = "".join(
        f"\n      <property name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in properties
    )
    out = "\n".join(
        [
            txn_summary_line(txn),
            *(f"compared: {text}" for text in compared),
            *(f"not compared: {text}" for text in not_compared),
        ]
    )
    suite = _txn_suite(
        txn,
        log,
        trace,
        f"xvpci reference {log.name} vs {trace.name}",
        head=f"    <properties>{props}\n    </properties>\n",
        tail=f"    <system-out>{escape(out)}</system-out>\n",
    )
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n{suite}</testsuites>\n')
    return suite


def add_suite(junit: Path, suite: str) -> None:
    """Append a ``<testsuite>`` to an existing JUnit file (once: a suite of the same
    name already there is replaced), so that one file carries every verdict of a run."""
    text = junit.read_text()
    name = re.search(r'<testsuite name=("[^"]*")', suite)
    if name is not None:
        text = re.sub(
            rf"  <testsuite name={re.escape(name.group(1))}.*?</testsuite>\n", "", text, flags=re.S
        )
    junit.write_text(text.replace("</testsuites>", suite + "</testsuites>", 1))


def write_reference_html(
    txn: TransactionResult,
    path: Path,
    log: Path,
    trace: Path,
    compared: Iterable[str],
    not_compared: Iterable[str],
    limit: int = 200,
) -> None:
    """Self-contained HTML of the model's log (A) against QEMU's trace (B): the verdict,
    which fields were compared and which the trace cannot supply, the timeline, and each
    divergence with the model's raw events and the trace lines that make it up."""
    esc = html.escape
    ok = "ok" if txn.equivalent else "bad"
    profile = DeviceProfile.from_header(txn.a.header)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>xvpci reference: {esc(log.name)} vs {esc(trace.name)}</title>",
        f"<style>{_STYLE}</style></head><body><header>reference: ",
        f'<span class="verdict {ok}">{esc(txn_summary_line(txn))}</span>',
        f"<div>A (model): {esc(str(log))} &nbsp; B (QEMU's own device): {esc(str(trace))}"
        "</div></header><main>",
        '<h2>Compared</h2><ul class="compared">',
        *(f"<li>{esc(text)}</li>" for text in compared),
        '</ul><h2>Not compared (QEMU\'s trace does not carry them)</h2><ul class="not-compared">',
        *(f"<li>{esc(text)}</li>" for text in not_compared),
        "</ul>",
    ]
    parts += _txn_html(txn, log, trace, profile, limit, b_is_trace=True)
    parts.append("</main></body></html>\n")
    path.write_text("".join(parts))


def write_junit(
    result: DiffResult,
    path: Path,
    path_a: Path,
    path_b: Path,
    txn: TransactionResult | None = None,
) -> None:
    by_stream: dict[str, list[Divergence]] = {}
    for divergence in result.divergences:
        by_stream.setdefault(divergence.stream, []).append(divergence)
    failures = sum(1 for name in result.streams if result.streams[name]["diverged"])
    cases = []
    for name, stats in result.streams.items():
        case = f'    <testcase classname="xvpci.diff" name={quoteattr(name)}>'
        if stats["diverged"]:
            listed = by_stream.get(name, [])
            text = "\n".join(f"[{d.kind}] {d.detail}" for d in listed[:50])
            message = (
                f"{stats['diverged']} divergences; first: {listed[0].detail if listed else '?'}"
            )
            case += f"\n      <failure message={quoteattr(message)}>{escape(text)}</failure>\n    "
        cases.append(case + "</testcase>")
    suite_name = quoteattr(f"xvpci diff {path_a.name} vs {path_b.name}")
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<testsuites>\n  <testsuite name={suite_name} "
        f'tests="{len(result.streams)}" failures="{failures}">\n'
        + "\n".join(cases)
        + "\n  </testsuite>\n"
        + (_txn_suite(txn, path_a, path_b) if txn is not None else "")
        + "</testsuites>\n"
    )
    path.write_text(xml)


def write_trace(path: Path, path_a: Path, path_b: Path, limit: int = 200_000) -> None:
    """Chrome/Perfetto trace of both logs (instant events, one process per log)."""
    with open(path, "w") as out:
        out.write('{"traceEvents":[\n')
        first = True
        for pid, log in ((1, path_a), (2, path_b)):
            reader = LogReader(log, allow_truncated=True)
            meta = {
                "name": "process_name",
                "ph": "M",
                "pid": pid,
                "args": {"name": f"{reader.info.header.get('path', log.name)}: {log.name}"},
            }
            out.write(("" if first else ",\n") + json.dumps(meta))
            first = False
            start = reader.info.header.get("start_t_ns", 0)
            for count, event in enumerate(reader):
                if count >= limit:
                    break
                tid = event["kind"].split("_")[0] + (
                    f":{event['stream']}" if "stream" in event else ""
                )
                record = {
                    "name": event["kind"],
                    "ph": "i",
                    "s": "t",
                    "pid": pid,
                    "tid": tid,
                    "ts": (event["t_ns"] - start) / 1000,
                    "args": event,
                }
                out.write(",\n" + json.dumps(record))
        out.write("\n]}\n")


_STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; }
header { background: #223; color: #fff; padding: 10px 16px; position: sticky; top: 0; }
header .verdict { font-weight: bold; font-size: 16px; }
.ok { color: #7f7; } .bad { color: #f77; }
main { padding: 12px 16px; }
table { border-collapse: collapse; width: 100%; margin-bottom: 18px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; font: 12px monospace; vertical-align: top; }
th { background: #eee; }
tr.hit td { background: #fdd; }
.divergence { border: 2px solid #c33; margin: 14px 0; padding: 6px 10px; }
.divergence h3 { margin: 2px 0 6px; }
svg.timeline { border: 1px solid #ccc; background: #fcfcfc; }
nav a { margin-right: 10px; }
"""


_OP_COLOURS = {"read": "#36c", "write": "#393", "flush": "#c90", "write_zeroes": "#6a6"}
TIMELINE_WIDTH = 900
ROW_HEIGHT = 18


def timeline_svg(txn: TransactionResult) -> str:
    """Both logs' transactions on a time axis, one row per queue (or stream) and side,
    coloured by operation, with the divergent ones marked by red triangles."""
    esc = html.escape
    rows: list[tuple[str, str]] = []
    for side in ("A", "B"):
        for row in sorted({r for _, r, _ in txn.timeline[side]}, key=_row_order):
            rows.append((side, row))
    marks: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for n, d in enumerate(txn.divergences[:500]):
        for side, t in (("A", d.a), ("B", d.b)):
            if t is not None:
                start = txn.timeline_origin[side]
                row = timeline_row(t)
                marks.setdefault((side, row), []).append((t.t_ns - start, f"t{n}"))
    if not rows:
        return "<p><em>no transactions</em></p>"
    end = max(
        [t for side in ("A", "B") for t, _, _ in txn.timeline[side]]
        + [t for points in marks.values() for t, _ in points]
        + [1]
    )
    label = 110
    width, height = label + TIMELINE_WIDTH + 10, ROW_HEIGHT * len(rows) + 24
    scale = TIMELINE_WIDTH / end
    out = [
        f'<svg class="timeline" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="monospace">'
    ]
    for i, (side, row) in enumerate(rows):
        y = i * ROW_HEIGHT + 4
        out.append(f'<text x="2" y="{y + 12}">{side}: {esc(row)}</text>')
        out.append(
            f'<line x1="{label}" y1="{y + 9}" x2="{label + TIMELINE_WIDTH}" '
            f'y2="{y + 9}" stroke="#ddd"/>'
        )
        for t, r, op in txn.timeline[side]:
            if r != row:
                continue
            x = label + t * scale
            colour = _OP_COLOURS.get(op, "#888")
            out.append(
                f'<line x1="{x:.1f}" y1="{y + 3}" x2="{x:.1f}" y2="{y + 15}" '
                f'stroke="{colour}"><title>{esc(op)}</title></line>'
            )
        for t, anchor in marks.get((side, row), []):
            x = label + t * scale
            out.append(
                f'<a href="#{anchor}"><path d="M{x:.1f},{y + 1} l-5,-0 l5,9 l5,-9 z" '
                f'fill="#d22"><title>divergence {anchor}</title></path></a>'
            )
    axis_y = ROW_HEIGHT * len(rows) + 18
    out.append(f'<text x="{label}" y="{axis_y}">0 s</text>')
    out.append(f'<text x="{label + TIMELINE_WIDTH - 60}" y="{axis_y}">{end / 1e9:.2f} s</text>')
    legend = " ".join(f'<tspan fill="{c}">{op}</tspan>' for op, c in _OP_COLOURS.items())
    out.append(
        f'<text x="{label + 200}" y="{axis_y}">{legend} '
        '<tspan fill="#888">other</tspan> <tspan fill="#d22">▼ divergence</tspan></text>'
    )
    out.append("</svg>")
    return "".join(out)


def _row_order(row: str) -> tuple[int, str]:
    return (0, "") if row == "admin" else (1, row.rjust(12))


def trace_lines(path: Path, numbers: Iterable[int]) -> dict[int, list[str]]:
    """Lines of a text trace by number (from 1), as :func:`context` gives raw events by seq."""
    wanted = set(numbers)
    out: dict[int, list[str]] = {}
    if not wanted:
        return out
    last = max(wanted)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if number in wanted:
                    out[number] = [f"line {number}: {line.rstrip()}"]
                if number >= last:
                    break
    except OSError:
        pass  # the report still names the line numbers
    return out


def _txn_html(
    txn: TransactionResult,
    path_a: Path,
    path_b: Path,
    profile: DeviceProfile,
    limit: int,
    b_is_trace: bool = False,
) -> list[str]:
    """The transaction section; with ``b_is_trace`` B's "raw events" are the lines of a
    QEMU trace (the reference path: a transaction's seqs are its line numbers)."""
    esc = html.escape
    shown = txn.divergences[:limit]
    events_a: dict[int, list[Any]] = context(
        path_a, [s for d in shown for s in d.seqs_a[:EVENTS_SHOWN]], radius=0
    )
    wanted_b = [s for d in shown for s in d.seqs_b[:EVENTS_SHOWN]]
    events_b: dict[int, list[Any]] = (
        trace_lines(path_b, wanted_b) if b_is_trace else context(path_b, wanted_b, radius=0)
    )
    parts = [
        "<h2>Transactions</h2>",
        f"<p>{esc(txn_summary_line(txn))}</p>",
        "<table><tr><th>operation</th><th>A</th><th>B</th></tr>",
    ]
    for op in ops_of(txn):
        hit = ' class="hit"' if txn.ops_a[op] != txn.ops_b[op] else ""
        parts.append(
            f"<tr{hit}><td>{esc(op)}</td><td>{txn.ops_a[op]}</td><td>{txn.ops_b[op]}</td></tr>"
        )
    parts.append("</table><h3>Timeline</h3>")
    parts.append(timeline_svg(txn))
    if shown:
        parts.append(
            f"<h3>Transaction divergences (first {len(shown)} of {txn.total_divergences})</h3>"
        )
    for n, d in enumerate(shown):
        parts.append(
            f'<section class="divergence" id="t{n}"><h3>{esc(d.kind)} in {esc(d.side)}: '
            f"{esc(d.command)}</h3><p>{esc(d.detail)}</p>"
            "<table><tr><th>A: raw events</th><th>B: raw events</th></tr><tr><td>"
        )
        for column, seqs, events in (("a", d.seqs_a, events_a), ("b", d.seqs_b, events_b)):
            if column == "b":
                parts.append("</td><td>")
            if not seqs:
                parts.append("<em>no counterpart</em>")
                continue
            rows = [
                f"<tr><td>{esc(e if isinstance(e, str) else _event_text(e, profile))}</td></tr>"
                for seq in seqs[:EVENTS_SHOWN]
                for e in events.get(seq, [])[:1]
            ]
            if len(seqs) > EVENTS_SHOWN:
                rows.append(f"<tr><td>... {len(seqs) - EVENTS_SHOWN} more</td></tr>")
            parts.append("<table>" + "".join(rows) + "</table>")
        parts.append("</td></tr></table></section>")
    return parts


def txn_summary_line(txn: TransactionResult) -> str:
    verdict = "EQUIVALENT" if txn.equivalent else f"DIVERGED: {txn.total_divergences} divergences"
    text = (
        f"{verdict}; {txn.paired} commands paired by content, {txn.unpaired_a}/{txn.unpaired_b} "
        f"judged per block, {txn.blocks_written} blocks compared"
    )
    if txn.not_compared:
        text += f"; not compared: {', '.join(sorted(txn.not_compared))}"
    return text


def write_html(
    result: DiffResult,
    path: Path,
    path_a: Path,
    path_b: Path,
    limit: int = 200,
    txn: TransactionResult | None = None,
    level: str = "raw",
) -> None:
    shown = result.divergences[:limit]
    ctx_a = context(path_a, [d.seq_a for d in shown if d.seq_a is not None])
    ctx_b = context(path_b, [d.seq_b for d in shown if d.seq_b is not None])
    profile = DeviceProfile.from_header(result.a.header)
    esc = html.escape
    raw_verdict = (
        '<span class="verdict ok">EQUIVALENT</span>'
        if result.equivalent
        else f'<span class="verdict bad">DIVERGED: {result.total_divergences} divergences</span>'
    )
    if txn is not None:
        ok = "ok" if txn.equivalent else "bad"
        txn_verdict = f'<span class="verdict {ok}">{esc(txn_summary_line(txn))}</span>'
        first, second = (
            (txn_verdict, raw_verdict) if level == "transaction" else (raw_verdict, txn_verdict)
        )
        names = ("transactions", "raw") if level == "transaction" else ("raw", "transactions")
        verdict = f"{names[0]}: {first}<div>{names[1]}: {second}</div>"
    else:
        verdict = raw_verdict
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>xvpci diff: {esc(path_a.name)} vs {esc(path_b.name)}</title>",
        f"<style>{_STYLE}</style></head><body><header>{verdict}",
        f"<div>A: {esc(str(path_a))} &nbsp; B: {esc(str(path_b))}</div></header><main>",
    ]
    if txn is not None:
        parts += _txn_html(txn, path_a, path_b, profile, limit)
        parts.append("<h2>Raw events</h2>")
    parts += [
        "<h2>Summary</h2><table><tr><th>kind</th><th>A</th><th>B</th></tr>",
    ]
    for kind in sorted(set(result.events_a) | set(result.events_b)):
        parts.append(
            f"<tr><td>{esc(kind)}</td><td>{result.events_a[kind]}</td><td>{result.events_b[kind]}</td></tr>"
        )
    parts.append(
        "</table><h2>Streams</h2><table><tr><th>stream</th><th>matched</th><th>diverged</th></tr>"
    )
    for name, stats in result.streams.items():
        row_class = ' class="hit"' if stats["diverged"] else ""
        parts.append(
            f"<tr{row_class}><td>{esc(name)}</td><td>{stats['matched']}</td><td>{stats['diverged']}</td></tr>"
        )
    parts.append("</table>")
    if shown:
        parts.append(f"<h2>Divergences (first {len(shown)} of {result.total_divergences})</h2>")
    for n, divergence in enumerate(shown):
        links = []
        if n:
            links.append(f'<a href="#d{n - 1}">previous</a>')
        if n + 1 < len(shown):
            links.append(f'<a href="#d{n + 1}">next</a>')
        parts.append(
            f'<section class="divergence" id="d{n}"><h3>#{n + 1} {esc(divergence.kind)} in '
            f"{esc(divergence.stream)}</h3><p>{esc(divergence.detail)}</p><nav>{''.join(links)}</nav>"
            "<table><tr><th>A</th><th>B</th></tr><tr><td>"
        )
        for ctx, seq, column in ((ctx_a, divergence.seq_a, "a"), (ctx_b, divergence.seq_b, "b")):
            if column == "b":
                parts.append("</td><td>")
            if seq is None:
                parts.append("<em>no counterpart</em>")
                continue
            rows = []
            for event in ctx.get(seq, []):
                hit = ' class="hit"' if event["seq"] == seq else ""
                rows.append(f"<tr{hit}><td>{esc(_event_text(event, profile))}</td></tr>")
            parts.append("<table>" + "".join(rows) + "</table>")
        parts.append("</td></tr></table></section>")
    parts.append("</main></body></html>\n")
    path.write_text("".join(parts))


def write_all(
    result: DiffResult,
    path_a: Path,
    path_b: Path,
    html_path: Path | None = None,
    json_path: Path | None = None,
    junit_path: Path | None = None,
    trace_path: Path | None = None,
    txn: TransactionResult | None = None,
    level: str = "raw",
) -> None:
    """Every report asked for; with ``txn`` each carries the transaction level too, and
    ``level`` says which level's verdict counts."""
    if json_path:
        write_json(result, json_path, path_a, path_b, txn, level)
    if junit_path:
        write_junit(result, junit_path, path_a, path_b, txn)
    if html_path:
        write_html(result, html_path, path_a, path_b, txn=txn, level=level)
    if trace_path:
        write_trace(trace_path, path_a, path_b)
