"""The sans-I/O protocol layer: every message round-trips; malformed input is refused."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vfio_bridge.protocol import (
    HEADER_SIZE,
    DeviceInfo,
    DmaAccess,
    DmaMap,
    DmaUnmap,
    Header,
    IrqInfo,
    IrqSet,
    MessageReader,
    MsgFlags,
    ProtocolError,
    Region,
    RegionAccess,
    RegionInfo,
    SparseMmapCap,
    Version,
    VfioCommand,
    access_reply,
    access_request,
    frame,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
json_scalars = st.one_of(st.integers(-(1 << 53), 1 << 53), st.booleans(), st.text(max_size=8))
caps = st.dictionaries(st.text(min_size=1, max_size=10), json_scalars, max_size=5)


@given(u16, u16, u16, u32, u32)
def test_header_round_trip(msg_id: int, command: int, body: int, flags: int, err: int) -> None:
    flags = (flags & ~0xF) | (flags & 1)  # request or reply
    header = Header(msg_id, command, HEADER_SIZE + body, flags, err)
    assert Header.unpack(header.pack()) == header


@given(u16, u16, st.dictionaries(st.text(min_size=1, max_size=10), caps, max_size=3))
def test_version_round_trip(major: int, minor: int, capabilities: dict) -> None:
    version = Version(major, minor, capabilities)
    assert Version.unpack(version.pack()) == version


@pytest.mark.parametrize(
    ("cls", "strategy"),
    [
        (DmaMap, st.tuples(u32, u32, u64, u64, u64)),
        (DmaUnmap, st.tuples(u32, u32, u64, u64)),
        (DeviceInfo, st.tuples(u32, u32, u32, u32)),
        (IrqInfo, st.tuples(u32, u32, u32, u32)),
    ],
)
@given(data=st.data())
def test_fixed_messages_round_trip(
    cls: type, strategy: st.SearchStrategy, data: st.DataObject
) -> None:
    message = cls(*data.draw(strategy))
    assert cls.unpack(message.pack()) == message


@given(u32, u32, u32, u32, u32, st.binary(max_size=64))
def test_irq_set_round_trip(
    argsz: int, flags: int, index: int, start: int, count: int, blob: bytes
) -> None:
    message = IrqSet(argsz, flags, index, start, count, blob)
    assert IrqSet.unpack(message.pack()) == message


@given(u64, u32, st.binary(max_size=256))
def test_region_access_round_trip(offset: int, region: int, data: bytes) -> None:
    request = RegionAccess(offset, region, len(data))
    assert RegionAccess.unpack(request.pack(), with_data=False) == request
    with_data = RegionAccess(offset, region, len(data), data)
    assert RegionAccess.unpack(with_data.pack(), with_data=True) == with_data


@given(u64, st.binary(max_size=256))
def test_dma_access_round_trip(addr: int, data: bytes) -> None:
    message = DmaAccess(addr, len(data), data)
    packed = message.pack()
    assert packed[16:] == data  # QEMU 11 and libvfio-user read the data at byte 16
    assert DmaAccess.unpack(packed, with_data=True) == message


@given(st.lists(st.tuples(u64, u64), max_size=8), u32, u64)
def test_region_info_with_sparse_mmap_round_trip(areas: list, index: int, size: int) -> None:
    cap = SparseMmapCap(tuple(areas))
    info = RegionInfo(32 + len(cap.pack()), 0xF, index, 32, size, 0, cap.pack())
    parsed = RegionInfo.unpack(info.pack())
    assert parsed == info
    assert parsed.sparse_mmap() == cap


def test_frame_sets_size_and_flags() -> None:
    data = frame(7, VfioCommand.REGION_READ, b"x" * 16, MsgFlags.REPLY)
    header = Header.unpack(data)
    assert (header.msg_id, header.command, header.size) == (7, VfioCommand.REGION_READ, 32)
    assert header.is_reply and not header.is_error and not header.no_reply


def test_access_reply_is_the_framed_echo_of_the_access() -> None:
    echo = RegionAccess(0x40, Region.BAR0, 4).pack()
    assert access_reply(9, VfioCommand.REGION_READ, 0x40, 0, 4, b"abcd") == frame(
        9, VfioCommand.REGION_READ, echo + b"abcd", MsgFlags.REPLY
    )


# Everything the hot path's parser takes, and what it leaves to the general path.
_READ_BODY = RegionAccess(8, Region.BAR0, 4).pack()
_WRITE_BODY = RegionAccess(8, Region.BAR0, 4, b"wxyz").pack()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (frame(3, VfioCommand.REGION_READ, _READ_BODY), (3, 9, 0, 8, 0, 4, b"")),
        (frame(3, VfioCommand.REGION_WRITE, _WRITE_BODY), (3, 10, 0, 8, 0, 4, b"wxyz")),
        (
            frame(3, VfioCommand.REGION_WRITE, _WRITE_BODY, MsgFlags.NO_REPLY),
            (3, 10, 0x10, 8, 0, 4, b"wxyz"),
        ),
        # a whole access followed by the start of the next message: the first is taken
        (frame(3, VfioCommand.REGION_READ, _READ_BODY) + b"\x04\x00", (3, 9, 0, 8, 0, 4, b"")),
        (frame(3, VfioCommand.REGION_READ, _READ_BODY, MsgFlags.REPLY), None),
        (frame(3, VfioCommand.REGION_READ, _READ_BODY, MsgFlags.ERROR), None),
        (frame(3, VfioCommand.REGION_READ, _READ_BODY, 0x3), None),  # unknown type
        (frame(3, VfioCommand.DMA_READ, _READ_BODY), None),
        (frame(3, VfioCommand.REGION_READ, _READ_BODY[:15]), None),  # short fixed part
        (frame(3, VfioCommand.REGION_WRITE, _WRITE_BODY)[:-1], None),  # not whole yet
        (frame(3, VfioCommand.REGION_READ, _READ_BODY)[:20], None),
    ],
)
def test_access_request_takes_only_whole_plain_region_accesses(
    message: bytes, expected: tuple | None
) -> None:
    assert access_request(message, len(message)) == expected


@given(st.binary(min_size=32, max_size=48), st.sampled_from([9, 10]), st.sampled_from([0, 0x10]))
# A whole read followed by a malformed header (size 0): found by hypothesis in CI.
@example(raw=b"\0\0\0\0\xe8" + bytes(43), command=9, flags=0)
def test_access_request_agrees_with_the_reader(raw: bytes, command: int, flags: int) -> None:
    """Whatever the hot path's parser takes, the reader frames into the same message.

    The reader is given the message's own bytes (by its header's size): what follows
    a taken access goes to the reader anyway (``SocketChannel.take_access``), which
    refuses a malformed rest, and with it the burst, as it would without the hot path."""
    size = raw[4] % 40  # sizes around the fixed part: too short, exact, longer, too long
    data = bytearray(raw)
    data[2:4] = command.to_bytes(2, "little")
    data[4:8] = size.to_bytes(4, "little")
    data[8:12] = (flags | (raw[8] & 0x21 if raw[9] & 1 else 0)).to_bytes(4, "little")
    parsed = access_request(data, len(data))
    try:
        messages = MessageReader(4096, 4).feed(bytes(data[: max(size, 16)]))
    except ProtocolError:
        messages = []
    if parsed is None:
        return
    assert messages, "the reader refuses what the hot path took"
    header, body = messages[0].header, messages[0].body
    msg_id, got_command, got_flags, offset, region, count, payload = parsed
    assert (msg_id, got_command, got_flags) == (header.msg_id, header.command, header.flags)
    assert (offset, region, count) == RegionAccess.fields(body)
    assert payload == body[16:]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00" * 8, "header needs"),
        (Header(1, 1, 8).pack(), "smaller than its header"),
        (Header(1, 1, 16, 0x3).pack(), "unknown message type"),
    ],
)
def test_malformed_headers_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        Header.unpack(raw)


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (DmaMap.unpack, bytes(31)),
        (DmaUnmap.unpack, bytes(23)),
        (DeviceInfo.unpack, bytes(15)),
        (RegionInfo.unpack, bytes(31)),
        (IrqInfo.unpack, bytes(15)),
        (IrqSet.unpack, bytes(19)),
        (Version.unpack, bytes(3)),
        (lambda b: RegionAccess.unpack(b, with_data=False), bytes(15)),
        (lambda b: RegionAccess.unpack(b, with_data=True), RegionAccess(0, 0, 8).pack() + b"abc"),
        (lambda b: DmaAccess.unpack(b, with_data=True), DmaAccess(0, 9).pack() + b"abc"),
        (lambda b: SparseMmapCap.unpack(b), SparseMmapCap(((0, 4096),)).pack()[:-1]),
    ],
)
def test_truncated_bodies_are_refused(parse, body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(body)
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("text", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_version_with_bad_capabilities_is_refused(text: bytes) -> None:
    with pytest.raises(ProtocolError, match="capabilities"):
        Version.unpack(b"\x00\x00\x00\x00" + text + b"\x00")


def test_reader_reassembles_byte_by_byte_and_back_to_back() -> None:
    first = frame(1, VfioCommand.DEVICE_GET_INFO, DeviceInfo(16).pack())
    second = frame(2, VfioCommand.DEVICE_RESET, b"")
    reader = MessageReader(4096, 4)
    got = []
    for byte in first + second:
        got += reader.feed(bytes([byte]))
    assert [m.header.msg_id for m in got] == [1, 2]
    assert DeviceInfo.unpack(got[0].body) == DeviceInfo(16)
    both = MessageReader(4096, 4).feed(first + second)
    assert [m.body for m in both] == [m.body for m in got]


def test_the_reader_says_when_it_holds_no_part_of_a_message() -> None:
    """``at_boundary``: what the channel checks before it parses a receive in place."""
    whole = frame(1, VfioCommand.DEVICE_RESET, b"")
    body = frame(2, VfioCommand.DEVICE_GET_INFO, DeviceInfo(16).pack())
    reader = MessageReader(4096, 4)
    assert reader.at_boundary
    states = []
    for chunk in (whole[:7], whole[7:], body[:20], body[20:], whole + body[:16], body[16:]):
        reader.feed(chunk)
        states.append(reader.at_boundary)
    # half a header; whole; header and part of the body; whole; a header alone; whole
    assert states == [False, True, False, True, False, True]
    r, w = os.pipe()
    os.close(w)
    reader.feed(b"", [r])  # descriptors waiting for the message they came with
    assert not reader.at_boundary
    reader.close()  # which closes them
    assert reader.at_boundary and not _is_open(r)


def test_reader_attaches_fds_to_their_message() -> None:
    reader = MessageReader(4096, 4)
    r, w = os.pipe()
    try:
        [message] = reader.feed(
            frame(3, VfioCommand.DMA_MAP, DmaMap(32, 3, 0, 0, 4096).pack()), [r]
        )
        assert message.fds == [r]
        message.close_fds()
        with pytest.raises(OSError):
            os.fstat(r)
    finally:
        os.close(w)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_descriptors_in_a_chunk_belong_to_the_last_message_beginning_in_it() -> None:
    """The kernel delivers descriptors with the first byte of their sendmsg and never
    with bytes of a later one, so: last message that begins in the chunk, else the
    message the chunk continues."""
    plain = frame(1, VfioCommand.DEVICE_RESET, b"")
    with_fd = frame(2, VfioCommand.DMA_MAP, DmaMap(32, 3, 0, 0, 4096).pack())
    r, w = os.pipe()
    try:
        reader = MessageReader(4096, 4)
        first, second = reader.feed(plain + with_fd, [r])
        assert (first.fds, second.fds) == ([], [r])

        # A chunk that ends inside the message its descriptor came with...
        reader = MessageReader(4096, 4)
        [done] = reader.feed(plain + with_fd[:5], [r])
        assert done.fds == []
        [later] = reader.feed(with_fd[5:])
        assert later.header.msg_id == 2 and later.fds == [r]

        # ...and one that only continues a message: descriptors go to that message.
        reader = MessageReader(4096, 4)
        assert reader.feed(with_fd[:20]) == []
        [continued] = reader.feed(with_fd[20:], [r])
        assert continued.header.msg_id == 2 and continued.fds == [r]
    finally:
        os.close(r)
        os.close(w)


def test_a_bad_header_after_good_messages_closes_their_descriptors() -> None:
    good = frame(1, VfioCommand.DMA_MAP, DmaMap(32, 3, 0, 0, 4096).pack())
    bad = Header(2, VfioCommand.REGION_WRITE, 3).pack()  # smaller than a header
    reader = MessageReader(4096, 4)
    r, w = os.pipe()
    os.close(w)
    assert reader.feed(good[:10], [r]) == []
    with pytest.raises(ProtocolError, match="smaller than its header"):
        reader.feed(good[10:] + bad)
    assert not _is_open(r)


def test_reader_refuses_oversized_messages_and_closes_their_fds() -> None:
    reader = MessageReader(1024, 4)
    r, w = os.pipe()
    try:
        with pytest.raises(ProtocolError) as info:
            reader.feed(Header(1, VfioCommand.REGION_WRITE, 1 << 20).pack(), [r])
        assert info.value.errno == errno.E2BIG
        with pytest.raises(OSError):
            os.fstat(r)
    finally:
        os.close(w)


def test_reader_refuses_too_many_fds() -> None:
    reader = MessageReader(4096, 2)
    pipes = [os.pipe() for _ in range(2)]
    fds = [fd for pair in pipes for fd in pair]
    with pytest.raises(ProtocolError, match="file descriptors"):
        reader.feed(b"", fds)
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
