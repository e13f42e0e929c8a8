"""The floor of a pure-Python vfio-user server: an MMIO access answered with no work.

``bench.mmio`` runs this beside our server and libvfio-user to show what an
access costs a CPython process that only receives it and sends a reply made in
advance, with the same two system calls as the server's hot path:
``recvmsg_into`` (a vfio-user server must take descriptors with any message)
and ``send``, under ``SCHED_BATCH`` and without polling, as our server on one
CPU. A CPython server that takes descriptors with every receive, as vfio-user
requires, spends no less of its own CPU per read or non-posted write: this one
does nothing else. (Posted writes are another matter: our server takes several
in one receive, and this one takes them one at a time.)

Only the benchmark's own accesses are canned: reads of the edu's identification
register (a constant) and writes of the value the benchmark always writes to
its liveness register, once a first such write has reached the model (so the
device's state is what it would be). Everything else, the client's set-up and
the benchmark's checks included, is served by a real
:class:`~vfio_bridge.session.Session` of the edu model, so QEMU sees a correct
device throughout.

Usage: python -m bench.floor_server SOCKET
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from vfio_bridge.models.edu import Edu
from vfio_bridge.polling import use_scheduling
from vfio_bridge.protocol import (
    MsgFlags,
    ProtocolError,
    RegionAccess,
    VfioCommand,
    access_reply,
    frame,
)
from vfio_bridge.recorder import Recorder
from vfio_bridge.session import MAX_MESSAGE_SIZE, MAX_MSG_FDS, Session
from vfio_bridge.transport import RECEIVE_CHUNK, PeerClosed, SocketChannel, ancillary_size

#: The accesses bench.mmio makes (see measure_edu there).
IDENT, LIVENESS, LIVENESS_VALUE = 0x00, 0x04, 0x5A


def _request_tail(command: VfioCommand, offset: int, data: bytes, flags: int) -> bytes:
    """A region access request as QEMU frames it, without its first two bytes (the id)."""
    body = RegionAccess(offset, 0, len(data) or 4, data).pack()
    return frame(0, command, body, flags)[2:]


class FloorSession(Session):
    """A :class:`Session` that answers the benchmark's own accesses from canned replies."""

    def run(self) -> None:
        channel = self.channel
        assert isinstance(channel, SocketChannel)
        sock = channel.sock
        reader = channel.reader
        buffer = bytearray(RECEIVE_CHUNK)
        view = memoryview(buffer)
        buffers = [buffer]
        ancillary = ancillary_size(MAX_MSG_FDS)
        recvmsg_into, send = sock.recvmsg_into, sock.send

        ident = self.model.bar_handlers[0].read(IDENT, 4).to_bytes(4, "little")
        read = _request_tail(VfioCommand.REGION_READ, IDENT, b"", 0)
        read_reply = bytearray(access_reply(0, VfioCommand.REGION_READ, IDENT, 0, 4, ident))
        value = LIVENESS_VALUE.to_bytes(4, "little")
        write = _request_tail(VfioCommand.REGION_WRITE, LIVENESS, value, 0)
        posted = _request_tail(VfioCommand.REGION_WRITE, LIVENESS, value, MsgFlags.NO_REPLY)
        write_reply = bytearray(access_reply(0, VfioCommand.REGION_WRITE, LIVENESS, 0, 4))
        read_end, write_end = len(read) + 2, len(write) + 2
        writes_canned = False  # until one such write has reached the model
        while True:
            size, ancdata, msg_flags, _ = recvmsg_into(buffers, ancillary)
            if not ancdata and not msg_flags and reader.at_boundary:
                if size == read_end and view[2:size] == read:
                    read_reply[0:2] = view[0:2]
                    send(read_reply)
                    continue
                if writes_canned and size == write_end:
                    if view[2:size] == write:
                        write_reply[0:2] = view[0:2]
                        send(write_reply)
                        continue
                    if view[2:size] == posted:
                        continue
            seen = bytes(view[2:size]) if size == write_end else b""  # a write, once served
            channel.backlog.extend(channel.messages_from(view[:size], ancdata, msg_flags))
            while (message := channel.next_message()) is not None:
                self.dispatch(message)
                self.run_deferred()
            writes_canned = writes_canned or seen in (write, posted)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("socket", type=Path)
    args = parser.parse_args()
    use_scheduling("batch")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(args.socket))
    except OSError as exc:
        print(f"error: cannot listen on {args.socket}: {exc.strerror}", file=sys.stderr)
        return 2
    listener.listen(1)
    print(f"ready: edu floor on {args.socket}, no polling, batch scheduling", flush=True)
    model = Edu()
    while True:  # one client at a time, until the benchmark ends this process by its pid
        conn, _ = listener.accept()
        channel = SocketChannel(conn, MAX_MESSAGE_SIZE, MAX_MSG_FDS)
        session = FloorSession(model, channel, Recorder(None), poll_max_us=0)
        try:
            session.run()
        except (PeerClosed, ProtocolError):  # as the real server: the next client may come
            pass
        finally:
            session.close()
            channel.close()
            model.reset()


if __name__ == "__main__":
    sys.exit(main())
