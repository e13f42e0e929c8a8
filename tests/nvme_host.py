"""A minimal NVMe host driver for tests: queues in guest memory, doorbells over a port.

A *port* is how the host reaches the controller: ``LocalPort`` (in-process
LocalBus) or ``ClientPort`` (a vfio-user client over a real socket).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vfio_bridge.client import GuestMemory, VfioUserClient
from vfio_bridge.device.local import LocalBus

SQE = struct.Struct("<BBHI8x8xQQIIIIII")


class LocalPort:
    def __init__(self, bus: LocalBus) -> None:
        self.bus = bus

    def mmio_read(self, offset: int, size: int) -> int:
        return self.bus.mmio_read(0, offset, size)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.bus.mmio_write(0, offset, size, value)

    def mem_read(self, addr: int, size: int) -> bytes:
        return bytes(self.bus.memory[addr : addr + size])

    def mem_write(self, addr: int, data: bytes) -> None:
        self.bus.memory[addr : addr + len(data)] = data

    def config_write(self, offset: int, data: bytes) -> None:
        self.bus.model.config.write(offset, data)


class ClientPort:
    def __init__(self, client: VfioUserClient, memory: GuestMemory) -> None:
        self.client, self.memory = client, memory

    def mmio_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.client.region_read(0, offset, size), "little")

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.client.region_write(0, offset, value.to_bytes(size, "little"))

    def mem_read(self, addr: int, size: int) -> bytes:
        self.client.region_read(0, 0x1C, 4)  # a request lets the client serve DMA messages
        return self.memory.read(addr, size)

    def mem_write(self, addr: int, data: bytes) -> None:
        self.memory.write(addr, data)

    def config_write(self, offset: int, data: bytes) -> None:
        self.client.region_write(7, offset, data)


@dataclass
class Queue:
    qid: int
    sq_base: int
    cq_base: int
    size: int
    sq_tail: int = 0
    cq_head: int = 0
    phase: int = 1


@dataclass
class Completion:
    dw0: int
    sq_head: int
    sq_id: int
    cid: int
    status: int


class NvmeHost:
    """Enable the controller and submit commands; memory layout from ``base``."""

    def __init__(self, port: LocalPort | ClientPort, base: int = 0x10000) -> None:
        self.port = port
        self.base = base
        self.next_page = base
        self.cid = 0
        self.queues: dict[int, Queue] = {}

    def page(self, count: int = 1) -> int:
        addr = self.next_page
        self.next_page += 4096 * count
        return addr

    def enable(self, admin_entries: int = 8) -> None:
        self.port.config_write(0x04, (0x6).to_bytes(2, "little"))
        sq, cq = self.page(), self.page()
        self.port.mmio_write(0x24, 4, (admin_entries - 1) << 16 | (admin_entries - 1))
        self.port.mmio_write(0x28, 8, sq)
        self.port.mmio_write(0x30, 8, cq)
        self.port.mmio_write(0x14, 4, (4 << 20) | (6 << 16) | 1)
        assert self.port.mmio_read(0x1C, 4) & 1, "controller not ready"
        self.queues[0] = Queue(0, sq, cq, admin_entries)

    def submit(
        self,
        qid: int,
        opcode: int,
        nsid: int = 0,
        prp1: int = 0,
        prp2: int = 0,
        cdw: tuple[int, ...] = (),
        flags: int = 0,
    ) -> Completion:
        q = self.queues[qid]
        self.cid = (self.cid + 1) & 0xFFFF
        words = list(cdw) + [0] * (6 - len(cdw))
        entry = SQE.pack(opcode, flags, self.cid, nsid, prp1, prp2, *words)
        self.port.mem_write(q.sq_base + q.sq_tail * 64, entry)
        q.sq_tail = (q.sq_tail + 1) % q.size
        self.port.mmio_write(0x1000 + 8 * qid, 4, q.sq_tail)
        return self.reap(qid)

    def reap(self, qid: int) -> Completion:
        q = self.queues[qid]
        for _ in range(1000):
            raw = self.port.mem_read(q.cq_base + q.cq_head * 16, 16)
            dw0, _, sq_head, sq_id, cid, status = struct.unpack("<IIHHHH", raw)
            if status & 1 == q.phase:
                break
        else:
            raise AssertionError(f"no completion on CQ{qid}")
        q.cq_head = (q.cq_head + 1) % q.size
        if q.cq_head == 0:
            q.phase ^= 1
        self.port.mmio_write(0x1004 + 8 * qid, 4, q.cq_head)
        return Completion(dw0, sq_head, sq_id, cid, status >> 1)

    def create_io_queue(self, qid: int, entries: int, vector: int = 0) -> Completion:
        cq, sq = self.page(), self.page()
        done = self.submit(0, 0x05, prp1=cq, cdw=((entries - 1) << 16 | qid, vector << 16 | 0x3))
        if done.status:
            return done
        done = self.submit(0, 0x01, prp1=sq, cdw=((entries - 1) << 16 | qid, qid << 16 | 0x1))
        if not done.status:
            self.queues[qid] = Queue(qid, sq, cq, entries)
        return done
