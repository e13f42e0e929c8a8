"""The diff's reports (harness/difflog/reports.py), each read back the way its reader
reads it: the terminal summary line by line, JSON key by key, JUnit XML and the
HTML pages parsed (what a person sees: the text in order, which rows are marked,
where links lead), the Chrome trace as the JSON Perfetto loads.

The raw-level results come from ``diff_logs`` on two small hand-written logs; the
transaction-level ones are built here, divergence by divergence, so that each
report's rendering is checked on its own (the transaction diff has its tests).
"""

from __future__ import annotations

import collections
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.difflog import DiffResult, diff_logs, reports
from harness.difflog.phases import PreOs
from harness.difflog.profile import DeviceProfile
from harness.difflog.reader import LogInfo
from harness.difflog.transactions import TransactionResult, TxnDivergence
from tests.loggen import HEADER, dma, irq, mmio, write_log
from vfio_bridge.transaction import Extent, Transaction

# Two logs of one run, B through the window: B's #4 reads 9 where A's read 7, and B
# lacks A's last interrupt.
EVENTS_A: list[dict[str, Any]] = [
    mmio("mmio_write", 0, 0x14, 1),
    mmio("mmio_read", 0, 0x1C, 1),
    dma("dma_read", 0x1000, b"a" * 64),
    irq(0),
    mmio("mmio_read", 2, 0x10, 7),
    mmio("mmio_write", 0, 0x1000, 2),
    {"kind": "cfg_read", "offset": 4, "size": 2, "value": 6},
    irq(1),
]
#: The model's description names one register (reports show its name).
DEVICE = {"bars": [{"index": 0, "registers": [{"offset": 0x14, "name": "cc"}]}]}
EVENTS_B = [*EVENTS_A[:4], mmio("mmio_read", 2, 0x10, 9), *EVENTS_A[5:7]]
DMA_DIGEST = EVENTS_A[2]["digest"][:12]

CONTEXT_A = [
    "#0 mmio_write cc/4 = 0x1",
    "#1 mmio_read bar0+0x1c/4 = 0x1",
    f"#2 dma_read 0x1000 len 64 digest {DMA_DIGEST}",
    "#3 irq msix vector 0",
    "#4 mmio_read bar2+0x10/4 = 0x7",
    "#5 mmio_write bar0+0x1000/4 = 0x2",
    "#6 cfg_read 0x4/2 = 0x6",
    "#7 irq msix vector 1",
]
CONTEXT_B = [*CONTEXT_A[:4], "#4 mmio_read bar2+0x10/4 = 0x9", *CONTEXT_A[5:7]]
CHANGED = "mmio_read 0x2 0x10: 0x7 in A, 0x9 in B"
MISSING = "irq 0x1 (width 0) = None is in A but not in B"


@dataclass
class Pair:
    a: Path
    b: Path
    result: DiffResult


def _diffed(tmp_path: Path, events_b: list[dict[str, Any]]) -> Pair:
    """A's log (EVENTS_A) and B's (``events_b``, through the window), diffed."""
    a = write_log(tmp_path / "a.jsonl", EVENTS_A, {**HEADER, "device": DEVICE})
    b = write_log(tmp_path / "b.jsonl", events_b, {**HEADER, "path": "window", "device": DEVICE})
    return Pair(a, b, diff_logs(a, b))


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return _diffed(tmp_path, EVENTS_B)


@pytest.fixture
def same(tmp_path: Path) -> Pair:
    return _diffed(tmp_path, EVENTS_A)


def test_the_pair_diverges_as_the_reports_below_expect(pair: Pair) -> None:
    assert [(d.kind, d.stream, d.seq_a, d.seq_b, d.detail) for d in pair.result.divergences] == [
        ("changed_value", "mmio:bar2:0", 4, 4, CHANGED),
        ("missing", "irq", 7, None, MISSING),
    ]


# --- the terminal summary ---------------------------------------------------------


def test_summary_of_a_divergent_pair(pair: Pair) -> None:
    assert reports.summary(pair.result, pair.a, pair.b).splitlines() == [
        f"A: {pair.a} (direct, 8 events)",
        f"B: {pair.b} (window, 7 events)",
        "events per kind (A / B): cfg_read 1/1, dma_read 1/1, irq 2/1, mmio_read 2/2, "
        "mmio_write 2/2",
        "guest addresses paired: 1, 0 of them at another address in B",
        "DIVERGED: 2 divergences (changed_value 1, missing 1); 5 items matched",
        f"first divergence [changed_value] in stream mmio:bar2:0: {CHANGED}",
        "  A around #4:",
        *(f"   {'>>' if n == 4 else '  '} {text}" for n, text in enumerate(CONTEXT_A)),
        "  B around #4:",
        *(f"   {'>>' if n == 4 else '  '} {text}" for n, text in enumerate(CONTEXT_B)),
    ]


def test_summary_of_a_first_divergence_without_counterpart(tmp_path: Path) -> None:
    a = write_log(tmp_path / "a.jsonl", EVENTS_A[:4], {**HEADER, "device": DEVICE})
    b = write_log(tmp_path / "b.jsonl", EVENTS_A[:3], {**HEADER, "path": "window"})
    text = reports.summary(diff_logs(a, b), a, b).splitlines()
    assert text[0] == f"A: {a} (direct, 4 events)"
    assert text[1] == f"B: {b} (window, 3 events)"
    # a kind of event only one log holds is counted (B raised no interrupt)
    assert (
        text[2] == "events per kind (A / B): dma_read 1/1, irq 1/0, mmio_read 1/1, mmio_write 1/1"
    )
    assert text[-7:] == [
        "first divergence [missing] in stream irq: irq 0x0 (width 0) = None is in A but not in B",
        "  A around #3:",
        *(f"   {'>>' if n == 3 else '  '} {text}" for n, text in enumerate(CONTEXT_A[:4])),
        "  B: (no counterpart)",
    ]


def test_summary_of_an_equivalent_pair(same: Pair) -> None:
    assert reports.summary(same.result, same.a, same.b).splitlines() == [
        f"A: {same.a} (direct, 8 events)",
        f"B: {same.b} (window, 8 events)",
        "events per kind (A / B): cfg_read 1/1, dma_read 1/1, irq 2/2, mmio_read 2/2, "
        "mmio_write 2/2",
        "guest addresses paired: 1, 0 of them at another address in B",
        "EQUIVALENT: 7 items matched (0 reordered within the window)",
    ]


def test_summary_of_logs_without_a_path_says_so(tmp_path: Path) -> None:
    header = {k: v for k, v in HEADER.items() if k != "path"}
    a = write_log(tmp_path / "a.jsonl", EVENTS_A[:1], header)
    result = diff_logs(a, a)
    assert reports.summary(result, a, a).splitlines()[:2] == [
        f"A: {a} (?, 1 events)",
        f"B: {a} (?, 1 events)",
    ]


def test_summary_names_the_pre_os_phase(same: Pair) -> None:
    same.result.pre_os = (PreOs(takeover=3, kinds=collections.Counter(mmio_read=3)), PreOs())
    lines = reports.summary(same.result, same.a, same.b).splitlines()
    assert lines[2] == (
        "pre-OS phase (reported apart, not compared): A: "
        f"{same.result.pre_os[0].describe()}; B: no takeover found: the whole log is compared"
    )
    assert lines[3].startswith("events per kind")


# --- events as the reports name them ----------------------------------------------


def test_event_text_of_each_kind() -> None:
    text = reports._event_text
    assert text(None) == "—"
    assert text({"seq": 3, **mmio("mmio_write", 1, 0x20, 0xAB, 2)}) == (
        "#3 mmio_write bar1+0x20/2 = 0xab"
    )
    assert text({"seq": 3, **mmio("mmio_read", 1, 0x20, 0)}) == "#3 mmio_read bar1+0x20/4 = 0x0"
    assert text({"seq": 4, "kind": "cfg_write", "offset": 0x10, "size": 4, "value": 0xFE}) == (
        "#4 cfg_write 0x10/4 = 0xfe"
    )
    wide = {"seq": 5, "kind": "cfg_read", "offset": 0x40, "size": 16, "digest": "0123456789abcdef"}
    assert text(wide) == "#5 cfg_read 0x40/16 = 0123456789ab"
    assert text({"seq": 6, **dma("dma_write", 0x2000, b"b" * 16)}) == (
        f"#6 dma_write 0x2000 len 16 digest {dma('dma_write', 0, b'b' * 16)['digest'][:12]}"
    )
    assert text({"seq": 7, **irq(3, "intx")}) == "#7 irq intx vector 3"
    assert text({"seq": 8, "kind": "reset"}) == "#8 reset"
    # a config access with neither (a hand-written log): said so, not a traceback
    assert (
        text({"seq": 9, "kind": "cfg_read", "offset": 0x40, "size": 16}) == "#9 cfg_read 0x40/16 = "
    )


def test_event_text_names_registers_the_model_declares() -> None:
    profile = DeviceProfile(register_names={(0, 0x14): "cc"})
    write = {"seq": 1, **mmio("mmio_write", 0, 0x14, 0x460001)}
    assert reports._event_text(write, profile) == "#1 mmio_write cc/4 = 0x460001"
    other = {"seq": 2, **mmio("mmio_read", 0, 0x1C, 1)}
    assert reports._event_text(other, profile) == "#2 mmio_read bar0+0x1c/4 = 0x1"
    # an access of a tagged stream (a window's own registers) is not the model's register
    tagged = {**write, "stream": "window"}
    assert reports._event_text(tagged, profile) == "#1 mmio_write bar0+0x14/4 = 0x460001"


def test_context_gives_the_events_within_the_radius_of_each_seq(tmp_path: Path) -> None:
    log = write_log(tmp_path / "long.jsonl", [irq(n) for n in range(30)])

    def seqs(found: dict[int, list[dict[str, Any]]]) -> dict[int, list[int]]:
        return {seq: [e["seq"] for e in events] for seq, events in found.items()}

    assert seqs(reports.context(log, [10, 20], radius=2)) == {
        10: [8, 9, 10, 11, 12],
        20: [18, 19, 20, 21, 22],
    }
    assert seqs(reports.context(log, [12, 10, 12], radius=1)) == {10: [9, 10, 11], 12: [11, 12, 13]}
    assert seqs(reports.context(log, [0, 29])) == {0: [0, 1, 2, 3, 4], 29: [25, 26, 27, 28, 29]}
    assert reports.context(log, []) == {}


def test_context_reads_a_truncated_log(tmp_path: Path) -> None:
    log = write_log(tmp_path / "cut.jsonl", [irq(n) for n in range(5)], end=False)
    assert [e["seq"] for e in reports.context(log, [4], radius=1)[4]] == [3, 4]


# --- JSON -------------------------------------------------------------------------


def test_json_report_key_by_key(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "diff.json"
    reports.write_json(pair.result, out, pair.a, pair.b)
    # one space per level: readable, and a diff of two reports shows the lines that changed
    assert out.read_text().startswith('{\n "verdict": {\n  "level": "raw",\n')
    assert out.read_text().endswith("\n}\n")
    data = json.loads(out.read_text())
    assert data == {
        "verdict": {"level": "raw", "equivalent": False},
        "equivalent": False,
        "logs": {"a": str(pair.a), "b": str(pair.b)},
        "headers": {"a": pair.result.a.header, "b": pair.result.b.header},
        "events": {
            "a": {"mmio_write": 2, "mmio_read": 2, "dma_read": 1, "irq": 2, "cfg_read": 1},
            "b": {"mmio_write": 2, "mmio_read": 2, "dma_read": 1, "irq": 1, "cfg_read": 1},
        },
        "matched": 5,
        "reordered": 0,
        "addresses": {"paired": 1, "moved": 0},
        "divergence_counts": {"changed_value": 1, "missing": 1},
        "total_divergences": 2,
        "divergences_listed": 2,
        "streams": {
            "dma": {"matched": 1, "diverged": 0},
            "irq": {"matched": 1, "diverged": 1},
            "mmio:bar0:0": {"matched": 2, "diverged": 0},
            "mmio:bar0:1": {"matched": 1, "diverged": 0},
            "mmio:bar2:0": {"matched": 0, "diverged": 1},
        },
        "divergences": [d.to_json() for d in pair.result.divergences],
    }
    assert data["headers"]["b"]["path"] == "window"


def test_json_report_with_transactions_takes_the_verdict_of_the_level_asked(
    pair: Pair, tmp_path: Path
) -> None:
    txn = transactions(pair)
    out = tmp_path / "diff.json"
    reports.write_json(pair.result, out, pair.a, pair.b, txn, level="transaction")
    data = json.loads(out.read_text())
    assert data["verdict"] == {"level": "transaction", "equivalent": True}
    assert data["equivalent"] is False  # the raw level's, as before
    assert data["transaction"] == {
        "equivalent": True,
        "model": "synthetic",
        "operations": {"a": {"write": 2, "flush": 1}, "b": {"write": 2}},
        "paired": 2,
        "unpaired": {"a": 0, "b": 0},
        "blocks_written": 3,
        "block_reads_checked": 0,
        "registers_compared": ["status", "ctrl"],
        "not_compared": ["data", "irq"],
        "divergence_counts": {},
        "total_divergences": 0,
        "divergences": [],
    }
    reports.write_json(pair.result, out, pair.a, pair.b, txn, level="raw")
    assert json.loads(out.read_text())["verdict"] == {"level": "raw", "equivalent": False}
    reports.write_json(pair.result, out, pair.a, pair.b, None, level="transaction")
    data = json.loads(out.read_text())
    assert data["verdict"] == {"level": "transaction", "equivalent": False}
    assert "transaction" not in data


def test_json_report_carries_the_pre_os_phase_only_when_one_was_cut(
    same: Pair, tmp_path: Path
) -> None:
    out = tmp_path / "diff.json"
    same.result.pre_os = (PreOs(), PreOs())  # looked for, none found: nothing to say
    reports.write_json(same.result, out, same.a, same.b)
    assert "pre_os" not in json.loads(out.read_text())
    same.result.pre_os = (
        PreOs(takeover=12, kinds=collections.Counter(mmio_read=9, cfg_write=2), sessions=1),
        PreOs(takeover=0),
    )
    reports.write_json(same.result, out, same.a, same.b)
    assert json.loads(out.read_text())["pre_os"] == {
        "a": {"takeover": 12, "resets": 1, "events": {"mmio_read": 9, "cfg_write": 2}},
        "b": {"takeover": 0, "resets": 0, "events": {}},
    }


# --- transaction results built by hand --------------------------------------------


def _write(lba: int, blocks: int, seqs: tuple[int, ...], queue: int = 1) -> Transaction:
    return Transaction(
        "write",
        (("opcode", 1), ("nsid", 1)),
        written=(Extent(lba, blocks),),
        status=0,
        queue=queue,
        seqs=seqs,
    )


def transactions(pair: Pair, *divergences: TxnDivergence) -> TransactionResult:
    """Two writes on each side and a flush on A's (seqs: events of the raw logs)."""
    txn = TransactionResult(pair.result.a, pair.result.b, "synthetic")
    txn.ops_a.update(write=2, flush=1)
    txn.ops_b.update(write=2)
    txn.paired, txn.blocks_written = 2, 3
    txn.registers_compared = ["status", "ctrl"]
    txn.not_compared = {"irq", "data"}
    txn.timeline = {
        "A": [(0, "admin", "identify"), (500, "queue 9", "write"), (1500, "queue 10", "flush")],
        "B": [(0, "queue 2", "write"), (2000, "queue 2", "dsm")],
    }
    txn.timeline_origin = {"A": 1000, "B": 3000}
    for divergence in divergences:
        txn.add(divergence)
    return txn


def status_divergence(seq_a: int = 0, seq_b: int = 0) -> TxnDivergence:
    a, b = _write(8, 2, (seq_a, 1)), _write(8, 2, (seq_b,))
    b.status = 6
    return TxnDivergence("status", "both", a, b, "status 0x000 in A, 0x006 in B")


def blocks_divergence() -> TxnDivergence:
    return TxnDivergence(
        "end_state", "A", _write(0, 1, (5,)), None, "LBA 0 ends differently", lba=0, blocks=1
    )


def test_transaction_summary_of_a_divergent_result(pair: Pair) -> None:
    txn = transactions(pair, status_divergence(0, 4), blocks_divergence())
    assert reports.txn_summary(txn, pair.a, pair.b).splitlines() == [
        "transactions (synthetic): 3 in A, 2 in B: flush 1/0, write 2/2",
        "DIVERGED (transactions): 2 divergences (end_state 1, status 1); 2 paired by content, "
        "0/0 unpaired (merged, split or batched: judged per block), 3 blocks' writes "
        "compared, 0 block reads checked, end state of status, ctrl; not compared (a log lacks "
        "them): data, irq",
        "first divergence [status] in both: status 0x000 in A, 0x006 in B",
        "  A events of write LBA 8+2:",
        f"      {CONTEXT_A[0]}",
        f"      {CONTEXT_A[1]}",
        "  B events of write LBA 8+2:",
        f"      {CONTEXT_B[4]}",
    ]


def test_transaction_summary_lists_at_most_12_events_and_skips_a_side_without(
    pair: Pair, tmp_path: Path
) -> None:
    log = write_log(tmp_path / "long.jsonl", [irq(n % 8) for n in range(20)])
    many = TxnDivergence("unmatched", "A", _write(0, 1, tuple(range(20))), None, "only in A")
    txn = transactions(pair, many)
    lines = reports.txn_summary(txn, log, pair.b).splitlines()
    assert lines[3] == "  A events of write LBA 0+1:"
    assert lines[4:] == [f"      #{n} irq msix vector {n % 8}" for n in range(12)]


def test_transaction_summary_of_a_command_only_b_holds(pair: Pair) -> None:
    # seq 99 is not in B's log (a source may name events the log no longer holds)
    only_b = TxnDivergence("unmatched", "B", None, _write(3, 1, (4, 99, 5)), "only in B")
    lines = reports.txn_summary(transactions(pair, only_b), pair.a, pair.b).splitlines()
    assert lines[2:] == [
        "first divergence [unmatched] in B: only in B",
        "  B events of write LBA 3+1:",
        f"      {CONTEXT_B[4]}",
        f"      {CONTEXT_B[5]}",
    ]


def test_transaction_summary_of_an_equivalent_result(pair: Pair) -> None:
    txn = transactions(pair)
    txn.registers_compared, txn.not_compared = [], set()
    txn.pre_os = (PreOs(takeover=2), PreOs(takeover=3))
    assert reports.txn_summary(txn, pair.a, pair.b).splitlines() == [
        "transactions (synthetic): 3 in A, 2 in B: flush 1/0, write 2/2",
        "pre-OS phase (reported apart, not compared): "
        f"A: {PreOs(takeover=2).describe()}; B: {PreOs(takeover=3).describe()}",
        "EQUIVALENT (transactions): 2 paired by content, 0/0 unpaired (merged, split or "
        "batched: judged per block), 3 blocks' writes compared, 0 block reads checked",
    ]


def test_transaction_summary_line(pair: Pair) -> None:
    txn = transactions(pair, blocks_divergence())
    txn.unpaired_a, txn.unpaired_b = 1, 4
    assert reports.txn_summary_line(txn) == (
        "DIVERGED: 1 divergences; 2 commands paired by content, 1/4 judged per block, "
        "3 blocks compared; not compared: data, irq"
    )
    txn = transactions(pair)
    txn.not_compared = set()
    assert reports.txn_summary_line(txn) == (
        "EQUIVALENT; 2 commands paired by content, 0/0 judged per block, 3 blocks compared"
    )


def test_transaction_json_lists_each_divergence(pair: Pair) -> None:
    txn = transactions(pair, status_divergence(), blocks_divergence())
    data = reports.txn_json(txn)
    assert data["equivalent"] is False and data["total_divergences"] == 2
    assert data["divergence_counts"] == {"status": 1, "end_state": 1}
    assert data["divergences"] == [d.to_json() for d in txn.divergences]


# --- JUnit ------------------------------------------------------------------------


def junit(source: Path | str) -> ET.Element:
    """The parsed file (or suite); text only where JUnit puts it (a failure's, the
    suite's output), none between elements."""
    root = ET.fromstring(source) if isinstance(source, str) else ET.parse(source).getroot()
    for element in root.iter():
        if element.tag not in ("failure", "system-out"):
            assert not (element.text or "").strip(), (element.tag, element.text)
        assert not (element.tail or "").strip(), (element.tag, element.tail)
    return root


def test_junit_has_a_case_per_stream_and_a_failure_per_divergent_one(
    pair: Pair, tmp_path: Path
) -> None:
    out = tmp_path / "junit.xml"
    reports.write_junit(pair.result, out, pair.a, pair.b)
    assert out.read_text().startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
    [suite] = junit(out).findall("testsuite")
    assert suite.attrib == {"name": "xvpci diff a.jsonl vs b.jsonl", "tests": "5", "failures": "2"}
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("xvpci.diff", name) for name in ("dma", "irq", "mmio:bar0:0", "mmio:bar0:1", "mmio:bar2:0")
    ]
    failures = {c.get("name"): c.find("failure") for c in cases}
    assert failures["dma"] is None and failures["mmio:bar0:0"] is None
    irq_failure, value_failure = failures["irq"], failures["mmio:bar2:0"]
    assert irq_failure is not None and value_failure is not None
    assert irq_failure.get("message") == f"1 divergences; first: {MISSING}"
    assert irq_failure.text == f"[missing] {MISSING}"
    assert value_failure.get("message") == f"1 divergences; first: {CHANGED}"
    assert value_failure.text == f"[changed_value] {CHANGED}"


def test_junit_of_an_equivalent_pair_has_no_failure(same: Pair, tmp_path: Path) -> None:
    out = tmp_path / "junit.xml"
    reports.write_junit(same.result, out, same.a, same.b)
    [suite] = junit(out)
    assert suite.get("failures") == "0" and suite.get("tests") == "5"
    assert not list(suite.iter("failure"))


def test_junit_failure_lists_at_most_50_divergences_and_says_when_none_is_kept(
    same: Pair, tmp_path: Path
) -> None:
    result = same.result  # the pair agrees: every divergence below is put there
    result.divergences = [
        reports.Divergence("changed_value", "irq", None, None, f"value {n}") for n in range(60)
    ]
    result.streams["irq"]["diverged"] = 60
    result.streams["dma"]["diverged"] = 3  # counted, none of them kept
    out = tmp_path / "junit.xml"
    reports.write_junit(result, out, same.a, same.b)
    cases = {c.get("name"): c.find("failure") for c in junit(out).iter("testcase")}
    irq_failure, dma_failure = cases["irq"], cases["dma"]
    assert irq_failure is not None and dma_failure is not None
    assert (irq_failure.text or "").splitlines() == [
        f"[changed_value] value {n}" for n in range(50)
    ]
    assert irq_failure.get("message") == "60 divergences; first: value 0"
    assert dma_failure.get("message") == "3 divergences; first: ?" and not dma_failure.text


def test_junit_with_transactions_adds_their_suite(pair: Pair, tmp_path: Path) -> None:
    txn = transactions(pair, status_divergence(), blocks_divergence())
    out = tmp_path / "junit.xml"
    reports.write_junit(pair.result, out, pair.a, pair.b, txn)
    raw, transaction = junit(out).findall("testsuite")
    assert raw.get("name") == "xvpci diff a.jsonl vs b.jsonl"
    assert transaction.attrib == {
        "name": "xvpci transactions a.jsonl vs b.jsonl",
        "tests": "3",
        "failures": "2",
    }
    cases = {c.get("name"): c for c in transaction.findall("testcase")}
    assert list(cases) == ["commands", "blocks", "registers"]
    assert {c.get("classname") for c in cases.values()} == {"xvpci.transactions"}
    commands, blocks = cases["commands"].find("failure"), cases["blocks"].find("failure")
    assert cases["registers"].find("failure") is None
    assert commands is not None and blocks is not None
    assert commands.get("message") == "1 divergences; first: status 0x000 in A, 0x006 in B"
    assert commands.text == "[status] both: status 0x000 in A, 0x006 in B"
    assert blocks.get("message") == "1 divergences; first: LBA 0 ends differently"
    assert blocks.text == "[end_state] A: LBA 0 ends differently"


def test_transaction_failure_lists_each_divergence_up_to_50(pair: Pair) -> None:
    statuses = [status_divergence(n) for n in range(52)]
    for n, divergence in enumerate(statuses):
        divergence.detail = f"status {n}"
    txn = transactions(pair, *statuses)
    suite = junit(reports._txn_suite(txn, pair.a, pair.b))
    [failure] = suite.iter("failure")
    assert (failure.text or "").splitlines() == [f"[status] both: status {n}" for n in range(50)]
    assert failure.get("message") == "52 divergences; first: status 0"


def test_transaction_suite_counts_divergences_not_kept(pair: Pair, tmp_path: Path) -> None:
    txn = transactions(pair)
    txn.by_kind.update(register=4)
    txn.total_divergences = 4
    txn.divergences = []
    suite = junit(reports._txn_suite(txn, pair.a, pair.b))
    [failure] = suite.iter("failure")
    assert suite.get("failures") == "1"
    assert failure.get("message") == "4 divergences; first: ?"


def test_reference_junit_and_adding_its_suite_to_a_runs_file_once(
    pair: Pair, tmp_path: Path
) -> None:
    txn = transactions(pair, status_divergence())
    out = tmp_path / "reference.xml"
    trace = tmp_path / "nvme.trace"
    suite = reports.write_reference_junit(
        txn, out, pair.a, trace, ["op & LBA", "status"], ["interrupt vector"]
    )
    [written] = junit(out)
    assert suite in out.read_text()
    assert written.get("name") == "xvpci reference a.jsonl vs nvme.trace"
    assert [(p.get("name"), p.get("value")) for p in written.iter("property")] == [
        ("verdict", "DIVERGED"),
        ("compared", "op & LBA"),
        ("compared", "status"),
        ("not compared", "interrupt vector"),
        ("not compared (a side lacks them)", "data"),
        ("not compared (a side lacks them)", "irq"),
    ]
    assert (written.findtext("system-out") or "").splitlines() == [
        reports.txn_summary_line(txn),
        "compared: op & LBA",
        "compared: status",
        "not compared: interrupt vector",
    ]
    assert [c.get("name") for c in written.iter("testcase")] == ["commands", "blocks", "registers"]

    junit_path = tmp_path / "junit.xml"
    reports.write_junit(pair.result, junit_path, pair.a, pair.b)
    for _ in range(2):
        reports.add_suite(junit_path, suite)
    names = [s.get("name") for s in junit(junit_path)]
    assert names == ["xvpci diff a.jsonl vs b.jsonl", "xvpci reference a.jsonl vs nvme.trace"]
    equivalent = reports.write_reference_junit(transactions(pair), out, pair.a, trace, [], [])
    reports.add_suite(junit_path, equivalent)  # a second verdict replaces the first
    root = junit(junit_path)
    assert [s.get("failures") for s in root] == ["2", "0"]
    assert ("verdict", "EQUIVALENT") in [
        (p.get("name"), p.get("value")) for p in root.iter("property")
    ]


def test_adding_a_suite_without_a_name_appends_it(pair: Pair, tmp_path: Path) -> None:
    junit_path = tmp_path / "junit.xml"
    reports.write_junit(pair.result, junit_path, pair.a, pair.b)
    for _ in range(2):
        reports.add_suite(junit_path, "  <testsuite tests='0'></testsuite>\n")
    assert [s.get("tests") for s in junit(junit_path)] == ["5", "0", "0"]


# --- the Chrome trace -------------------------------------------------------------


def test_trace_has_a_process_per_log_and_an_instant_per_event(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    direct = write_log(tmp_path / "direct.jsonl", EVENTS_A, {**HEADER, "start_t_ns": 0})
    tagged = write_log(
        tmp_path / "tagged.jsonl",
        [{**mmio("mmio_write", 0, 4, 1), "stream": "window"}, irq(2)],
        {**HEADER, "path": "window", "start_t_ns": 500},
    )
    reports.write_trace(out, direct, tagged)
    assert out.read_text().startswith('{"traceEvents":[\n{"name": "process_name"')
    events = json.loads(out.read_text())["traceEvents"]
    assert events[0] == {
        "name": "process_name",
        "ph": "M",
        "pid": 1,
        "args": {"name": "direct: direct.jsonl"},
    }
    a_events = events[1:9]
    assert [(e["name"], e["tid"], e["ts"]) for e in a_events] == [
        ("mmio_write", "mmio", 0.0),
        ("mmio_read", "mmio", 1.0),
        ("dma_read", "dma", 2.0),
        ("irq", "irq", 3.0),
        ("mmio_read", "mmio", 4.0),
        ("mmio_write", "mmio", 5.0),
        ("cfg_read", "cfg", 6.0),
        ("irq", "irq", 7.0),
    ]
    assert all(e["ph"] == "i" and e["s"] == "t" and e["pid"] == 1 for e in a_events)
    assert a_events[3]["args"] == {"seq": 3, "t_ns": 3000, **EVENTS_A[3]}
    assert events[9] == {
        "name": "process_name",
        "ph": "M",
        "pid": 2,
        "args": {"name": "window: tagged.jsonl"},
    }
    assert [(e["name"], e["tid"], e["ts"], e["pid"]) for e in events[10:]] == [
        ("mmio_write", "mmio:window", -0.5, 2),
        ("irq", "irq", 0.5, 2),
    ]


def test_trace_of_a_truncated_log_without_a_start_time(tmp_path: Path) -> None:
    header = {k: v for k, v in HEADER.items() if k != "start_t_ns"}
    cut = write_log(tmp_path / "cut.jsonl", EVENTS_A[:2], header, end=False)
    out = tmp_path / "trace.json"
    reports.write_trace(out, cut, cut)
    events = json.loads(out.read_text())["traceEvents"]
    assert [(e["pid"], e.get("ts")) for e in events] == [
        (1, None), (1, 0.0), (1, 1.0), (2, None), (2, 0.0), (2, 1.0),
    ]  # fmt: skip


def test_trace_stops_each_log_at_the_limit_and_names_a_log_without_a_path(
    pair: Pair, tmp_path: Path
) -> None:
    header = {k: v for k, v in HEADER.items() if k != "path"}
    bare = write_log(tmp_path / "bare.jsonl", EVENTS_A[:3], header)
    out = tmp_path / "trace.json"
    reports.write_trace(out, bare, pair.b, limit=2)
    events = json.loads(out.read_text())["traceEvents"]
    assert [(e["pid"], e["ph"]) for e in events] == [
        (1, "M"),
        (1, "i"),
        (1, "i"),
        (2, "M"),
        (2, "i"),
        (2, "i"),
    ]
    assert events[0]["args"] == {"name": "bare.jsonl: bare.jsonl"}


# --- HTML ---------------------------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def all(self, tag: str, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                    found.append(child)
                found += child.all(tag, **attrs)
        return found

    def one(self, tag: str, **attrs: str) -> Node:
        [found] = self.all(tag, **attrs)
        return found

    def texts(self) -> list[str]:
        """Every piece of text in document order, as a person reads the page."""
        out = []
        for child in self.children:
            if isinstance(child, str):
                if child.strip():
                    out.append(child.strip())
            elif child.tag not in ("style", "title"):
                out += child.texts()
        return out


class _Tree(HTMLParser):
    VOID: ClassVar[set[str]] = {"meta"}
    #: Elements that hold other elements only: text there is stray.
    STRUCTURE: ClassVar[set[str]] = {
        "html",
        "head",
        "body",
        "main",
        "table",
        "tr",
        "ul",
        "section",
        "nav",
        "svg",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.open[-1].children.append(node)
        if tag not in self.VOID:
            self.open.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1].tag == tag, f"</{tag}> closes <{self.open[-1].tag}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        where = self.open[-1].tag
        assert where not in self.STRUCTURE or not data.strip(), f"text {data!r} in <{where}>"
        self.open[-1].children.append(data)


def parse(page: str) -> Node:
    """The page as a tree; every element but the void ones closed, in order."""
    assert page.startswith("<!DOCTYPE html><html>") and page.endswith("</html>\n")
    tree = _Tree()
    tree.feed(page)
    tree.close()
    assert tree.open == [tree.root], [n.tag for n in tree.open]
    return tree.root


def rows(table: Node) -> list[list[str]]:
    """A table's rows as cell texts (its own rows, not those of tables inside it)."""
    out = []
    for row in table.children:
        if isinstance(row, Node) and row.tag == "tr":
            out.append([c.text for c in row.children if isinstance(c, Node)])
    return out


def marked(table: Node) -> list[str]:
    return [
        row.children[0].text  # type: ignore[union-attr]
        for row in table.children
        if isinstance(row, Node) and row.attrs.get("class") == "hit"
    ]


def test_html_of_a_divergent_pair(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "diff.html"
    reports.write_html(pair.result, out, pair.a, pair.b)
    page = parse(out.read_text())
    assert page.one("head").one("title").text == "xvpci diff: a.jsonl vs b.jsonl"
    assert page.one("style").text == reports._STYLE
    verdict = page.one("header").one("span")
    assert verdict.attrs == {"class": "verdict bad"} and verdict.text == "DIVERGED: 2 divergences"
    [kinds, streams] = [
        t for t in page.one("main").children if isinstance(t, Node) and t.tag == "table"
    ]
    assert rows(kinds) == [
        ["kind", "A", "B"],
        ["cfg_read", "1", "1"],
        ["dma_read", "1", "1"],
        ["irq", "2", "1"],
        ["mmio_read", "2", "2"],
        ["mmio_write", "2", "2"],
    ]
    assert rows(streams) == [
        ["stream", "matched", "diverged"],
        ["dma", "1", "0"],
        ["irq", "1", "1"],
        ["mmio:bar0:0", "2", "0"],
        ["mmio:bar0:1", "1", "0"],
        ["mmio:bar2:0", "0", "1"],
    ]
    assert marked(streams) == ["irq", "mmio:bar2:0"]
    changed, missing = page.all("section", **{"class": "divergence"})
    assert (changed.attrs["id"], missing.attrs["id"]) == ("d0", "d1")
    assert [a.attrs["href"] for a in changed.one("nav").all("a")] == ["#d1"]
    assert [a.text for a in changed.one("nav").all("a")] == ["next"]
    assert [(a.attrs["href"], a.text) for a in missing.one("nav").all("a")] == [("#d0", "previous")]
    columns, context_a, context_b = changed.all("table")
    assert rows(columns) == [["A", "B"], ["".join(CONTEXT_A), "".join(CONTEXT_B)]]
    assert rows(context_a) == [[text] for text in CONTEXT_A]
    assert rows(context_b) == [[text] for text in CONTEXT_B]
    assert marked(context_a) == [CONTEXT_A[4]] and marked(context_b) == [CONTEXT_B[4]]
    assert page.one("main").texts() == [
        "Summary", "kind", "A", "B",
        "cfg_read", "1", "1", "dma_read", "1", "1", "irq", "2", "1",
        "mmio_read", "2", "2", "mmio_write", "2", "2",
        "Streams", "stream", "matched", "diverged",
        "dma", "1", "0", "irq", "1", "1", "mmio:bar0:0", "2", "0",
        "mmio:bar0:1", "1", "0", "mmio:bar2:0", "0", "1",
        "Divergences (first 2 of 2)",
        "#1 changed_value in mmio:bar2:0", CHANGED, "next", "A", "B", *CONTEXT_A, *CONTEXT_B,
        "#2 missing in irq", MISSING, "previous", "A", "B", *CONTEXT_A[3:], "no counterpart",
    ]  # fmt: skip
    assert page.one("header").texts() == [
        "DIVERGED: 2 divergences",
        f"A: {pair.a} \xa0 B: {pair.b}",
    ]


def test_html_shows_the_first_divergences_up_to_the_limit(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "diff.html"
    reports.write_html(pair.result, out, pair.a, pair.b, limit=1)
    page = parse(out.read_text())
    [only] = page.all("section", **{"class": "divergence"})
    assert (
        only.one("nav").children == [] and only.one("h3").text == "#1 changed_value in mmio:bar2:0"
    )
    assert "Divergences (first 1 of 2)" in page.texts()


def test_html_of_an_equivalent_pair(same: Pair, tmp_path: Path) -> None:
    out = tmp_path / "diff.html"
    reports.write_html(same.result, out, same.a, same.b)
    page = parse(out.read_text())
    assert page.one("header").one("span").attrs == {"class": "verdict ok"}
    assert page.one("header").texts()[0] == "EQUIVALENT"
    assert not page.all("section") and not any(t.startswith("Divergences") for t in page.texts())
    assert page.one("main").all("h2")[-1].text == "Streams"


def test_html_of_an_event_only_b_holds(tmp_path: Path) -> None:
    events = [{"kind": "cfg_read", "offset": 0, "size": 2, "value": 1}, irq(1)]
    a = write_log(tmp_path / "a.jsonl", events[:1])
    b = write_log(tmp_path / "b.jsonl", events)
    out = tmp_path / "diff.html"
    reports.write_html(diff_logs(a, b), out, a, b)
    page = parse(out.read_text())
    kinds = page.one("main").all("table")[0]
    assert rows(kinds) == [["kind", "A", "B"], ["cfg_read", "1", "1"], ["irq", "0", "1"]]
    assert page.one("section").texts() == [
        "#1 extra in irq", "irq 0x1 (width 0) = None is in B but not in A", "A", "B",
        "no counterpart", "#0 cfg_read 0x0/2 = 0x1", "#1 irq msix vector 1",
    ]  # fmt: skip


def test_html_escapes_what_it_shows(tmp_path: Path) -> None:
    events = [{"kind": "cfg_read", "offset": 0, "size": 2, "value": 1}, irq(1)]
    a = write_log(tmp_path / "a<&>.jsonl", events)
    b = write_log(tmp_path / "b.jsonl", events[:1])
    result = diff_logs(a, b)
    result.divergences[0].detail = "<b>&"
    out = tmp_path / "diff.html"
    reports.write_html(result, out, a, b)
    page = parse(out.read_text())
    assert page.one("head").one("title").text == "xvpci diff: a<&>.jsonl vs b.jsonl"
    assert "<b>&" in page.one("section").texts()


def test_html_with_transactions_leads_with_the_level_asked(pair: Pair, tmp_path: Path) -> None:
    txn = transactions(pair, status_divergence(0, 4), blocks_divergence())
    out = tmp_path / "diff.html"
    reports.write_html(pair.result, out, pair.a, pair.b, txn=txn, level="transaction")
    page = parse(out.read_text())
    header = page.one("header")
    assert header.texts()[:4] == [
        "transactions:",
        reports.txn_summary_line(txn),
        "raw:",
        "DIVERGED: 2 divergences",
    ]
    assert [s.attrs["class"] for s in header.all("span")] == ["verdict bad", "verdict bad"]
    reports.write_html(pair.result, out, pair.a, pair.b, txn=transactions(pair), level="raw")
    header = parse(out.read_text()).one("header")
    assert header.texts()[:4] == [
        "raw:",
        "DIVERGED: 2 divergences",
        "transactions:",
        reports.txn_summary_line(transactions(pair)),
    ]
    assert [s.attrs["class"] for s in header.all("span")] == ["verdict bad", "verdict ok"]


def test_html_transaction_section(pair: Pair, tmp_path: Path) -> None:
    txn = transactions(pair, status_divergence(0, 4), blocks_divergence())
    out = tmp_path / "diff.html"
    reports.write_html(pair.result, out, pair.a, pair.b, txn=txn, level="transaction")
    main = parse(out.read_text()).one("main")
    headings = [h.text for h in main.all("h2")]
    assert headings == [
        "Transactions",
        "Raw events",
        "Summary",
        "Streams",
        "Divergences (first 2 of 2)",
    ]
    assert main.all("p")[0].text == reports.txn_summary_line(txn)
    ops = main.all("table")[0]
    assert rows(ops) == [["operation", "A", "B"], ["flush", "1", "0"], ["write", "2", "2"]]
    assert marked(ops) == ["flush"]
    status, blocks = [s for s in main.all("section") if s.attrs["id"].startswith("t")]
    assert (status.attrs["id"], blocks.attrs["id"]) == ("t0", "t1")
    assert status.one("h3").text == "status in both: write LBA 8+2"
    assert status.one("p").text == "status 0x000 in A, 0x006 in B"
    [columns, raw_a, raw_b] = status.all("table")
    assert rows(columns) == [
        ["A: raw events", "B: raw events"],
        [CONTEXT_A[0] + CONTEXT_A[1], CONTEXT_B[4]],
    ]
    assert rows(raw_a) == [[CONTEXT_A[0]], [CONTEXT_A[1]]] and rows(raw_b) == [[CONTEXT_B[4]]]
    assert main.texts()[:12] == [
        "Transactions", reports.txn_summary_line(txn), "operation", "A", "B",
        "flush", "1", "0", "write", "2", "2", "Timeline",
    ]  # fmt: skip
    assert blocks.one("h3").text == "end_state in A: write LBA 0+1"
    assert blocks.texts() == [
        "end_state in A: write LBA 0+1", "LBA 0 ends differently",
        "A: raw events", "B: raw events", CONTEXT_A[5], "no counterpart",
    ]  # fmt: skip
    assert "Transaction divergences (first 2 of 2)" in [h.text for h in main.all("h3")]


@pytest.mark.parametrize(
    ("seqs", "more"), [(16, []), (17, [["... 1 more"]]), (20, [["... 4 more"]])]
)
def test_html_transaction_divergence_shows_16_events_and_how_many_more(
    pair: Pair, tmp_path: Path, seqs: int, more: list[list[str]]
) -> None:
    log = write_log(tmp_path / "long.jsonl", [irq(n % 8) for n in range(20)])
    many = TxnDivergence("unmatched", "B", None, _write(0, 1, tuple(range(seqs))), "only in B")
    out = tmp_path / "diff.html"
    reports.write_html(pair.result, out, pair.a, log, txn=transactions(pair, many), limit=1)
    section = parse(out.read_text()).one("section", id="t0")
    [_, raw_b] = section.all("table")  # A's column has no table: no counterpart
    assert section.texts()[4] == "no counterpart"
    assert rows(raw_b) == [[f"#{n} irq msix vector {n % 8}"] for n in range(16)] + more


def test_html_transaction_divergence_with_events_the_log_lacks(pair: Pair, tmp_path: Path) -> None:
    lost = TxnDivergence("unmatched", "A", _write(0, 1, (99, 3)), None, "only in A")
    out = tmp_path / "diff.html"
    reports.write_html(pair.result, out, pair.a, pair.b, txn=transactions(pair, lost))
    [_, raw_a] = parse(out.read_text()).one("section", id="t0").all("table")
    assert rows(raw_a) == [[CONTEXT_A[3]]]


def test_timeline_rows_lines_and_marks(pair: Pair) -> None:
    txn = transactions(pair, status_divergence())
    a, b = txn.divergences[0].a, txn.divergences[0].b
    assert a is not None and b is not None
    a.t_ns, b.t_ns = 1000 + 2000, 3000 + 4000  # 2 us after A's origin, 4 us after B's
    a.queue, b.queue = 9, 2
    svg = parse(f"<!DOCTYPE html><html>{reports.timeline_svg(txn)}</html>\n").one("svg")
    assert svg.attrs["class"] == "timeline"
    # A's rows: admin first, then queues in number order; then B's
    labels = [t for t in svg.children if isinstance(t, Node) and t.tag == "text"][:4]
    assert [t.text for t in labels] == ["A: admin", "A: queue 9", "A: queue 10", "B: queue 2"]
    # row i spans y = 18 i + 4 on: its label, its grey axis line across the plot
    assert [(t.attrs["x"], t.attrs["y"]) for t in labels] == [
        ("2", str(18 * i + 16)) for i in range(4)
    ]
    axes = [line.attrs for line in svg.all("line") if not line.children]
    assert axes == [
        {
            "x1": "110",
            "y1": str(18 * i + 13),
            "x2": "1010",
            "y2": str(18 * i + 13),
            "stroke": "#ddd",
        }
        for i in range(4)
    ]
    assert (svg.attrs["width"], svg.attrs["height"]) == ("1020", str(18 * 4 + 24))
    scale = 900 / 4000  # the axis ends at the latest point: B's mark at 4 us
    ticks = [
        (float(line.attrs["x1"] or 0), int(line.attrs["y1"] or 0), line.attrs["stroke"], line.text)
        for line in svg.all("line")
        if line.children
    ]
    # a tick spans its row but the row's edges, at one x
    assert [
        (
            int(line.attrs["y2"] or 0) - int(line.attrs["y1"] or 0),
            line.attrs["x2"] == line.attrs["x1"],
        )
        for line in svg.all("line")
        if line.children
    ] == [(12, True)] * 5
    assert ticks == [
        (110.0, 7, "#888", "identify"),
        (round(110 + 500 * scale, 1), 25, "#393", "write"),
        (round(110 + 1500 * scale, 1), 43, "#c90", "flush"),
        (110.0, 61, "#393", "write"),
        (round(110 + 2000 * scale, 1), 61, "#888", "dsm"),
    ]
    marks = [(a.attrs["href"], a.one("path").attrs["d"]) for a in svg.all("a")]
    assert marks == [
        ("#t0", f"M{110 + 2000 * scale:.1f},23 l-5,-0 l5,9 l5,-9 z"),
        ("#t0", f"M{110 + 4000 * scale:.1f},59 l-5,-0 l5,9 l5,-9 z"),
    ]
    assert [t.text for t in svg.all("title") if t.text.startswith("divergence")] == [
        "divergence t0",
        "divergence t0",
    ]
    axis = [t for t in svg.children if isinstance(t, Node) and t.tag == "text"][4:]
    assert [(t.attrs["x"], t.attrs["y"], t.texts()[0]) for t in axis[:2]] == [
        ("110", str(18 * 4 + 18), "0 s"),
        ("950", str(18 * 4 + 18), "0.00 s"),
    ]
    assert axis[2].texts() == ["read", "write", "flush", "write_zeroes", "other", "▼ divergence"]
    assert (axis[2].attrs["x"], axis[2].attrs["y"]) == ("310", str(18 * 4 + 18))


def test_timeline_marks_the_first_500_divergences(pair: Pair) -> None:
    txn = transactions(pair, *(status_divergence() for _ in range(501)))
    for divergence in txn.divergences:  # on rows the timeline has
        divergence.a.queue, divergence.b.queue = 9, 2  # type: ignore[union-attr]
    svg = parse(f"<!DOCTYPE html><html>{reports.timeline_svg(txn)}</html>\n").one("svg")
    marks = svg.all("a")
    assert len(marks) == 2 * 500 and marks[-1].attrs["href"] == "#t499"


def test_timeline_of_no_transactions() -> None:
    txn = TransactionResult(LogInfo(Path("a"), {}), LogInfo(Path("b"), {}), "edu")
    assert reports.timeline_svg(txn) == "<p><em>no transactions</em></p>"


def test_timeline_axis_ends_at_the_last_transaction_in_seconds(pair: Pair) -> None:
    txn = transactions(pair)
    txn.timeline["B"].append((2_500_000_000, "queue 2", "read"))
    svg = parse(f"<!DOCTYPE html><html>{reports.timeline_svg(txn)}</html>\n").one("svg")
    assert "2.50 s" in svg.texts()
    [read] = [line for line in svg.all("line") if line.text == "read"]
    assert (read.attrs["x1"], read.attrs["stroke"]) == ("1010.0", "#36c")


def test_trace_lines_by_number(tmp_path: Path) -> None:
    trace = tmp_path / "nvme.trace"
    trace.write_bytes(b"first\nsecond \xff\nthird\nfourth\n")
    assert reports.trace_lines(trace, [3, 1]) == {1: ["line 1: first"], 3: ["line 3: third"]}
    assert reports.trace_lines(trace, [2]) == {2: ["line 2: second \ufffd"]}
    assert reports.trace_lines(trace, [9]) == {}
    assert reports.trace_lines(trace, []) == {}
    assert reports.trace_lines(tmp_path / "gone.trace", [1]) == {}


def test_reference_html(pair: Pair, tmp_path: Path) -> None:
    trace = tmp_path / "nvme.trace"
    trace.write_text("".join(f"pci_nvme_event {n}\n" for n in range(1, 8)))
    # B's second line number is past the trace's end (a trace cut short): not shown
    txn = transactions(pair, status_divergence(0, 6))
    txn.divergences[0].b.seqs = (6, 99)  # type: ignore[union-attr]
    out = tmp_path / "reference.html"
    reports.write_reference_html(txn, out, pair.a, trace, ["op & LBA"], ["cid", "<queue>"])
    page = parse(out.read_text())
    assert page.one("head").one("title").text == "xvpci reference: a.jsonl vs nvme.trace"
    assert page.one("header").texts() == [
        "reference:",
        reports.txn_summary_line(txn),
        f"A (model): {pair.a} \xa0 B (QEMU's own device): {trace}",
    ]
    assert page.one("header").one("span").attrs == {"class": "verdict bad"}
    assert [li.text for li in page.one("ul", **{"class": "compared"}).all("li")] == ["op & LBA"]
    assert [li.text for li in page.one("ul", **{"class": "not-compared"}).all("li")] == [
        "cid",
        "<queue>",
    ]
    assert page.one("main").texts()[:6] == [
        "Compared", "op & LBA", "Not compared (QEMU's trace does not carry them)",
        "cid", "<queue>", "Transactions",
    ]  # fmt: skip
    [_, raw_a, raw_b] = page.one("section").all("table")
    assert rows(raw_a) == [[CONTEXT_A[0]], [CONTEXT_A[1]]]
    assert rows(raw_b) == [["line 6: pci_nvme_event 6"]]
    equivalent = transactions(pair)
    reports.write_reference_html(equivalent, out, pair.a, trace, [], [])
    assert parse(out.read_text()).one("header").one("span").attrs == {"class": "verdict ok"}


def test_reports_show_200_divergences_unless_told(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    txn = transactions(pair, *(blocks_divergence() for _ in range(201)))
    reports.write_reference_html(txn, out, pair.a, tmp_path / "nvme.trace", [], [])
    page = parse(out.read_text())
    assert len(page.all("section")) == 200
    assert "Transaction divergences (first 200 of 201)" in page.texts()
    result = pair.result
    result.divergences = [reports.Divergence("extra", "irq", None, None, "x")] * 201
    result.total_divergences = 201
    reports.write_html(result, out, pair.a, pair.b)
    page = parse(out.read_text())
    assert len(page.all("section")) == 200
    assert "Divergences (first 200 of 201)" in page.texts()
    assert page.one("section", id="d1").one("nav").texts() == ["previous", "next"]
    assert [a.attrs["href"] for a in page.one("section", id="d1").all("a")] == ["#d0", "#d2"]
    reports.write_html(result, out, pair.a, pair.b, txn=txn)
    page = parse(out.read_text())
    assert len(page.all("section")) == 400
    assert "Transaction divergences (first 200 of 201)" in page.texts()


def test_write_all_writes_each_report_asked_for(pair: Pair, tmp_path: Path) -> None:
    paths = {name: tmp_path / f"r.{name}" for name in ("html", "json", "junit", "trace")}
    reports.write_all(pair.result, pair.a, pair.b, json_path=paths["json"])
    assert [p.exists() for p in paths.values()] == [False, True, False, False]
    data = json.loads(paths["json"].read_text())
    assert data["logs"] == {"a": str(pair.a), "b": str(pair.b)}
    assert data["verdict"] == {"level": "raw", "equivalent": False}
    txn = transactions(pair)
    reports.write_all(
        pair.result, pair.a, pair.b,
        html_path=paths["html"], json_path=paths["json"], junit_path=paths["junit"],
        trace_path=paths["trace"], txn=txn, level="transaction",
    )  # fmt: skip
    assert json.loads(paths["json"].read_text())["verdict"] == {
        "level": "transaction",
        "equivalent": True,
    }
    assert len(junit(paths["junit"])) == 2
    assert parse(paths["html"].read_text()).one("header").texts()[0] == "transactions:"
    assert len(json.loads(paths["trace"].read_text())["traceEvents"]) == 2 + 8 + 7


def test_counts_in_kind_and_op_order(pair: Pair) -> None:
    assert reports.kind_counts({"missing": 2, "extra": 1}) == "extra 1, missing 2"
    txn = transactions(pair)
    txn.ops_b["identify"] = 1
    assert reports.ops_of(txn) == ["flush", "identify", "write"]
    assert reports.op_counts(txn) == "flush 1/0, identify 0/1, write 2/2"
