"""Log B cut into event bodies by a second process (harness/difflog/cutter.py) gives
the diff the results and the errors it gives when this process reads B itself.

Logs shorter than ``reader.CUT_ELSEWHERE`` are read here; the tests set it to 0 so
that their small logs go through the cutter, a block of about 5000 lines at a time.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.difflog import LogError, diff_logs, reader
from tests.diff_cases import pairs, summarise
from tests.loggen import HEADER, workload, write_log

#: Golden cases (tests/diff_cases.py) of every sort: agreeing, edited, placed twins,
#: truncated, real logs of several blocks with their own divergences.
CASES = (
    "identical",
    "edit_missing_interrupt",
    "every_7th_irq_dropped",
    "perturbed_5",
    "truncated_b",
    "twins_missing_irq",
    "twins_extra_doorbell",
    "real_fio-pattern",
    "real_fio-pattern_perturbed_2",
    "real_fs-verify_irq_every_9th",
)


@pytest.fixture
def cutter(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every log goes through a cutter process; the processes started."""
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def spy(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = popen(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(reader, "CUT_ELSEWHERE", 0)
    monkeypatch.setattr(reader.subprocess, "Popen", spy)
    return started


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return {case.name: case for case in pairs(tmp_path_factory.mktemp("cut"))}


@pytest.mark.parametrize("name", CASES)
def test_results_are_those_of_reading_here(
    name: str, cases: dict[str, Any], cutter: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(reader, "CUT_ELSEWHERE", 1 << 62)
        here = summarise(cases[name].run())
    assert summarise(cases[name].run()) == here
    assert cutter and all(process.returncode is not None for process in cutter)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _pair(tmp_path: Path, transactions: int = 3000) -> tuple[Path, Path, list[str]]:
    """A and B of the same events, B with another clock (lines agree but for t_ns)."""
    log_a = write_log(tmp_path / "a.jsonl", workload(transactions))
    lines = _lines(log_a)
    b = [lines[0]]
    for line in lines[1:-1]:
        record = json.loads(line)
        b.append(json.dumps({**record, "t_ns": record["t_ns"] + 5}, separators=(",", ":")) + "\n")
    return log_a, tmp_path / "b.jsonl", [*b, lines[-1]]


def test_clocks_apart_the_logs_agree(tmp_path: Path, cutter: list) -> None:
    log_a, log_b, lines = _pair(tmp_path)
    log_b.write_text("".join(lines))
    result = diff_logs(log_a, log_b)
    assert result.equivalent and result.b.events == len(lines) - 2
    assert len(cutter) == 1


@pytest.mark.parametrize("near", [3, 9_000, 20_000])
def test_a_value_changed_in_b_is_a_divergence(tmp_path: Path, cutter: list, near: int) -> None:
    # Only a compared field differs, inside what the lane compares as bytes: the
    # blocks' bodies differ and the line goes the item path (in the first block, its
    # middle, a later block).
    log_a, log_b, lines = _pair(tmp_path)
    line = next(n for n in range(near, len(lines)) if '"bar":2,' in lines[n])
    record = json.loads(lines[line])
    record["value"] += 1
    lines[line] = json.dumps(record, separators=(",", ":")) + "\n"
    log_b.write_text("".join(lines))
    result = diff_logs(log_a, log_b)
    assert [(d.kind, d.seq_a, d.seq_b) for d in result.divergences] == [
        ("changed_value", record["seq"], record["seq"])
    ]


def test_lines_not_shaped_by_the_recorder_are_cut_here(tmp_path: Path, cutter: list) -> None:
    log_a, log_b, lines = _pair(tmp_path)
    lines[10_000:10_010] = [json.dumps(json.loads(line)) + "\n" for line in lines[10_000:10_010]]
    log_b.write_text("".join(lines))
    assert diff_logs(log_a, log_b).equivalent


def test_a_bad_line_in_b_is_named_by_its_number(tmp_path: Path, cutter: list) -> None:
    log_a, log_b, lines = _pair(tmp_path)
    lines[17_000] = '{"seq":16999,"t_ns":1,"kind":"irq","irq_type":"msix"}\n'
    log_b.write_text("".join(lines))
    with pytest.raises(LogError, match=r'b\.jsonl:17001: irq event without "vector"'):
        diff_logs(log_a, log_b)
    assert all(process.returncode is not None for process in cutter)


def test_an_error_in_a_ends_the_cutter_of_b(tmp_path: Path, cutter: list) -> None:
    log_a, log_b, lines = _pair(tmp_path, transactions=20_000)
    log_b.write_text("".join(lines))
    a = _lines(log_a)
    a[5] = "not json\n"
    log_a.write_text("".join(a))
    with pytest.raises(LogError, match=r"a\.jsonl:6: not a JSON object"):
        diff_logs(log_a, log_b)
    # B is far from read: its cutter was ended, not left blocked on a full pipe.
    assert len(cutter) == 1 and cutter[0].returncode is not None


def test_a_log_cut_in_the_middle_of_a_line(tmp_path: Path, cutter: list) -> None:
    log_a, log_b, lines = _pair(tmp_path)
    text = "".join(lines)
    log_b.write_text(text[: len(text) // 2 + 17])
    with pytest.raises(LogError, match=r"b\.jsonl:\d+: log is truncated after \d+ events"):
        diff_logs(log_a, log_b)
    result = diff_logs(log_a, log_b, allow_truncated=True)
    assert result.b.events < result.a.events and not result.equivalent


def test_an_unreadable_log_is_named(
    tmp_path: Path, cutter: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_a, log_b, lines = _pair(tmp_path, transactions=300)
    log_b.write_text("".join(lines))
    # The cutter cannot open B (gone once its header was read): a clear error.
    original = reader.LogReader._start_cutter

    def remove_then_start(self: reader.LogReader) -> bool:
        if self.path == log_b:
            log_b.unlink()
        return original(self)

    monkeypatch.setattr(reader.LogReader, "_start_cutter", remove_then_start)
    with pytest.raises(LogError, match=r"b\.jsonl: cannot read past line 1"):
        diff_logs(log_a, log_b)


def test_the_cutter_is_used_only_for_long_logs(tmp_path: Path) -> None:
    log_a = write_log(tmp_path / "a.jsonl", workload(100))
    log_b = write_log(tmp_path / "b.jsonl", workload(100), {**HEADER, "path": "window"})
    popen = subprocess.Popen
    started = []

    def spy(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(args)
        return popen(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reader.subprocess, "Popen", spy)
        assert diff_logs(log_a, log_b).equivalent
    assert not started


def test_a_cutter_that_ends_in_the_middle_of_a_block(
    tmp_path: Path, cutter: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for a cutter killed while writing: its block is shorter than its header
    # says. The diff must not take the bytes it got for the block.
    log_a, log_b, lines = _pair(tmp_path, transactions=300)
    log_b.write_text("".join(lines))
    dying = tmp_path / "dying_cutter.py"
    dying.write_text(
        "import struct, sys\n"
        "sys.stdout.buffer.write(struct.pack('<III', 100, 5000, 4000) + b'{\"seq\":1')\n"
    )
    monkeypatch.setattr(reader.cutter, "__file__", str(dying))
    with pytest.raises(LogError, match=r"b\.jsonl: cannot read past line 1"):
        diff_logs(log_a, log_b)
