"""Model-initiated DMA throughput: shared memory (memfd mmap) vs DMA_READ/DMA_WRITE messages.

The client side (guest memory owner) runs in a child process on a socketpair:
it maps one shared and one private region, then answers DMA messages. The
server side is a real Session, timed doing the reads and writes a model does.
Then the cost of logging a block device's data (a server recording to a file,
shared memory): an NVMe transfer logged with its payload digest only, and with
a digest per 512-byte logical block added (log format Rule 5), side by side,
the per-block digests computed as the log does today and as it did before
(memoryview slices, integers packed), the previous way kept here to compare.
Usage: python -m bench.dma [--seconds S] [--digests-only]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import tempfile
import time
from pathlib import Path

import xxhash

from vfio_bridge import logformat
from vfio_bridge.client import VfioUserClient
from vfio_bridge.hostbus import HostBus
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
    parser.add_argument(
        "--digests-only", action="store_true",
        help="only the logged block-data cost (saved as dma_block_digests)",
    )  # fmt: skip
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
    for size in () if args.digests_only else SIZES:
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
    block_rows = _block_digest_cost(session.bus, payload, args.seconds, data)
    channel.close()
    os.waitpid(child, 0)
    if rows:
        print_table(
            "model-initiated DMA, MiB/s",
            ["bytes", "read shm", "read msg", "ratio", "write shm", "write msg", "ratio"],
            rows,
        )
    print_table(
        "logged block-data DMA (shared memory, recording to a file), CPU us per transfer; "
        f"load average {os.getloadavg()[0]:.1f}",
        ["bytes", "digest only", "per-block digests", "added", "before (slices)", "added"],
        block_rows,
    )
    data["load_average"] = os.getloadavg()[0]
    print(f"\nresult: {save('dma_block_digests' if args.digests_only else 'dma', data)}")


_slices: dict[tuple[int, int], list[slice]] = {}


def _block_digests_sliced(data: bytes, block_size: int) -> str:
    """``logformat.block_digests`` as it was before 2026-11-29 (same output): memoryview
    slices hashed to integers, packed big-endian, hex of the whole."""
    count = -(-len(data) // block_size)
    slices = _slices.setdefault(
        (count, block_size),
        [slice(i, i + block_size) for i in range(0, count * block_size, block_size)],
    )
    view = memoryview(data)
    digest = xxhash.xxh3_64_intdigest
    return struct.pack(f">{count}Q", *map(digest, map(view.__getitem__, slices))).hex()


def _block_digest_cost(
    bus: HostBus, payload: bytes, seconds: float, data: dict
) -> list[list[object]]:
    """CPU us per logged gather of an NVMe-sized transfer: payload digest only, with block
    digests as computed today, and as computed before (CPU time of this process, which
    the other loads of a shared machine disturb less)."""
    rows: list[list[object]] = []
    current = logformat.block_digests
    with tempfile.TemporaryDirectory(prefix="xvpci-dmabench-") as tmp:
        recorder = Recorder(Path(tmp) / "log.jsonl", "direct")
        bus.recorder = recorder
        for size in (4096, 131072):
            segments = [(SHARED, size)]
            assert current(payload[:size], 512) == _block_digests_sliced(payload[:size], 512)
            cost: dict[str, float] = {}
            # three times each, interleaved; keep the best
            for variant in ("none", "now", "before") * 3:
                block = 0 if variant == "none" else 512
                logformat.block_digests = current if variant != "before" else _block_digests_sliced
                done, start, wall = 0, time.process_time(), time.perf_counter()
                while time.perf_counter() - wall < seconds:
                    bus.dma_gather(segments, block)
                    done += 1
                used = (time.process_time() - start) / done * 1e6
                cost[variant] = min(cost.get(variant, used), used)
            logformat.block_digests = current
            data[f"block_digests_{size}"] = {
                "digest_only_us": cost["none"],
                "per_block_us": cost["now"],
                "per_block_before_us": cost["before"],
            }
            rows.append([size, cost["none"], cost["now"], cost["now"] - cost["none"],
                         cost["before"], cost["before"] - cost["none"]])  # fmt: skip
            recorder.flush()
        recorder.close()
    return rows


if __name__ == "__main__":
    main()
