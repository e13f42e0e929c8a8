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


def stream_nvme_log(path: Path, count: int, path_label: str = "direct") -> None:
    """A big log shaped like the NVMe model's (benchmarks of the transaction level):
    controller enable, one I/O queue pair, then 4 KiB writes and reads of 8 blocks
    (doorbell, entry, data with per-block digests, completion, interrupt, head doorbell)."""
    import struct

    from vfio_bridge.models.nvme import Nvme

    header = logformat.header(path_label, device=Nvme(size=1 << 20).declaration())
    sqe = struct.Struct("<BBHI8x8xQQIIIIII")
    patterns = [bytes([p]) * 4096 for p in range(16)]
    blocks = [logformat.block_digests(p, 512) for p in patterns]
    digests = [payload_digest(p) for p in patterns]
    lines: list[str] = []
    seq = 0

    def add(line: str) -> None:
        nonlocal seq
        lines.append(line)
        seq += 1

    def command(qid: int, slot: int, entry: bytes, data: int | None, write: bool, n: int) -> None:
        sq_base, cq_base = (0x10000, 0x20000) if qid == 0 else (0x200000, 0x100000)
        add(logformat.mmio_line(seq, seq, True, 0, 0x1000 + 8 * qid, 4, slot + 1, None))
        add(logformat.dma_line(seq, seq, False, sq_base + 64 * slot, entry, "sqe"))
        if data is not None:
            kind = "dma_read" if write else "dma_write"
            addr = 0x400000 + 4096 * (n % 64)
            add(
                f'{{"seq":{seq},"t_ns":{seq},"kind":"{kind}","addr":{addr},"len":4096,'
                f'"digest":"{digests[data]}","block":512,"blocks":"{blocks[data]}"}}\n'
            )
        cid = entry[2] | entry[3] << 8
        cqe = nvme_completion(slot + 1, qid, cid, 1 - (n // 1024) % 2)
        add(logformat.dma_line(seq, seq, True, cq_base + 16 * slot, cqe, "cqe"))
        add(logformat.irq_line(seq, seq, "msix", 1 if qid else 0, None))
        add(logformat.mmio_line(seq, seq, True, 0, 0x1004 + 8 * qid, 4, slot + 1, None))

    with open(path, "w") as out:
        out.write(logformat.dumps(header))
        for offset, size, value in ((0x24, 4, 31 << 16 | 31), (0x28, 8, 0x10000),
                                    (0x30, 8, 0x20000), (0x14, 4, 0x460001)):  # fmt: skip
            add(logformat.mmio_line(seq, seq, True, 0, offset, size, value, None))
        create_cq = sqe.pack(0x05, 0, 1, 0, 0x100000, 0, 1023 << 16 | 1, 1 << 16 | 3, 0, 0, 0, 0)
        command(0, 0, create_cq, None, False, 0)
        create_sq = sqe.pack(0x01, 0, 2, 0, 0x200000, 0, 1023 << 16 | 1, 1 << 16 | 1, 0, 0, 0, 0)
        command(0, 1, create_sq, None, False, 1)
        n = 0
        while seq < count:
            write = n % 2 == 0
            lba = 8 * ((n // 2) % 16384)
            entry = sqe.pack(1 if write else 2, 0, n % 65536, 1, 0x400000, 0, lba, 0, 7, 0, 0, 0)
            command(1, n % 1024, entry, (n // 2) % 16, write, n)
            n += 1
            if len(lines) > 10_000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
        out.write(logformat.dumps(logformat.trailer(seq)))


def nvme_completion(sq_head: int, sq_id: int, cid: int, phase: int) -> bytes:
    from vfio_bridge.models.nvme_spec import completion

    return completion(0, sq_head, sq_id, cid, phase, 0)


def random_edits(
    base: list[dict[str, Any]], rng: random.Random, edits: int | None = None
) -> list[dict[str, Any]]:
    """``base`` with ``edits`` random edits (one to six when None): an event dropped,
    doubled, swapped with the next, or its value changed."""
    b = list(base)
    for _ in range(rng.randint(1, 6) if edits is None else edits):
        i = rng.randrange(len(b))
        op = rng.choice(["drop", "dup", "swap", "poke"])
        if op == "drop":
            b.pop(i)
        elif op == "dup":
            b.insert(i, b[i])
        elif op == "swap" and i + 1 < len(b):
            b[i], b[i + 1] = b[i + 1], b[i]
        elif "value" in b[i]:
            b[i] = {**b[i], "value": rng.randrange(1 << 16)}
    return b
