"""QEMU's educational ``edu`` device (``docs/specs/edu.rst``) as a model.

Identification, liveness check, factorial with a status bit and an optional
interrupt, interrupt status/raise/acknowledge, and DMA between guest memory
and a 4 KiB buffer at BAR0 + 0x40000. MSI with one vector, INTx fallback.
"""

from __future__ import annotations

import math

from ..device import (
    Access,
    Bar,
    Buffer,
    DeviceModel,
    DmaError,
    Field,
    Msi,
    Option,
    PowerManagement,
    Register,
    whole_number,
)

DMA_BUFFER = 0x40000
DMA_BUFFER_SIZE = 4096
IRQ_FACTORIAL = 0x00000001
IRQ_DMA = 0x00000100
DMA_CMD_START = 0x1
DMA_CMD_TO_RAM = 0x2
DMA_CMD_IRQ = 0x4


class Edu(DeviceModel):
    name = "edu"
    description = "QEMU's educational device: factorial, interrupts, 4 KiB DMA buffer"
    vendor_id = 0x1234
    device_id = 0x11E8
    class_code = 0x00FF00
    revision = 0x10
    subsystem_vendor_id = 0x1AF4
    subsystem_id = 0x1100
    capabilities = (PowerManagement(), Msi(vectors=1))
    options = (
        Option("dma_mask_bits", 28, "guest addresses are clamped to this many bits", whole_number),
    )
    bars = (
        Bar(
            0,
            size=1 << 20,
            registers=(
                Register("ident", 0x00, access=Access.RO, reset=0x010000ED),
                Register("liveness", 0x04, write="_check_liveness"),
                Register("factorial", 0x08, write="_start_factorial"),
                Register(
                    "status",
                    0x20,
                    fields=(
                        Field("computing", 0, access=Access.RO),
                        Field("irq_on_factorial", 7),
                    ),
                ),
                Register("irq_status", 0x24, access=Access.RO),
                Register("irq_raise", 0x60, access=Access.WO, write="_raise"),
                Register("irq_ack", 0x64, access=Access.WO, write="_acknowledge"),
                Register("dma_src", 0x80, size=8),
                Register("dma_dst", 0x88, size=8),
                Register("dma_count", 0x90, size=8),
                Register("dma_cmd", 0x98, size=8, write="_dma_command"),
            ),
            buffers=(Buffer("dma", DMA_BUFFER, DMA_BUFFER_SIZE),),
        ),
    )

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.regs = self.registers(0)
        self.dma_buffer = self.bar_handlers[0].buffers["dma"]
        self._dma_mask = (1 << int(self.opts["dma_mask_bits"])) - 1

    # --- register side effects ----------------------------------------------

    def _check_liveness(self, value: int) -> None:
        self.regs["liveness"] = ~value

    def _start_factorial(self, value: int) -> None:
        n = value & 0xFFFFFFFF
        # n! has at least 32 factors of two from n = 34 on, so it wraps to 0:
        # no need to let a guest make us compute huge factorials.
        self.regs["factorial"] = math.factorial(n) & 0xFFFFFFFF if n < 34 else 0
        if self.regs.get_field("status", "irq_on_factorial"):
            self.defer(lambda: self._raise(IRQ_FACTORIAL))

    def _raise(self, value: int) -> None:
        self.regs["irq_status"] = self.regs["irq_status"] | value
        if self.regs["irq_status"]:
            self.raise_irq(0)

    def _acknowledge(self, value: int) -> None:
        self.regs["irq_status"] = self.regs["irq_status"] & ~value
        if not self.regs["irq_status"]:
            self.lower_irq()

    def _dma_command(self, value: int) -> None:
        if value & DMA_CMD_START:
            self.defer(self._run_dma)

    # --- device-side work ------------------------------------------------------

    def _run_dma(self) -> None:
        cmd = self.regs["dma_cmd"]
        if not cmd & DMA_CMD_START:
            return
        count = self.regs["dma_count"]
        to_ram = bool(cmd & DMA_CMD_TO_RAM)
        device_addr = self.regs["dma_src"] if to_ram else self.regs["dma_dst"]
        ram_addr = (self.regs["dma_dst"] if to_ram else self.regs["dma_src"]) & self._dma_mask
        start = device_addr - DMA_BUFFER
        if start < 0 or count > DMA_BUFFER_SIZE or start + count > DMA_BUFFER_SIZE:
            self.device_error(
                "dma_range", f"DMA of {count} bytes at buffer address {device_addr:#x} ignored"
            )
        else:
            try:
                if to_ram:
                    self.dma_write(ram_addr, bytes(self.dma_buffer[start : start + count]))
                else:
                    self.dma_buffer[start : start + count] = self.dma_read(ram_addr, count)
            except DmaError as exc:
                self.device_error("dma_fault", str(exc))
        self.regs["dma_cmd"] = cmd & ~DMA_CMD_START
        if cmd & DMA_CMD_IRQ:
            self._raise(IRQ_DMA)
