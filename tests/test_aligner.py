"""The raw diff's aligner on its own: when it decides, given how much of each log it
has seen (``settle`` with logs still being read), and how much it holds unanswered.

The diff reads logs in batches of hundreds of items, so these limits are reached
only at batch edges in whole logs; here the queues are filled item by item.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from harness.difflog.engine import LOOKAHEAD, RECENT, Aligner, DiffResult, _describe
from harness.difflog.normalize import ADDRESS, Item
from harness.difflog.reader import LogInfo

STREAM = "mmio:bar0:0"


def _aligner(window: int = 1) -> Aligner:
    result = DiffResult(LogInfo(Path("a.jsonl"), {}), LogInfo(Path("b.jsonl"), {}))
    return Aligner(result, window)


def _read(value: int, seq: int) -> Item:
    """A register read returning ``value``: items alike only when their values are."""
    return Item(STREAM, ("mmio_read", 0, 0x10), 4, value, seq, {"seq": seq})


def _add(aligner: Aligner, side: str, values: list[int], first_seq: int = 0) -> None:
    for offset, value in enumerate(values):
        aligner.add(_read(value, first_seq + offset), side)


@pytest.mark.parametrize("short_side", ["a", "b"])
def test_a_decision_waits_until_both_sides_show_lookahead_items_after_the_head(
    short_side: str,
) -> None:
    """A's head (1000) is missing from B; that is decided on the LOOKAHEAD items after
    the heads, and not before each side shows them, unless its log has ended."""
    following = list(range(1, 3 * LOOKAHEAD))
    a = [1000, *following]
    b = following
    aligner = _aligner()
    long_side = "b" if short_side == "a" else "a"
    _add(aligner, long_side, a if long_side == "a" else b)
    shown = LOOKAHEAD  # the head and LOOKAHEAD - 1 after it
    short = a if short_side == "a" else b
    _add(aligner, short_side, short[:shown])
    aligner.settle(a_done=False, b_done=False)
    assert aligner.result.total_divergences == 0
    _add(aligner, short_side, short[shown : shown + 1], first_seq=shown)
    aligner.settle(a_done=False, b_done=False)
    assert [d.kind for d in aligner.result.divergences] == ["missing"]
    assert aligner.result.divergences[0].seq_a == 0


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_side_is_given_up_on_once_more_than_its_limit_waits_unanswered(side: str) -> None:
    """Items of a stream the other log has not shown are kept until more than
    ``limit`` wait (memory stays bounded): then the oldest is missing (extra)."""
    aligner = _aligner(window=1)
    limit = aligner.limit
    _add(aligner, side, list(range(limit)))
    aligner.settle(a_done=False, b_done=False)
    assert aligner.result.total_divergences == 0
    _add(aligner, side, [limit], first_seq=limit)
    aligner.settle(a_done=False, b_done=False)
    kind = "missing" if side == "a" else "extra"
    assert [(d.kind, d.seq_a if side == "a" else d.seq_b) for d in aligner.result.divergences] == [
        (kind, 0)
    ]


@pytest.mark.parametrize("short_side", ["a", "b"])
def test_heads_no_edit_explains_wait_for_a_window_of_items_on_both_sides(
    short_side: str,
) -> None:
    """Logs that disagree item after item: before calling the heads a divergence, the
    aligner looks for them a reorder window deep in the other log, so it waits until
    each side shows that many (or has ended)."""
    window = 2 * LOOKAHEAD
    aligner = _aligner(window)
    long_side = "b" if short_side == "a" else "a"
    _add(aligner, long_side, list(range(100, 100 + 2 * window)))
    _add(aligner, short_side, list(range(500, 500 + window - 1)))
    aligner.settle(a_done=False, b_done=False)
    assert aligner.result.total_divergences == 0
    _add(aligner, short_side, [999], first_seq=window - 1)
    aligner.settle(a_done=False, b_done=False)
    # The heads now: one divergence, then the short side is a window less one again.
    assert aligner.result.total_divergences == 1


@pytest.mark.parametrize(
    ("b", "moved"),
    [
        # B's 3 items after its head: 2 agreeing of them explain A's head as missing.
        ([1, 2, 60, 61], False),
        # B's 5 after its head: 2 agreeing do not (fewer than half); the heads are
        # looked for in each other's log instead: B's 1 and 2 are found in A, moved.
        ([1, 2, 60, 61, 62, 63], True),
    ],
    ids=["half-of-what-follows", "less-than-half"],
)
def test_an_edit_must_explain_half_of_what_follows_on_the_shorter_side(
    b: list[int], moved: bool
) -> None:
    """Both logs ended: A's head (1000) is not in B, and after it only two items agree.
    Whether that explains it depends on how much there is to compare: the items after
    the heads, on the side with fewer."""
    a = [1000, 1, 2, 50, 51, 52, 53, 54]
    aligner = _aligner(window=8)
    _add(aligner, "a", a)
    _add(aligner, "b", b)
    aligner.settle(a_done=True, b_done=True)
    result = aligner.result
    assert result.reordered == (2 if moved else 0)
    if not moved:
        assert (result.divergences[0].kind, result.divergences[0].seq_a) == ("missing", 0)


def test_twins_are_placed_by_their_neighbours_after_more_than_recent_items() -> None:
    """Placement looks neighbours up among the latest items of each log, a bounded
    number (RECENT); past that bound the newer half is kept, so a twin missing there
    is still placed by the reads around it once more than RECENT items were added."""
    commands = (RECENT + RECENT // 4) // 3

    def log(skip: int | None) -> list[Item]:
        items: list[Item] = []
        for n in range(commands):
            before = Item("mmio:bar2:0", ("mmio_read", 2, 0x10), 4, n, 0, {})
            interrupt = Item("irq", ("irq", "msix", 0), 0, None, 0, {})
            after = Item("mmio:bar2:0", ("mmio_read", 2, 0x14), 4, n, 0, {})
            items += [before, after] if n == skip else [before, interrupt, after]
        for seq, item in enumerate(items):
            item.seq, item.event = seq, {"seq": seq}
        return items

    # At three-quarters of the first RECENT items: the newer half, kept once trimmed.
    missing_command = RECENT // 4
    aligner = _aligner()
    for side, items in (("a", log(None)), ("b", log(missing_command))):
        for item in items:
            aligner.add(item, side)
    aligner.settle(a_done=True, b_done=True)
    assert [(d.kind, d.seq_a) for d in aligner.result.divergences] == [
        ("missing", 3 * missing_command + 1)
    ]


# --- items with guest addresses ------------------------------------------------------------


def _dma(addr: int, *addrs: int, seq: int = 0, value: str = "digest") -> Item:
    return Item("dma:sqe", ("dma_read",), 64, value, seq, {"seq": seq}, addr=addr, addrs=addrs)


def _asq(value: int, seq: int = 0) -> Item:
    """A write of a register holding a guest address (NVMe's ASQ)."""
    return Item(STREAM, ("mmio_write", 0, 0x28), 8, ADDRESS, seq, {"seq": seq}, addrs=(value,))


def test_items_agree_on_key_width_value_and_addresses_through_the_pairs_matched() -> None:
    aligner = _aligner()
    assert aligner.agrees(_read(1, 0), _read(1, 0))
    other_register = Item(STREAM, ("mmio_read", 0, 0x14), 4, 1, 0, {})
    assert not aligner.agrees(_read(1, 0), other_register)  # the same width and value
    aligner.corr.bind(0x1000, 0x8000)
    assert aligner.agrees(_asq(0x1000), _asq(0x8000))
    assert not aligner.agrees(_asq(0x1000), _asq(0x9000))  # the register's address too
    assert not aligner.agrees(_dma(0x1000), _dma(0x9000))
    assert aligner.agrees(_dma(0x2000), _dma(0x9000))  # neither bound yet


def test_looking_ahead_pairs_addresses_as_it_goes_and_keeps_none() -> None:
    """Two reads of one buffer in A against reads of two buffers in B: the first pair
    may agree, the second then cannot (A's buffer is B's first one by then)."""
    aligner = _aligner()
    qa = collections.deque([_dma(0x1000), _dma(0x1000)])
    qb = collections.deque([_dma(0x8000), _dma(0x9000)])
    assert aligner._agree(qa, 0, qb, 0, 2) == 1
    assert aligner.corr.a_to_b == {}
    # Heads taken as one event changed are one place: A's buffer is B's first one.
    assert aligner._agree(qa, 1, qb, 1, 1) == 1
    assert aligner._agree(qa, 1, qb, 1, 1, (qa[0], qb[0])) == 0
    assert aligner.corr.a_to_b == {}


def test_a_divergence_names_the_addresses_of_both_sides() -> None:
    assert _describe("missing", _dma(0x1000), None).startswith("dma_read at 0x1000 (width 64)")
    assert _describe("changed_payload", _dma(0x1000, value="x"), _dma(0x8000, value="y")) == (
        "dma_read at 0x1000 in A, 0x8000 in B: x in A, y in B"
    )
    assert _describe("changed_value", _asq(0x1000), _asq(0x9000)) == (
        "mmio_write 0x0 0x28: 0x1000 in A, 0x9000 in B"
    )
    shorter = Item("dma", ("dma_read",), 32, "digest", 0, {}, addr=0x1000)
    assert _describe("changed_length", _dma(0x1000), shorter) == (
        "dma_read at 0x1000: width 64 in A, 32 in B"
    )
    moved = _describe("changed_payload", _dma(0x1000, 0x5000, 0x6000), _dma(0x1000, 0x7000, 0))
    assert moved == (
        "dma_read at 0x1000: holds addresses that do not correspond: "
        "(0x5000, 0x6000) in A, (0x7000, 0x0) in B"
    )
    prps = _describe("changed_payload", _dma(0x1000, *range(1, 6)), _dma(0x1000, *range(6, 11)))
    assert prps.endswith("(0x1, 0x2, 0x3, 0x4, ...) in A, (0x6, 0x7, 0x8, 0x9, ...) in B")
    four = _describe("changed_payload", _dma(0x1000, *range(1, 5)), _dma(0x1000, *range(6, 10)))
    assert four.endswith("(0x1, 0x2, 0x3, 0x4) in A, (0x6, 0x7, 0x8, 0x9) in B")
