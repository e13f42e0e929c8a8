"""Normalisation one event at a time (harness/difflog/normalize.py, profile.py): the item
each event becomes, with the NVMe model's own declaration as the device profile.

The log-pair tests (tests/test_diff_rules.py) show each rule deciding a verdict on
real logs; these pin what the rule does to an event, so that a change of stream,
key, mask or address handling is caught where it happens.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.difflog.correspondence import Correspondence
from harness.difflog.normalize import ADDRESS, PLACES_KEPT, Item, Normalizer
from harness.difflog.profile import DeviceProfile
from harness.difflog.rules import Rules
from vfio_bridge import logformat
from vfio_bridge.logformat import payload_digest
from vfio_bridge.models import create_model

NVME = json.loads(
    logformat.dumps(logformat.header("direct", device=create_model("nvme").declaration()))
)
ASQ, ACQ, CSTS, CC = 0x28, 0x30, 0x1C, 0x14
MSIX_TABLE, MSIX_PBA = 0x2000, 0x3000  # BAR 0, as the model declares them
MSIX_CAP, PCIE_CAP, PM_CAP = 0x48, 0x54, 0x40


def _norm(rules: Rules | None = None, header: dict | None = None) -> Normalizer:
    return Normalizer(NVME if header is None else header, rules or Rules())


def _mmio(kind: str, offset: int, value: int, bar: int = 0, size: int = 4, seq: int = 0) -> dict:
    return {"seq": seq, "kind": kind, "bar": bar, "offset": offset, "size": size, "value": value}


def _cfg(kind: str, offset: int, value: int, size: int = 4, seq: int = 0) -> dict:
    return {"seq": seq, "kind": kind, "offset": offset, "size": size, "value": value}


def _dma(kind: str, addr: int, data: bytes, tag: str | None = None, seq: int = 0) -> dict:
    event: dict[str, Any] = {"seq": seq, "kind": kind, "addr": addr, "len": len(data)}
    event["digest"] = payload_digest(data)
    if tag is not None:
        event.update(tag=tag, data=data.hex())
    return event


def _item(norm: Normalizer, event: dict) -> Item:
    item = norm.push(event)
    assert item is not None, event
    return item


# --- register accesses -----------------------------------------------------------------


def test_a_register_access_is_keyed_by_kind_bar_offset_in_a_stream_per_page() -> None:
    norm = _norm()
    item = _item(norm, _mmio("mmio_write", CC, 0x460001, seq=7))
    assert (item.stream, item.key, item.width, item.value) == (
        "mmio:bar0:0",
        ("mmio_write", 0, CC),
        4,
        0x460001,
    )
    assert item.seq == 7 and item.event["offset"] == CC and item.count == 1
    doorbell = _item(norm, _mmio("mmio_write", 0x1008, 3, size=4))
    assert doorbell.stream == "mmio:bar0:1"  # the doorbell page aligns apart
    other_bar = _item(norm, _mmio("mmio_read", 0x10, 9, bar=2, size=8))
    assert (other_bar.stream, other_bar.key, other_bar.width) == (
        "mmio:bar2:0",
        ("mmio_read", 2, 0x10),
        8,
    )
    assert norm.dropped == 0


def test_address_registers_hold_their_address_apart_from_what_compares_equal() -> None:
    norm = _norm()
    asq = _item(norm, _mmio("mmio_write", ASQ, 0x7F3000))
    assert (asq.value, asq.addrs, asq.addr) == (ADDRESS, (0x7F3000,), None)
    zero = _item(norm, _mmio("mmio_write", ASQ, 0))
    assert (zero.value, zero.addrs) == (0, ())  # zero is no address
    # The other path's guest put the queue elsewhere: the same key and value, and its
    # address for the correspondence to judge.
    other = _item(_norm(), _mmio("mmio_write", ASQ, 0x100000))
    assert (other.key, other.value, other.addrs) == (asq.key, ADDRESS, (0x100000,))
    assert not other.same(asq)  # within one log, another address is another event
    # A register holding no address keeps its value.
    assert _item(norm, _mmio("mmio_write", CC, 0x7F3000)).value == 0x7F3000
    # ... and so does every register of a device that declares none.
    plain = _norm(header={"model": "edu"})
    assert _item(plain, _mmio("mmio_write", ASQ, 0x7F3000)).value == 0x7F3000


def test_the_msix_table_and_pba_are_dropped_and_their_neighbours_kept() -> None:
    norm = _norm()
    for offset in (MSIX_TABLE, MSIX_TABLE + 0x10C, MSIX_PBA, MSIX_PBA + 4):
        assert norm.push(_mmio("mmio_write", offset, 1)) is None
    assert norm.dropped == 4
    for offset in (MSIX_TABLE - 4, MSIX_TABLE + 0x110, MSIX_PBA - 4, MSIX_PBA + 8):
        assert norm.push(_mmio("mmio_write", offset, 1)) is not None, hex(offset)
    # the same offsets in another BAR are not the table
    assert norm.push(_mmio("mmio_write", MSIX_TABLE, 1, bar=2)) is not None
    assert norm.dropped == 4


def test_ignore_and_mask_rules_apply_to_the_register_they_name() -> None:
    rules = Rules().merge(
        {
            "ignore": [{"kind": "mmio", "bar": 0, "offset": CSTS, "size": 4}],
            "mask": [
                {"kind": "mmio", "bar": 0, "offset": CC, "mask": 0xFF0},
                {"kind": "mmio", "bar": 0, "offset": CC, "mask": 0x0F1},
                {"kind": "mmio", "bar": 0, "offset": 0x24},  # no mask: nothing masked
                {"kind": "mmio", "bar": 0, "offset": 0x38, "size": 4, "mask": 0xF0},
            ],
        }
    )
    norm = _norm(rules)
    assert norm.push(_mmio("mmio_read", CSTS, 1)) is None and norm.dropped == 1
    assert norm.push(_mmio("mmio_read", CSTS, 1, size=2)) is not None  # another width
    assert norm.push(_mmio("mmio_read", CSTS, 1, bar=2)) is not None  # another BAR
    assert _item(norm, _mmio("mmio_write", CC, 0xFFFF)).value == 0x0F0  # both masks
    assert _item(norm, _mmio("mmio_write", CC, 0x0A5)).value == 0x0A0  # bits kept, not set
    assert _item(norm, _mmio("mmio_write", 0x38, 0x1A5)).value == 0xA0  # a sized rule
    assert _item(norm, _mmio("mmio_write", 0x38, 0x1A5, size=2)).value == 0x1A5  # its size only
    assert _item(norm, _mmio("mmio_write", 0x24, 0xFFFF)).value == 0xFFFF
    assert _item(norm, _mmio("mmio_write", 0x20, 0xFFFF)).value == 0xFFFF
    assert norm.dropped == 1


def test_register_decisions_are_kept_per_register_and_bounded() -> None:
    norm = _norm()
    for n in range(3):
        norm.push(_mmio("mmio_write", 0x1000 + 4 * n, n))
    assert len(norm._places) == 3
    norm._places.update({("x", 0, n, 4): None for n in range(PLACES_KEPT - len(norm._places))})
    assert len(norm._places) == PLACES_KEPT
    item = _item(norm, _mmio("mmio_write", ASQ, 0x5000))  # a new register: the cache starts over
    assert len(norm._places) == 1 and item.addrs == (0x5000,)
    assert _item(norm, _mmio("mmio_write", ASQ, 0x6000)).addrs == (0x6000,)  # kept decision


def test_a_status_poll_is_one_item_counting_its_reads() -> None:
    norm = _norm()
    first = _item(norm, _mmio("mmio_read", CSTS, 0))
    assert norm.push(_mmio("mmio_read", CSTS, 0)) is None
    assert norm.push(_mmio("mmio_read", CSTS, 0)) is None
    assert first.count == 3
    ready = _item(norm, _mmio("mmio_read", CSTS, 1))  # another value: a new item
    assert norm.push(_mmio("mmio_read", CSTS, 1)) is None and ready.count == 2
    # A read of another register of the page ends the run.
    _item(norm, _mmio("mmio_read", 0x0, 5))
    assert _item(norm, _mmio("mmio_read", CSTS, 1)).count == 1
    # So does a write to the page: the same value read after it is a new read.
    _item(norm, _mmio("mmio_write", CC, 0))
    assert _item(norm, _mmio("mmio_read", CSTS, 1)).count == 1
    # A read in another page does not.
    _item(norm, _mmio("mmio_read", 0x1000, 0))
    assert norm.push(_mmio("mmio_read", CSTS, 1)) is None
    # Writes of the same value are each an item (a doorbell rung twice).
    assert norm.push(_mmio("mmio_write", 0x1000, 2)) is not None
    assert norm.push(_mmio("mmio_write", 0x1000, 2)) is not None
    assert norm.dropped == 0


def test_the_same_event_makes_the_same_item_unless_it_holds_an_address() -> None:
    norm = _norm()
    for event in (_mmio("mmio_write", CC, 1), _mmio("mmio_write", ASQ, 0x9000)):
        norm.push(event)
    assert norm.stateless(_mmio("mmio_write", CC, 1))
    assert not norm.stateless(_mmio("mmio_write", ASQ, 0x9000))
    assert norm.stateless(_mmio("mmio_read", MSIX_TABLE, 0))  # not seen yet: no decision
    norm.push(_mmio("mmio_read", MSIX_TABLE, 0))
    assert norm.stateless(_mmio("mmio_read", MSIX_TABLE, 0))  # dropped: stays dropped
    assert norm.stateless({"kind": "irq", "irq_type": "msix", "vector": 1})
    assert norm.stateless({"kind": "cfg_read", "offset": 0, "size": 4, "value": 1})
    for kind in ("dma_read", "dma_write", "cfg_write"):
        assert not norm.stateless({"kind": kind}), kind


# --- DMA ---------------------------------------------------------------------------------


def test_data_dma_is_keyed_by_kind_with_its_address_apart_and_compared_by_digest() -> None:
    norm = _norm()
    read = _item(norm, _dma("dma_read", 0x7000, b"a" * 64, seq=3))
    write = _item(norm, _dma("dma_write", 0x9000, b"b" * 16))
    assert (read.stream, read.key, read.width, read.value, read.addr, read.addrs) == (
        "dma",
        ("dma_read",),
        64,
        payload_digest(b"a" * 64),
        0x7000,
        (),
    )
    assert read.seq == 3
    assert (write.key, write.addr) == (("dma_write",), 0x9000)
    assert norm.addressed(_dma("dma_read", 0x7000, b"a"))


def test_descriptors_align_apart_with_their_addresses_taken_out_and_ids_ignored() -> None:
    def sqe(cid: int, prp1: int, prp2: int = 0) -> bytes:
        entry = bytearray(64)
        entry[0] = 0x02  # read
        entry[2:4] = cid.to_bytes(2, "little")  # command id: the driver's choice
        entry[24:32] = prp1.to_bytes(8, "little")
        entry[32:40] = prp2.to_bytes(8, "little")
        return bytes(entry)

    a, b = _norm(), _norm()
    item_a = _item(a, _dma("dma_read", 0x1000, sqe(7, 0x50000, 0x61000), "sqe"))
    item_b = _item(b, _dma("dma_read", 0x8000, sqe(9, 0x33000, 0x44000), "sqe"))
    assert item_a.stream == item_b.stream == "dma:sqe"
    assert (item_a.key, item_a.value) == (item_b.key, item_b.value)
    assert (item_a.addr, item_a.addrs) == (0x1000, (0x50000, 0x61000))
    assert Correspondence().agree_items(item_a, item_b)
    assert not a.addressed(_dma("dma_read", 0x1000, sqe(7, 0x50000), "sqe"))
    # an empty PRP2 is no address, and another opcode is another command
    c = _item(_norm(), _dma("dma_read", 0x1000, sqe(7, 0x50000), "sqe"))
    assert c.addrs == (0x50000,) and c.value != item_a.value
    other = bytearray(sqe(7, 0x50000, 0x61000))
    other[0] = 0x01
    assert _item(_norm(), _dma("dma_read", 0x1000, bytes(other), "sqe")).value != item_a.value


def test_an_address_list_numbers_every_entry_and_a_completion_ignores_its_sq_head() -> None:
    prps_a = b"".join(x.to_bytes(8, "little") for x in (0x10000, 0x11000, 0))
    prps_b = b"".join(x.to_bytes(8, "little") for x in (0x90000, 0x95000, 0))
    a = _item(_norm(), _dma("dma_read", 0x5000, prps_a, "prp_list"))
    b = _item(_norm(), _dma("dma_read", 0x6000, prps_b, "prp_list"))
    assert a.stream == "dma:prp_list" and a.value == b.value
    assert (a.addrs, b.addrs) == ((0x10000, 0x11000), (0x90000, 0x95000))
    correspondence = Correspondence()
    correspondence.bind_items(a, b)
    swapped = b"".join(x.to_bytes(8, "little") for x in (0x95000, 0x90000, 0))
    swapped_b = _item(_norm(), _dma("dma_read", 0x6000, swapped, "prp_list"))
    assert swapped_b.value == b.value and not correspondence.agree_items(a, swapped_b)

    def cqe(sq_head: int, status: int) -> bytes:
        entry = bytearray(16)
        entry[8:10] = sq_head.to_bytes(2, "little")
        entry[12:14] = (5).to_bytes(2, "little")  # command id: ignored
        entry[14:16] = status.to_bytes(2, "little")
        return bytes(entry)

    one = _item(_norm(), _dma("dma_write", 0x2000, cqe(3, 1), "cqe"))
    assert one.stream == "dma:cqe"
    assert not one.same(_item(_norm(), _dma("dma_write", 0x2000, cqe(4, 1), "cqe")))
    assert not one.same(_item(_norm(), _dma("dma_write", 0x2000, cqe(3, 3), "cqe")))


def test_a_descriptor_logged_without_its_bytes_is_compared_by_digest() -> None:
    event = _dma("dma_read", 0x1000, b"q" * 64)
    event["tag"] = "sqe"
    item = _item(_norm(), event)
    assert item.stream == "dma:sqe" and item.value == payload_digest(b"q" * 64)
    unknown_tag = _dma("dma_read", 0x1000, b"q" * 64, "mystery")
    assert _item(_norm(), unknown_tag).value == payload_digest(b"q" * 64)
    assert _norm().addressed(unknown_tag) and _norm().addressed(event)


# --- interrupts, errors, other kinds ---------------------------------------------------------


def test_interrupts_are_keyed_by_vector_and_by_type_only_on_request() -> None:
    norm = _norm()
    msix = _item(norm, {"seq": 1, "kind": "irq", "irq_type": "msix", "vector": 2})
    msi = _item(norm, {"seq": 2, "kind": "irq", "irq_type": "msi", "vector": 2})
    assert (msix.stream, msix.key, msix.width, msix.value) == ("irq", ("irq", 2), 0, None)
    assert msix.same(msi) and msix.seq == 1
    assert not msix.same(_item(norm, {"seq": 3, "kind": "irq", "irq_type": "msix", "vector": 3}))
    typed = _norm(Rules(compare_irq_type=True))
    a = _item(typed, {"seq": 1, "kind": "irq", "irq_type": "msix", "vector": 2})
    assert a.key == ("irq", "msix", 2)
    assert not a.same(_item(typed, {"seq": 2, "kind": "irq", "irq_type": "msi", "vector": 2}))
    assert _item(typed, {"seq": 3, "kind": "irq", "irq_type": "msix", "vector": 2}).same(a)


def test_interrupt_keys_kept_are_bounded() -> None:
    norm = _norm()
    norm._irq_keys.update({("x", n): ("irq", n) for n in range(PLACES_KEPT)})
    item = _item(norm, {"seq": 0, "kind": "irq", "irq_type": "msix", "vector": 1})
    assert item.key == ("irq", 1) and len(norm._irq_keys) == PLACES_KEPT


def test_device_errors_compare_by_code_and_other_kinds_by_kind() -> None:
    norm = _norm()
    error = _item(norm, {"seq": 4, "kind": "device_error", "error": "dma_fault", "detail": "at 1"})
    assert (error.stream, error.key, error.value, error.seq) == (
        "other",
        ("device_error", "dma_fault"),
        None,
        4,
    )
    same = _item(norm, {"seq": 5, "kind": "device_error", "error": "dma_fault", "detail": "at 2"})
    assert error.same(same)
    other = _item(norm, {"seq": 6, "kind": "device_error", "error": "status_0x002"})
    assert not error.same(other)
    custom_event = {"seq": 7, "kind": "power", "state": "d3"}
    custom = _item(norm, custom_event)
    assert (custom.stream, custom.key, custom.width, custom.seq) == ("other", ("power",), 0, 7)
    assert custom.event is custom_event and error.width == 0


def test_every_item_keeps_its_raw_event_for_the_reports() -> None:
    norm = _norm(Rules(compare_config_reads=True))
    for event in (
        _mmio("mmio_write", CC, 1),
        _mmio("mmio_read", CSTS, 1),
        _dma("dma_read", 0x1000, b"d"),
        _dma("dma_read", 0x1000, bytes(64), "sqe"),
        {"seq": 0, "kind": "irq", "irq_type": "msix", "vector": 1},
        {"seq": 0, "kind": "device_error", "error": "dma_fault"},
        {"seq": 0, "kind": "power", "state": "d0"},
        _cfg("cfg_read", 0x00, 1),
    ):
        assert _item(norm, event).event is event, event


def test_platform_kinds_and_the_window_stream_are_dropped_as_the_rules_say() -> None:
    norm = _norm()
    for event in (
        {"seq": 0, "kind": "dma_map", "addr": 0, "len": 4096, "flags": 3},
        {"seq": 1, "kind": "dma_unmap", "addr": 0, "len": 4096, "flags": 0},
        {"seq": 2, "kind": "reset", "reason": "vfio"},
        {**_mmio("mmio_write", CC, 1), "stream": "window"},
    ):
        assert norm.push(event) is None, event
    assert norm.dropped == 4
    keep = _norm(Rules(ignore_kinds={"reset"}, ignore_streams=set()))
    assert keep.push({"seq": 0, "kind": "dma_map", "addr": 0, "len": 1, "flags": 3})
    assert keep.push({**_mmio("mmio_write", CC, 1), "stream": "window"}) is not None
    assert keep.push({"seq": 2, "kind": "reset", "reason": "vfio"}) is None


# --- config space ----------------------------------------------------------------------------


def test_config_writes_are_compared_by_the_state_they_leave() -> None:
    norm = _norm()
    assert norm.push(_cfg("cfg_write", 0x0C, 0x10, size=1, seq=1)) is None
    assert norm.push(_cfg("cfg_write", 0x0C, 0x20, size=1, seq=2)) is None
    assert norm.push(_cfg("cfg_write", 0x0C, 0x30, size=2, seq=3)) is None
    assert norm.push(_cfg("cfg_write", 0x0D, 0x40, size=1, seq=4)) is None
    end = norm.finish()
    assert [i.event["seq"] for i in end] == [2, 3, 4]  # the raw events, for the reports
    assert [(i.stream, i.key, i.width, i.value, i.seq) for i in end] == [
        ("config", ("cfg_write", 0x0C), 1, 0x20, 2),  # the last write of each register, width
        ("config", ("cfg_write", 0x0C), 2, 0x30, 3),
        ("config", ("cfg_write", 0x0D), 1, 0x40, 4),
    ]
    assert norm.dropped == 0


def test_the_command_register_keeps_memory_bus_master_and_intx_disable() -> None:
    norm = _norm()
    norm.push(_cfg("cfg_write", 0x04, 0xFFFF, size=2))
    [command] = norm.finish()
    assert command.value == 0x0406
    other = _norm()
    other.push(_cfg("cfg_write", 0x04, 0xFFFF, size=4))  # a 4-byte write is not masked
    assert other.finish()[0].value == 0xFFFF


def test_platform_owned_config_is_not_compared() -> None:
    norm = _norm(Rules(compare_config_reads=True))
    skipped = [0x10, 0x27, 0x30, 0x33, 0x3C, MSIX_CAP, MSIX_CAP + 11, PCIE_CAP, PCIE_CAP + 59]
    for offset in skipped:
        assert norm.push(_cfg("cfg_write", offset, 1)) is None
        assert norm.push(_cfg("cfg_read", offset, 1)) is None
    assert norm.dropped == 2 * len(skipped) and norm.finish() == []
    for offset in (0x0F, 0x28, 0x34, 0x3D, PM_CAP, PCIE_CAP + 60):
        item = _item(norm, _cfg("cfg_read", offset, 1))
        assert (item.stream, item.key) == ("config", ("cfg_read", offset)), hex(offset)
    # a config read logged by digest (a block read of config space) is not compared
    assert (
        norm.push({"seq": 0, "kind": "cfg_read", "offset": 0, "size": 256, "digest": "x"}) is None
    )


def test_config_reads_are_compared_only_on_request() -> None:
    norm = _norm()
    assert norm.push(_cfg("cfg_read", 0x00, 0x00EE1B36)) is None and norm.dropped == 1
    assert norm.push(_cfg("cfg_read", 0x08, 0x01080200)) is None and norm.dropped == 2
    asked = _norm(Rules(compare_config_reads=True))
    event = _cfg("cfg_read", 0x00, 0x00EE1B36, seq=9)
    item = _item(asked, event)
    assert (item.width, item.value, item.seq) == (4, 0x00EE1B36, 9)
    assert item.event is event  # the reports show the raw event


def test_config_rules_ignore_and_mask() -> None:
    rules = Rules(compare_config_reads=True).merge(
        {
            "ignore": [{"kind": "cfg", "offset": 0x0C, "size": 1}],
            "mask": [
                {"kind": "cfg", "offset": 0x08, "mask": 0xFF00},
                {"kind": "cfg", "offset": 0x09},
            ],
        }
    )
    norm = _norm(rules)
    assert norm.push(_cfg("cfg_read", 0x0C, 7, size=1)) is None and norm.dropped == 1
    assert norm.push(_cfg("cfg_write", 0x0C, 7, size=1)) is None and norm.dropped == 2
    assert norm.push(_cfg("cfg_read", 0x0C, 7, size=2)) is not None
    assert _item(norm, _cfg("cfg_read", 0x08, 0x1234)).value == 0x1200
    assert _item(norm, _cfg("cfg_read", 0x09, 0x1234)).value == 0x1234
    assert norm.dropped == 2
    assert [i.key for i in norm.finish()] == []  # the ignored write left no state


# --- two logs sharing state while they agree -------------------------------------------------


def test_shared_state_is_one_until_unshared() -> None:
    a, b = _norm(), _norm()
    a.push(_mmio("mmio_read", CSTS, 1))
    b.share(a)
    assert b.same_state(a) and a.same_state(b)
    b.push(_mmio("mmio_read", CSTS, 2))
    assert a._last_read["mmio:bar0:0"].value == 2  # b's last read is a's
    b.unshare()
    b.push(_mmio("mmio_read", CSTS, 3))
    assert a._last_read["mmio:bar0:0"].value == 2 and not a.same_state(b)
    a.push(_mmio("mmio_read", CSTS, 3))
    assert a.same_state(b)


def test_same_state_compares_last_reads_and_profile() -> None:
    a, b = _norm(), _norm()
    assert a.same_state(b)
    a.push(_mmio("mmio_read", CSTS, 1))
    assert not a.same_state(b)  # a poll under way on one side only
    b.push(_mmio("mmio_read", CSTS, 0))
    assert not a.same_state(b)  # polls of other values
    b.push(_mmio("mmio_read", CSTS, 1))
    assert a.same_state(b)
    b.push(_mmio("mmio_read", 0x1000, 1))
    assert not a.same_state(b)  # a poll in another page
    assert not _norm().same_state(_norm(header={"model": "edu"}))  # other devices


# --- the device profile ----------------------------------------------------------------------


def test_the_profile_of_the_nvme_declaration() -> None:
    profile = DeviceProfile.from_header(NVME)
    assert profile.skip_mmio == ((0, MSIX_TABLE, MSIX_TABLE + 0x110), (0, MSIX_PBA, MSIX_PBA + 8))
    assert profile.path_specific_config == ((MSIX_CAP, MSIX_CAP + 12), (PCIE_CAP, PCIE_CAP + 60))
    assert profile.address_registers == {(0, ASQ), (0, ACQ)}
    assert set(profile.descriptors) == {"sqe", "cqe", "prp_list"}
    assert profile.descriptors["sqe"]["addresses"] == [24, 32]
    assert profile.register_name(0, CC) == "cc" and profile.register_name(0, ASQ) == "asq"
    assert profile.register_name(0, 0x1000) == "SQ0TDBL"
    assert profile.register_name(0, 0x1004) == "CQ0HDBL"
    assert profile.register_name(0, 0x1008) == "SQ1TDBL"
    assert profile.register_name(0, 0x1084) == "CQ16HDBL"  # the last of 136 bytes
    assert profile.register_name(0, 0x1088) == "bar0+0x1088"
    assert profile.register_name(2, CC) == "bar2+0x14"


def test_a_range_without_names_or_with_another_stride() -> None:
    def header(window: dict) -> dict:
        return {"device": {"bars": [{"index": 1, "registers": [], "ranges": [window]}]}}

    plain = DeviceProfile.from_header(header({"offset": 0x100, "size": 16}))
    assert plain.register_names == {}
    wide = DeviceProfile.from_header(
        header({"offset": 0x100, "size": 32, "names": ["Q{n}"], "stride": 8})
    )
    assert wide.register_names == {
        (1, 0x100): "Q0",
        (1, 0x108): "Q1",
        (1, 0x110): "Q2",
        (1, 0x118): "Q3",
    }
    narrow = DeviceProfile.from_header(header({"offset": 0, "size": 8, "names": ["D{n}"]}))
    assert narrow.register_names == {(1, 0): "D0", (1, 4): "D1"}


def test_an_empty_description_and_a_legacy_header_without_msix() -> None:
    empty = DeviceProfile.from_header({"device": {}})
    assert empty == DeviceProfile()
    bare_bars = {"device": {"bars": [{"index": 0}, {"index": 2, "registers": []}]}}
    assert DeviceProfile.from_header(bare_bars) == DeviceProfile()
    legacy = DeviceProfile.from_header({"model": "edu"})
    assert legacy == DeviceProfile() and legacy.register_name(0, 4) == "bar0+0x4"
    table_only = DeviceProfile.from_header({"msix": {"table": [2, 0, 0x40]}})
    assert table_only.skip_mmio == ((2, 0, 0x40),)
    pba_only = DeviceProfile.from_header({"msix": {"pba": [4, 0x800, 8]}})
    assert pba_only.skip_mmio == ((4, 0x800, 0x808),)


@pytest.mark.parametrize("name", ["pcie", "msi", "msix"])
def test_each_path_specific_capability_is_skipped(name: str) -> None:
    device = {"capabilities": [{"name": name, "offset": 0x50, "length": 0x18}]}
    assert DeviceProfile.from_header({"device": device}).path_specific_config == ((0x50, 0x68),)
    device = {"capabilities": [{"name": "pm", "offset": 0x50, "length": 0x18}]}
    assert DeviceProfile.from_header({"device": device}).path_specific_config == ()


def test_descriptor_payloads_are_digested_with_their_addresses_taken_out() -> None:
    """The exact bytes digested: each non-zero address field replaced by 1 (8 bytes,
    little endian), ignored fields zeroed, the rest kept; the addresses in order."""
    sqe = bytearray(64)
    sqe[0] = 0x02
    sqe[2:4] = (0x1234).to_bytes(2, "little")  # command id: zeroed
    sqe[24:32] = (0x50200).to_bytes(8, "little")  # PRP1, not page aligned
    sqe[32:40] = (0x61000).to_bytes(8, "little")  # PRP2
    sqe[40:44] = (0x2A).to_bytes(4, "little")  # the starting LBA right after it
    item = _item(_norm(), _dma("dma_read", 0x9000, bytes(sqe), "sqe"))
    expected = bytearray(sqe)
    expected[2:4] = bytes(2)
    expected[24:32] = (1).to_bytes(8, "little")
    expected[32:40] = (1).to_bytes(8, "little")
    assert item.value == payload_digest(bytes(expected))
    assert (item.addr, item.addrs) == (0x9000, (0x50200, 0x61000))

    # An address list: every 8 bytes an entry, zero entries kept; a tail short of an
    # entry (which no device reads) is kept as it is.
    entries = [0x10000, 0x11000, 0]
    raw = b"".join(x.to_bytes(8, "little") for x in entries) + b"\x01\x02\x03\x04"
    item = _item(_norm(), _dma("dma_read", 0x5000, raw, "prp_list"))
    marked = b"".join(x.to_bytes(8, "little") for x in (1, 1, 0)) + b"\x01\x02\x03\x04"
    assert item.value == payload_digest(marked)
    assert (item.addr, item.addrs) == (0x5000, (0x10000, 0x11000))


# --- the correspondence of addresses ----------------------------------------------------------


def _dma_item(addr: int, *addrs: int) -> Item:
    return Item("dma", ("dma_read",), 64, "digest", 0, {}, addr=addr, addrs=addrs)


def test_addresses_agree_when_bound_to_each_other_or_both_unbound() -> None:
    c = Correspondence()
    assert c.agree(0x1000, 0x8000)  # neither bound: they may be the same
    c.bind(0x1000, 0x8000)
    assert c.agree(0x1000, 0x8000)
    assert not c.agree(0x1000, 0x9000)  # A's is B's 0x8000
    assert not c.agree(0x2000, 0x8000)  # B's is A's 0x1000
    assert c.agree(0x2000, 0x9000)
    assert c.agree(None, None) and not c.agree(0x1000, None)
    assert not c.agree(0x5000, None) and not c.agree(None, 0x5000)  # an address is not none
    c.bind(0x1000, 0x9000)  # bound already: the first binding holds
    c.bind(0x2000, 0x8000)
    c.bind(0x3000, None)
    assert c.a_to_b == {0x1000: 0x8000} and c.b_to_a == {0x8000: 0x1000}


def test_crossed_counts_pairs_of_different_addresses() -> None:
    c = Correspondence()
    c.same_address(0x1000)
    c.bind(0x2000, 0x2000)
    assert c.crossed == 0 and c.agree(0x1000, 0x1000) and not c.agree(0x1000, 0x2000)
    c.bind(0x3000, 0x7000)
    assert c.crossed == 1
    c.same_address(0x3000)  # bound already: stays A's 0x3000 = B's 0x7000
    assert c.a_to_b[0x3000] == 0x7000


def test_an_items_addresses_agree_together() -> None:
    """Within one pair of items, one address of A twice is one address of B twice."""
    c = Correspondence()
    assert c.agree_items(_dma_item(0x1000, 0x5000, 0x6000), _dma_item(0x8000, 0x9000, 0xA000))
    assert not c.agree_items(_dma_item(0x1000, 0x5000, 0x5000), _dma_item(0x8000, 0x9000, 0xA000))
    assert not c.agree_items(_dma_item(0x1000, 0x1000), _dma_item(0x8000, 0x9000))
    assert not c.agree_items(_dma_item(0x1000, 0x5000), _dma_item(0x8000))  # fewer
    assert not c.agree_items(_dma_item(0x1000), _dma_item(0x8000, 0x9000))  # more
    c.bind_items(_dma_item(0x1000, 0x5000), _dma_item(0x8000, 0x9000))
    assert c.a_to_b == {0x1000: 0x8000, 0x5000: 0x9000}
    assert not c.agree_items(_dma_item(0x1000, 0x6000), _dma_item(0x8000, 0x9000))


def test_a_trial_binds_on_its_own() -> None:
    c = Correspondence()
    c.bind(0x1000, 0x8000)
    trial = c.trial()
    assert not trial.agree(0x1000, 0x9000)  # what the correspondence holds, the trial does
    assert not trial.agree(0x3000, 0x8000)  # both ways
    trial.bind(0x2000, 0x9000)
    assert not trial.agree(0x2000, 0xA000) and c.agree(0x2000, 0xA000)
    assert c.a_to_b == {0x1000: 0x8000} and c.crossed == 1
