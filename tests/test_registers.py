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
    regs.set_field("ctl", "errors", 0x5)  # the model sets a field by its own value
    assert regs.get_field("ctl", "errors") == 0x5 and regs.read(0x10, 4) == 0x53
    assert regs.names() == ["ro", "rw", "w1c", "wo", "ctl", "live", "wide"]


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


def test_accesses_across_gaps_and_register_edges() -> None:
    """Byte by byte where registers leave gaps: a gap reads as zero and takes no
    write, and an access that begins or ends inside a register takes only its bytes."""
    regs = RegisterFile(
        [
            Register("a", 0x01, size=1),
            Register("b", 0x03, size=1),
            Register("w", 0x04),
            Register("x", 0x08),
        ]
    )
    assert regs.write(0x04, 4, 0) is True  # a register exactly there took it
    assert regs.write(0x02, 2, 0) is True  # a register took part of it
    assert regs.write(0x0C, 4, 0) is False  # none did
    regs.write(0x00, 4, 0x44332211)  # bytes 0x00 and 0x02 fall in gaps
    assert regs.read(0x01, 1) == 0x22 and regs.read(0x03, 1) == 0x44
    assert regs.read(0x00, 4) == 0x44002200
    regs.write(0x04, 4, 0xDDCCBBAA)
    assert regs.read(0x03, 2) == 0xAA44  # b, then w's first byte
    assert regs.read(0x02, 4) == 0xBBAA4400  # a gap, b, then half of w
    regs.write(0x03, 2, 0x1155)  # b, and w's first byte only
    assert regs.read(0x04, 4) == 0xDDCCBB11 and regs.read(0x03, 1) == 0x55
    regs.write(0x06, 2, 0x6677)  # the top half of w alone
    assert regs.read(0x04, 4) == 0x6677BB11
    regs.write(0x08, 4, 0x0D0C0B0A)
    assert regs.read(0x06, 4) == 0x0B0A6677  # from the middle of w into x
    regs.write(0x06, 4, 0x99887766)  # the same straddle written
    assert regs.read(0x04, 4) == 0x7766BB11 and regs.read(0x08, 4) == 0x0D0C9988


def test_masks_of_several_fields_and_values_wider_than_the_register() -> None:
    regs = RegisterFile(
        [
            Register(
                "status",
                0x00,
                fields=(
                    Field("done", 0, access=Access.W1C, reset=1),
                    Field("error", 4, access=Access.W1C, reset=1),
                    Field("kick", 8, access=Access.WO),
                    Field("abort", 12, access=Access.WO),
                    Field("top", 31),  # the register's last bit
                ),
            ),
            Register("byte", 0x04, size=1, reset=0x1FF),  # a reset wider than the register
            Register("half", 0x06, size=2),
        ]
    )
    assert regs.read(0x00, 4) == 0x11
    regs.write(0x00, 4, 0x11 | 0x1100 | 1 << 31)  # clear both, kick both, set top
    assert regs.read(0x00, 4) == 1 << 31  # write-only bits read as zero
    assert regs.read(0x04, 1) == 0xFF
    assert regs["byte"] == 0xFF  # what the model sees is cut to the register too
    regs.write(0x06, 2, 0xBEEF)
    assert regs.read(0x06, 2) == 0xBEEF
    regs["half"] = 0x12345
    assert regs["half"] == 0x2345  # the model's writes are cut to the register too


def test_reset_restores_declared_values(regs: RegisterFile) -> None:
    regs.write(0x04, 4, 0)
    regs.reset()
    assert regs.read(0x04, 4) == 0xA5A5A5A5


def test_declaration_errors() -> None:
    with pytest.raises(ValueError, match="aligned"):
        Register("x", 0x2, size=4)
    with pytest.raises(ValueError, match="register x: size 3 is not 1, 2, 4 or 8"):
        Register("x", 0, size=3)
    with pytest.raises(ValueError, match="register x: field f exceeds 32 bits"):
        Register("x", 0, fields=(Field("f", 32),))
    with pytest.raises(ValueError, match="registers a and b overlap at 0x4"):
        RegisterFile([Register("a", 0, size=8), Register("b", 4)])
    with pytest.raises(ValueError, match="exceeds"):
        Register("x", 0, size=1, fields=(Field("f", 4, 8),))
    with pytest.raises(ValueError, match="overlap"):
        RegisterFile([Register("a", 0, size=8), Register("b", 4)])
    with pytest.raises(ValueError, match="twice"):
        RegisterFile([Register("a", 0), Register("a", 4)])
    with pytest.raises(TypeError, match="register a: object has no method missing"):
        RegisterFile([Register("a", 0, write="missing")], owner=object())
    with pytest.raises(TypeError, match="register b: object has no method gone"):
        RegisterFile([Register("b", 0, read="gone")], owner=object())


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
