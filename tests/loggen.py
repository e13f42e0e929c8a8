"""Generated transaction logs for diff tests and benchmarks (the real log format)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vfio_bridge import logformat
from vfio_bridge.logformat import Kind, payload_digest

HEADER = {
    **logformat.header("direct"),
    "model": "synthetic",
    "vendor_id": 1,
    "device_id": 2,
}


def mmio(kind: str, bar: int, offset: int, value: int, size: int = 4) -> dict[str, Any]:
    return {"kind": kind, "bar": bar, "offset": offset, "size": size, "value": value}


def dma(kind: str, addr: int, data: bytes) -> dict[str, Any]:
    return {
        "kind": kind,
        "addr": addr,
        "len": len(data),
        "digest": payload_digest(data),
    }


def irq(vector: int, irq_type: str = "msix") -> dict[str, Any]:
    return {"kind": Kind.IRQ.value, "irq_type": irq_type, "vector": vector}


def workload(transactions: int, seed: int = 1, base: int = 0x100000) -> list[dict[str, Any]]:
    """A device-like event stream: doorbell, status polls, DMA, interrupt, register reads."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = [mmio("mmio_write", 0, 0x14, 1)]
    for n in range(transactions):
        events.append(mmio("mmio_write", 0, 0x1000, n & 0xFF))
        events += [mmio("mmio_read", 0, 0x1C, 0)] * rng.randint(1, 4)  # busy polls
        events.append(mmio("mmio_read", 0, 0x1C, 1))
        events.append(dma("dma_read", base + 64 * n, bytes([n & 0xFF]) * 64))
        events.append(dma("dma_write", base + 0x10000 + 16 * n, bytes([~n & 0xFF]) * 16))
        events.append(irq(n % 4))
        events.append(mmio("mmio_read", 2, 0x10, n * 3))
    return events


def write_log(
    path: Path, events: list[dict[str, Any]], header: dict | None = None, end: bool = True
) -> Path:
    with open(path, "w") as out:
        out.write(logformat.dumps(header or HEADER))
        for seq, event in enumerate(events):
            out.write(logformat.dumps({"seq": seq, "t_ns": 1000 * seq, **event}))
        if end:
            out.write(logformat.dumps(logformat.trailer(len(events))))
    return path


def stream_log(path: Path, count: int, t0: int = 0, skip: int | None = None) -> None:
    """A big log written event by event (benchmarks), without holding it in memory;
    its clock starts at ``t0``, and generated event number ``skip`` (if any) is left out."""
    with open(path, "w") as out:
        out.write(logformat.dumps(HEADER))
        seq = 0
        made = 0
        n = 0
        while seq < count:
            for event in _one(n):
                if made != skip:
                    out.write(logformat.dumps({"seq": seq, "t_ns": t0 + seq, **event}))
                    seq += 1
                made += 1
            n += 1
        out.write(logformat.dumps(logformat.trailer(seq)))


def _one(n: int) -> Iterator[dict[str, Any]]:
    yield mmio("mmio_write", 0, 0x1000, n & 0xFF)
    yield mmio("mmio_read", 0, 0x1C, 1)
    yield {
        "kind": "dma_read",
        "addr": 0x100000 + 64 * (n % 4096),
        "len": 64,
        "digest": f"{n % 977:032x}",
    }
    yield irq(n % 4)
