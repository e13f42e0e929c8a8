"""Bad input to the diff: a log with one line changed, dropped, repeated or moved is
either diffed and reported or refused with a :class:`LogError` (exit 2 on the command
line), never anything else. Each example mutates a generated NVMe log
(``tests/loggen.stream_nvme_log``: the model's header, queue entries, block digests)
and runs it through both levels and every report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.difflog import reports
from harness.difflog.engine import diff_logs
from harness.difflog.reader import LogError
from harness.difflog.transactions import diff_transaction_logs
from tests.loggen import stream_nvme_log

EVENTS = 300
#: Values a field may take instead of its own: well-typed ones at the edges, and the
#: wrong types a hand-edited or corrupted log may hold (orjson reads 2**64 as a float).
VALUES = st.sampled_from(
    [0, 1, 3, 4096, 2**32 - 1, 2**63, 2**64 - 1, 2**64, -1, 1.5, True, None, "", "x",
     "sqe", "cqe", "prp_list", "window", "zz", "00" * 8, [], {}]
)  # fmt: skip
KINDS = st.sampled_from(["mmio_read", "mmio_write", "dma_read", "dma_write", "irq", "cfg_write"])


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mutations") / "a.jsonl"
    stream_nvme_log(path, EVENTS)
    return path


@st.composite
def mutated(draw: st.DrawFn, lines: list[str]) -> list[str]:
    lines = list(lines)
    index = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["field", "field", "kind", "drop", "repeat", "move"]))
    if how in ("field", "kind"):
        record = json.loads(lines[index])
        if how == "kind" and "kind" in record:
            record["kind"] = draw(KINDS)
        else:
            record[draw(st.sampled_from(sorted(record)))] = draw(VALUES)
        lines[index] = json.dumps(record, separators=(",", ":")) + "\n"
    elif how == "drop":
        del lines[index]
    elif how == "repeat":
        lines.insert(draw(st.integers(0, len(lines))), lines[index])
    else:
        line = lines.pop(index)
        lines.insert(draw(st.integers(0, len(lines))), line)
    return lines


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_mutated_log_is_diffed_and_reported_or_refused(
    original: Path, tmp_path: Path, data: st.DataObject
) -> None:
    lines = original.read_text().splitlines(keepends=True)
    log_b = tmp_path / "b.jsonl"
    log_b.write_text("".join(data.draw(mutated(lines))))
    out = tmp_path / "out"
    try:
        raw = diff_logs(original, log_b)
        txn = diff_transaction_logs(original, log_b)
        reports.write_all(
            raw,
            original,
            log_b,
            out.with_suffix(".html"),
            out.with_suffix(".json"),
            out.with_suffix(".xml"),
            out.with_suffix(".trace"),
            txn=txn,
            level="transaction",
        )
        assert reports.summary(raw, original, log_b)
    except LogError as exc:
        assert str(exc)  # refused, and says why
