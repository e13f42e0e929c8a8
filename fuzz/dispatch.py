"""Fuzz target: the server's message framing and dispatch, with real device models.

One input is a short script for a hostile client, decoded by :func:`decode`:

- byte 0 picks the model (edu, nvme, or the VMD window with an NVMe child);
  byte 1 bit 0 maps 64 KiB of real shared memory (a memfd) for DMA, bit 1
  also maps an address range reached through DMA_READ/DMA_WRITE messages
  (which nobody answers here, so those accesses time out as device errors);
- then records ``[command][flags][length u16][body]`` become framed messages,
  except command 0xFE, which writes its body into the shared memory at the
  offset in ``flags`` * 256 (so the fuzzer can lay out queues and descriptors).

The framed bytes reach the real session loop (:meth:`Session.run`) through the
real :class:`~vfio_bridge.transport.SocketChannel`, region-access hot path
included; only the socket under the channel is a stand-in
(:class:`ScriptedSocket`), which plays the script back one receive per message
(byte 1 bit 2: consecutive messages arrive together in one receive, as a burst
does) and keeps the replies. The whole input is also fed raw to a fresh
reader. Allowed outcomes are error replies and :class:`ProtocolError` from the
framing; anything else, a leaked descriptor, or
a device that no longer answers config reads is a crash.

Run it with ``python -m fuzz [libFuzzer flags] [corpus dir]``. Crashing inputs
belong in ``fuzz/regressions/``, which ``tests/test_fuzz.py`` replays.
"""

from __future__ import annotations

import array
import contextlib
import os
import pickle
import socket
import struct
from collections.abc import Iterator, Sequence
from typing import cast

from vfio_bridge.client import sealed_memfd
from vfio_bridge.device import DeviceModel
from vfio_bridge.models import create_model
from vfio_bridge.protocol import (
    DmaMap,
    MessageReader,
    ProtocolError,
    Region,
    RegionAccess,
    Version,
    VfioCommand,
    frame,
)
from vfio_bridge.recorder import Recorder
from vfio_bridge.session import MAX_MESSAGE_SIZE, MAX_MSG_FDS, Session
from vfio_bridge.transport import PeerClosed, SocketChannel

SHARED_IOVA = 0x10_0000
SHARED_SIZE = 64 << 10
MESSAGE_IOVA = 0x20_0000
MESSAGE_SIZE = 64 << 10
#: The server's max_data_xfer_size here: a page, not the default 1 MiB, so that one
#: region access is at most 512 device accesses (a 1 MiB one was 131,072 and held
#: the fuzzer to under 100 inputs/s); the splitting and limit checks are the same code.
MAX_DATA_XFER = 4096
WRITE_MEMORY = 0xFE
_ZEROS = bytes(SHARED_SIZE)
_RECORD = struct.Struct("<BBH")
MODELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("edu", ()),
    ("nvme", ("size=64k",)),
    ("window", ("child_options=size=64k",)),
)


class ScriptedSocket:
    """Stands in for the client's socket under the session's real channel: each
    ``recvmsg_into`` plays back the next message of one input's script (a message
    longer than the receive buffer over several receives, as a stream socket
    does), carrying a fresh duplicate of the shared memory's descriptor where the
    script maps it and doing the script's memory writes before the message that
    follows them; the end of the script is the end of the stream. Replies are kept.
    """

    def __init__(self, script: Iterator[bytes | tuple], memfd: int, bursts: bool) -> None:
        self._script = script
        self._memfd = memfd
        self._bursts = bursts
        self._ahead: bytes | tuple | None = None  # taken from the script, not yet received
        self._unreceived = memoryview(b"")  # the rest of a message longer than the buffer
        self._quiet_r, self._quiet_w = os.pipe()  # a waiting session polls this in vain
        #: The framed replies sent, in order.
        self.replies: list[bytes] = []

    def fileno(self) -> int:
        return self._quiet_r

    def recvmsg_into(
        self, buffers: list[bytearray], ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[tuple[int, int, bytes]], int, None]:
        buffer = buffers[0]
        ancdata: list[tuple[int, int, bytes]] = []
        if not self._unreceived:
            message, fds = self._next_message()
            if message is None:
                return 0, [], 0, None
            if fds:
                ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            self._unreceived = memoryview(message)
        size = min(len(buffer), len(self._unreceived))
        buffer[:size] = self._unreceived[:size]
        self._unreceived = self._unreceived[size:]
        return size, ancdata, 0, None

    def _next_message(self) -> tuple[bytes | None, list[int]]:
        """The next receive's bytes (several messages in a burst) and descriptors."""
        message: bytes | None = None
        while (item := self._take()) is not None:
            if isinstance(item, tuple) and item[0] == "poke":
                if message is not None:  # memory changes after what came before is served
                    self._ahead = item
                    break
                _, offset, body = item
                os.pwrite(self._memfd, body[: max(0, SHARED_SIZE - offset)], offset)
                continue
            if isinstance(item, tuple):  # a message carrying the shared memory's descriptor
                if message is not None:
                    self._ahead = item
                    break
                return item[1], [os.dup(self._memfd)]
            message = item if message is None else message + item
            if not self._bursts:
                break
        return message, []

    def _take(self) -> bytes | tuple | None:
        if self._ahead is not None:
            item, self._ahead = self._ahead, None
            return item
        return next(self._script, None)

    def send(self, data: bytes) -> int:
        self.replies.append(bytes(data))
        return len(data)

    def sendmsg(self, buffers: Sequence[bytes], ancdata: Sequence[tuple[int, int, bytes]]) -> int:
        for _, _, payload in ancdata:  # the server hands out no descriptor the client keeps
            for fd in array.array("i", payload):
                os.close(fd)
        return self.send(b"".join(buffers))

    def close(self) -> None:
        os.close(self._quiet_r)
        os.close(self._quiet_w)


def decode(data: bytes) -> tuple[int, int, list[tuple[int, int, bytes]]]:
    """(model index, setup flags, records) from a fuzz input."""
    if len(data) < 2:
        return 0, 0, []
    model, setup = data[0] % len(MODELS), data[1]
    records = []
    pos = 2
    while pos + _RECORD.size <= len(data):
        command, flags, length = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        body = data[pos : pos + length]
        pos += len(body)
        records.append((command, flags, body))
    return model, setup, records


def _messages(setup: int, records: list[tuple[int, int, bytes]]) -> Iterator[bytes | tuple]:
    yield frame(0, VfioCommand.VERSION, Version(0, 0, {"capabilities": {}}).pack())
    if setup & 1:
        yield (
            "map",
            frame(1, VfioCommand.DMA_MAP, DmaMap(32, 3, 0, SHARED_IOVA, SHARED_SIZE).pack()),
        )
    if setup & 2:
        yield frame(2, VfioCommand.DMA_MAP, DmaMap(32, 3, 0, MESSAGE_IOVA, MESSAGE_SIZE).pack())
    for msg_id, (command, flags, body) in enumerate(records, start=3):
        if command == WRITE_MEMORY:
            yield ("poke", flags * 256, body)
        else:
            # Low flag bits pick NO_REPLY / reply / error, as a hostile client may.
            yield frame(msg_id & 0xFFFF, command % 32, body, flags & 0x33)


class Harness:
    """Holds the shared memory (a memfd) that every input may map for DMA, and the
    models as built, from which each input gets its own fresh copy.

    With ``snapshot`` (the default) each model is built once and every input
    unpickles a copy of that pristine object: the same state a constructor
    leaves, for half to three quarters of its CPU time (8% less per input on a
    grown corpus, see ``bench.fuzz_target``). A reset is no substitute, since a
    device keeps some state across one (the NVMe namespace's blocks, its
    counters), so inputs would see each other.
    ``max_data_xfer`` and ``models`` are for ``bench.fuzz_target``'s comparisons;
    ``python -m fuzz`` uses the defaults.
    """

    def __init__(
        self,
        snapshot: bool = True,
        max_data_xfer: int = MAX_DATA_XFER,
        models: Sequence[tuple[str, tuple[str, ...]]] = MODELS,
    ) -> None:
        self.memfd = sealed_memfd("xvpci-fuzz", SHARED_SIZE)
        self.max_data_xfer = max_data_xfer
        self.models = tuple(models)
        self._pristine = (
            [pickle.dumps(create_model(n, o), pickle.HIGHEST_PROTOCOL) for n, o in self.models]
            if snapshot
            else None
        )
        #: The framed replies the server sent for the last input, in order.
        self.replies: list[bytes] = []

    def run(self, data: bytes) -> None:
        """Execute one input; raises on anything but the defined outcomes."""
        fds_before = _open_fds()
        # Each input starts from zeroed memory, not from what the last one left there
        # (libFuzzer needs an input to behave the same whatever ran before it).
        os.pwrite(self.memfd, _ZEROS, 0)
        model_index, setup, records = decode(data)
        name, options = self.models[model_index]
        model: DeviceModel = (
            pickle.loads(self._pristine[model_index])  # our own bytes, from __init__
            if self._pristine is not None
            else create_model(name, options)
        )
        scripted = ScriptedSocket(_messages(setup, records), self.memfd, bool(setup & 4))
        # (The channel takes any object with the socket methods it calls.)
        channel = SocketChannel(cast(socket.socket, scripted), MAX_MESSAGE_SIZE, MAX_MSG_FDS)
        session = Session(
            model,
            channel,
            Recorder(None),
            reply_timeout=0.0,
            poll_max_us=0,
            max_data_xfer=self.max_data_xfer,
        )
        self.replies = scripted.replies
        try:
            session.run()
        except (PeerClosed, ProtocolError):
            pass  # the end of the script; a malformed stream, on which the server hangs up
        finally:
            session.close()
            channel.close()  # and with it the socket, as the server's channel does
        model.reset()
        if model.config.read(0, 4) != struct.pack("<HH", model.vendor_id, model.device_id):
            raise AssertionError("the device no longer answers config reads after reset")
        raw = MessageReader(MAX_MESSAGE_SIZE, MAX_MSG_FDS)
        with contextlib.suppress(ProtocolError):
            raw.feed(data)
        raw.close()
        leaked = _open_fds() - fds_before
        if leaked:
            raise AssertionError(f"descriptors leaked: {sorted(leaked)}")


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


# --- seeds: inputs that reach deep states, for the fuzzer to mutate -------------------


def _record(command: int, body: bytes, flags: int = 0) -> bytes:
    return _RECORD.pack(command, flags, len(body)) + body


def _write(region: int, offset: int, value: int, size: int = 4) -> bytes:
    access = RegionAccess(offset, region, size, value.to_bytes(size, "little"))
    return _record(VfioCommand.REGION_WRITE, access.pack())


def _read(region: int, offset: int, size: int = 4) -> bytes:
    return _record(VfioCommand.REGION_READ, RegionAccess(offset, region, size).pack())


def _poke(offset: int, data: bytes) -> bytes:
    return _record(WRITE_MEMORY, data, offset // 256)


CONFIG = int(Region.CONFIG)


def _sqe(opcode: int, cid: int, nsid: int = 0, prp: tuple[int, int] = (0, 0), *cdw: int) -> bytes:
    """An NVMe submission queue entry; ``cdw`` are command dwords 10 onwards."""
    dwords = (list(cdw) + [0] * 6)[:6]
    return struct.pack("<BBHIQQQQ6I", opcode, 0, cid, nsid, 0, 0, *prp, *dwords)


def _nvme_bringup(bar_region: int = 0) -> bytes:
    """Enable an NVMe controller with its admin queues in the shared memory."""
    return b"".join(
        [
            _write(CONFIG, 0x04, 0x0006, 2),
            _write(bar_region, 0x24, 0x000F000F),  # AQA: 16-entry admin queues
            _write(bar_region, 0x28, SHARED_IOVA, 8),  # ASQ
            _write(bar_region, 0x30, SHARED_IOVA + 0x1000, 8),  # ACQ
            _write(bar_region, 0x14, 0x00460001),  # CC.EN with 64/16-byte entries
            _read(bar_region, 0x1C),  # CSTS
        ]
    )


def seed_inputs() -> dict[str, bytes]:
    """Named starting inputs: each drives a model into a state worth mutating."""
    edu = bytes([0, 1]) + b"".join(
        [
            _write(CONFIG, 0x04, 0x0006, 2),
            _read(0, 0x00),
            _write(0, 0x08, 10),
            _write(0, 0x20, 0x80),  # interrupt on factorial completion
            _write(0, 0x80, SHARED_IOVA, 8),
            _write(0, 0x88, 0x40000, 8),
            _write(0, 0x90, 0x100, 8),
            _write(0, 0x98, 0x5, 8),  # start, RAM to device, interrupt
            _read(0, 0x24),
        ]
    )
    identify = _sqe(0x06, 1, 0, (SHARED_IOVA + 0x2000, 0), 1)
    # An I/O completion queue far larger than MQES, on an MSI-X vector that does not exist.
    bogus_cq = _sqe(0x05, 2, 0, (SHARED_IOVA + 0x3000, 0), (0xFFFF << 16) | 1, (99 << 16) | 3)
    nvme = bytes([1, 1]) + b"".join(
        [
            _poke(0, identify + bogus_cq),
            _nvme_bringup(),
            _write(0, 0x1000, 2),  # admin SQ tail doorbell
            _read(0, 0x1C),
        ]
    )
    create_queues = _sqe(0x05, 3, 0, (SHARED_IOVA + 0x3000, 0), (3 << 16) | 1, 1)
    create_queues += _sqe(0x01, 4, 0, (SHARED_IOVA + 0x5000, 0), (3 << 16) | 1, (1 << 16) | 1)
    # A 16 KiB read whose PRP list points its data pages at the list itself.
    io_read = _sqe(0x02, 5, 1, (SHARED_IOVA + 0x6000, SHARED_IOVA + 0x4000), 0, 0, 31)
    io_queues = bytes([1, 3]) + b"".join(
        [
            _poke(0, create_queues),
            _poke(0x4000, struct.pack("<Q", SHARED_IOVA + 0x4000) * 512),
            _poke(0x5000, io_read),
            _nvme_bringup(),
            _write(0, 0x1000, 2),
            _write(0, 0x1008, 1),  # I/O SQ 1 tail doorbell
            _read(0, 0x1C),
        ]
    )
    window = bytes([2, 1]) + _write(CONFIG, 0x04, 0x0006, 2) + _read(2, 0) + _read(4, 0)
    return {"edu": edu, "nvme-admin": nvme, "nvme-io-queues": io_queues, "window": window}
