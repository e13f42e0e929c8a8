"""The diff's fast lane (lines both logs agree on, compared as bytes) gives the
results of the item path and the reader's errors, whatever the lines look like."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from harness.difflog import LogError, diff_logs, reader
from harness.difflog.engine import FAST_CONTEXT, _Diff
from harness.difflog.reader import LogReader
from harness.difflog.rules import Rules
from tests.diff_cases import summarise
from tests.loggen import HEADER, workload, write_log


def _both_ways(log_a: Path, log_b: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    fast = summarise(diff_logs(log_a, log_b))
    with monkeypatch.context() as patch:
        patch.setattr(_Diff, "_fast", lambda self: False)
        slow = summarise(diff_logs(log_a, log_b))
    assert fast == slow
    return fast


def _lines_taken(patch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """From now on, ``(first line, lines used)`` of each batch the lane took."""
    taken: list[tuple[int, int]] = []
    original = _Diff._matched_lines

    def spy(self, lines, bodies, count, first_line):  # type: ignore[no-untyped-def]
        used = original(self, lines, bodies, count, first_line)
        taken.append((first_line, used))
        return used

    patch.setattr(_Diff, "_matched_lines", spy)
    return taken


@pytest.mark.parametrize("cut_elsewhere", [False, True], ids=["read_here", "cutter"])
def test_the_lane_takes_agreeing_lines_and_counts_them_as_matched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_elsewhere: bool
) -> None:
    if cut_elsewhere:  # B's lines cut into bodies by the cutter process, a block at a time
        monkeypatch.setattr(reader, "CUT_ELSEWHERE", 0)
    events = workload(3000)
    log_a = write_log(tmp_path / "a.jsonl", events)
    lines = log_a.read_text().splitlines(keepends=True)
    # B: another clock, and its events a little later than A's.
    shifted = [lines[0]]
    for line in lines[1:-1]:
        record = json.loads(line)
        shifted.append(
            json.dumps({**record, "t_ns": record["t_ns"] * 3 + 7}, separators=(",", ":")) + "\n"
        )
    log_b = tmp_path / "b.jsonl"
    log_b.write_text("".join([*shifted, lines[-1]]))
    taken = _lines_taken(monkeypatch)
    result = _both_ways(log_a, log_b, monkeypatch)
    assert result["equivalent"] and result["matched"] > 10_000
    # Every line went the fast lane but the few left as context before the end marker.
    assert len(events) - FAST_CONTEXT <= sum(used for _, used in taken) < len(events)


def test_lines_not_written_by_the_recorder_go_the_item_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = workload(300)
    log_a = write_log(tmp_path / "a.jsonl", events)
    lines = log_a.read_text().splitlines(keepends=True)
    # Spaces after separators, as json.dumps writes by default, in the middle of B.
    middle = [json.dumps(json.loads(line)) + "\n" for line in lines[500:520]]
    log_b = tmp_path / "b.jsonl"
    log_b.write_text("".join([*lines[:500], *middle, *lines[520:]]))
    assert _both_ways(log_a, log_b, monkeypatch)["equivalent"]


def test_a_bad_line_both_logs_share_is_named_in_a(tmp_path: Path) -> None:
    events = workload(300)
    log_a = write_log(tmp_path / "a.jsonl", events)
    lines = log_a.read_text().splitlines(keepends=True)
    lines[700] = '{"seq":699,"t_ns":1,"kind":"irq","irq_type":"msix"}\n'  # no vector
    log_a.write_text("".join(lines))
    log_b = tmp_path / "b.jsonl"
    log_b.write_text("".join(lines))
    with pytest.raises(LogError, match=r'a\.jsonl:701: irq event without "vector"'):
        diff_logs(log_a, log_b)


def test_a_bad_line_in_b_only_is_named_in_b(tmp_path: Path) -> None:
    events = workload(300)
    log_a = write_log(tmp_path / "a.jsonl", events)
    lines = log_a.read_text().splitlines(keepends=True)
    lines[700] = '{"seq":699,"t_ns":1,"kind":"irq","irq_type":"msix"}\n'
    log_b = tmp_path / "b.jsonl"
    log_b.write_text("".join(lines))
    with pytest.raises(LogError, match=r'b\.jsonl:701: irq event without "vector"'):
        diff_logs(log_a, log_b)


def test_a_log_cut_in_the_middle_of_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = workload(300)
    log_a = write_log(tmp_path / "a.jsonl", events)
    text = log_a.read_text()
    log_b = tmp_path / "b.jsonl"
    log_b.write_text(text[: len(text) // 2])
    with pytest.raises(LogError, match=r"b\.jsonl:\d+: log is truncated after \d+ events"):
        diff_logs(log_a, log_b)
    with monkeypatch.context():
        result = diff_logs(log_a, log_b, allow_truncated=True)
    assert result.b.events < result.a.events and not result.equivalent


def test_different_headers_of_one_device_still_take_the_lane(tmp_path: Path) -> None:
    events = workload(100)
    log_a = write_log(tmp_path / "a.jsonl", events)
    log_b = write_log(tmp_path / "b.jsonl", events, {**HEADER, "path": "window", "guest": "x"})
    assert diff_logs(log_a, log_b).equivalent


@pytest.mark.parametrize("edit", ["missing", "extra"])
def test_the_lane_opens_again_once_the_logs_agree_after_a_divergence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    # B lacks (or has an extra copy of) an early interrupt: from there on B's lines
    # are A's one line later (or earlier), so they only agree item by item at first.
    events = workload(3000)
    index = next(n for n, e in enumerate(events) if e["kind"] == "irq" and n > 100)
    b = (
        events[:index] + events[index + 1 :]
        if edit == "missing"
        else events[: index + 1] + events[index:]
    )
    log_a = write_log(tmp_path / "a.jsonl", events)
    log_b = write_log(tmp_path / "b.jsonl", b, {**HEADER, "path": "window"})
    taken = _lines_taken(monkeypatch)
    result = _both_ways(log_a, log_b, monkeypatch)
    assert result["total_divergences"] == 1
    (divergence,) = result["divergences"]
    assert divergence[0] == edit
    # Most lines after the divergence went the fast lane again.
    after = sum(used for first_line, used in taken if first_line > index)
    assert after > 0.9 * (len(events) - index)


def test_each_logs_events_are_counted_once_around_a_config_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config write stops the lane (the item path takes it over, having read it
    already once): each log's event count is still its number of events, as without
    the lane."""
    events = workload(2000)
    events[3000:3000] = [{"kind": "cfg_write", "offset": 4, "size": 2, "value": 6}]
    log_a = write_log(tmp_path / "a.jsonl", events)
    log_b = write_log(tmp_path / "b.jsonl", events)
    for lane in (True, False):
        with monkeypatch.context() as patch:
            if not lane:
                patch.setattr(_Diff, "_fast", lambda self: False)
            result = diff_logs(log_a, log_b)
        assert result.equivalent
        assert (result.a.events, result.b.events) == (len(events), len(events)), lane
        assert sum(result.events_a.values()) == sum(result.events_b.values()) == len(events)


def test_dma_lines_whose_address_is_not_written_compactly_are_still_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane takes any line with the recorder's ``seq``/``t_ns`` prefix; a DMA whose
    ``"addr"`` is written otherwise (a space after the colon) cannot have its address
    cut out of the line, so it is parsed, and its item is never filed under another
    line's address-less body."""
    events = workload(600)
    log = write_log(tmp_path / "a.jsonl", events)
    lines = log.read_text().splitlines(keepends=True)
    rewritten = []
    for number, line in enumerate(lines):
        record = json.loads(line)
        if record.get("kind") in ("dma_read", "dma_write") and number % 5 == 3:
            prefix = f'{{"seq":{record.pop("seq")},"t_ns":{record.pop("t_ns")},'
            line = prefix + json.dumps(record)[1:] + "\n"  # spaces after ":" and ","
            assert '"addr": ' in line
        rewritten.append(line)
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text("".join(rewritten))
    result = _both_ways(tmp_path / "a.jsonl", tmp_path / "b.jsonl", monkeypatch)
    assert result["equivalent"] and result["matched"] > 4000


def test_a_log_cut_just_before_a_newline_counts_the_cut_event_as_the_item_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B ends inside its log, its last line whole but for the newline: the lane leaves
    that line to the reader, and the counts are the item path's."""
    events = workload(300)
    log_a = write_log(tmp_path / "a.jsonl", events)
    lines = log_a.read_text().splitlines(keepends=True)
    log_b = tmp_path / "b.jsonl"
    log_b.write_text("".join(lines[:400]) + lines[400].rstrip("\n"))
    fast = diff_logs(log_a, log_b, allow_truncated=True)
    with monkeypatch.context() as patch:
        patch.setattr(_Diff, "_fast", lambda self: False)
        slow = diff_logs(log_a, log_b, allow_truncated=True)
    assert summarise(fast) == summarise(slow)
    assert (fast.b.events, fast.matched) == (slow.b.events, slow.matched)


@pytest.mark.parametrize("cut_elsewhere", [False, True], ids=["read_here", "cutter"])
def test_two_logs_cut_at_the_same_place_inside_a_line_are_the_readers_to_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_elsewhere: bool
) -> None:
    """Both logs end inside the same line, cut at the same byte of it (a run stopped at
    the same point twice): their last lines agree byte for byte, but a cut line is no
    event, so the lane leaves it to the reader, which drops it or names it."""
    if cut_elsewhere:
        monkeypatch.setattr(reader, "CUT_ELSEWHERE", 0)
    events = workload(30)
    log_a = write_log(tmp_path / "a.jsonl", events, end=False)
    log_b = write_log(tmp_path / "b.jsonl", events, {**HEADER, "path": "window"}, end=False)
    for log in (log_a, log_b):
        log.write_bytes(log.read_bytes()[:-25])
    with pytest.raises(LogError, match=rf"a\.jsonl:{len(events) + 1}: log is truncated after"):
        diff_logs(log_a, log_b)
    result = diff_logs(log_a, log_b, allow_truncated=True)
    assert result.equivalent and result.a.events == result.b.events == len(events) - 1


@pytest.mark.parametrize("edit", ["value_in_b", "spaces_in_a"])
def test_the_cutter_changes_nothing_the_lane_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    """B cut into bodies by the cutter process, a block of about 5000 lines at a time,
    or here: the same lines go through the lane, in a block that agrees only up to a
    divergence (its bodies then compared one by one) or up to a line of A not written
    as the recorder writes (the lane stops before it)."""
    events = workload(3000)
    changed = [dict(event) for event in events]
    log_a = write_log(tmp_path / "a.jsonl", events)
    if edit == "value_in_b":
        register = next(i for i in range(7000, 7100) if changed[i].get("bar") == 2)
        changed[register]["value"] += 1
    else:
        lines = log_a.read_text().splitlines(keepends=True)
        lines[3000] = json.dumps(json.loads(lines[3000])) + "\n"  # spaces after separators
        log_a.write_text("".join(lines))
    log_b = write_log(tmp_path / "b.jsonl", changed, {**HEADER, "path": "window"})

    def lines_taken() -> tuple[int, dict]:
        with monkeypatch.context() as patch:
            taken = _lines_taken(patch)
            result = summarise(diff_logs(log_a, log_b))
        return sum(used for _, used in taken), result

    here = lines_taken()
    monkeypatch.setattr(reader, "CUT_ELSEWHERE", 0)
    assert lines_taken() == here
    assert here[1]["total_divergences"] == (edit == "value_in_b")
    assert here[0] < len(events) - 1000


def test_the_lane_backs_off_after_each_failed_try_and_resets_on_success(tmp_path: Path) -> None:
    """A try that takes no line costs a read and a comparison of a batch for nothing:
    the next is put off 1, 2, 4... up to 64 item rounds, and one that takes lines
    starts the count again."""
    events = workload(100)
    other = [{**e, "value": e["value"] + 1} if "value" in e else e for e in events]
    log_a = write_log(tmp_path / "a.jsonl", events)
    log_b = write_log(tmp_path / "b.jsonl", other, {**HEADER, "path": "window"})
    diff = _Diff(LogReader(log_a), LogReader(log_b), Rules())
    calls = [(diff._fast(), diff.fast_wait, diff.fast_backoff) for _ in range(300)]
    assert not any(took for took, _, _ in calls)  # waiting takes no line either
    tries = [n for n, (_, wait, backoff) in enumerate(calls) if wait == backoff]
    assert [b - a for a, b in itertools.pairwise(tries)] == [2, 3, 5, 9, 17, 33, 65, 65, 65]
    assert diff.fast_backoff == 64
    same = write_log(tmp_path / "same.jsonl", events, {**HEADER, "path": "window"})
    diff = _Diff(LogReader(log_a), LogReader(same), Rules())
    diff.fast_backoff = 8
    assert diff._fast() and (diff.fast_backoff, diff.fast_wait) == (0, 0)


def test_the_lane_stays_closed_once_an_address_of_a_is_another_of_bs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B makes an early DMA to another address than A, otherwise alike: the diff pairs
    the two addresses (A's is B's other one). Much later both logs DMA to A's address
    again, the same line in both: the lane must not take it as agreeing, as the item
    path does not (in B, that address is not the one A's stands for)."""
    events = workload(3000)
    early = next(n for n, e in enumerate(events) if e["kind"] == "dma_read" and n > 700)
    late = next(n for n, e in enumerate(events) if n > 15_000 and e["kind"] == "irq")
    again = dict(events[early])
    log_a = write_log(tmp_path / "a.jsonl", [*events[:late], again, *events[late:]])
    moved = {**events[early], "addr": 0x900000}
    b = [*events[:early], moved, *events[early + 1 : late], again, *events[late:]]
    log_b = write_log(tmp_path / "b.jsonl", b, {**HEADER, "path": "window"})
    result = _both_ways(log_a, log_b, monkeypatch)
    assert [(kind, a, b) for kind, _, a, b, _ in result["divergences"]] == [
        ("missing", late, None),
        ("extra", None, late),
    ]
