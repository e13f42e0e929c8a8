"""The vfio-user wire format against two sources independent of our code.

1. The specification (QEMU ``docs/interop/vfio-user.rst``, 11.x): each message's
   layout written out below as byte offsets, packed with ``struct`` at those
   offsets, then parsed by our code (and our packing read back at those offsets).
2. QEMU 11's own client: sessions recorded byte for byte by ``tests/record_wire.py``
   (``tests/fixtures/wire/``), parsed here and replayed against our server over a
   real socket, no QEMU needed. QEMU accepted every reply in the recording, so a
   server that answers differently now has changed what QEMU sees.
"""

from __future__ import annotations

import array
import json
import os
import socket
import struct
from pathlib import Path

import pytest

from tests.conftest import ThreadedServer
from tests.wirecap import Chunk, load
from vfio_bridge.client import sealed_memfd
from vfio_bridge.protocol import (
    DeviceInfo,
    DmaAccess,
    DmaMap,
    DmaUnmap,
    Header,
    IrqInfo,
    IrqSet,
    MessageReader,
    RegionAccess,
    RegionInfo,
    Version,
    VfioCommand,
    access_reply,
    access_request,
    frame,
)

FIXTURES = Path(__file__).parent / "fixtures" / "wire"
RECORDINGS = sorted(FIXTURES.glob("*.jsonl.gz"))


def put(layout: list[tuple[int, str, int]], total: int) -> bytes:
    """Bytes with each ``(offset, struct format, value)`` of ``layout`` in place."""
    out = bytearray(total)
    for offset, fmt, value in layout:
        struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


# --- 1. the specification's offsets --------------------------------------------


def test_header_layout() -> None:
    # msg_id u16 @0, command u16 @2, message size u32 @4, flags u32 @8, error u32 @12;
    # flags: type in bits 0-3 (0 command, 1 reply), no_reply bit 4, error bit 5.
    raw = put(
        [(0, "H", 0x1234), (2, "H", 9), (4, "I", 40), (8, "I", 1 | 1 << 5), (12, "I", 22)], 16
    )
    header = Header.unpack(raw)
    assert (header.msg_id, header.command, header.size, header.error) == (0x1234, 9, 40, 22)
    assert header.is_reply and header.is_error and not header.no_reply
    assert Header.unpack(put([(4, "I", 16), (8, "I", 1 << 4)], 16)).no_reply
    built = frame(7, VfioCommand.REGION_WRITE, b"abc", flags=1 << 4)
    assert struct.unpack_from("<HHIII", built) == (7, 10, 16 + 3, 1 << 4, 0)


def test_version_layout() -> None:
    # major u16 @0, minor u16 @2, JSON capabilities (NUL-terminated) @4.
    body = put([(0, "H", 0), (2, "H", 2)], 4) + b'{"capabilities":{"max_msg_fds":8}}\0'
    version = Version.unpack(body)
    assert (version.major, version.minor) == (0, 2)
    assert version.capabilities == {"capabilities": {"max_msg_fds": 8}}
    packed = Version(0, 1, {"capabilities": {}}).pack()
    assert struct.unpack_from("<HH", packed) == (0, 1) and packed.endswith(b"\0")


def test_dma_map_and_unmap_layout() -> None:
    # DMA_MAP: argsz u32 @0, flags u32 @4, offset u64 @8, address u64 @16, size u64 @24.
    raw = put(
        [(0, "I", 32), (4, "I", 3), (8, "Q", 0x1000), (16, "Q", 0xC0000), (24, "Q", 0x20000)], 32
    )
    dma_map = DmaMap.unpack(raw)
    assert (dma_map.argsz, dma_map.flags) == (32, 3)
    assert (dma_map.offset, dma_map.iova, dma_map.size) == (0x1000, 0xC0000, 0x20000)
    assert DmaMap(32, 1, 0x10, 0x20, 0x30).pack() == put(
        [(0, "I", 32), (4, "I", 1), (8, "Q", 0x10), (16, "Q", 0x20), (24, "Q", 0x30)], 32
    )
    # DMA_UNMAP: argsz u32 @0, flags u32 @4, address u64 @8, size u64 @16.
    raw = put([(0, "I", 24), (4, "I", 0), (8, "Q", 0xC0000), (16, "Q", 0x20000)], 24)
    unmap = DmaUnmap.unpack(raw)
    assert (unmap.argsz, unmap.flags, unmap.iova, unmap.size) == (24, 0, 0xC0000, 0x20000)


def test_device_region_and_irq_info_layouts() -> None:
    # DEVICE_GET_INFO: argsz @0, flags @4, num_regions @8, num_irqs @12 (u32 each).
    assert DeviceInfo(16, 3, 9, 5).pack() == put(
        [(0, "I", 16), (4, "I", 3), (8, "I", 9), (12, "I", 5)], 16
    )
    # GET_REGION_INFO: argsz u32 @0, flags @4, index @8, cap_offset @12, size u64 @16,
    # offset u64 @24.
    raw = put([(0, "I", 32), (8, "I", 7)], 32)
    assert RegionInfo.unpack(raw).index == 7
    reply = RegionInfo(32, 3, 7, 0, 4096, 0).pack()
    assert struct.unpack_from("<IIIIQQ", reply) == (32, 3, 7, 0, 4096, 0)
    # GET_IRQ_INFO: argsz @0, flags @4, index @8, count @12.
    info = IrqInfo.unpack(put([(0, "I", 16), (4, "I", 0), (8, "I", 2), (12, "I", 0)], 16))
    assert (info.argsz, info.index) == (16, 2)
    assert IrqInfo(16, 7, 2, 17).pack() == put(
        [(0, "I", 16), (4, "I", 7), (8, "I", 2), (12, "I", 17)], 16
    )


def test_set_irqs_layout() -> None:
    # argsz @0, flags @4, index @8, start @12, count @16 (u32 each), data @20.
    raw = put([(0, "I", 22), (4, "I", 0x24), (8, "I", 2), (12, "I", 3), (16, "I", 2)], 20) + b"\1\0"
    request = IrqSet.unpack(raw)
    assert (request.argsz, request.flags, request.index, request.start, request.count) == (
        22, 0x24, 2, 3, 2,
    )  # fmt: skip
    assert request.data == b"\1\0"


def test_region_and_dma_access_layouts() -> None:
    # REGION_READ/WRITE: offset u64 @0, region u32 @8, count u32 @12, data @16.
    raw = put([(0, "Q", 0x1008), (8, "I", 0), (12, "I", 4)], 16) + b"\x01\x00\x00\x00"
    access = RegionAccess.unpack(raw, with_data=True)
    assert (access.offset, access.region, access.count, access.data) == (0x1008, 0, 4, b"\1\0\0\0")
    assert RegionAccess(0x10, 7, 4).pack() == put([(0, "Q", 0x10), (8, "I", 7), (12, "I", 4)], 16)
    # DMA_READ/WRITE: address u64 @0, count u64 @8, data @16.
    assert DmaAccess(0x200000, 64).pack() == put([(0, "Q", 0x200000), (8, "Q", 64)], 16)
    reply = DmaAccess.unpack(put([(0, "Q", 0x300000), (8, "Q", 2)], 16) + b"ab", with_data=True)
    assert (reply.addr, reply.count, reply.data) == (0x300000, 2, b"ab")


def test_the_hot_paths_region_access_request_and_reply_layouts() -> None:
    # A whole message: the header (msg_id @0, command @2, size @4, flags @8, error @12),
    # then the access (offset u64 @16, region u32 @24, count u32 @28, data @32).
    write = put(
        [(0, "H", 5), (2, "H", 10), (4, "I", 36), (8, "I", 1 << 4), (16, "Q", 0x40),
         (24, "I", 2), (28, "I", 4)], 32,
    ) + b"wxyz"  # fmt: skip
    assert access_request(write, len(write)) == (5, 10, 1 << 4, 0x40, 2, 4, b"wxyz")
    read = put([(0, "H", 6), (2, "H", 9), (4, "I", 32), (16, "Q", 0x44), (28, "I", 8)], 32)
    assert access_request(read, len(read)) == (6, 9, 0, 0x44, 0, 8, b"")
    # The reply: type 1 (reply) in the flags, the access echoed, a read's data after it.
    assert access_reply(5, 10, 0x40, 2, 4) == put(
        [(0, "H", 5), (2, "H", 10), (4, "I", 32), (8, "I", 1), (16, "Q", 0x40), (24, "I", 2),
         (28, "I", 4)], 32,
    )  # fmt: skip
    assert (
        access_reply(6, 9, 0x44, 0, 2, b"hi")
        == put(
            [(0, "H", 6), (2, "H", 9), (4, "I", 34), (8, "I", 1), (16, "Q", 0x44), (28, "I", 2)], 32
        )
        + b"hi"
    )


# --- 2. QEMU 11's client, recorded --------------------------------------------------


def _messages(chunks: list[Chunk], to_server: bool) -> list[tuple[Header, bytes]]:
    stream = b"".join(c.data for c in chunks if c.to_server == to_server)
    out = []
    pos = 0
    while pos < len(stream):
        header = Header.unpack(stream[pos : pos + 16])
        out.append((header, stream[pos + 16 : pos + header.size]))
        pos += header.size
    assert pos == len(stream), "a message is cut short"
    return out


def test_recordings_are_there_and_cover_every_message_kind_qemu_uses() -> None:
    assert {p.name for p in RECORDINGS} >= {
        "edu-shared.jsonl.gz", "edu-messages.jsonl.gz", "window-edu.jsonl.gz",
    }  # fmt: skip
    seen: set[tuple[str, str]] = set()
    for path in RECORDINGS:
        description, chunks = load(path)
        assert str(description["qemu"]).startswith("11.")
        for to_server in (True, False):
            for header, _ in _messages(chunks, to_server):
                side = "client" if to_server != header.is_reply else "server"
                seen.add((side, VfioCommand(header.command).name))
    assert seen == {
        *(("client", name) for name in (
            "VERSION", "DMA_MAP", "DMA_UNMAP", "DEVICE_GET_INFO", "DEVICE_GET_REGION_INFO",
            "DEVICE_GET_IRQ_INFO", "DEVICE_SET_IRQS", "REGION_READ", "REGION_WRITE",
            "DEVICE_RESET",
        )),
        ("server", "DMA_READ"), ("server", "DMA_WRITE"),
    }  # fmt: skip


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name.split(".")[0])
def test_qemu_requests_parse_and_agree_with_the_spec_offsets(path: Path) -> None:
    description, chunks = load(path)
    reader = MessageReader(1 << 20, 16)
    messages = []
    for chunk in (c for c in chunks if c.to_server):
        messages += reader.feed(chunk.data)  # descriptors were recorded by kind only
    kinds = [VfioCommand(m.header.command) for m in messages if not m.header.is_reply]
    bulk_config_reads = 0
    bulk_config_reads = 0
    assert kinds[0] == VfioCommand.VERSION  # negotiated first, as the spec requires
    for message in messages:
        body = message.body
        command = message.header.command
        if message.header.is_reply:
            continue
        if command == VfioCommand.VERSION:
            caps = Version.unpack(body).capabilities["capabilities"]
            assert caps["max_msg_fds"] > 0 and caps["max_data_xfer_size"] > 0
        elif command == VfioCommand.DMA_MAP:
            parsed = DmaMap.unpack(body)
            at_offsets = struct.unpack_from("<IIQQQ", body)
            assert at_offsets == (
                parsed.argsz,
                parsed.flags,
                parsed.offset,
                parsed.iova,
                parsed.size,
            )
            assert parsed.argsz == 32 and parsed.flags & 0x3 and parsed.size % 4096 == 0
        elif command in (VfioCommand.REGION_READ, VfioCommand.REGION_WRITE):
            access = RegionAccess.unpack(body, with_data=command == VfioCommand.REGION_WRITE)
            assert (access.offset, access.region, access.count) == struct.unpack_from("<QII", body)
            # BAR accesses are CPU-sized; QEMU reads config space in bulk at realize.
            assert access.region == 7 or access.count in (1, 2, 4, 8)
            bulk_config_reads += access.region == 7 and access.count == 4096
        elif command == VfioCommand.DEVICE_GET_REGION_INFO:
            assert RegionInfo.unpack(body).index == struct.unpack_from("<I", body, 8)[0]
    assert bulk_config_reads >= 1
    maps = [DmaMap.unpack(m.body) for m in messages if m.header.command == VfioCommand.DMA_MAP]
    # q35's low RAM starts at guest address 0: QEMU maps it (in pieces) from there.
    assert min(m.iova for m in maps) == 0
    posted = [m for m in messages if m.header.no_reply]
    assert posted and all(m.header.command == VfioCommand.REGION_WRITE for m in posted)
    if not description["shared_memory"]:
        replies = _messages(chunks, True)
        assert any(h.is_reply and h.command == VfioCommand.DMA_READ for h, _ in replies)


def _fresh_fds(chunk: Chunk) -> list[int]:
    """New descriptors of the kinds recorded: memfds big enough for any DMA_MAP in the
    chunk (which map carried which fd is not recorded), eventfds for interrupts."""
    sizes = []
    pos = 0
    while pos < len(chunk.data):
        header = Header.unpack(chunk.data[pos : pos + 16])
        if header.command == VfioCommand.DMA_MAP and not header.is_reply:
            mapped = DmaMap.unpack(chunk.data[pos + 16 : pos + header.size])
            sizes.append(mapped.offset + mapped.size)
        pos += header.size
    fds = []
    for kind in chunk.fd_kinds:
        if kind == "memfd":
            fd = sealed_memfd("replay", max(sizes, default=1 << 20))  # sparse: costs no memory
        elif kind == "eventfd":
            fd = os.eventfd(0)
        else:
            raise AssertionError(f"recorded descriptor of kind {kind}")
        fds.append(fd)
    return fds


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            raise AssertionError(f"server closed after {len(data)} of {size} bytes")
        data += piece
    return data


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name.split(".")[0])
def test_server_answers_the_recorded_qemu_session_byte_for_byte(
    path: Path, sockdir: Path, tmp_path: Path
) -> None:
    description, chunks = load(path)
    server = ThreadedServer(
        str(description["model"]), sockdir, tmp_path / "replay.jsonl", tuple(description["options"])
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(str(server.socket_path))
        for number, chunk in enumerate(chunks):
            if chunk.to_server:
                fds = _fresh_fds(chunk)
                try:
                    rights = array.array("i", fds)
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)] if fds else []
                    sock.sendmsg([chunk.data], ancillary)
                finally:
                    for fd in fds:
                        os.close(fd)
            else:
                got = _recv_exactly(sock, len(chunk.data))
                assert got == chunk.data, (
                    f"chunk {number}: {_describe(got)} != {_describe(chunk.data)}"
                )
    finally:
        sock.close()
        server.stop()


def _describe(data: bytes) -> str:
    header = Header.unpack(data[:16])
    body = data[16 : header.size]
    try:
        text = json.dumps(Version.unpack(body).capabilities) if header.command == 1 else body.hex()
    except Exception:
        text = body.hex()
    return f"{VfioCommand(header.command).name} flags {header.flags:#x} error {header.error} {text}"
