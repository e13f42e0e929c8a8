"""Each normalisation rule of the raw diff, held to a log pair whose verdict depends on it.

The pair is real: the NVMe model under fio-pattern through the direct path and
through the window (``tests/fixtures/logs/``, recorded with ``xvpci run --model nvme
--paths direct,window --workload fio-pattern`` on QEMU 11.1.3 and Debian's 6.12
kernel). The two paths legitimately differ in guest addresses, in the window's own
traffic, in the MSI-X table accesses QEMU absorbs on the direct path, in the config
writes firmware makes, ... and the rules make them EQUIVALENT. Rules the pair does
not exercise get the smallest realistic edit of the pair that needs them. Removing
any one rule from ``harness/difflog`` fails at least one test here (checked by
hand, rule by rule, when this file was written).
"""

from __future__ import annotations

import json
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.difflog import diff_logs
from harness.difflog.engine import DiffResult
from vfio_bridge import logformat

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
Events = list[dict]


def _load(name: str) -> tuple[dict, Events]:
    with lzma.open(FIXTURES / name, "rt") as source:
        lines = [json.loads(line) for line in source]
    assert logformat.END_KEY in lines[-1]
    return lines[0], lines[1:-1]


@pytest.fixture(scope="module")
def fio_pair() -> tuple[tuple[dict, Events], tuple[dict, Events]]:
    return _load("nvme-fio-pattern-direct.jsonl.xz"), _load("nvme-fio-pattern-window.jsonl.xz")


def _write(path: Path, header: dict, events: Events) -> Path:
    with open(path, "w") as out:
        out.write(logformat.dumps(header))
        for seq, event in enumerate(events):
            out.write(logformat.dumps({**event, "seq": seq}))
        out.write(logformat.dumps(logformat.trailer(len(events))))
    return path


def _diff(
    tmp_path: Path,
    pair: tuple[tuple[dict, Events], tuple[dict, Events]],
    edit_a: Callable[[Events], Events] = list,
    edit_b: Callable[[Events], Events] = list,
) -> DiffResult:
    (head_a, events_a), (head_b, events_b) = pair
    log_a = _write(tmp_path / "a.jsonl", head_a, edit_a([dict(e) for e in events_a]))
    log_b = _write(tmp_path / "b.jsonl", head_b, edit_b([dict(e) for e in events_b]))
    return diff_logs(log_a, log_b)


def _index(events: Events, predicate: Callable[[dict], bool], nth: int = 0) -> int:
    return [i for i, e in enumerate(events) if predicate(e)][nth]


def _is_child(kind: str, **fields: object) -> Callable[[dict], bool]:
    return lambda e: (
        e["kind"] == kind and "stream" not in e and all(e.get(k) == v for k, v in fields.items())
    )


# --- the recorded pair: every rule it needs at once -------------------------------------


def test_recorded_fio_pattern_pair_is_equivalent(tmp_path: Path, fio_pair) -> None:
    """Needs: the window stream dropped, descriptors' addresses and address registers
    paired, the MSI-X table and PBA dropped, config writes compared by the
    state they leave, BARs/ROM/interrupt line and the interrupt capabilities treated as
    path-specific, config reads not compared, device errors compared by code."""
    result = _diff(tmp_path, fio_pair)
    assert result.equivalent, [d.detail for d in result.divergences[:5]]
    assert result.events_a["dma_write"] == result.events_b["dma_write"] > 6000


def test_the_pair_really_differs_where_the_rules_say(fio_pair) -> None:
    """The premises of the rules, in the recording itself (so the test above means something)."""
    (_, a), (_, b) = fio_pair
    assert any(e.get("stream") == logformat.WINDOW_STREAM for e in b)
    assert not any("stream" in e for e in a)
    asq = [e["value"] for e in a if _is_child("mmio_write", bar=0, offset=0x28)(e)]
    asq_b = [e["value"] for e in b if _is_child("mmio_write", bar=0, offset=0x28)(e)]
    assert asq and asq_b and asq != asq_b  # admin queue at other guest addresses
    table = [e for e in b if _is_child("mmio_write", bar=0)(e) and 0x2000 <= e["offset"] < 0x2110]
    assert table and not any(
        _is_child("mmio_write", bar=0)(e) and 0x2000 <= e["offset"] < 0x2110 for e in a
    )  # the direct path's MSI-X table is QEMU's


# --- rules the recording does not exercise: the smallest realistic edit ---------------


def test_command_register_compares_only_memory_master_and_intx_disable(
    tmp_path: Path, fio_pair
) -> None:
    # Firmware on one path also sets SERR# enable (bit 8) and parity response (bit 6).
    def firmware_bits(events: Events) -> Events:
        last = _index(events, _is_child("cfg_write", offset=4, size=2), -1)
        events[last]["value"] |= 0x140
        return events

    assert _diff(tmp_path, fio_pair, edit_a=firmware_bits).equivalent

    def bus_master_off(events: Events) -> Events:
        last = _index(events, _is_child("cfg_write", offset=4, size=2), -1)
        events[last]["value"] &= ~0x4
        return events

    assert not _diff(tmp_path, fio_pair, edit_a=bus_master_off).equivalent


def test_dma_map_unmap_and_reset_are_the_platforms_not_the_devices(
    tmp_path: Path, fio_pair
) -> None:
    # QEMU maps guest memory in other pieces, and resets the device once more, on one path.
    def platform_events(events: Events) -> Events:
        at = _index(events, lambda e: e["kind"] == "dma_map")
        extra = [
            {"kind": "dma_map", "t_ns": 0, "addr": 0xC0000, "len": 0x20000, "flags": 1},
            {"kind": "dma_unmap", "t_ns": 0, "addr": 0xC0000, "len": 0x20000, "flags": 0},
            {"kind": "reset", "t_ns": 0, "reason": "vfio"},
        ]
        return events[:at] + extra + events[at:]

    assert _diff(tmp_path, fio_pair, edit_b=platform_events).equivalent


def test_a_status_poll_is_one_item_however_long_it_spins(tmp_path: Path, fio_pair) -> None:
    # The guest waited longer for CSTS.RDY on one path: 40 more identical reads.
    def slower(events: Events) -> Events:
        at = _index(events, _is_child("mmio_read", bar=0, offset=0x1C))
        return events[:at] + [dict(events[at]) for _ in range(40)] + events[at:]

    assert _diff(tmp_path, fio_pair, edit_b=slower).equivalent

    def saw_busy(events: Events) -> Events:  # a different value seen is no poll
        at = _index(events, _is_child("mmio_read", bar=0, offset=0x1C))
        return [*events[:at], {**events[at], "value": events[at]["value"] ^ 1}, *events[at:]]

    assert not _diff(tmp_path, fio_pair, edit_b=saw_busy).equivalent


def test_interrupts_compare_by_vector_not_by_mechanism(tmp_path: Path, fio_pair) -> None:
    # A VMD child only has MSI-X; the same model on the direct path may be given MSI.
    def as_msi(events: Events) -> Events:
        for event in events:
            if event["kind"] == "irq":
                event["irq_type"] = "msi"
        return events

    assert _diff(tmp_path, fio_pair, edit_a=as_msi).equivalent

    def other_vector(events: Events) -> Events:
        events[_index(events, _is_child("irq"), 5)]["vector"] += 1
        return events

    assert not _diff(tmp_path, fio_pair, edit_a=other_vector).equivalent


def test_descriptor_and_data_dma_align_apart(tmp_path: Path, fio_pair) -> None:
    # One path fetches a long run of submission entries ahead of the data they describe
    # (a model that prefetches): entries move far from the data DMA around them, while
    # entries and data each stay in their own order.
    def prefetch(events: Events) -> Events:
        sqes = [i for i, e in enumerate(events) if e.get("tag") == "sqe"][2000:2100]
        moved = [events[i] for i in sqes]
        chosen = set(sqes)
        kept = [e for i, e in enumerate(events) if i not in chosen]
        return kept[: sqes[0]] + moved + kept[sqes[0] :]

    assert _diff(tmp_path, fio_pair, edit_b=prefetch).equivalent


def test_device_errors_compare_by_code(tmp_path: Path, fio_pair) -> None:
    # The detail names queue ids and addresses that differ by path; the code may not.
    def other_code(events: Events) -> Events:
        events[_index(events, lambda e: e["kind"] == "device_error")]["error"] = "status_0x00b"
        return events

    result = _diff(tmp_path, fio_pair, edit_b=other_code)
    assert not result.equivalent
    assert {d.stream for d in result.divergences} == {"other"}


def test_a_transfer_of_another_length_is_changed_length(tmp_path: Path, fio_pair) -> None:
    def shorter(events: Events) -> Events:
        at = _index(events, lambda e: e["kind"] == "dma_read" and "tag" not in e, 20)
        events[at]["len"] -= 512
        return events

    result = _diff(tmp_path, fio_pair, edit_b=shorter)
    assert result.by_kind == {"changed_length": 1}
