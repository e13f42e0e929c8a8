"""The raw diff gives the results it gave when the golden fixture was recorded, and
what it reports of pairs whose differences are known is right.

The fixture (tests/fixtures/difflog/golden.json.gz, written by
``python -m tests.diff_cases --write``) holds the verdict, counts, per-stream
statistics and every divergence of each pair in :mod:`tests.diff_cases`. It was
first recorded with the engine before its rewrite for speed, and re-recorded
twice for intended changes, each reviewed against the pairs' known edits:
placing a missing or extra event among identical twins by its neighbours
(issue 19; tests/test_diff_placement.py), and learning which address of one
log is which of the other's while aligning, instead of numbering each log's
addresses by first appearance (an address only one log touched shifted every
number after it: perturbed_1's ten edits gave 5,934 divergences, now 8). The
tests after the fixture's check the known edits themselves.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from tests.diff_cases import FIXTURES, GOLDEN, Case, _events, pairs, summarise


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    with gzip.open(GOLDEN, "rt") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return {case.name: case for case in pairs(tmp_path_factory.mktemp("golden"))}


def test_every_case_is_recorded(golden: dict[str, Any], cases: dict[str, Case]) -> None:
    assert set(golden) == set(cases)


def _case_names() -> list[str]:
    with gzip.open(GOLDEN, "rt") as handle:
        return sorted(json.load(handle))


@pytest.mark.parametrize("name", _case_names())
def test_results_match_the_golden_fixture(
    name: str, golden: dict[str, Any], cases: dict[str, Case]
) -> None:
    assert summarise(cases[name].run()) == golden[name]


#: Pairs whose B is A with random edits (an event dropped, doubled, swapped with
#: the next, or its value changed), and how many: each is one divergence at most.
EDITS = {
    **{f"random_edits_{trial}": 6 for trial in range(20)},  # one to six each
    **{f"perturbed_{seed}": 2 + 8 * seed for seed in range(6)},
    # The real pair agrees on its own (real_fio-pattern: no divergence).
    **{f"real_fio-pattern_perturbed_{seed}": 5 + 20 * seed for seed in range(3)},
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_each_edit_is_at_most_one_divergence(name: str, cases: dict[str, Case]) -> None:
    assert cases[name].run().total_divergences <= EDITS[name]


def test_each_dropped_dma_is_one_missing_event_where_it_was(cases: dict[str, Case]) -> None:
    """Every fifth data read of A is not in B: each is missing, nothing else differs."""
    case = cases["every_5th_dma_dropped"]
    with case.a.open() as log:
        events = [json.loads(line) for line in log.readlines()[1:-1]]
    reads = [event["seq"] for event in events if event["kind"] == "dma_read"]
    dropped = reads[4::5]
    result = case.run()
    assert result.total_divergences == len(dropped) == len(result.divergences)
    assert {(d.kind, d.stream) for d in result.divergences} == {("missing", "dma")}
    assert [d.seq_a for d in result.divergences] == dropped


def _real_irq_truth(case: Case) -> set[int]:
    """The seqs in A (direct) of the interrupts B (window, every 9th interrupt dropped,
    the window's own included) lacks: the paths' interrupts pair up in order."""
    workload = case.name.removeprefix("real_").removesuffix("_irq_every_9th")
    _, direct = _events(FIXTURES / f"{workload}.direct.jsonl.xz")
    _, window = _events(FIXTURES / f"{workload}.window.jsonl.xz")
    in_a = [n for n, e in enumerate(direct) if e["kind"] == "irq"]
    dropped, seen, rank = [], 0, 0
    for event in window:
        if event["kind"] == "irq":
            seen += 1
            if "stream" not in event:
                if seen % 9 == 0:
                    dropped.append(rank)
                rank += 1
    return {in_a[k] for k in dropped if k < len(in_a)}


@pytest.mark.parametrize(
    ("workload", "share"),
    # fs-verify's paths diverge on their own, so pairing interrupts in order is rough.
    [("fio-pattern", 0.98), ("fs-verify", 0.3)],
)
def test_interrupts_b_lost_are_reported_where_it_lost_them(
    workload: str, share: float, cases: dict[str, Case]
) -> None:
    case = cases[f"real_{workload}_irq_every_9th"]
    truth = _real_irq_truth(case)
    missing = {d.seq_a for d in case.run().divergences if (d.kind, d.stream) == ("missing", "irq")}
    assert missing and len(missing & truth) >= share * len(missing)
