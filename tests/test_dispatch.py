"""The session's sans-I/O parts without a socket: dispatcher, interrupts, regions, host bus.

Wire expectations are written from the byte offsets of QEMU's
``docs/interop/vfio-user.rst`` (header: msg_id u16 @0, command u16 @2, size
u32 @4, flags u32 @8, error u32 @12; REGION_READ/WRITE: offset u64 @0,
region u32 @8, count u32 @12, data @16 after the header), not from our
packing code.
"""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path

import pytest

from tests.conftest import read_log
from vfio_bridge import regions
from vfio_bridge.device import DmaError, IrqType
from vfio_bridge.device.hosting import DeferredWork, gather, scatter
from vfio_bridge.dispatch import Dispatcher
from vfio_bridge.hostbus import HostBus
from vfio_bridge.interrupts import Interrupts
from vfio_bridge.models.edu import Edu
from vfio_bridge.protocol import Header, IrqIndex, IrqSetFlags, Message, access_request
from vfio_bridge.recorder import Recorder
from vfio_bridge.regions import split

VERSION, REGION_READ, REGION_WRITE, SET_IRQS = 1, 9, 10, 8
REPLY, NO_REPLY, ERROR = 0x1, 0x10, 0x20
CONFIG, BAR0 = 7, 0


class Fixture:
    """A dispatcher for edu with interrupts that land in a list instead of eventfds."""

    def __init__(self, log: Path | None = None, **options: int) -> None:
        self.model = Edu()
        self.notified: list[int] = []
        self.interrupts = Interrupts(self.model, notify=self.notified.append)
        self.recorder = Recorder(log)
        self.bus = HostBus(self.model, self.recorder, self.interrupts)
        self.dispatcher = Dispatcher(
            self.model, self.recorder, self.bus, self.interrupts, **options
        )
        self.model.attach(self.bus)

    def send(
        self, msg_id: int, command: int, body: bytes, flags: int = 0, fds: list[int] | None = None
    ) -> tuple[bytes, list[int]] | None:
        header = Header(msg_id, command, 16 + len(body), flags)
        return self.dispatcher.handle(Message(header, body, fds or []))

    def negotiate(self) -> dict:
        reply = self.send(0, VERSION, struct.pack("<HH", 0, 0) + b'{"capabilities":{}}\0')
        assert reply is not None
        return json.loads(reply[0][20:].rstrip(b"\0"))["capabilities"]


def access(offset: int, region: int, count: int, data: bytes = b"") -> bytes:
    return struct.pack("<QII", offset, region, count) + data


def reply_header(reply: bytes) -> tuple[int, int, int, int, int]:
    return struct.unpack_from("<HHIII", reply)


def hot_access(
    dispatcher: Dispatcher, msg_id: int, command: int, body: bytes, flags: int = 0
) -> bytes | None:
    """A region access framed, parsed by access_request and answered by region_access."""
    message = struct.pack("<HHIII", msg_id, command, 16 + len(body), flags, 0) + body
    parsed = access_request(message, len(message))
    assert parsed is not None
    return dispatcher.region_access(*parsed)


@pytest.fixture
def fx() -> Fixture:
    return Fixture()


def test_region_read_reply_bytes(fx: Fixture) -> None:
    fx.negotiate()
    reply = fx.send(7, REGION_READ, access(0, CONFIG, 4))
    assert reply is not None
    data, fds = reply
    assert fds == []
    assert reply_header(data) == (7, REGION_READ, 16 + 16 + 4, REPLY, 0)
    assert struct.unpack_from("<QII", data, 16) == (0, CONFIG, 4)
    assert data[32:36] == struct.pack("<HH", 0x1234, 0x11E8)  # edu's vendor, device ids


def test_requests_before_version_get_einval(fx: Fixture) -> None:
    reply = fx.send(3, REGION_READ, access(0, CONFIG, 4))
    assert reply is not None
    assert reply_header(reply[0]) == (3, REGION_READ, 16, REPLY | ERROR, errno.EINVAL)


def test_posted_write_is_applied_without_a_reply(fx: Fixture) -> None:
    fx.negotiate()
    assert fx.send(1, REGION_WRITE, access(4, BAR0, 4, b"\x01\0\0\0"), NO_REPLY) is None
    reply = fx.send(2, REGION_READ, access(4, BAR0, 4))
    assert reply is not None and reply[0][32:36] == b"\xfe\xff\xff\xff"


def test_write_reply_echoes_the_access_without_data(fx: Fixture) -> None:
    fx.negotiate()
    reply = fx.send(5, REGION_WRITE, access(4, BAR0, 4, bytes(4)))
    assert reply is not None
    assert reply_header(reply[0]) == (5, REGION_WRITE, 32, REPLY, 0)
    assert reply[0][16:] == access(4, BAR0, 4)


# Region accesses of every outcome: aligned and split, config space, posted, and
# each refusal (no such region, outside it, too big, a write whose data does not
# match its count), some of them before VERSION.
ACCESSES = [
    (REGION_READ, access(0, BAR0, 4), 0),
    (REGION_READ, access(0, CONFIG, 2), 0),
    (REGION_READ, access(0, CONFIG, 64), 0),
    (REGION_READ, access(2, BAR0, 8), 0),  # cut into 2+4+2
    (REGION_READ, access(0, BAR0, 4) + b"extra", 0),  # bytes after a read's fixed part
    (REGION_WRITE, access(4, BAR0, 4, b"\x5a\0\0\0"), 0),
    (REGION_WRITE, access(4, BAR0, 4, b"\x11\0\0\0"), NO_REPLY),
    (REGION_WRITE, access(3, BAR0, 3, b"abc"), 0),
    (REGION_WRITE, access(0x40000, BAR0, 16, bytes(range(16))), 0),  # the DMA buffer
    (REGION_WRITE, access(0x04, CONFIG, 2, b"\x06\0"), NO_REPLY),
    (REGION_READ, access(0, 6, 4), 0),
    (REGION_READ, access(0xFFFFC, BAR0, 8), 0),
    (REGION_READ, access(0, BAR0, 0), 0),
    (REGION_READ, access(0, BAR0, 2 << 20), 0),
    (REGION_WRITE, access(4, BAR0, 4, b"\x01"), 0),
    (REGION_WRITE, access(4, BAR0, 4, b"\x01"), NO_REPLY),
    (REGION_READ, access(0x40000, BAR0, 16), 0),
    (REGION_READ, access(4, BAR0, 4), 0),
]


def test_the_hot_path_answers_and_records_as_the_general_path(tmp_path: Path) -> None:
    """Dispatcher.region_access (fed by access_request) against Dispatcher.handle:
    the same replies, the same log events and the same device state, refusals included."""
    general, hot = Fixture(tmp_path / "general.jsonl"), Fixture(tmp_path / "hot.jsonl")
    general_replies, hot_replies = [], []
    for step, (command, body, flags) in enumerate(ACCESSES * 2):
        if step == 3:  # the first three before VERSION: refused
            general.negotiate()
            hot.negotiate()
        reply = general.send(step, command, body, flags)
        general_replies.append(None if reply is None else reply[0])
        hot_replies.append(hot_access(hot.dispatcher, step, command, body, flags))
    assert hot_replies == general_replies
    assert any(r is not None and r[8] & ERROR for r in hot_replies)  # refusals compared too
    general.recorder.close()
    hot.recorder.close()
    _, general_events, _ = read_log(tmp_path / "general.jsonl")
    _, hot_events, _ = read_log(tmp_path / "hot.jsonl")
    for event in general_events + hot_events:
        del event["t_ns"]
    assert hot_events == general_events
    assert {e["kind"] for e in hot_events} >= {
        "mmio_read",
        "mmio_write",
        "cfg_read",
        "device_error",
    }


def _serve_twice(log: Path) -> list[bytes | None]:
    """ACCESSES twice through the hot path (after VERSION): the replies, log in ``log``."""
    fx = Fixture(log)
    fx.negotiate()
    replies = []
    for step, (command, body, flags) in enumerate(ACCESSES * 2):
        replies.append(hot_access(fx.dispatcher, step, command, body, flags))
    fx.recorder.close()
    return replies


def test_kept_access_plans_answer_and_record_as_plans_made_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _serve_twice(tmp_path / "kept.jsonl")
    monkeypatch.setattr(regions, "PLAN_LIMIT", 0)  # every access planned anew
    fresh = _serve_twice(tmp_path / "fresh.jsonl")
    assert kept == fresh
    events = {}
    for name in ("kept", "fresh"):
        _, events[name], _ = read_log(tmp_path / f"{name}.jsonl")
        for event in events[name]:
            del event["t_ns"]
    assert events["kept"] == events["fresh"]
    # A refused access has no plan to keep: the second pass is refused as the first.
    refused = [e["detail"] for e in events["kept"] if e["kind"] == "device_error"]
    half = len(refused) // 2
    assert half >= 5 and refused[:half] == refused[half:]


def test_accesses_are_recorded_with_their_kind_and_pieces(tmp_path: Path) -> None:
    """What each kind of plan writes to the log: a register read and write, a config
    write, and a 4-byte read that is not aligned (two 2-byte pieces, as a CPU cuts it)."""
    fx = Fixture(tmp_path / "log.jsonl")
    fx.negotiate()
    dma_src = (0x1122334455667788).to_bytes(8, "little")
    for msg_id, command, body in (
        (1, REGION_READ, access(0x00, BAR0, 4)),
        (2, REGION_WRITE, access(0x80, BAR0, 8, dma_src)),
        (3, REGION_WRITE, access(0x04, CONFIG, 2, b"\x06\x00")),
        (4, REGION_READ, access(0x82, BAR0, 4)),
        (5, REGION_WRITE, access(0x86, BAR0, 4, b"\xaa\xbb\xcc\xdd")),
    ):
        reply = hot_access(fx.dispatcher, msg_id, command, body)
        assert reply is not None and not reply[8] & ERROR
        if msg_id == 4:  # bytes 2-5 of dma_src
            assert reply[32:] == dma_src[2:6]
    fx.recorder.close()
    _, events, _ = read_log(tmp_path / "log.jsonl")
    accesses = [
        (e["kind"], e.get("bar"), e["offset"], e["size"])
        for e in events
        if e["kind"].startswith(("mmio", "cfg"))
    ]
    assert accesses == [
        ("mmio_read", 0, 0x00, 4),
        ("mmio_write", 0, 0x80, 8),
        ("cfg_write", None, 0x04, 2),
        ("mmio_read", 0, 0x82, 2),
        ("mmio_read", 0, 0x84, 2),
        ("mmio_write", 0, 0x86, 2),
        ("mmio_write", 0, 0x88, 2),
    ]


@pytest.mark.parametrize(
    ("body", "command", "detail"),
    [
        (access(0, 9, 4), REGION_READ, "region 9 does not exist"),
        (access(0, 12, 4), REGION_READ, "region 12 does not exist"),
        (access(0, BAR0, 65), REGION_READ, "access of 65 bytes exceeds the transfer limit"),
        (
            access(0xFFFFE, BAR0, 4),
            REGION_READ,
            "access 0xffffe+4 outside region 0 of 0x100000 bytes",
        ),
        (access(4, BAR0, 4, b"\x01"), REGION_WRITE, "REGION_WRITE announces 4 bytes but carries 1"),
        (
            access(4, CONFIG, 2, b"\x01"),
            REGION_WRITE,
            "REGION_WRITE announces 2 bytes but carries 1",
        ),
        (access(3, BAR0, 4, b"\x01"), REGION_WRITE, "REGION_WRITE announces 4 bytes but carries 1"),
    ],
)
def test_a_refused_access_is_logged_with_what_was_wrong(
    tmp_path: Path, body: bytes, command: int, detail: str
) -> None:
    fx = Fixture(tmp_path / "log.jsonl", max_data_xfer=64)
    fx.negotiate()
    reply = fx.send(1, command, body)
    assert reply is not None and reply_header(reply[0])[3] == REPLY | ERROR
    fx.recorder.close()
    _, events, _ = read_log(tmp_path / "log.jsonl")
    (refusal,) = [e for e in events if e["kind"] == "device_error"]
    assert refusal["detail"] == f"command {command}: {detail}"


def test_an_access_may_end_at_the_last_byte_of_its_region(fx: Fixture) -> None:
    fx.negotiate()
    reply = fx.send(1, REGION_READ, access(0xFFFFC, BAR0, 4))
    assert reply is not None and reply_header(reply[0]) == (1, REGION_READ, 16 + 16 + 4, REPLY, 0)


def test_access_plans_are_kept_up_to_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regions, "PLAN_LIMIT", 3)
    fx = Fixture()
    fx.negotiate()
    buffer = 0x40000  # edu's DMA buffer: any offset is memory
    for offset in range(0, 40, 4):
        assert fx.send(offset, REGION_WRITE, access(buffer + offset, BAR0, 4, bytes([offset] * 4)))
    for offset in range(0, 40, 4):  # past the limit, the accesses still land and read back
        reply = fx.send(offset, REGION_READ, access(buffer + offset, BAR0, 4))
        assert reply is not None and reply[0][32:] == bytes([offset] * 4)
    assert len(fx.dispatcher.regions.plans) == 3


def test_a_smaller_transfer_limit_is_advertised_and_enforced() -> None:
    fx = Fixture(max_data_xfer=64)
    assert fx.negotiate()["max_data_xfer_size"] == 64
    reply = fx.send(1, REGION_READ, access(0, CONFIG, 64))
    assert reply is not None and reply_header(reply[0]) == (1, REGION_READ, 16 + 16 + 64, REPLY, 0)
    for msg_id, body in ((2, access(0, CONFIG, 65)), (3, access(0, BAR0, 65, bytes(65)))):
        command = REGION_READ if msg_id == 2 else REGION_WRITE
        reply = fx.send(msg_id, command, body)
        assert reply is not None
        assert reply_header(reply[0]) == (msg_id, command, 16, REPLY | ERROR, errno.E2BIG)


@pytest.mark.parametrize("limit", [0, (1 << 20) + 1])
def test_a_transfer_limit_beyond_the_message_limit_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="max_data_xfer"):
        Fixture(max_data_xfer=limit)


def test_unasked_reply_is_dropped_and_its_descriptors_closed(fx: Fixture) -> None:
    fd = os.eventfd(0)
    assert fx.send(9, REGION_READ, access(0, CONFIG, 4), REPLY, [fd]) is None
    with pytest.raises(OSError):
        os.fstat(fd)


def test_odd_accesses_are_cut_into_aligned_pieces() -> None:
    assert split(0, 8) == [(0, 8)]
    assert split(1, 3) == [(1, 1), (2, 2)]
    assert split(6, 8) == [(6, 2), (8, 4), (12, 2)]
    assert split(0, 24) == [(0, 8), (8, 8), (16, 8)]


def test_interrupts_in_a_burst_are_held_and_signalled_once(fx: Fixture) -> None:
    fx.interrupts.eventfds[(IrqIndex.MSI, 0)] = 42  # never written: notify is a list
    fx.interrupts.in_burst = True
    assert fx.bus.signal_irq(IrqType.MSI, 0)
    assert fx.bus.signal_irq(IrqType.MSI, 0)
    assert fx.notified == []
    fx.interrupts.in_burst = False
    fx.interrupts.flush()
    assert fx.notified == [42]
    assert not fx.interrupts.pending


def test_intx_is_automasked_until_unmasked(fx: Fixture) -> None:
    fx.negotiate()
    fx.interrupts.eventfds[(IrqIndex.INTX, 0)] = 43
    assert fx.interrupts.signal(IrqType.INTX, 0)
    assert not fx.interrupts.signal(IrqType.INTX, 0)  # masked by the first
    unmask = int(IrqSetFlags.DATA_NONE | IrqSetFlags.ACTION_UNMASK)
    assert fx.send(4, SET_IRQS, struct.pack("<IIIII", 20, unmask, IrqIndex.INTX, 0, 1))
    assert fx.interrupts.signal(IrqType.INTX, 0)
    assert fx.notified == [43, 43]


def test_deferred_work_survives_a_fault_and_does_not_nest() -> None:
    faults: list[DmaError] = []
    done: list[str] = []
    work = DeferredWork(faults.append)

    def failing() -> None:
        raise DmaError("unmapped")

    def nesting() -> None:
        work.add(lambda: done.append("inner"))
        work.run()  # joins the running queue instead of recursing
        done.append("outer")

    work.add(failing)
    work.add(nesting)
    work.run()
    assert [str(f) for f in faults] == ["unmapped"]
    assert done == ["outer", "inner"]
    assert len(work) == 0


def test_gather_and_scatter_walk_segments_in_order() -> None:
    memory = bytearray(range(16))

    def read(addr: int, length: int) -> bytes:
        return bytes(memory[addr : addr + length])

    def write(addr: int, data: bytes) -> None:
        memory[addr : addr + len(data)] = data

    assert gather(read, [(8, 2), (0, 3)]) == bytes([8, 9, 0, 1, 2])
    scatter(write, [(12, 2), (1, 1)], b"xyz")
    assert memory[12:14] == b"xy" and memory[1:2] == b"z"
