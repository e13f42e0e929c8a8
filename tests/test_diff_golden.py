"""The raw diff gives the results it gave when the golden fixture was recorded.

The fixture (tests/fixtures/difflog/golden.json.gz, written by
``python -m tests.diff_cases --write`` with the engine before its rewrite for
speed) holds the verdict, counts, per-stream statistics and every divergence
of each pair in :mod:`tests.diff_cases`. Placing a missing or extra event among
identical twins by its neighbours (issue 19) is the one intended difference:
:data:`PLACED` lists each divergence whose position moved, and a test checks
that the new position is the right one.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from tests.diff_cases import GOLDEN, Case, pairs, summarise


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
    expected = golden[name]
    got = summarise(cases[name].run())
    if name in PLACED:
        expected, got = PLACED[name](expected, got)
    assert got == expected


PLACED: dict[str, Any] = {}
