"""The transaction diff (harness/difflog/transactions.py) on generated transactions:
what a pair of commands must agree on, what an unpaired command is reported as, in
which order, with which words, and the counts and timeline the reports draw; Rule 5
(the order within one log); the history pass; and whole generated NVMe logs
(tests/loggen.py) for what only a log carries (state registers, truncation, models).

tests/test_transactions.py holds the same rules on recorded logs; these are quick,
so that each rule's every branch is held (tests/MUTATION.md).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
from pathlib import Path

import pytest

from harness.difflog.reader import LogError, LogInfo
from harness.difflog.rules import Rules
from harness.difflog.transactions import (
    EXPLAINED,
    MAX_KEPT,
    TIMELINE_LIMIT,
    TransactionResult,
    TxnDivergence,
    _Registers,
    diff_transaction_logs,
    diff_transactions,
    explain_histories,
    has_decoder,
    timeline_row,
)
from tests.loggen import stream_nvme_log
from vfio_bridge.transaction import Extent, Transaction

INFO_A = LogInfo(Path("a.jsonl"), {"model": "nvme"})
INFO_B = LogInfo(Path("b.jsonl"), {"model": "nvme"})


def _diff(a: list[Transaction], b: list[Transaction], rules: Rules | None = None):
    """The diff; and, unless the rules already leave blocks out, the same diff with a
    block nothing touches left out, which takes the block-by-block path
    (``_Side._apply_ignoring``): it must come to the same results."""
    result = diff_transactions(a, b, INFO_A, INFO_B, rules)
    if not (rules and rules.txn_ignore_blocks):
        far = copy.deepcopy(rules or Rules()).merge(
            {"transaction": {"ignore_blocks": [[1 << 40, 1]]}}
        )
        assert _outcome(diff_transactions(a, b, INFO_A, INFO_B, far)) == _outcome(result)
    return result


def _outcome(result: TransactionResult) -> tuple:
    divergences = [
        (d.kind, d.side, d.a, d.b, d.lba, d.blocks, d.detail) for d in result.divergences
    ]
    counts = (result.paired, result.unpaired_a, result.unpaired_b, result.blocks_written)
    return divergences, counts, result.blocks_read_checked, result.ops_a, result.ops_b


def _cmd(op: str = "identify", seq: int = 1, **fields: object) -> Transaction:
    base: dict = {"params": (("cns", 1),), "status": 0, "queue": 0, "seqs": (seq,)}
    return Transaction(op, **{**base, **fields})


def _write(lba: int, digests: str, seq: int = 1, **fields: object) -> Transaction:
    extent = Extent(lba, len(digests), tuple(d * 16 for d in digests))
    base: dict = {"status": 0, "queue": 1, "seqs": (seq,)}
    return Transaction("write", (("opcode", 1),), written=(extent,), **{**base, **fields})


def _read(lba: int, digests: str, seq: int = 1, **fields: object) -> Transaction:
    extent = Extent(lba, len(digests), tuple(d * 16 for d in digests))
    base: dict = {"status": 0, "queue": 1, "seqs": (seq,)}
    return Transaction("read", (("opcode", 2),), read=(extent,), **{**base, **fields})


def _kinds(result: TransactionResult) -> list[tuple[str, str]]:
    return [(d.kind, d.side) for d in result.divergences]


# --- a pair must agree on what the device did -------------------------------------------


def test_a_pair_with_another_status_is_one_status_divergence() -> None:
    result = _diff([_cmd(status=0, result=1)], [_cmd(status=0x4002, result=2)])
    [hit] = result.divergences
    assert (hit.kind, hit.side) == ("status", "both") and hit.a and hit.b
    assert hit.detail == "identify cns=0x1: status 0x000 in A, 0x4002 in B"
    assert result.paired == 1 and result.total_divergences == 1
    assert result.by_kind == {"status": 1}
    # a status a source could not supply is not compared, nor is anything after it
    unknown = _cmd(status=None, result=2, unknown=frozenset({"status"}))
    assert _kinds(_diff([_cmd(result=1)], [unknown])) == [("result", "both")]
    outstanding = _diff([_cmd(status=None)], [_cmd(status=0)])
    assert outstanding.divergences[0].detail == (
        "identify cns=0x1: status none (outstanding) in A, 0x000 in B"
    )


def test_a_pair_with_another_result_or_returned_data() -> None:
    result = _diff(
        [_cmd(result=1, payload_out="a" * 32)], [_cmd(result=0x12, payload_out="b" * 32)]
    )
    assert _kinds(result) == [("result", "both"), ("data", "both")]
    assert all(d.a is not None and d.b is not None for d in result.divergences)
    assert result.divergences[0].detail == "identify cns=0x1: result 0x1 in A, 0x12 in B"
    assert result.divergences[1].detail == (
        "identify cns=0x1: returned data aaaaaaaaaaaa in A, bbbbbbbbbbbb in B"
    )
    none = _diff([_cmd(payload_out="a")], [_cmd(payload_out=None)]).divergences[0]
    assert none.detail == "identify cns=0x1: returned data a in A, none in B"
    none = _diff([_cmd(result=None)], [_cmd(result=3)])
    assert none.divergences[0].detail == "identify cns=0x1: result none in A, 0x3 in B"
    # by design on request, and not when a source cannot say
    rules = Rules().merge({"transaction": {"ignore_results": ["identify"]}})
    assert _diff([_cmd(result=1, payload_out="a")], [_cmd(result=2)], rules).equivalent
    assert _diff([_cmd(result=1)], [_cmd(result=2, unknown=frozenset({"result"}))]).equivalent
    assert _diff([_cmd(payload_out="a")], [_cmd(unknown=frozenset({"data"}))]).equivalent


def test_a_pair_with_an_interrupt_raised_on_one_side_only() -> None:
    owed = {"irq_expected": 2}
    result = _diff([_cmd(irq=2, **owed)], [_cmd(irq=None, irq_expected=3)])
    [hit] = result.divergences
    assert (hit.kind, hit.side) == ("interrupt", "B") and hit.a and hit.b
    # the vector named is the one the silent side owed
    assert hit.detail == "identify cns=0x1: completion signalled in A (vector 0x3) but not in B"
    result = _diff([_cmd(irq=None, irq_expected=4)], [_cmd(irq=2, **owed)])
    assert result.divergences[0].side == "A"
    assert result.divergences[0].detail == (
        "identify cns=0x1: completion signalled in B (vector 0x4) but not in A"
    )
    assert _diff([_cmd(irq=2, **owed)], [_cmd(unknown=frozenset({"irq"}), **owed)]).equivalent
    assert _diff([_cmd(irq=2, **owed)], [_cmd(irq=2, **owed)]).equivalent


# --- commands without a counterpart ----------------------------------------------------


def test_unpaired_commands_are_judged_by_what_they_did() -> None:
    never = _cmd("create_cq", seq=4, status=None)
    failed = _cmd("create_sq", seq=5, status=0x4101)
    silent = _cmd("set_features", seq=6, irq=None, irq_expected=3)
    alone = _cmd("get_log_page", seq=7)
    result = _diff([never, failed, silent, alone], [])
    assert _kinds(result) == [
        ("incomplete", "A"), ("status", "A"), ("interrupt", "A"), ("unmatched", "A"),
    ]  # fmt: skip
    details = [d.detail for d in result.divergences]
    assert details == [
        "create_cq cns=0x1 never completed in A",
        "create_sq cns=0x1 completed with status 0x4101 in A; no such command in B",
        "set_features cns=0x1 in A: completion not signalled on vector 0x3",
        "get_log_page cns=0x1 in A only (status 0x000)",
    ]
    assert all(d.a is not None and d.b is None for d in result.divergences)
    assert result.unpaired_a == 4 and result.unpaired_b == 0
    mirrored = _diff([], [never, failed, silent, alone])
    assert [d.side for d in mirrored.divergences] == ["B"] * 4
    assert mirrored.divergences[1].detail.endswith("in B; no such command in A")
    assert all(d.b is not None and d.a is None for d in mirrored.divergences)
    assert mirrored.unpaired_b == 4 and mirrored.unpaired_a == 0


def test_what_an_unpaired_command_may_leave_out() -> None:
    # an asynchronous event request is not expected to complete; a flush's count
    # depends on batching; an I/O command is judged per block
    waiting = _cmd("async_event", status=None)
    flush = _cmd("flush", params=(), queue=1)
    assert _kinds(_diff([waiting], [])) == [("unmatched", "A")]  # not "incomplete"
    assert _diff([flush, flush, _write(0, "a")], [_write(0, "a"), flush]).equivalent
    # what a source could not supply is not held against it
    assert _diff([_cmd(status=None, unknown=frozenset({"status"}), op="x")], []).by_kind == {
        "unmatched": 1
    }
    blind = _cmd("y", irq=None, irq_expected=1, unknown=frozenset({"irq"}))
    assert _kinds(_diff([blind], [])) == [("unmatched", "A")]
    unsure = _cmd("z", status=5, unknown=frozenset({"status"}))
    assert _kinds(_diff([unsure], [])) == [("unmatched", "A")]


def test_pairs_form_by_content_in_any_order_and_count() -> None:
    a = [_cmd("x", seq=1), _cmd("y", seq=2), _cmd("x", seq=3)]
    b = [_cmd("y", seq=9), _cmd("x", seq=8)]
    result = _diff(a, b)
    assert result.paired == 2 and result.unpaired_a == 1 and result.unpaired_b == 0
    assert [d.seqs_a for d in result.divergences] == [(3,)]  # the second x, left over
    assert result.ops_a == {"x": 2, "y": 1} and result.ops_b == {"x": 1, "y": 1}


def test_ignored_ops_are_left_out_entirely() -> None:
    rules = Rules().merge({"transaction": {"ignore_ops": ["get_log_page"]}})
    result = _diff([_cmd("get_log_page", status=7)], [], rules)
    assert result.equivalent and result.ops_a == {} and result.timeline["A"] == []


# --- blocks ------------------------------------------------------------------------------


def test_a_read_of_what_its_side_did_not_write_names_the_writer() -> None:
    a = [_write(10, "ab", seq=3), _read(10, "ab", seq=4)]
    b = [_write(10, "ab", seq=5), _read(10, "aX", seq=6)]
    [hit] = _diff(a, b).divergences
    assert (hit.kind, hit.side, hit.lba, hit.blocks) == ("data", "B", 11, 1)
    assert hit.a is None and hit.b is not None and hit.seqs_b == (6,)
    assert hit.detail == (
        f"read LBA 10+2 on B returned for LBA 11 content {'X' * 12}, not what B last wrote "
        f"there ({'b' * 12} (written by write #5))"
    )
    [hit] = _diff(b, a).divergences
    assert (hit.side, hit.a is not None, hit.b) == ("A", True, None)
    assert _diff([_write(0, "a"), _read(0, "a")], [_write(0, "a"), _read(0, "a")]).equivalent


def test_a_failed_write_stores_nothing_and_reads_are_checked_whatever_their_status() -> None:
    failed = _write(0, "z", status=0x6)
    result = _diff([_write(0, "a"), failed, _read(0, "a")], [_write(0, "a"), _read(0, "a")])
    assert _kinds(result) == [("status", "A")]
    result = _diff([_write(0, "a"), _read(0, "b", status=0x6)], [_write(0, "a")])
    assert ("data", "A") in _kinds(result)


def test_a_block_written_again_with_the_same_content_is_one_write_in_its_history() -> None:
    assert _diff([_write(5, "x"), _write(5, "x")], [_write(5, "x")]).equivalent
    assert not _diff([_write(5, "x"), _write(5, "y"), _write(5, "x")], [_write(5, "x")]).equivalent


def test_a_stale_read_names_a_writer_without_events_by_its_op() -> None:
    a = [Transaction("write", (("opcode", 1),), written=(Extent(3, 1, ("w" * 16,)),), status=0)]
    [hit] = _diff([*a, _read(3, "r", seq=9)], a).divergences
    assert hit.detail.endswith(f"not what A last wrote there ({'w' * 12} (written by write))")


def test_fields_not_compared_are_gathered_from_every_command() -> None:
    a = [_cmd("x", unknown=frozenset({"irq"})), _cmd("y", unknown=frozenset({"data"}))]
    assert _diff(a, []).not_compared == {"irq", "data"}


def test_blocks_written_and_reads_checked_are_counted() -> None:
    result = _diff([_write(0, "abc"), _read(1, "bc")], [_write(0, "abc"), _write(8, "d")])
    assert result.blocks_written == 4 and result.blocks_read_checked == 2
    rules = Rules().merge({"transaction": {"ignore_blocks": [[1, 1]]}})
    result = _diff([_write(0, "abc"), _read(0, "aXc")], [_write(0, "abc")], rules)
    assert result.equivalent and result.blocks_read_checked == 2
    # blocks past an ignored one are compared
    late = _diff([_write(0, "abcdef")], [_write(0, "aZcdeY")], rules).divergences
    assert [(d.kind, d.lba) for d in late] == [("end_state", 5)]
    # the block after an ignored one is checked, as itself
    [hit] = _diff([_write(0, "abc"), _read(0, "aXZ")], [_write(0, "abc")], rules).divergences
    assert (hit.kind, hit.lba) == ("data", 2)


def test_runs_of_blocks_are_reported_together_and_apart() -> None:
    a = [_write(0, "abcd", seq=1), _write(10, "pq", seq=2)]
    b = [_write(0, "aXXd", seq=3), _write(10, "pQ", seq=4)]
    result = _diff(a, b)
    assert [(d.kind, d.lba, d.blocks, d.side) for d in result.divergences] == [
        ("end_state", 1, 2, "both"),
        ("end_state", 11, 1, "both"),
    ]
    assert result.divergences[0].detail == (
        f"LBA 1+2: content at the end differs (LBA 1: {'b' * 12} in A, {'X' * 12} in B; "
        "last written by write LBA 0+4 (#1) in A, write LBA 0+4 (#3) in B)"
    )
    one_side = _diff([_write(5, "a", seq=2)], [])
    [hit] = one_side.divergences
    assert (hit.kind, hit.side) == ("end_state", "A")
    assert hit.detail == (
        f"LBA 5+1: content at the end differs (LBA 5: {'a' * 12} in A, none in B; "
        "last written by write LBA 5+1 (#2) in A, nothing in B)"
    )
    assert _diff([], [_write(5, "a")]).divergences[0].side == "B"


def test_a_write_sequence_differing_is_traced_to_the_write() -> None:
    a = [_write(7, "x", seq=1), _write(7, "y", seq=2)]
    b = [_write(7, "z", seq=3), _write(7, "y", seq=4)]
    [hit] = _diff(a, b).divergences
    assert (hit.kind, hit.lba, hit.blocks) == ("blocks", 7, 1)
    assert hit.detail == (
        "LBA 7+1: same end content, but written in a different sequence "
        "(LBA 7: 2 writes in A, 2 in B)"
    )
    # adjacent blocks with the same kind of difference are one run, another kind another
    a = [_write(0, "xxx", seq=1), _write(0, "abc", seq=2)]
    b = [_write(0, "abX", seq=3)]
    assert [(d.kind, d.lba, d.blocks) for d in _diff(a, b).divergences] == [
        ("blocks", 0, 2),
        ("end_state", 2, 1),
    ]


def test_extents_whose_data_the_source_lacks_are_skipped_not_the_rest() -> None:
    # a command of two ranges (a vectored read, a deallocate list), the first without
    # data: the second's blocks are still checked and stored
    unknown, known = Extent(0, 1), Extent(5, 2, ("x" * 16, "y" * 16))
    write = Transaction("write", (("opcode", 1),), written=(unknown, known), status=0, seqs=(1,))
    read = Transaction("read", (("opcode", 2),), read=(unknown, known), status=0, seqs=(2,))
    result = _diff([write, read], [write, read])
    assert result.equivalent and result.blocks_read_checked == 4 and result.blocks_written == 2
    stale = Transaction(
        "read", (("opcode", 2),), read=(unknown, Extent(5, 2, ("x" * 16, "z" * 16))), status=0
    )
    [hit] = _diff([write, read], [write, stale]).divergences
    assert (hit.kind, hit.side, hit.lba) == ("data", "B", 6)


def test_block_reads_checked_are_counted_over_every_read() -> None:
    reads = [_read(0, "ab", seq=1), _read(4, "cde", seq=2), _read(0, "ab", seq=3)]
    assert _diff(reads, reads).blocks_read_checked == 2 * (2 + 3 + 2)


def test_end_content_is_compared_with_block_histories_off() -> None:
    rules = Rules().merge({"transaction": {"block_history": False}})
    a = [_write(5, "x", seq=1), _write(5, "y", seq=2), _write(9, "v", seq=3)]
    b = [_write(5, "q", seq=4), _write(9, "v", seq=5)]
    [hit] = _diff(a, b, rules).divergences
    assert (hit.kind, hit.lba, hit.blocks, hit.a, hit.b) == ("end_state", 5, 1, a[1], b[0])


def _explained(a: list[Transaction], b: list[Transaction], rules: Rules | None = None):
    """The diff, then the second pass that names the write where histories part."""
    result = _diff(a, b, rules)
    explain_histories(result, a, b, rules or Rules())
    return result


def test_a_write_sequence_differing_is_explained_by_the_first_write_that_differs() -> None:
    a = [_write(7, "x", seq=1), _write(7, "y", seq=2)]
    b = [_write(7, "z", seq=3), _write(7, "y", seq=4)]
    [hit] = _explained(a, b).divergences
    assert (hit.kind, hit.side, hit.a, hit.b) == ("blocks", "both", a[0], b[0])
    assert hit.detail == (
        f"LBA 7+1: same end content, but content #1 written to LBA 7 differs: {'x' * 12} by "
        f"write LBA 7+1 (#1) in A, {'z' * 12} by write LBA 7+1 (#3) in B"
    )


def test_a_history_explained_where_one_side_wrote_more() -> None:
    # A wrote y, x, y; B wrote y: B's sequence ends where A's goes on
    a = [_write(3, "y", seq=1), _write(3, "x", seq=2), _write(3, "y", seq=5)]
    [hit] = _explained(a, [_write(3, "y", seq=9)]).divergences
    assert (hit.side, hit.a, hit.b) == ("A", a[1], None)
    assert hit.detail.endswith(
        f"content #2 written to LBA 3 differs: {'x' * 12} by write LBA 3+1 (#2) in A, "
        "nothing more in B"
    )
    [hit] = _explained([_write(3, "y", seq=9)], a).divergences
    assert (hit.side, hit.a, hit.b) == ("B", None, a[1])
    assert hit.detail.endswith(f"nothing more in A, {'x' * 12} by write LBA 3+1 (#2) in B")


def test_the_history_pass_skips_what_the_first_pass_skipped() -> None:
    # The same content written again is no new content; a failed write, an ignored op, a
    # write whose data the source could not supply and writes of other blocks are not
    # in a block's history either: A's history of LBA 4 is x, p, y; B's x, q, y.
    failed = _write(4, "q", seq=2, status=0x4002)
    unknown = Transaction("write", (("opcode", 1),), written=(Extent(4, 1),), status=0, seqs=(3,))
    around = Transaction(
        "write", (("opcode", 1),), status=0, seqs=(4,),
        written=(Extent(0, 4, ("o" * 16,) * 4), Extent(5, 4, ("o" * 16,) * 4)),
    )  # fmt: skip
    a = [_write(4, "x", seq=1), _write(4, "x", seq=6), failed, unknown, around]
    a += [_write(4, "p", seq=7), _write(4, "y", seq=8)]
    b = [_write(4, "x", seq=11), _write(4, "q", seq=12), _write(4, "y", seq=13)]
    rules = Rules().merge({"transaction": {"ignore_ops": ["dsm"]}})
    dsm = Transaction("dsm", written=(Extent(4, 1, ("w" * 16,)),), status=0, seqs=(9,))
    result = _diff(a, b, rules)
    explain_histories(result, [dsm, *a], b, rules)
    [hit] = [d for d in result.divergences if d.lba == 4]
    assert hit.detail == (
        f"LBA 4+1: same end content, but content #2 written to LBA 4 differs: {'p' * 12} by "
        f"write LBA 4+1 (#7) in A, {'q' * 12} by write LBA 4+1 (#12) in B"
    )


def test_one_write_over_several_explained_blocks_counts_in_each() -> None:
    # LBAs 2 and 6 part at their second content; one write covers both and the blocks
    # between, which are not explained
    a = [_write(0, "x" * 9, seq=1), _write(2, "p", seq=2), _write(6, "p", seq=3)]
    a += [_write(0, "y" * 9, seq=4)]
    b = [_write(0, "x" * 9, seq=5), _write(2, "q", seq=6), _write(6, "q", seq=7)]
    b += [_write(0, "y" * 9, seq=8)]
    explained = _explained(a, b).divergences
    assert [(d.lba, d.a, d.b) for d in explained] == [(2, a[1], b[1]), (6, a[2], b[2])]
    assert all("content #2 written to" in d.detail for d in explained)


def test_histories_are_explained_for_the_first_blocks_only_and_sorted() -> None:
    blocks = EXPLAINED + 1
    a = [_write(2 * n, "x", seq=2 * n) for n in range(blocks)]
    a += [_write(2 * n, "y", seq=10_000 + n) for n in range(blocks)]
    b = [_write(2 * n, "y", seq=n) for n in range(blocks)]
    result = _explained(a, b)
    explained = [d for d in result.divergences if "content #" in d.detail]
    assert len(explained) == EXPLAINED and [d.lba for d in explained] == [
        2 * n for n in range(EXPLAINED)
    ]
    assert result.divergences == sorted(result.divergences, key=lambda d: d.seqs_a[0])


def test_explaining_nothing_changes_nothing() -> None:
    result = _diff([_write(1, "a")], [_write(1, "b")])
    before = [(d.kind, d.detail) for d in result.divergences]
    explain_histories(result, [], [], Rules())
    assert [(d.kind, d.detail) for d in result.divergences] == before


def test_a_divergence_in_json_names_its_command_and_both_transactions() -> None:
    write = _write(5, "ab", seq=7, cid=3, irq=1, irq_expected=1, result=9)
    write.params = (("opcode", 1), ("nsid", 1))
    read = _read(5, "ab", seq=8)
    hit = TxnDivergence("data", "both", write, read, "differs", lba=5, blocks=2)
    assert hit.to_json() == {
        "kind": "data",
        "side": "both",
        "command": "write LBA 5+2",
        "lba": 5,
        "blocks": 2,
        "detail": "differs",
        "transaction_a": {
            "op": "write", "params": {"opcode": 1, "nsid": 1}, "written": [[5, 2]],
            "status": 0, "result": 9, "irq": 1, "irq_expected": 1, "queue": 1, "cid": 3,
            "seqs": [7],
        },
        "transaction_b": {
            "op": "read", "params": {"opcode": 2}, "read": [[5, 2]], "status": 0,
            "result": None, "irq": None, "irq_expected": None, "queue": 1, "cid": None,
            "seqs": [8],
        },
        "seqs_a": [7],
        "seqs_b": [8],
    }  # fmt: skip
    alone = TxnDivergence("end_state", "A", None, None, "ends differently", lba=9, blocks=1)
    assert alone.to_json()["command"] == "LBA 9+1"
    assert alone.to_json()["transaction_a"] is None and alone.to_json()["seqs_b"] == []
    assert TxnDivergence("register", "both", None, None, "csts").to_json()["command"] == (
        "end state"
    )


def test_reads_of_blocks_never_written_agree_across_sides_block_by_block() -> None:
    a = [_read(40, "mn", seq=1)]
    b = [_read(40, "mN", seq=2)]
    [hit] = _diff(a, b).divergences
    assert (hit.kind, hit.side, hit.lba, hit.blocks) == ("data", "both", 41, 1)
    assert hit.seqs_a == (1,) and hit.seqs_b == (2,)
    assert hit.detail == (
        f"LBA 41, not written before: read LBA 40+2 read {'n' * 12} in A, "
        f"read LBA 40+2 read {'N' * 12} in B"
    )
    # only a block's first read counts; a block one side never read is not compared
    assert _diff([_read(40, "m"), _read(40, "q")], [_read(40, "m")]).equivalent
    assert _diff([_read(40, "m")], [_read(41, "q")]).equivalent


# --- order and counts ---------------------------------------------------------------------


def test_divergences_are_ordered_a_first_by_the_seq_they_start_at() -> None:
    a = [_cmd("p", seq=30), _cmd("q", seq=10)]
    b = [_cmd("r", seq=5), _cmd("s", seq=1)]
    result = _diff(a, b)
    assert [(d.side, d.seqs_a or d.seqs_b) for d in result.divergences] == [
        ("A", (10,)), ("A", (30,)), ("B", (1,)), ("B", (5,)),
    ]  # fmt: skip
    # a divergence without events (a register's end state) comes after both sides
    registers = ({(0, 0x14): "cc"}, {(0, 0x14): 1}, {(0, 0x14): 0x460001})
    result = diff_transactions(a, b, INFO_A, INFO_B, None, registers)
    assert [(d.kind, d.side) for d in result.divergences][-1] == ("register", "both")
    assert result.divergences[-1].detail == "register cc ends as 0x1 in A, 0x460001 in B"
    assert result.registers_compared == ["cc"]
    # a register one log does not show is not compared
    partial = ({(0, 0x14): "cc", (0, 0x1C): "csts"}, {(0, 0x14): 1, (0, 0x1C): 1}, {(0, 0x14): 1})
    assert diff_transactions([], [], INFO_A, INFO_B, None, partial).registers_compared == ["cc"]
    # B's divergences before the register's, whatever their seqs
    result = diff_transactions([], [_cmd("r", seq=1 << 40)], INFO_A, INFO_B, None, registers)
    assert [d.kind for d in result.divergences] == ["unmatched", "register"]


def test_every_divergence_is_counted_and_the_first_ten_thousand_kept() -> None:
    result = TransactionResult(INFO_A, INFO_B, "nvme")
    for n in range(MAX_KEPT + 3):
        result.add(TxnDivergence("data" if n % 2 else "status", "A", None, None, str(n)))
    assert result.total_divergences == MAX_KEPT + 3 and len(result.divergences) == MAX_KEPT
    assert result.by_kind == {"status": MAX_KEPT // 2 + 2, "data": MAX_KEPT // 2 + 1}
    assert result.first is result.divergences[0] and not result.equivalent
    assert TransactionResult(INFO_A, INFO_B, "nvme").first is None


def test_the_result_names_the_model_and_the_logs() -> None:
    result = _diff([], [])
    assert result.model == "nvme" and result.a is INFO_A and result.b is INFO_B
    assert result.equivalent and result.paired == 0
    unnamed = diff_transactions([], [], LogInfo(Path("x"), {}), INFO_B)
    assert unnamed.model == "?"


def test_a_pair_found_by_a_later_batch_of_a_keeps_a_as_a() -> None:
    # A's commands past its first batch meet B's, already waiting: the pair is still
    # (A's, B's), as the divergence's words say.
    a = [_cmd("x", seq=n, params=(("n", n),)) for n in range(300)]
    b = [_cmd("x", seq=1000, params=(("n", 280),), status=0x2)]
    result = _diff(a, b)
    hit = next(d for d in result.divergences if d.kind == "status")
    assert hit.side == "both" and hit.seqs_a == (280,) and hit.seqs_b == (1000,)
    assert hit.detail == "x n=0x118: status 0x000 in A, 0x002 in B"


def test_long_streams_are_compared_whole() -> None:
    # more than one batch on each side, of different lengths
    a = [_cmd("x", seq=n, params=(("n", n),)) for n in range(700)]
    b = [_cmd("x", seq=n, params=(("n", n),)) for n in range(699, -1, -1)]
    result = _diff(a, b)
    assert result.paired == 700 and result.equivalent
    assert _diff(a, b[:-1]).unpaired_a == 1


# --- Rule 5: a completion comes after its data, a flush after the data it covers ------
# Positions are a log's seqs: when a command was submitted, when its completion was
# posted, and its first and last data transfer.


def _good(txn: Transaction) -> Transaction:
    """The same command on the other side, its data moved before its completion."""
    return dataclasses.replace(txn, completed=50, data_moved=(40, 45))


def _ordered(*a: Transaction) -> TransactionResult:
    """A's commands against B's same commands in good order: only A's order diverges."""
    return _diff(list(a), [_good(t) if t.op != "flush" else t for t in a])


def _orders(result: TransactionResult) -> list[tuple[str, str | None, int, str]]:
    return [
        (d.side, (d.a or d.b).op if (d.a or d.b) else None, d.lba or 0, d.detail)  # type: ignore[union-attr]
        for d in result.divergences
        if d.kind == "order"
    ]


def test_a_read_completed_before_its_data_moved_diverges_on_its_side() -> None:
    read = _read(8, "ab", submitted=3, completed=10, data_moved=(5, 12))
    result = _ordered(read)
    [hit] = result.divergences
    assert (hit.kind, hit.side, hit.a, hit.b, hit.lba, hit.blocks) == (
        "order",
        "A",
        read,
        None,
        8,
        2,
    )
    assert hit.detail == "read LBA 8+2 on A: completion (#10) posted before its data moved (#12)"
    late_b = _read(8, "ab", submitted=3, completed=10, data_moved=(5, 12))
    [hit] = _diff([_good(late_b)], [late_b]).divergences
    assert (hit.side, hit.a, hit.b) == ("B", None, late_b)
    assert hit.detail.startswith("read LBA 8+2 on B: completion (#10)")


def test_data_moved_up_to_the_completion_is_in_order() -> None:
    assert _ordered(_read(8, "ab", submitted=3, completed=12, data_moved=(5, 12))).equivalent
    assert _ordered(_write(8, "ab", submitted=3, completed=12, data_moved=(5, 11))).equivalent


def test_a_completed_read_or_write_that_moved_no_data_diverges() -> None:
    for txn in (_read(8, "a", completed=10), _write(9, "a", completed=10)):
        detail = f"{txn.describe()} on A completed (#10) with no data moved"
        assert _orders(_ordered(txn)) == [("A", txn.op, (txn.written or txn.read)[0].lba, detail)]


def test_only_completed_successful_reads_and_writes_are_held_to_their_data() -> None:
    failed = _read(8, "a", completed=10, status=0x4002)
    never = _read(8, "a", completed=None)
    flush = Transaction("flush", (("opcode", 0),), status=0, queue=1, completed=10, seqs=(1,))
    zeroes = Transaction("write_zeroes", (("opcode", 8),), status=0, queue=1, completed=9)
    for txn in (failed, never, flush, zeroes):
        assert not _orders(_diff([txn], [txn])), txn


def test_an_order_divergence_of_a_command_without_blocks_names_no_block() -> None:
    read = Transaction("read", (("opcode", 2),), status=0, queue=1, completed=5, seqs=(1,))
    [hit] = [d for d in _diff([read], [_good(read)]).divergences if d.kind == "order"]
    assert (hit.lba, hit.blocks) == (None, 0)


def _flush(submitted: int | None) -> Transaction:
    return Transaction("flush", (("opcode", 0),), status=0, queue=1, submitted=submitted)


def test_a_flush_submitted_between_a_writes_completion_and_its_data_covers_data_not_there() -> None:
    write = _write(0, "a", submitted=2, completed=10, data_moved=(5, 14))
    assert _orders(_ordered(write, _flush(12))) == [
        ("A", "write", 0,
         "write LBA 0+1 on A completed (#10) before its data moved (#14), and the flush "
         "submitted in between (#12) covers it: it covers data the device did not have"),
    ]  # fmt: skip


def test_a_write_completed_before_its_data_is_reported_once_whatever_follows() -> None:
    late = "write LBA 0+1 on A: completion (#10) posted before its data moved (#14)"
    write = _write(0, "a", submitted=2, completed=10, data_moved=(5, 14))
    # a flush after the data, one submitted before the completion (it does not cover
    # the write), one whose submission the source cannot place, no flush at all
    for flushes in ([_flush(16)], [_flush(8)], [_flush(None)], []):
        assert _orders(_ordered(write, *flushes)) == [("A", "write", 0, late)], flushes


def test_a_flush_covers_the_writes_completed_before_it_was_submitted_only() -> None:
    first = _write(0, "a", submitted=2, completed=10, data_moved=(5, 20))
    second = _write(1, "b", submitted=3, completed=15, data_moved=(6, 21))
    orders = _orders(_ordered(first, second, _flush(12), _flush(30)))
    assert [(lba, detail.split(": ")[0]) for _, _, lba, detail in orders] == [
        (0, "write LBA 0+1 on A completed (#10) before its data moved (#20), and the flush "
            "submitted in between (#12) covers it"),
        (1, "write LBA 1+1 on A"),
    ]  # fmt: skip


# --- the timeline ---------------------------------------------------------------------------


def test_timeline_rows_and_times_from_each_sides_first_command() -> None:
    assert timeline_row(_cmd(queue=None)) == "operations"
    assert timeline_row(_cmd(queue=0)) == "admin"
    assert timeline_row(_cmd(queue=1)) == "queue 1"
    assert timeline_row(_cmd(queue=3)) == "queue 3"
    a = [_cmd("x", t_ns=1000), _cmd("y", t_ns=1500, queue=2)]
    b = [_cmd("x", t_ns=90)]
    result = _diff(a, b)
    assert result.timeline["A"] == [(0, "admin", "x"), (500, "queue 2", "y")]
    assert result.timeline["B"] == [(0, "admin", "x")]
    assert result.timeline_origin == {"A": 1000, "B": 90}
    assert _diff([], []).timeline_origin == {"A": 0, "B": 0}


def test_a_long_timeline_is_thinned_evenly_and_bounded() -> None:
    count = 2 * TIMELINE_LIMIT + 5
    a = [_cmd("x", seq=n, t_ns=n, params=(("n", n),)) for n in range(count)]
    timeline = _diff(a, []).timeline["A"]
    assert len(timeline) <= TIMELINE_LIMIT
    times = [t for t, _, _ in timeline]
    assert times[0] == 0 and times == sorted(times)
    # thinned twice: every fourth command (one step of 3 where the stride changed)
    assert times[:3] == [0, 4, 8] and times[-1] == count - 2
    assert len(timeline) == TIMELINE_LIMIT // 2 + 2
    assert max(later - earlier for earlier, later in itertools.pairwise(times)) == 4
    short = _diff(a[:10], []).timeline["A"]
    assert [t for t, _, _ in short] == list(range(10))


# --- whole logs, generated (tests/loggen.py: the NVMe model's log shape) ---------------


def _nvme_logs(tmp_path: Path, *extra: str, cc_aqa: int = 31 << 16 | 31, end: bool = True):
    """A generated NVMe log and a copy with ``extra`` events appended (AQA, a declared
    state register at BAR0+0x24, written ``cc_aqa`` in the copy)."""
    log_a = tmp_path / "a.jsonl"
    stream_nvme_log(log_a, 200)
    lines = log_a.read_text().splitlines(keepends=True)[:-1]
    lines[1] = lines[1].replace(f'"value":{31 << 16 | 31}', f'"value":{cc_aqa}')
    lines += [f'{{"seq":{200 + n},"t_ns":{200 + n},{e}}}\n' for n, e in enumerate(extra)]
    if end:
        lines.append(f'{{"xvpci_end":true,"events":{200 + len(extra)}}}\n')
    log_b = tmp_path / "b.jsonl"
    log_b.write_text("".join(lines))
    return log_a, log_b


def test_a_declared_state_register_is_compared_by_the_last_value_either_access_saw(
    tmp_path: Path,
) -> None:
    result = diff_transaction_logs(*_nvme_logs(tmp_path))
    assert result.equivalent and result.registers_compared == ["cc", "aqa"]
    written = diff_transaction_logs(*_nvme_logs(tmp_path, cc_aqa=31 << 16 | 30))
    [hit] = written.divergences
    assert (hit.kind, hit.side) == ("register", "both")
    assert hit.detail == "register aqa ends as 0x1f001f in A, 0x1f001e in B"
    read = '"kind":"mmio_read","bar":0,"offset":36,"size":4,"value":5'
    [hit] = diff_transaction_logs(*_nvme_logs(tmp_path, read)).divergences
    assert hit.detail == "register aqa ends as 0x1f001f in A, 0x5 in B"


def test_the_windows_own_registers_and_other_bars_are_not_the_models_state(
    tmp_path: Path,
) -> None:
    window = '"kind":"mmio_write","bar":0,"offset":36,"size":4,"value":5,"stream":"window"'
    other_bar = '"kind":"mmio_write","bar":1,"offset":36,"size":4,"value":5'
    assert diff_transaction_logs(*_nvme_logs(tmp_path, window, other_bar)).equivalent


def test_a_truncated_log_is_an_error_unless_allowed(tmp_path: Path) -> None:
    log_a, log_b = _nvme_logs(tmp_path, end=False)
    with pytest.raises(LogError, match=r"b\.jsonl:201: log is truncated after 200 events"):
        diff_transaction_logs(log_a, log_b)
    assert diff_transaction_logs(log_a, log_b, allow_truncated=True).equivalent


@pytest.mark.parametrize(("tag", "what"), [("sqe", "submission"), ("cqe", "completion")])
def test_a_queue_entry_too_short_for_its_structure_is_named_with_its_log(
    tmp_path: Path, tag: str, what: str
) -> None:
    log_a, log_b = _nvme_logs(tmp_path)
    lines = log_b.read_text().splitlines(keepends=True)
    index = [n for n, line in enumerate(lines) if f'"tag":"{tag}"' in line][-1]
    seq = json.loads(lines[index])["seq"]
    short = re.sub(r'"len":\d+', '"len":3', lines[index])
    lines[index] = re.sub(r'"data":"[0-9a-f]*"', '"data":"aabbcc"', short)
    log_b.write_text("".join(lines))
    with pytest.raises(LogError) as error:
        diff_transaction_logs(log_a, log_b)
    size = 64 if tag == "sqe" else 16
    assert str(error.value) == f"{log_b}: #{seq}: a {what} queue entry of 3 bytes, not {size}"


def test_has_decoder_reads_the_model_from_a_logs_header(tmp_path: Path) -> None:
    nvme, _ = _nvme_logs(tmp_path)
    assert has_decoder(nvme)
    other = tmp_path / "other.jsonl"
    other.write_text('{"xvpci_log":3,"model":"synthetic"}\n')
    assert not has_decoder(other)
    for name, text in (("list", "[1, 2]\n"), ("garbled", "{not json\n"), ("empty", "")):
        (tmp_path / name).write_text(text)
        assert not has_decoder(tmp_path / name), name
    (tmp_path / "latin1").write_bytes(b'{"model":"nvme\xff"}\n')
    assert not has_decoder(tmp_path / "latin1")
    assert not has_decoder(tmp_path / "missing.jsonl")


def test_logs_of_two_models_or_of_a_model_without_decoder_are_errors(tmp_path: Path) -> None:
    log_a, log_b = _nvme_logs(tmp_path)
    text = log_b.read_text()
    log_b.write_text(text.replace('"model":"nvme"', '"model":"edu"', 1))
    with pytest.raises(LogError) as error:
        diff_transaction_logs(log_a, log_b)
    assert str(error.value) == f"{log_a} is a log of model 'nvme' and {log_b} of 'edu'"
    for log in (log_a, log_b):
        log.write_text(text.replace('"model":"nvme"', '"model":"synthetic"', 1))
    with pytest.raises(LogError) as error:
        diff_transaction_logs(log_a, log_b)
    assert str(error.value) == "model 'synthetic' has no transaction decoder: use --level raw"


def test_a_log_diff_carries_both_logs_the_rules_and_the_phases(tmp_path: Path) -> None:
    log_a, log_b = _nvme_logs(tmp_path, end=False)
    # either log may be the truncated one
    result = diff_transaction_logs(log_b, log_a, allow_truncated=True)
    assert (result.a.path, result.b.path) == (log_b, log_a)
    assert result.pre_os is not None and all(pre.takeover is None for pre in result.pre_os)
    rules = Rules().merge({"transaction": {"ignore_ops": ["read"]}})
    result = diff_transaction_logs(log_a, log_b, rules, allow_truncated=True)
    assert "read" not in result.ops_a and result.ops_a["write"] == 16


def test_state_registers_come_from_the_models_description() -> None:
    described = {
        "device": {
            "bars": [
                {"index": 0, "registers": [{"offset": 0x14, "name": "cc", "state": True}]},
                {"index": 2},  # a BAR without registers
            ]
        }
    }
    assert _Registers(described, {}).state == {(0, 0x14): "cc"}
    assert _Registers({"device": {}}, {}).state == {}
    assert _Registers({}, {}).state == {}
