"""A missing or extra event among identical twins is reported where it happened.

Commands of the generated logs (tests.diff_cases.twins) have alike doorbell
writes, completion writes and interrupts; only their neighbours in other
streams (the command's own data read and register read) tell them apart. The
divergence names the event on the side that has it, and where it belongs on
the other side: between the events there whose counterparts surround it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.difflog import diff_logs
from harness.difflog.engine import NEAR, Aligner
from tests.diff_cases import TWIN_COMMAND, TWIN_KINDS, twin_edit
from tests.loggen import HEADER, irq, mmio, write_log

STREAMS = {"irq": "irq", "doorbell": "mmio:bar0:1", "completion": "dma"}


def _diff(tmp_path: Path, name: str, edit: str):
    a, b, index = twin_edit(name, edit)
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", b, {**HEADER, "path": "window"})
    return diff_logs(log_a, log_b), index


@pytest.mark.parametrize("name", sorted(TWIN_KINDS))
def test_a_missing_twin_is_reported_where_it_went_missing(tmp_path: Path, name: str) -> None:
    result, index = _diff(tmp_path, name, "missing")
    assert result.total_divergences == 1, [d.detail for d in result.divergences]
    divergence = result.divergences[0]
    assert (divergence.kind, divergence.stream) == ("missing", STREAMS[name])
    assert divergence.seq_a == index  # the twin of command TWIN_COMMAND, not the last one
    # In B it belongs after the counterpart of A's event before it in another stream
    # and before that of A's event after it: B lacks one event from ``index`` on.
    before, after = divergence.near  # type: ignore[misc]
    assert before is not None and after is not None
    assert index - 3 <= before < index <= after <= index + 1
    assert divergence.to_json()["near"] == [before, after]


@pytest.mark.parametrize("name", sorted(TWIN_KINDS))
def test_an_extra_twin_is_reported_where_it_came(tmp_path: Path, name: str) -> None:
    result, index = _diff(tmp_path, name, "extra")
    assert result.total_divergences == 1, [d.detail for d in result.divergences]
    divergence = result.divergences[0]
    assert (divergence.kind, divergence.stream) == ("extra", STREAMS[name])
    # B's extra twin came at ``index``, between two commands; a doorbell there is
    # followed by the next command's own doorbell, its twin with the same neighbours.
    assert divergence.seq_b in ((index, index + 1) if name == "doorbell" else (index,))
    before, after = divergence.near  # type: ignore[misc]
    # In A: after the last event of command TWIN_COMMAND, before the next command's.
    assert before == index - 1 and after is not None and index <= after <= index + 1


def test_without_placement_twins_go_to_the_end_of_their_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What placement fixes (and so what the tests above would catch without it)."""
    monkeypatch.setattr(Aligner, "place_twins", False)
    result, index = _diff(tmp_path, "irq", "missing")
    assert result.divergences[0].seq_a != index
    assert result.divergences[0].seq_a > index + 5 * (60 - TWIN_COMMAND - 2)


def test_a_swap_of_neighbours_does_not_move_a_twin(tmp_path: Path) -> None:
    """Neighbours that merely changed places leave matching in order alone."""
    a, _, _ = twin_edit("irq", "missing")
    b = list(a)
    i = 5 * TWIN_COMMAND + 3  # the interrupt of command TWIN_COMMAND and its register read
    b[i], b[i + 1] = b[i + 1], b[i]
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", b, {**HEADER, "path": "window"})
    assert diff_logs(log_a, log_b).equivalent


# A log of one stream: no neighbour in another stream has a counterpart, so an event
# is placed within its own stream. B's copy starts with three mappings the diff
# ignores (the platform's, not the device's), so the two logs' seqs differ by three.
LEAD = [{"kind": "dma_map", "addr": 0x1000 * n, "len": 0x1000, "flags": 3} for n in range(3)]


def _one_stream(tmp_path: Path, a: list, b: list):
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", [*LEAD, *b], {**HEADER, "path": "window"})
    result = diff_logs(log_a, log_b)
    assert result.total_divergences == 1, [d.detail for d in result.divergences]
    return result.divergences[0]


def test_without_neighbours_a_missing_event_goes_after_its_streams_last_match(
    tmp_path: Path,
) -> None:
    interrupts = [irq(vector) for vector in range(10)]
    divergence = _one_stream(tmp_path, interrupts, interrupts[:5] + interrupts[6:])
    assert (divergence.kind, divergence.seq_a) == ("missing", 5)
    # In B: after vector 4 (B's #7), before vector 6, the next in B's stream (#8).
    assert divergence.near == (7, 8)


def test_without_neighbours_an_extra_event_goes_before_the_other_logs_next(
    tmp_path: Path,
) -> None:
    interrupts = [irq(vector) for vector in range(10)]
    divergence = _one_stream(tmp_path, interrupts, [*interrupts[:5], irq(42), *interrupts[5:]])
    assert (divergence.kind, divergence.seq_b) == ("extra", 3 + 5)
    # In A: after vector 4 (A's #4), before vector 5 (A's #5).
    assert divergence.near == (4, 5)


def _command(before: int, after: int) -> list:
    """An interrupt between two register reads of another stream (its neighbours)."""
    return [mmio("mmio_read", 0, 0x20, before), irq(0), mmio("mmio_read", 0, 0x24, after)]


@pytest.mark.parametrize(
    ("first_in_b", "changed_seq"),
    [((1, 3), 2), ((5, 2), 0)],
    ids=["neighbour-after-changed", "neighbour-before-changed"],
)
def test_twins_whose_neighbours_differ_on_one_side_only_stay_matched_in_order(
    tmp_path: Path, first_in_b: tuple[int, int], changed_seq: int
) -> None:
    """A twin is moved only when its neighbours differ on both sides: a register read
    changed beside the first of two alike interrupts is that read's divergence alone,
    even though the second interrupt's neighbours in A are those of the first in B."""
    a = _command(1, 2) + _command(1, 3) if changed_seq == 2 else _command(1, 2) + _command(5, 2)
    b = _command(*first_in_b) + a[3:]
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", b, {**HEADER, "path": "window"})
    result = diff_logs(log_a, log_b)
    assert [(d.kind, d.seq_a, d.seq_b) for d in result.divergences] == [
        ("changed_value", changed_seq, changed_seq)
    ]


@pytest.mark.parametrize("side", ["extra", "missing"])
def test_a_twin_is_placed_when_the_two_twins_are_all_its_stream_holds(
    tmp_path: Path, side: str
) -> None:
    """One command more on one side, before the command both have: the lone
    interrupt of the other side is the second's counterpart, whose neighbours it
    shares, even when those two interrupts are all the stream holds."""
    longer, shorter = _command(9, 8) + _command(1, 2), _command(1, 2)
    a, b = (shorter, longer) if side == "extra" else (longer, shorter)
    log_a = write_log(tmp_path / "a.jsonl", a)
    log_b = write_log(tmp_path / "b.jsonl", b, {**HEADER, "path": "window"})
    result = diff_logs(log_a, log_b)
    irqs = [(d.kind, d.seq_a, d.seq_b) for d in result.divergences if d.stream == "irq"]
    assert irqs == ([("extra", None, 1)] if side == "extra" else [("missing", 1, None)])


@pytest.mark.parametrize(("gap", "placed"), [(NEAR, True), (NEAR + 1, False)])
def test_neighbours_count_up_to_near_seqs_away(tmp_path: Path, gap: int, placed: bool) -> None:
    """The read after each interrupt comes ``gap`` seqs later (mappings the diff ignores
    in between): within NEAR it tells the twins apart, beyond it the twins match in
    order and the extra one is the last."""
    padding = [{"kind": "dma_map", "addr": 0, "len": 0x1000, "flags": 3}] * (gap - 1)

    def command(before: int, after: int) -> list:
        first, interrupt, last = _command(before, after)
        return [first, interrupt, *padding, last]

    log_a = write_log(tmp_path / "a.jsonl", command(1, 2))
    longer = command(9, 8) + command(1, 2)
    log_b = write_log(tmp_path / "b.jsonl", longer, {**HEADER, "path": "window"})
    irqs = [(d.kind, d.seq_b) for d in diff_logs(log_a, log_b).divergences if d.stream == "irq"]
    assert irqs == [("extra", 1 if placed else 1 + gap + 2)]


@pytest.mark.parametrize("side", ["missing", "extra"])
def test_without_a_match_before_it_an_event_is_placed_before_the_other_logs_first(
    tmp_path: Path, side: str
) -> None:
    """Nothing before it matched in its stream: no seq before, B's (A's) first after."""
    interrupts = [irq(vector) for vector in range(4)]
    a, b = (interrupts, interrupts[1:]) if side == "missing" else (interrupts[1:], interrupts)
    divergence = _one_stream(tmp_path, a, b)
    assert divergence.kind == side
    # The other log's first interrupt: B's #3 (after the three mappings), A's #0.
    assert divergence.near == ((None, 3) if side == "missing" else (None, 0))
