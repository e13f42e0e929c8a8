"""Edges of the vfio-user message layer that mutation testing found unguarded: limits
at their exact value, error messages that name what was malformed, the sparse mmap
capability against the specification's bytes, and a reader reused after close()."""

from __future__ import annotations

import os
import struct

import pytest

from vfio_bridge.protocol import (
    DmaAccess,
    DmaMap,
    Header,
    IrqSet,
    MessageReader,
    ProtocolError,
    RegionAccess,
    RegionInfo,
    SparseMmapCap,
    Version,
    frame,
)


@pytest.mark.parametrize(
    ("parse", "name", "size"),
    [
        (Version.unpack, "VERSION", 4),
        (DmaMap.unpack, "DmaMap", 32),  # the fixed-layout messages name their class
        (RegionInfo.unpack, "REGION_INFO", 32),
        (IrqSet.unpack, "SET_IRQS", 20),
        (lambda body: RegionAccess.unpack(body, with_data=False), "REGION_ACCESS", 16),
        (lambda body: DmaAccess.unpack(body, with_data=False), "DMA_ACCESS", 16),
    ],
)
def test_a_short_body_is_refused_naming_the_structure(parse, name: str, size: int) -> None:
    with pytest.raises(ProtocolError, match=rf"^{name}: body of 3 bytes is shorter than {size}$"):
        parse(b"abc")


def test_unknown_message_type_names_the_type() -> None:
    raw = struct.pack("<HHIII", 1, 1, 16, 0x3, 0)
    with pytest.raises(ProtocolError, match=r"unknown message type 0x3$"):
        Header.unpack(raw)


def test_announced_and_carried_lengths_must_agree() -> None:
    region = struct.pack("<QII", 0, 0, 4) + b"ab"
    with pytest.raises(ProtocolError, match="announces 4 bytes but carries 2"):
        RegionAccess.unpack(region, with_data=True)
    dma = struct.pack("<QQ", 0, 4) + b"ab"
    with pytest.raises(ProtocolError, match="announces 4 bytes but carries 2"):
        DmaAccess.unpack(dma, with_data=True)
    assert DmaAccess.unpack(struct.pack("<QQ", 8, 4), with_data=False).data == b""


def test_version_capabilities_end_at_the_first_nul() -> None:
    body = struct.pack("<HH", 0, 1) + b'{"capabilities":{}}\0{"trailing":1}\0'
    assert Version.unpack(body).capabilities == {"capabilities": {}}
    assert Version.unpack(struct.pack("<HH", 0, 1)).capabilities == {}  # no JSON at all
    with pytest.raises(ProtocolError, match=r"^VERSION: capabilities are not a JSON object$"):
        Version.unpack(struct.pack("<HH", 0, 1) + b"[1]\0")


def test_sparse_mmap_capability_is_laid_out_as_the_spec_says() -> None:
    # VFIO cap header: id u16 @0 (SPARSE_MMAP = 1), version u16 @2 (1), next u32 @4;
    # then nr_areas u32 @8, reserved u32 @12, and (offset u64, size u64) per area @16.
    expected = struct.pack("<HHIII", 1, 1, 0, 1, 0) + struct.pack("<QQ", 0x1000, 0x2000)
    cap = SparseMmapCap(((0x1000, 0x2000),))
    assert cap.pack() == expected
    assert SparseMmapCap.unpack(expected) == cap
    with pytest.raises(ProtocolError, match=r"^sparse mmap capability: body of 10 bytes"):
        SparseMmapCap.unpack(expected[:10])
    with pytest.raises(ProtocolError, match=r"^sparse mmap areas: body of 20 bytes"):
        SparseMmapCap.unpack(expected[:20])
    with pytest.raises(ProtocolError, match=r"^capability id 3 is not sparse mmap$"):
        SparseMmapCap.unpack(struct.pack("<HHIII", 3, 1, 0, 0, 0))


def test_region_info_capability_offset_must_point_into_the_reply() -> None:
    cap = SparseMmapCap(((0, 0x1000),)).pack()
    fixed = struct.pack("<IIIIQQ", 32 + len(cap), 0x8, 0, 32, 0x4000, 0)
    assert RegionInfo.unpack(fixed + cap).sparse_mmap() == SparseMmapCap(((0, 0x1000),))
    past_the_end = struct.pack("<IIIIQQ", 32 + len(cap), 0x8, 0, 32 + len(cap), 0x4000, 0)
    with pytest.raises(ProtocolError, match="outside the reply"):
        RegionInfo.unpack(past_the_end + cap).sparse_mmap()
    before_the_caps = struct.pack("<IIIIQQ", 32 + len(cap), 0x8, 0, 16, 0x4000, 0)
    with pytest.raises(ProtocolError, match="capability offset 16 outside the reply"):
        RegionInfo.unpack(before_the_caps + cap).sparse_mmap()


def test_limits_allow_exactly_their_value() -> None:
    message = frame(1, 9, b"x" * 48)  # 64 bytes in all
    reader = MessageReader(max_message_size=64, max_fds=2)
    fds = [os.eventfd(0), os.eventfd(0)]
    (got,) = reader.feed(message, fds)
    assert got.fds == fds and got.body == b"x" * 48
    got.close_fds()
    with pytest.raises(ProtocolError, match=r"^message of 65 bytes exceeds the limit of 64$"):
        MessageReader(max_message_size=64, max_fds=2).feed(frame(1, 9, b"x" * 49))
    too_many = [os.eventfd(0) for _ in range(3)]
    with pytest.raises(ProtocolError, match="more than 2 file descriptors"):
        MessageReader(max_message_size=64, max_fds=2).feed(message, too_many)
    for fd in too_many:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed by the reader


def test_a_reader_is_reusable_after_close() -> None:
    reader = MessageReader(max_message_size=1024, max_fds=4)
    held = os.eventfd(0)
    assert reader.feed(frame(1, 9, b"abcd")[:18], [held]) == []  # a message begun, fd held
    reader.close()
    with pytest.raises(OSError):
        os.fstat(held)  # close() closed the unfinished message's descriptor
    (again,) = reader.feed(frame(2, 9, b"ok"))
    assert again.header.msg_id == 2 and again.body == b"ok" and again.fds == []


def test_a_header_cut_short_inside_a_chunk_says_how_much_is_left() -> None:
    chunk = frame(1, 9, b"abcd") + b"\x00" * 6  # a whole message, then 6 bytes of the next
    assert Header.unpack(chunk).size == 20
    with pytest.raises(ProtocolError, match=r"^header needs 16 bytes, got 6$"):
        Header.unpack(chunk, 20)
