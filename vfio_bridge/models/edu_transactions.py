"""Decoder of the edu model's log into operations (:class:`~vfio_bridge.transaction.Transaction`).

Theory of operation. Each edu operation starts with a write to its trigger
register and everything it does follows before the next trigger:

- ``liveness``: a write to 0x04, answered by the next read of 0x04 (``result``);
- ``factorial``: a write of n to 0x08, answered by the next read of 0x08
  (``result``) and, when status bit 7 was set, an interrupt;
- ``dma_to_ram`` / ``dma_from_ram``: a write to ``dma_cmd`` (0x98) with the
  start bit, after ``dma_src``/``dma_dst``/``dma_count``; one DMA event
  (``payload_out`` / ``payload_in``) or a device error (status 1), then an
  interrupt if the command asked for one;
- ``raise_irq``: a write to 0x60 and its interrupt.

Guest addresses are context (``seqs``), not parameters; the buffer offset
and the byte count are. Register offsets come from the model (:mod:`.edu`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..logformat import WINDOW_STREAM, Kind
from ..transaction import Transaction
from .edu import DMA_BUFFER, DMA_CMD_IRQ, DMA_CMD_START, DMA_CMD_TO_RAM, Edu

_OFFSETS = {reg.name: reg.offset for reg in Edu.bars[0].registers}
LIVENESS, FACTORIAL, STATUS = _OFFSETS["liveness"], _OFFSETS["factorial"], _OFFSETS["status"]
IRQ_RAISE = _OFFSETS["irq_raise"]
DMA_SRC, DMA_DST, DMA_COUNT, DMA_CMD = (
    _OFFSETS["dma_src"], _OFFSETS["dma_dst"], _OFFSETS["dma_count"], _OFFSETS["dma_cmd"],
)  # fmt: skip
IRQ_ON_FACTORIAL = 0x80


@dataclass
class _Op:
    op: str
    params: tuple[tuple[str, int], ...]
    answer: int | None  # register whose next read is the result
    irq_expected: int | None
    seqs: list[int]
    t_ns: int
    result: int | None = None
    status: int = 0
    irq: int | None = None
    payload_in: str | None = None
    payload_out: str | None = None
    extra: list[int] = field(default_factory=list)

    def transaction(self) -> Transaction:
        return Transaction(
            op=self.op,
            params=self.params,
            payload_in=self.payload_in,
            payload_out=self.payload_out,
            status=self.status,
            result=self.result,
            irq=self.irq,
            irq_expected=self.irq_expected,
            seqs=tuple(self.seqs),
            t_ns=self.t_ns,
        )


class EduDecoder:
    def __init__(self) -> None:
        self.regs: dict[int, int] = {}
        self.current: _Op | None = None

    def _reg64(self, offset: int) -> int:
        return self.regs.get(offset, 0) | self.regs.get(offset + 4, 0) << 32

    def push(self, event: Mapping[str, Any]) -> list[Transaction]:
        if event.get("stream") == WINDOW_STREAM:
            return []
        kind, current = event["kind"], self.current
        if kind == Kind.MMIO_WRITE and event["bar"] == 0:
            return self._write(event)
        if kind == Kind.MMIO_READ and event["bar"] == 0 and current is not None:
            if current.answer == event["offset"] and current.result is None:
                current.result = event["value"]
                current.seqs.append(event["seq"])
        elif kind == Kind.IRQ and current is not None and current.irq is None:
            current.irq = event["vector"]
            current.seqs.append(event["seq"])
        elif kind in (Kind.DMA_READ, Kind.DMA_WRITE) and current is not None:
            current.seqs.append(event["seq"])
            if kind == Kind.DMA_READ:
                current.payload_in = event["digest"]
            else:
                current.payload_out = event["digest"]
        elif kind == Kind.DEVICE_ERROR and current is not None:
            current.status = 1
            current.seqs.append(event["seq"])
        return []

    def _write(self, event: Mapping[str, Any]) -> list[Transaction]:
        offset, size, value = event["offset"], event["size"], event["value"]
        for i in range(0, size, 4):
            self.regs[offset + i] = (value >> (8 * i)) & 0xFFFFFFFF
        seq, t_ns = event["seq"], event["t_ns"]
        if offset == LIVENESS:
            return self._start(_Op("liveness", (("value", value),), LIVENESS, None, [seq], t_ns))
        if offset == FACTORIAL:
            irq = 0 if self.regs.get(STATUS, 0) & IRQ_ON_FACTORIAL else None
            return self._start(_Op("factorial", (("n", value),), FACTORIAL, irq, [seq], t_ns))
        if offset == IRQ_RAISE:
            return self._start(_Op("raise_irq", (("value", value),), None, 0, [seq], t_ns))
        if offset == DMA_CMD and value & DMA_CMD_START:
            to_ram = bool(value & DMA_CMD_TO_RAM)
            device = self._reg64(DMA_SRC if to_ram else DMA_DST)
            params = (("buffer_offset", device - DMA_BUFFER), ("count", self._reg64(DMA_COUNT)))
            op = "dma_to_ram" if to_ram else "dma_from_ram"
            irq = 0 if value & DMA_CMD_IRQ else None
            return self._start(_Op(op, params, None, irq, [seq], t_ns))
        return []

    def _start(self, op: _Op) -> list[Transaction]:
        done = self.finish()
        self.current = op
        return done

    def finish(self) -> list[Transaction]:
        current, self.current = self.current, None
        return [current.transaction()] if current is not None else []


def decode(header: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> Iterator[Transaction]:
    """The operations of an edu model's log, in order."""
    decoder = EduDecoder()
    for event in events:
        done = decoder.push(event)
        if done:
            yield from done
    yield from decoder.finish()


__all__ = ["EduDecoder", "decode"]
