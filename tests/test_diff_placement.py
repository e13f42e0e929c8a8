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
from harness.difflog.engine import Aligner
from tests.diff_cases import TWIN_COMMAND, TWIN_KINDS, twin_edit
from tests.loggen import HEADER, write_log

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
