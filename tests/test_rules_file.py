"""The diff's rules file (harness/difflog/rules.py): what each key sets, and one clear
error naming the file and the key for each kind of bad file.

The rules' effect on verdicts is held elsewhere (tests/test_diff_rules.py,
tests/test_diff.py, tests/test_transactions.py); here is the parser a user meets
first: a mistyped key must be refused by name, not silently ignored.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.difflog import LogError, Rules
from harness.difflog.rules import RegisterRule
from tests.loggen import workload, write_log


def _load(tmp_path: Path, text: str) -> Rules:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return Rules.load(path)


def _refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(LogError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'rules.toml'}: "), message
    return message.removeprefix(f"{tmp_path / 'rules.toml'}: ")


def test_without_a_file_the_defaults_are_the_documented_ones() -> None:
    rules = Rules.load(None)
    assert rules.ignore_streams == {"window"}
    assert rules.ignore_kinds == {"dma_map", "dma_unmap", "reset"}
    assert rules.compare_config_reads is False and rules.compare_irq_type is False
    assert rules.reorder_window == 64
    assert rules.ignore == []
    assert rules.masks == [RegisterRule("cfg", 0x04, None, 2, 0x0406)]
    assert rules.txn_ignore_blocks == [] and rules.txn_block_history is True
    assert rules.txn_ignore_ops == set() and rules.txn_ignore_results == set()
    # an empty file is the defaults too
    assert Rules.load(None) == Rules() == Rules().merge({})


def test_every_top_level_key_sets_its_field(tmp_path: Path) -> None:
    rules = _load(
        tmp_path,
        'ignore_streams = ["other", "window2"]\n'
        'ignore_kinds = ["reset"]\n'
        "compare_config_reads = true\n"
        "compare_irq_type = 1\n"  # truthy, taken as a flag
        "reorder_window = 12\n",
    )
    assert rules.ignore_streams == {"other", "window2"}  # replaces the default
    assert rules.ignore_kinds == {"reset"}
    assert rules.compare_config_reads is True and rules.compare_irq_type is True
    assert rules.reorder_window == 12
    # keys left out keep their defaults
    rules = _load(tmp_path, "compare_irq_type = true\n")
    assert rules.compare_config_reads is False and rules.compare_irq_type is True
    assert rules.ignore_streams == {"window"} and rules.reorder_window == 64
    rules = _load(tmp_path, "compare_config_reads = true\n")
    assert rules.compare_config_reads is True and rules.compare_irq_type is False


def test_register_rules_add_to_the_defaults(tmp_path: Path) -> None:
    rules = _load(
        tmp_path,
        '[[ignore]]\nkind = "mmio"\nbar = 0\noffset = 0x1c\nsize = 4\n'
        '[[ignore]]\nkind = "cfg"\noffset = 0x40\n'
        '[[mask]]\nkind = "cfg"\noffset = 0x06\nsize = 2\nmask = 0xf8\n',
    )
    assert rules.ignore == [RegisterRule("mmio", 0x1C, 0, 4), RegisterRule("cfg", 0x40)]
    assert rules.masks == [
        RegisterRule("cfg", 0x04, None, 2, 0x0406),  # the command register's, kept
        RegisterRule("cfg", 0x06, None, 2, 0xF8),
    ]


def test_a_register_rule_matches_kind_offset_and_the_bar_and_size_it_names() -> None:
    any_width = RegisterRule("mmio", 0x1C, bar=0)
    assert any_width.matches("mmio", 0, 0x1C, 4) and any_width.matches("mmio", 0, 0x1C, 1)
    assert not any_width.matches("cfg", 0, 0x1C, 4)
    assert not any_width.matches("mmio", 2, 0x1C, 4)
    assert not any_width.matches("mmio", 0, 0x18, 4)
    any_bar = RegisterRule("mmio", 0x1C, size=4)
    assert any_bar.matches("mmio", 5, 0x1C, 4) and any_bar.matches("mmio", None, 0x1C, 4)
    assert not any_bar.matches("mmio", 5, 0x1C, 2)


def test_the_transaction_table_sets_its_keys(tmp_path: Path) -> None:
    rules = _load(
        tmp_path,
        "[transaction]\n"
        'ignore_blocks = [[2048, 8], ["16", 1]]\n'  # a number in a string is a number
        "block_history = false\n"
        'ignore_ops = ["get_log_page", "identify"]\n'
        'ignore_results = ["get_features"]\n',
    )
    assert rules.txn_ignore_blocks == [(2048, 2056), (16, 17)]  # [start, end)
    assert rules.txn_block_history is False
    assert rules.txn_ignore_ops == {"get_log_page", "identify"}
    assert rules.txn_ignore_results == {"get_features"}
    # a table with one key leaves the others as they were
    rules = _load(tmp_path, '[transaction]\nignore_results = ["get_features"]\n')
    assert rules.txn_block_history is True and rules.txn_ignore_blocks == []
    assert rules.txn_ignore_ops == set() and rules.txn_ignore_results == {"get_features"}
    rules = _load(tmp_path, "[transaction]\nblock_history = true\n")
    assert rules.txn_block_history is True


def test_merging_twice_adds_register_rules_and_transaction_entries() -> None:
    first = {"ignore_ops": ["a"], "ignore_blocks": [[0, 1]], "ignore_results": ["r"]}
    rules = Rules().merge({"transaction": first, "ignore": [{"kind": "cfg", "offset": 8}]})
    rules.merge(
        {
            "transaction": {"ignore_ops": ["b"], "ignore_results": [7]},
            "ignore": [{"kind": "cfg", "offset": 9}],
            "mask": [{"kind": "cfg", "offset": 9, "mask": 1}],
        }
    )
    assert rules.txn_ignore_ops == {"a", "b"} and rules.txn_ignore_results == {"r", "7"}
    assert rules.txn_ignore_blocks == [(0, 1)]
    assert rules.ignore == [RegisterRule("cfg", 8), RegisterRule("cfg", 9)]
    assert len(rules.masks) == 2


def test_a_file_that_cannot_be_read_or_parsed_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(LogError) as caught:
        Rules.load(missing)
    assert str(caught.value) == f"{missing}: cannot read rules: No such file or directory"
    assert _refused(tmp_path, "reorder_window = = 3\n").startswith("invalid TOML: ")
    assert "line 1" in _refused(tmp_path, "reorder_window = = 3\n")


def test_unknown_keys_are_refused_by_name(tmp_path: Path) -> None:
    assert _refused(tmp_path, "reorder = 3\nignore_stream = []\n") == (
        "unknown rule keys: ignore_stream, reorder"
    )
    assert _refused(tmp_path, "[transaction]\nignore_op = []\nblocks = 1\n") == (
        "unknown [transaction] keys: blocks, ignore_op"
    )
    assert _refused(tmp_path, "transaction = 3\n") == "[transaction] must be a table"
    # the known keys alone are accepted (each spelled as documented)
    _load(
        tmp_path,
        "ignore_streams = []\nignore_kinds = []\ncompare_config_reads = false\n"
        "compare_irq_type = false\nreorder_window = 64\nignore = []\nmask = []\n"
        "[transaction]\nignore_blocks = []\nblock_history = true\nignore_ops = []\n"
        "ignore_results = []\n",
    )


def test_the_origin_of_rules_given_as_data_is_named() -> None:
    with pytest.raises(LogError, match=r"^rules: unknown rule keys: x$"):
        Rules().merge({"x": 1})
    with pytest.raises(LogError, match=r"^ci\.toml: unknown \[transaction\] keys: y$"):
        Rules().merge({"transaction": {"y": 1}}, "ci.toml")


@pytest.mark.parametrize(
    ("blocks", "why"),
    [
        ("[[1, 2, 3]]", "three numbers"),
        ("[[1]]", "one number"),
        ('[["x", 1]]', "not a number"),
        ("[4]", "not a pair"),
    ],
)
def test_bad_ignore_blocks_say_what_a_pair_is(tmp_path: Path, blocks: str, why: str) -> None:
    assert _refused(tmp_path, f"[transaction]\nignore_blocks = {blocks}\n") == (
        "[transaction] ignore_blocks must be [first LBA, count] pairs"
    ), why


@pytest.mark.parametrize(
    ("table", "entry", "message"),
    [
        ("ignore", 'kind = "io"\noffset = 4', "bad register rule: kind 'io' is not mmio or cfg"),
        ("mask", 'kind = "MMIO"\noffset = 4', "bad register rule: kind 'MMIO' is not mmio or cfg"),
        ("ignore", "offset = 4", "bad register rule: 'kind'"),
        ("mask", 'kind = "cfg"', "bad register rule: 'offset'"),
        ("ignore", 'kind = "cfg"\noffset = "four"', "bad register rule: invalid literal"),
    ],
)
def test_bad_register_rules_are_named(tmp_path: Path, table: str, entry: str, message: str) -> None:
    assert _refused(tmp_path, f"[[{table}]]\n{entry}\n").startswith(message)


def test_the_cli_reports_a_bad_rules_file_in_one_line(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.jsonl", workload(3))
    rules = tmp_path / "rules.toml"
    rules.write_text('[[ignore]]\nkind = "io"\noffset = 4\n')
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "diff", str(log), str(log), "--rules", str(rules)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{rules}: bad register rule: kind 'io' is not mmio or cfg" in done.stderr
    assert "Traceback" not in done.stderr
