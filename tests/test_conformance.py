"""Protocol conformance over a real socket, in raw bytes laid out as the specification says.

Offsets come from QEMU's ``docs/interop/vfio-user.rst``, not from our packing
code: header = msg_id u16 @0, command u16 @2, message size u32 @4, flags u32
@8 (bits 0-3 type, 1 = reply; bit 4 No_reply; bit 5 Error), error u32 @12;
VERSION = major u16 @0, minor u16 @2, NUL-terminated JSON @4; REGION_READ/
WRITE = offset u64 @0, region u32 @8, count u32 @12, data @16; DMA_READ/
WRITE = address u64 @0, count u64 @8, data @16.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ThreadedServer
from vfio_bridge.client import VfioUserClient
from vfio_bridge.protocol import Message
from vfio_bridge.server import HANDOVER_GRACE

VERSION, REGION_READ, REGION_WRITE, DMA_READ = 1, 9, 10, 11
DIRTY_PAGES, DEVICE_FEATURE, MIG_DATA_READ, MIG_DATA_WRITE = 14, 16, 17, 18
REPLY, NO_REPLY, ERROR = 0x1, 0x10, 0x20
BAR0, BAR1, CONFIG = 0, 1, 7
EDU_IDS = struct.pack("<HH", 0x1234, 0x11E8)


class Raw:
    """A client that writes and reads the wire by hand."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(HANDOVER_GRACE + 5)
        self.sock.connect(path)

    def send(self, msg_id: int, command: int, body: bytes = b"", flags: int = 0) -> None:
        self.sock.sendall(struct.pack("<HHIII", msg_id, command, 16 + len(body), flags, 0) + body)

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError("server closed the connection")
            data += chunk
        return data

    def receive(self) -> tuple[tuple[int, int, int, int, int], bytes]:
        """((msg_id, command, size, flags, error), body) of the next message."""
        header = struct.unpack("<HHIII", self._exactly(16))
        return header, self._exactly(header[2] - 16)

    def negotiate(self, capabilities: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps({"capabilities": capabilities}).encode() + b"\0"
        self.send(0, VERSION, struct.pack("<HH", 0, 0) + text)
        (msg_id, command, _, flags, _), body = self.receive()
        assert (msg_id, command, flags) == (0, VERSION, REPLY)
        return json.loads(body[4:].split(b"\0", 1)[0])["capabilities"]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(edu_server: ThreadedServer) -> Iterator[Raw]:
    client = Raw(str(edu_server.socket_path))
    yield client
    client.close()


def region(offset: int, index: int, count: int, data: bytes = b"") -> bytes:
    return struct.pack("<QII", offset, index, count) + data


def test_a_failed_request_with_no_reply_gets_no_reply(raw: Raw) -> None:
    raw.negotiate({})
    raw.send(10, REGION_WRITE, region(0, BAR1, 4, bytes(4)), NO_REPLY)  # edu has no BAR1
    raw.send(11, 99, b"", NO_REPLY)  # no such command
    raw.send(12, REGION_READ, region(0, CONFIG, 4))
    (msg_id, command, size, flags, err), body = raw.receive()
    assert (msg_id, command, size, flags, err) == (12, REGION_READ, 16 + 16 + 4, REPLY, 0)
    assert body[16:20] == EDU_IDS


def test_server_advertises_its_own_transfer_size(raw: Raw) -> None:
    caps = raw.negotiate({"max_data_xfer_size": 1024})
    assert caps["max_data_xfer_size"] == 1 << 20  # ours, not the client's 1 KiB
    raw.send(1, REGION_READ, region(0, CONFIG, 2048))
    (msg_id, _, size, flags, err), body = raw.receive()
    assert (msg_id, size, flags, err) == (1, 16 + 16 + 2048, REPLY, 0)
    assert struct.unpack_from("<QII", body) == (0, CONFIG, 2048)
    assert body[16:20] == EDU_IDS


class CountingClient(VfioUserClient):
    """Our client, noting the count (u64 @8) of every DMA_READ the server sends it."""

    counts: list[int]

    def _serve(self, message: Message) -> None:
        if message.header.command == DMA_READ:
            self.counts.append(struct.unpack_from("<Q", message.body, 8)[0])
        super()._serve(message)


def test_dma_requests_respect_the_client_transfer_size(edu_server: ThreadedServer) -> None:
    with CountingClient(edu_server.socket_path) as client:
        client.counts = []
        client.negotiate({"capabilities": {"max_data_xfer_size": 1024}})
        client.region_write(CONFIG, 0x04, (0x6).to_bytes(2, "little"))  # bus master
        memory = client.map_memory(0x200000, 0x2000, shared=False)
        payload = bytes(range(256)) * 12
        memory.write(0x200000, payload)
        client.write64(BAR0, 0x80, 0x200000)  # edu DMA: source
        client.write64(BAR0, 0x88, 0x40000)  # destination: edu's buffer
        client.write64(BAR0, 0x90, len(payload))
        client.write64(BAR0, 0x98, 0x1)  # start, RAM to device
        for _ in range(100):
            if not client.read64(BAR0, 0x98) & 1:
                break
        assert client.region_read(BAR0, 0x40000, len(payload)) == payload
        counts = client.counts
    assert counts and max(counts) <= 1024 and sum(counts) == len(payload)


@pytest.mark.parametrize("command", [DIRTY_PAGES, DEVICE_FEATURE, MIG_DATA_READ, MIG_DATA_WRITE])
def test_migration_commands_are_refused_with_einval(raw: Raw, command: int) -> None:
    raw.negotiate({})
    raw.send(5, command, struct.pack("<II", 8, 0))  # argsz, flags
    (msg_id, got, size, flags, err), _ = raw.receive()
    assert (msg_id, got, size, flags, err) == (5, command, 16, REPLY | ERROR, errno.EINVAL)


def test_out_of_range_access_is_einval(raw: Raw) -> None:
    raw.negotiate({})
    raw.send(6, REGION_READ, region(4096, CONFIG, 4))
    (msg_id, _, size, flags, err), _ = raw.receive()
    assert (msg_id, size, flags, err) == (6, 16, REPLY | ERROR, errno.EINVAL)


def test_a_second_client_is_refused_while_one_is_served(
    edu_server: ThreadedServer, client: VfioUserClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vfio_bridge.server")
    second = Raw(str(edu_server.socket_path))
    try:
        second.send(0x1234, VERSION, struct.pack("<HH", 0, 0) + b"{}\0")
        header, _ = second.receive()
        assert header == (0x1234, VERSION, 16, REPLY | ERROR, errno.EBUSY)
        with pytest.raises(EOFError):
            second.receive()  # and disconnected
    finally:
        second.close()
    assert client.read32(BAR0, 0) == 0x010000ED  # the first client never noticed
    assert "one client at a time" in caplog.text
    assert edu_server.server.refused == 1
    assert edu_server.server.connections == 1
