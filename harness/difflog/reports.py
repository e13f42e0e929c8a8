"""Reports of a diff: terminal summary, JSON, self-contained HTML, JUnit XML, Chrome trace."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from vfio_bridge.logformat import Kind

from .engine import DiffResult, Divergence
from .reader import LogReader

CONTEXT = 4


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


def _event_text(event: dict[str, Any] | None) -> str:
    if event is None:
        return "—"
    kind = event["kind"]
    if kind in (Kind.MMIO_READ, Kind.MMIO_WRITE):
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


def summary(result: DiffResult, path_a: Path, path_b: Path) -> str:
    lines = [
        f"A: {path_a} ({result.a.header.get('path', '?')}, {result.a.events} events)",
        f"B: {path_b} ({result.b.header.get('path', '?')}, {result.b.events} events)",
    ]
    kinds = sorted(set(result.events_a) | set(result.events_b))
    lines.append(
        "events per kind (A / B): "
        + ", ".join(f"{k} {result.events_a[k]}/{result.events_b[k]}" for k in kinds)
    )
    if result.equivalent:
        lines.append(
            f"EQUIVALENT: {result.matched} items matched "
            f"({result.reordered} reordered within the window)"
        )
        return "\n".join(lines)
    lines.append(
        f"DIVERGED: {result.total_divergences} divergences ("
        + ", ".join(f"{k} {n}" for k, n in sorted(result.by_kind.items()))
        + f"); {result.matched} items matched"
    )
    first = result.first
    assert first is not None
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
            lines.append(f"   {marker} {_event_text(event)}")
    return "\n".join(lines)


def write_json(result: DiffResult, path: Path, path_a: Path, path_b: Path) -> None:
    data = {
        "equivalent": result.equivalent,
        "logs": {"a": str(path_a), "b": str(path_b)},
        "headers": {"a": result.a.header, "b": result.b.header},
        "events": {"a": dict(result.events_a), "b": dict(result.events_b)},
        "matched": result.matched,
        "reordered": result.reordered,
        "divergence_counts": dict(result.by_kind),
        "total_divergences": result.total_divergences,
        "divergences_listed": len(result.divergences),
        "streams": result.streams,
        "divergences": [d.to_json() for d in result.divergences],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def write_junit(result: DiffResult, path: Path, path_a: Path, path_b: Path) -> None:
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
        + "\n  </testsuite>\n</testsuites>\n"
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
                    "name": event["kind"], "ph": "i", "s": "t", "pid": pid, "tid": tid,
                    "ts": (event["t_ns"] - start) / 1000, "args": event,
                }  # fmt: skip
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
nav a { margin-right: 10px; }
"""


def write_html(
    result: DiffResult, path: Path, path_a: Path, path_b: Path, limit: int = 200
) -> None:
    shown = result.divergences[:limit]
    ctx_a = context(path_a, [d.seq_a for d in shown if d.seq_a is not None])
    ctx_b = context(path_b, [d.seq_b for d in shown if d.seq_b is not None])
    esc = html.escape
    verdict = (
        '<span class="verdict ok">EQUIVALENT</span>'
        if result.equivalent
        else f'<span class="verdict bad">DIVERGED: {result.total_divergences} divergences</span>'
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>xvpci diff: {esc(path_a.name)} vs {esc(path_b.name)}</title>",
        f"<style>{_STYLE}</style></head><body><header>{verdict}",
        f"<div>A: {esc(str(path_a))} &nbsp; B: {esc(str(path_b))}</div></header><main>",
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
                rows.append(f"<tr{hit}><td>{esc(_event_text(event))}</td></tr>")
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
) -> None:
    if json_path:
        write_json(result, json_path, path_a, path_b)
    if junit_path:
        write_junit(result, junit_path, path_a, path_b)
    if html_path:
        write_html(result, html_path, path_a, path_b)
    if trace_path:
        write_trace(trace_path, path_a, path_b)
