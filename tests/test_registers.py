"""Declarative registers and the device-model API."""

from __future__ import annotations

import pytest

from vfio_bridge.device import (
    Access,
    Bar,
    DeviceModel,
    Field,
    IrqType,
    Msi,
    Register,
    RegisterFile,
)
from vfio_bridge.device.local import LocalBus


class Owner:
    def __init__(self) -> None:
        self.writes: list[int] = []
        self.live = 0xCAFE

    def on_write(self, value: int) -> None:
        self.writes.append(value)

    def read_live(self) -> int:
        return self.live


@pytest.fixture
def owner() -> Owner:
    return Owner()


@pytest.fixture
def regs(owner: Owner) -> RegisterFile:
    return RegisterFile(
        [
            Register("ro", 0x00, access=Access.RO, reset=0x11223344),
            Register("rw", 0x04, reset=0xA5A5A5A5, write="on_write"),
            Register("w1c", 0x08, access=Access.W1C, reset=0xFF),
            Register("wo", 0x0C, access=Access.WO, write="on_write"),
            Register(
                "ctl",
                0x10,
                fields=(
                    Field("enable", 0),
                    Field("ready", 1, access=Access.RO, reset=1),
                    Field("errors", 4, 4, access=Access.W1C),
                ),
            ),
            Register("live", 0x14, access=Access.RO, read="read_live"),
            Register("wide", 0x18, size=8),
        ],
        owner=owner,
    )


def test_reset_values_and_access_rules(regs: RegisterFile, owner: Owner) -> None:
    assert regs.read(0x00, 4) == 0x11223344
    regs.write(0x00, 4, 0)
    assert regs.read(0x00, 4) == 0x11223344
    assert regs.read(0x04, 4) == 0xA5A5A5A5
    regs.write(0x04, 4, 0x12345678)
    assert regs.read(0x04, 4) == 0x12345678
    regs.write(0x08, 4, 0x0F)
    assert regs.read(0x08, 4) == 0xF0
    regs.write(0x0C, 4, 0xDEAD)
    assert regs.read(0x0C, 4) == 0  # write-only reads as zero
    assert owner.writes == [0x12345678, 0xDEAD]


def test_fields_have_their_own_rules(regs: RegisterFile) -> None:
    assert regs.read(0x10, 4) == 0b10
    regs["ctl"] = 0xF2
    regs.write(0x10, 4, 0xFFFF_FF31)  # set enable, clear error bits 4 and 5, try the rest
    assert regs.read(0x10, 4) == 0xC3
    assert regs.get_field("ctl", "errors") == 0xC
    regs.set_field("ctl", "errors", 0)
    assert regs.read(0x10, 4) == 0x03


def test_read_hook_supplies_live_value(regs: RegisterFile, owner: Owner) -> None:
    assert regs.read(0x14, 4) == 0xCAFE
    owner.live = 7
    assert regs.read(0x14, 4) == 7


def test_a_registers_accessors_follow_its_rules_and_hooks(regs: RegisterFile, owner: Owner) -> None:
    """What the region-access plans call instead of read() and write()."""
    accessors = {offset: regs.accessors(offset, 4) for offset in (0x00, 0x04, 0x08, 0x0C, 0x14)}
    read_ro, write_ro = accessors[0x00]
    write_ro(0)
    assert read_ro() == 0x11223344
    read_rw, write_rw = accessors[0x04]
    write_rw(0x12345678)
    assert read_rw() == regs.read(0x04, 4) == 0x12345678
    read_w1c, write_w1c = accessors[0x08]
    write_w1c(0x0F)
    assert read_w1c() == 0xF0
    read_wo, write_wo = accessors[0x0C]
    write_wo(0xDEAD)
    assert read_wo() == 0
    assert owner.writes == [0x12345678, 0xDEAD]
    read_live, _ = accessors[0x14]
    owner.live = 9
    assert read_live() == 9
    # Only a register exactly there has accessors: not part of one, not a gap.
    assert regs.accessors(0x18, 4) is None
    assert regs.accessors(0x06, 2) is None
    assert regs.accessors(0x40, 4) is None


def test_partial_and_straddling_accesses(regs: RegisterFile) -> None:
    regs.write(0x18, 8, 0x1122334455667788)
    assert regs.read(0x18, 4) == 0x55667788
    assert regs.read(0x1C, 4) == 0x11223344
    assert regs.read(0x1A, 2) == 0x5566
    regs.write(0x1C, 4, 0xAABBCCDD)
    assert regs.read(0x18, 8) == 0xAABBCCDD55667788
    regs.write(0x05, 1, 0x00)
    assert regs.read(0x04, 4) == 0xA5A500A5
    # A 8-byte read across two registers stitches both.
    assert regs.read(0x00, 8) == (0xA5A500A5 << 32) | 0x11223344


def test_unmapped_offsets(regs: RegisterFile) -> None:
    assert not regs.covers(0x40)
    assert regs.read(0x40, 4) == 0
    assert regs.write(0x40, 4, 1) is False


def test_reset_restores_declared_values(regs: RegisterFile) -> None:
    regs.write(0x04, 4, 0)
    regs.reset()
    assert regs.read(0x04, 4) == 0xA5A5A5A5


def test_declaration_errors() -> None:
    with pytest.raises(ValueError, match="aligned"):
        Register("x", 0x2, size=4)
    with pytest.raises(ValueError, match="exceeds"):
        Register("x", 0, size=1, fields=(Field("f", 4, 8),))
    with pytest.raises(ValueError, match="overlap"):
        RegisterFile([Register("a", 0, size=8), Register("b", 4)])
    with pytest.raises(ValueError, match="twice"):
        RegisterFile([Register("a", 0), Register("a", 4)])
    with pytest.raises(TypeError, match="no method"):
        RegisterFile([Register("a", 0, write="missing")], owner=object())


class Tiny(DeviceModel):
    """A one-file model: a doorbell that raises an interrupt and DMAs a counter."""

    name = "tiny"
    vendor_id, device_id, class_code = 0x1B36, 0x00FE, 0xFF0000
    capabilities = (Msi(vectors=2),)
    bars = (
        Bar(
            0,
            4096,
            registers=(
                Register("addr", 0x00, size=8),
                Register("doorbell", 0x08, access=Access.WO, write="_ring"),
            ),
        ),
    )

    def _ring(self, value: int) -> None:
        self.defer(lambda: self._work(value))

    def _work(self, value: int) -> None:
        self.dma_write(self.registers(0)["addr"], value.to_bytes(4, "little"))
        self.raise_irq(value % 2)


def test_a_model_declared_in_one_class_does_dma_and_interrupts() -> None:
    model = Tiny()
    bus = LocalBus(model, memory_size=1 << 16)
    model.config.write(0x04, (0x6).to_bytes(2, "little"))  # memory + bus master
    bus.mmio_write(0, 0x00, 8, 0x100)
    bus.mmio_write(0, 0x08, 4, 41)
    assert bus.memory[0x100:0x104] == (41).to_bytes(4, "little")
    assert bus.irqs == [(IrqType.INTX, 0)]  # MSI not enabled yet: INTx
    msi = model.config.find_capability(0x05)
    assert msi is not None
    model.config.write(msi + 2, (0x11).to_bytes(2, "little"))  # enable, 2 vectors
    bus.mmio_write(0, 0x08, 4, 3)
    assert bus.irqs[-1] == (IrqType.MSI, 1)


def test_dma_without_bus_master_is_refused() -> None:
    model = Tiny()
    bus = LocalBus(model, memory_size=4096)
    bus.mmio_write(0, 0x08, 4, 1)
    assert bus.errors and "bus mastering off" in bus.errors[0]
    assert bus.memory[:4] == bytes(4)


def test_unknown_model_option_is_rejected() -> None:
    with pytest.raises(ValueError, match="no option"):
        Tiny(speed=3)
