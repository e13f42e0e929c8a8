"""Model-initiated DMA throughput: shared memory (memfd mmap) vs DMA_READ/DMA_WRITE messages.

The client side (guest memory owner) runs in a child process on a socketpair:
it maps one shared and one private region, then answers DMA messages. The
server side is a real Session, timed doing the reads and writes a model does.
Usage: python -m bench.dma [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import socket
import time

from vfio_bridge.client import VfioUserClient
from vfio_bridge.models.edu import Edu
from vfio_bridge.recorder import Recorder
from vfio_bridge.session import MAX_MESSAGE_SIZE, MAX_MSG_FDS, Session
from vfio_bridge.transport import SocketChannel

from .common import print_table, save

SHARED, PRIVATE, REGION = 0x0, 0x4000000, 0x2000000  # two 32 MiB regions
SIZES = (64, 4096, 65536, 1 << 20)


def _client(sock: socket.socket) -> None:
    client = VfioUserClient.over(sock)
    client.negotiate()
    client.map_memory(SHARED, REGION, shared=True)
    client.map_memory(PRIVATE, REGION, shared=False)
    client.serve_forever()
    os._exit(0)


def _rate(operation, size: int, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        operation(size)
        done += size
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    server_end, client_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:
        server_end.close()
        _client(client_end)
    client_end.close()
    channel = SocketChannel(server_end, MAX_MESSAGE_SIZE, MAX_MSG_FDS)
    session = Session(Edu(), channel, Recorder(None))
    while len(session.bus.dma) < 2:  # VERSION, then the two DMA_MAPs
        session.dispatch(channel.receive())
    payload = os.urandom(max(SIZES))
    rows, data = [], {}
    for size in SIZES:
        figures = {}
        for name, base in (("shared", SHARED), ("messages", PRIVATE)):
            figures[f"{name}_read"] = _rate(
                lambda n, b=base: session.bus.dma_read(b, n), size, args.seconds
            )
            figures[f"{name}_write"] = _rate(
                lambda n, b=base: session.bus.dma_write(b, payload[:n]), size, args.seconds
            )
        data[str(size)] = figures
        mib = 1 << 20
        rows.append([
            size, figures["shared_read"] / mib, figures["messages_read"] / mib,
            figures["shared_read"] / figures["messages_read"],
            figures["shared_write"] / mib, figures["messages_write"] / mib,
            figures["shared_write"] / figures["messages_write"],
        ])  # fmt: skip
    channel.close()
    os.waitpid(child, 0)
    print_table(
        "model-initiated DMA, MiB/s",
        ["bytes", "read shm", "read msg", "ratio", "write shm", "write msg", "ratio"],
        rows,
    )
    print(f"\nresult: {save('dma', data)}")


if __name__ == "__main__":
    main()
