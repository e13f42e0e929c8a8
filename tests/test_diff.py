"""The diff engine on generated log pairs: equivalences, divergence kinds, bad input, reports."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.difflog import LogError, Rules, diff_logs
from harness.difflog.engine import Divergence
from harness.difflog.reports import summary, write_all
from tests.loggen import HEADER, dma, irq, mmio, random_edits, workload, write_log


def pair(tmp_path: Path, a: list, b: list, header_b: dict | None = None):
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", b, header_b or {**HEADER, "path": "window"})
    return diff_logs(log_a, log_b), log_a, log_b


def test_identical_logs_are_equivalent(tmp_path: Path) -> None:
    events = workload(200)
    result, *_ = pair(tmp_path, events, events)
    assert result.equivalent and result.total_divergences == 0
    assert result.matched > 1000


def test_interleaving_across_streams_is_not_a_divergence(tmp_path: Path) -> None:
    events = workload(300)

    # Stable-sort B by stream: the same per-stream order, a completely different interleaving.
    def stream(e: dict) -> str:
        return e["kind"][:3] + str(e.get("bar", ""))

    shuffled = sorted(events, key=stream)
    result, *_ = pair(tmp_path, events, shuffled)
    assert result.equivalent, result.divergences[:3]


def test_local_reordering_within_a_stream_is_tolerated(tmp_path: Path) -> None:
    events = workload(100)
    b = list(events)
    i = next(n for n, e in enumerate(b) if e["kind"] == "irq")
    j = next(n for n, e in enumerate(b[i + 1 :], i + 1) if e["kind"] == "irq")
    b[i], b[j] = b[j], b[i]  # two completions arrive in the other order
    result, *_ = pair(tmp_path, events, b)
    assert result.equivalent and result.reordered >= 1


def _block_swap(events: list, length: int, start: int = 50) -> list:
    """``events`` with two adjacent blocks of ``length`` register writes in the other order
    (each write keeps its slot among the interrupts around it)."""
    writes = [n for n, e in enumerate(events) if e["kind"] == "mmio_write"]
    first, second = writes[start : start + length], writes[start + length : start + 2 * length]
    swapped = list(events)
    for i, j in zip(first, second, strict=True):
        swapped[i], swapped[j] = events[j], events[i]
    return swapped


@pytest.mark.parametrize("window", [8, 64, None])  # None: the default rules
def test_a_move_is_tolerated_within_the_reorder_window_and_reported_beyond_it(
    tmp_path: Path, window: int | None
) -> None:
    # Writes to distinct registers, so no edit but a move explains a swapped block: the
    # head of A is found window - 1 places on in B at most; further on it is not looked for.
    events = []
    for n in range(300):
        events += [mmio("mmio_write", 0, 0x1000 + 4 * n, n), irq(n % 4)]
    rules = Rules() if window is None else Rules(reorder_window=window)
    limit = window or 64
    assert rules.reorder_window == limit
    log_a = write_log(tmp_path / "a.jsonl", events)

    def diff(length: int):
        swapped = _block_swap(events, length)
        log_b = write_log(tmp_path / "b.jsonl", swapped, {**HEADER, "path": "window"})
        return diff_logs(log_a, log_b, rules)

    within = diff(limit - 1)
    assert within.equivalent and within.reordered >= limit - 1
    beyond = diff(limit)
    assert not beyond.equivalent
    assert set(beyond.by_kind) == {"missing", "extra"}
    assert {d.stream for d in beyond.divergences} == {beyond.divergences[0].stream}


def test_extra_status_polls_collapse(tmp_path: Path) -> None:
    a = workload(100, seed=1)
    b = workload(100, seed=2)  # same transactions, different numbers of busy polls
    assert len(a) != len(b)
    result, *_ = pair(tmp_path, a, b)
    assert result.equivalent


def test_different_dma_addresses_with_equal_payloads(tmp_path: Path) -> None:
    result, *_ = pair(tmp_path, workload(100, base=0x100000), workload(100, base=0x7F3000))
    assert result.equivalent


def _rounds(base: int, extra_at: int | None = None, rounds: int = 2000) -> list[dict]:
    """Rounds of a doorbell, a read of one of 8 buffers at ``base`` and a status read;
    with ``extra_at``, first a read of a buffer no other event touches."""
    events = [mmio("mmio_write", 0, 0x14, 1)]
    if extra_at is not None:
        events.append(dma("dma_read", extra_at, b"x" * 64))
    for n in range(rounds):
        events.append(mmio("mmio_write", 0, 0x1000, n & 0xFF))
        events.append(dma("dma_read", base + 64 * (n % 8), bytes([n % 7]) * 64))
        events.append(mmio("mmio_read", 0, 0x1C, 1))
    return events


@pytest.mark.parametrize("base_b", [0x100000, 0x7F0000], ids=["same_buffers", "other_buffers"])
def test_an_address_only_one_log_touches_is_one_divergence(tmp_path: Path, base_b: int) -> None:
    """Numbering each log's addresses by first appearance shifted every later number
    (5,014 divergences here); which address is which is learned from the pairs."""
    result, *_ = pair(tmp_path, _rounds(0x100000, extra_at=0x9000), _rounds(base_b))
    assert [(d.kind, d.seq_a, d.b) for d in result.divergences] == [("missing", 1, None)]
    moved = 0 if base_b == 0x100000 else 8
    assert (result.addresses_paired, result.addresses_moved) == (8, moved)  # not 0x9000
    assert result.divergences[0].detail.startswith("dma_read at 0x9000 (width 64)")


def test_buffers_used_the_other_way_round_diverge_where_they_swap(tmp_path: Path) -> None:
    """Once two buffers are paired, B using them the other way round is a divergence."""
    a, b = _rounds(0x100000, rounds=56), _rounds(0x7F0000, rounds=56)  # no twin reads
    late = 3 * 50 + 2  # round 50's read: buffer 2 in A; in B, buffer 3
    b[late] = {**b[late], "addr": 0x7F0000 + 64 * 3}
    result, *_ = pair(tmp_path, a, b)
    assert [(d.kind, d.seq_a, d.seq_b) for d in result.divergences] == [
        ("missing", late, None),
        ("extra", None, late),
    ]
    assert "at 0x100080" in result.divergences[0].detail


def test_a_changed_payload_pairs_its_buffers_for_what_follows(tmp_path: Path) -> None:
    """A reads one buffer twice, B two buffers: the first reads differ in their data,
    and pair the buffers; B's second read is then from another buffer than A's."""
    a = [dma("dma_read", 0x1000, b"1" * 64), dma("dma_read", 0x1000, b"2" * 64)]
    b = [dma("dma_read", 0x8000, b"9" * 64), dma("dma_read", 0x9000, b"2" * 64)]
    result, *_ = pair(tmp_path, a, b)
    assert [(d.kind, d.seq_a, d.seq_b) for d in result.divergences] == [
        ("changed_payload", 0, 0),
        ("missing", 1, None),
        ("extra", None, 1),
    ]


def test_window_stream_and_path_specific_config_are_ignored(tmp_path: Path) -> None:
    a = [*workload(20), {"kind": "cfg_write", "offset": 0x10, "size": 4, "value": 0xFE000000}]
    b = [
        *workload(20),
        {"kind": "cfg_write", "offset": 0x10, "size": 4, "value": 0x4000},  # BAR: path-specific
        {**mmio("mmio_write", 4, 0x0, 0xFEE01000), "stream": "window"},
        {**irq(3), "stream": "window"},
        {"kind": "cfg_read", "offset": 0, "size": 4, "value": 0x12345678},  # reads are not compared
    ]
    result, *_ = pair(tmp_path, a, b)
    assert result.equivalent


def _edit(events: list, index_of_kind: tuple[str, int], change) -> tuple[list, int]:
    """Apply ``change`` at the nth event of a kind (reads: of the per-transaction
    counter register, not of the polled status register)."""
    kind, nth = index_of_kind
    positions = [
        n
        for n, e in enumerate(events)
        if e["kind"] == kind and (kind != "mmio_read" or e["bar"] == 2)
    ]
    position = positions[nth]
    out = list(events)
    change(out, position)
    return out, position


@pytest.mark.parametrize(
    ("name", "kind", "target", "change"),
    [
        (
            "changed_value",
            "changed_value",
            ("mmio_read", 40),
            lambda ev, i: ev.__setitem__(i, {**ev[i], "value": 0xBAD}),
        ),
        ("missing_write", "missing", ("mmio_write", 30), lambda ev, i: ev.pop(i)),
        (
            "extra_write",
            "extra",
            ("mmio_write", 30),
            lambda ev, i: ev.insert(i, mmio("mmio_write", 0, 0x1000, 0xEE)),
        ),
        (
            "changed_payload",
            "changed_payload",
            ("dma_read", 25),
            lambda ev, i: ev.__setitem__(i, dma("dma_read", ev[i]["addr"], b"\xff" * 64)),
        ),
        ("missing_interrupt", "missing", ("irq", 50), lambda ev, i: ev.pop(i)),
        (
            "changed_width",
            "changed_width",
            ("mmio_write", 30),
            lambda ev, i: ev.__setitem__(i, {**ev[i], "size": 2}),
        ),
    ],
)
def test_each_divergence_kind_is_found_at_the_right_place(
    tmp_path: Path, name: str, kind: str, target: tuple, change
) -> None:
    a = workload(120)
    b, position = _edit(a, target, change)
    result, log_a, log_b = pair(tmp_path, a, b)
    assert not result.equivalent
    assert result.total_divergences == 1, [d.detail for d in result.divergences]
    divergence = result.first
    assert divergence is not None and divergence.kind == kind
    if divergence.a is not None:
        assert divergence.seq_a == position  # A's event at the edited position
    else:
        assert divergence.seq_b == position
    text = summary(result, log_a, log_b)
    assert f"[{kind}]" in text and ">>" in text


def test_bad_input_names_file_and_line(tmp_path: Path) -> None:
    good = write_log(tmp_path / "good.jsonl", workload(5))
    truncated = tmp_path / "cut.jsonl"
    truncated.write_text("\n".join(good.read_text().splitlines()[:-1]) + '\n{"seq": 99, "t_')
    with pytest.raises(LogError, match=r"cut.jsonl:\d+: log is truncated after \d+ events"):
        diff_logs(good, truncated)
    # Accepted on request: every whole event is there, so nothing differs but the end.
    cut = diff_logs(good, truncated, allow_truncated=True)
    assert cut.equivalent and not cut.b.complete and cut.a.complete
    cut = diff_logs(truncated, good, allow_truncated=True)  # either log may be the cut one
    assert cut.equivalent and not cut.a.complete and cut.b.complete
    version = write_log(tmp_path / "v9.jsonl", [], {**HEADER, "xvpci_log": 9})
    with pytest.raises(LogError, match=r"v9\.jsonl:1: unknown log format version 9"):
        diff_logs(good, version)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text(json.dumps(HEADER) + "\n{not json}\n" + '{"xvpci_end": true}\n')
    with pytest.raises(LogError, match=r"garbage\.jsonl:2: not a JSON object"):
        diff_logs(good, garbage)
    with pytest.raises(LogError, match="cannot read"):
        diff_logs(good, tmp_path / "missing.jsonl")


def test_format_1_logs_still_compare_but_not_with_other_digests(tmp_path: Path) -> None:
    """Format 1 logged SHA-256 under "sha256": two such logs diff as before, and a
    format-1 log against a format-2 log is refused rather than reported as all-different."""
    legacy_header = {k: v for k, v in HEADER.items() if k != "digest_algorithm"}
    legacy_header["xvpci_log"] = 1

    def to_format_1(event: dict) -> dict:
        if "digest" not in event:
            return event
        rest = {k: v for k, v in event.items() if k != "digest"}
        return {**rest, "sha256": hashlib.sha256(bytes.fromhex(event["digest"])).hexdigest()}

    events = workload(40)
    old_a = [to_format_1(e) for e in events]
    old_b = [dict(e) for e in old_a]
    changed = next(i for i, e in enumerate(old_b) if "sha256" in e)
    old_b[changed]["sha256"] = "0" * 64
    log_a = write_log(tmp_path / "old_a.jsonl", old_a, legacy_header)
    assert diff_logs(log_a, write_log(tmp_path / "same.jsonl", old_a, legacy_header)).equivalent
    result = diff_logs(log_a, write_log(tmp_path / "old_b.jsonl", old_b, legacy_header))
    assert [d.seq_a for d in result.divergences] == [changed]
    current = write_log(tmp_path / "new.jsonl", events)
    with pytest.raises(LogError) as error:
        diff_logs(log_a, current)
    assert str(error.value) == (
        f"{log_a} digests payloads with sha256 and {current} with xxh3-128: their payloads "
        "cannot be compared; record both with the same xvpci version"
    )


def test_rules_ignore_and_mask_registers(tmp_path: Path) -> None:
    a = workload(50)
    b = [{**e, "value": e["value"] ^ 0x80} if e.get("bar") == 2 else e for e in a]
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", b)
    assert not diff_logs(log_a, log_b).equivalent
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('[[mask]]\nkind = "mmio"\nbar = 2\noffset = 0x10\nmask = 0xffffff7f\n')
    assert diff_logs(log_a, log_b, Rules.load(rules_file)).equivalent
    rules_file.write_text('[[ignore]]\nkind = "mmio"\nbar = 2\noffset = 0x10\n')
    assert diff_logs(log_a, log_b, Rules.load(rules_file)).equivalent
    rules_file.write_text("bogus = 1\n")
    with pytest.raises(LogError, match="unknown rule keys: bogus"):
        Rules.load(rules_file)


def test_reports_json_junit_trace_and_cli_exit_codes(tmp_path: Path) -> None:
    a = workload(60)
    b, _ = _edit(a, ("mmio_read", 10), lambda ev, i: ev.__setitem__(i, {**ev[i], "value": 7}))
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", b)
    paths = {k: tmp_path / f"out.{k}" for k in ("html", "json", "junit", "trace")}
    cli = [sys.executable, "-m", "harness.cli", "diff", str(log_a), str(log_b)]
    done = subprocess.run(
        cli + [f"--{k}={v}" for k, v in paths.items()], capture_output=True, text=True
    )
    assert done.returncode == 1 and "DIVERGED: 1 divergences" in done.stdout
    report = json.loads(paths["json"].read_text())
    assert report["divergences"][0]["kind"] == "changed_value"
    assert report["divergences"][0]["index_a"] == report["divergences"][0]["index_b"]
    suite = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    trace = json.loads(paths["trace"].read_text())
    assert {e["pid"] for e in trace["traceEvents"]} == {1, 2}
    same = subprocess.run([*cli[:-1], str(log_a)], capture_output=True, text=True)
    assert same.returncode == 0 and "EQUIVALENT" in same.stdout
    bad = subprocess.run([*cli[:-1], str(tmp_path / "nope.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot read" in bad.stderr and "Traceback" not in bad.stderr
    # A value beyond 64 bits once reached the report as a float and ended in a traceback.
    huge = tmp_path / "huge.jsonl"
    huge.write_text(log_b.read_text().replace('"value":7', '"value":18446744073709551616', 1))
    bad = subprocess.run([*cli[:-1], str(huge)], capture_output=True, text=True)
    assert bad.returncode == 2 and "beyond 64 bits" in bad.stderr and "Traceback" not in bad.stderr


def test_a_stream_missing_on_one_side_is_reported_item_by_item(tmp_path: Path) -> None:
    # B lacks a whole stream: each of A's items is declared missing as it leaves the
    # reorder window (bench.diff_engine measures that memory stays flat).
    a = workload(3000)
    b = [e for e in a if e["kind"] != "irq"]
    result, *_ = pair(tmp_path, a, b)
    assert result.by_kind["missing"] == 3000


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    a = workload(40)
    b, _ = _edit(
        a,
        ("dma_read", 5),
        lambda ev, i: ev.__setitem__(i, dma("dma_read", ev[i]["addr"], b"x" * 64)),
    )
    result, log_a, log_b = pair(tmp_path, a, b)
    html_path = tmp_path / "diff.html"
    write_all(result, log_a, log_b, html_path=html_path)
    profile = tmp_path / "chromium-profile"
    done = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--dump-dom", html_path.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    dom = done.stdout
    assert 'class="verdict bad"' in dom and "DIVERGED: 1 divergences" in dom
    assert 'id="d0"' in dom and "changed_payload" in dom and 'class="hit"' in dom
    shot = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         f"--screenshot={tmp_path / 'diff.png'}", "--window-size=1000,800", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (tmp_path / "diff.png").stat().st_size > 5000, shot.stderr[-500:]


def test_random_edits_never_crash_the_engine(tmp_path: Path) -> None:
    rng = random.Random(7)
    base = workload(80)
    for trial in range(20):
        b = random_edits(base, rng)
        result, *_ = (
            pair(tmp_path / f"t{trial}", base, b)
            if (tmp_path / f"t{trial}").mkdir() is None
            else None
        )
        assert result.matched + result.total_divergences > 0


def test_a_divergence_in_json_carries_both_events_their_seqs_and_its_place() -> None:
    """The JSON report's divergence record, key by key (what CI consumers parse)."""
    event_a = {"seq": 7, "kind": "irq", "vector": 1}
    missing = Divergence("missing", "irq", event_a, None, "irq missing in B", near=(11, None))
    assert missing.to_json() == {
        "kind": "missing",
        "stream": "irq",
        "index_a": 7,
        "index_b": None,
        "event_a": event_a,
        "event_b": None,
        "detail": "irq missing in B",
        "near": [11, None],
    }
    event_b = {"seq": 9, "kind": "mmio_read", "value": 2}
    changed = Divergence("changed_value", "bar0", {**event_b, "seq": 8}, event_b, "value 1 != 2")
    assert changed.to_json() == {
        "kind": "changed_value",
        "stream": "bar0",
        "index_a": 8,
        "index_b": 9,
        "event_a": {**event_b, "seq": 8},
        "event_b": event_b,
        "detail": "value 1 != 2",
        "near": None,
    }
    json.dumps(changed.to_json())  # and it is JSON as it stands


def test_divergences_are_listed_in_log_order_a_first_at_a_shared_position(tmp_path: Path) -> None:
    """Streams settle on their own (a missing item only once the window has passed it);
    the list is in log order: by A's position, else B's, and at the same number A's
    event first. B here: an extra first event (B #0), A #1 changed (B #2), an extra
    B #50, and no A #50."""
    a = workload(10)
    lost = next(n for n, event in enumerate(a) if event["kind"] == "irq" and n >= 45)
    changed = {**a[1], "value": a[1]["value"] + 5}
    b = [mmio("mmio_write", 4, 0, 1), a[0], changed, *a[2 : lost - 1]]
    b += [mmio("mmio_write", 3, 0, 2), a[lost - 1], *a[lost + 1 :]]
    result, _, _ = pair(tmp_path, a, b)
    assert [(d.kind, d.seq_a, d.seq_b) for d in result.divergences] == [
        ("extra", None, 0),
        ("changed_value", 1, 2),
        ("missing", lost, None),
        ("extra", None, lost),
    ]
    assert lost == 50
