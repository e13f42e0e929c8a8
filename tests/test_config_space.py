"""PCI config space: header, BAR sizing, command/status, capability list, FLR."""

from __future__ import annotations

import pytest

from vfio_bridge.device import Bar, DeviceModel, Msi, MsiX, PciExpress, PowerManagement
from vfio_bridge.pci.capabilities import CAP_EXPRESS, CAP_MSI, CAP_MSIX, CAP_PM
from vfio_bridge.pci.config import BarKind, BarLayout, ConfigSpace


def write32(config: ConfigSpace, offset: int, value: int) -> None:
    config.write(offset, value.to_bytes(4, "little"))


def read32(config: ConfigSpace, offset: int) -> int:
    return int.from_bytes(config.read(offset, 4), "little")


@pytest.fixture
def config() -> ConfigSpace:
    space = ConfigSpace()
    space.init_header(0x1234, 0x5678, 0x010802, revision=2)
    space.add_bar(BarLayout(0, 0x4000, BarKind.MEM64))
    space.add_bar(BarLayout(2, 0x100, BarKind.IO))
    space.add_bar(BarLayout(3, 0x1000, BarKind.MEM32, prefetchable=True))
    return space


def test_header_identity_is_read_only(config: ConfigSpace) -> None:
    assert read32(config, 0x00) == 0x56781234
    assert read32(config, 0x08) == 0x01080202
    write32(config, 0x00, 0xFFFFFFFF)
    write32(config, 0x08, 0)
    assert read32(config, 0x00) == 0x56781234
    assert read32(config, 0x08) == 0x01080202


def test_bar_sizing_reads_back_the_size_mask(config: ConfigSpace) -> None:
    for offset in (0x10, 0x14, 0x18, 0x1C, 0x20):
        write32(config, offset, 0xFFFFFFFF)
    assert read32(config, 0x10) == 0xFFFFC004  # 16 KiB, 64-bit memory
    assert read32(config, 0x14) == 0xFFFFFFFF  # upper half of the 64-bit BAR
    assert read32(config, 0x18) == 0xFFFFFF01  # 256 bytes of I/O
    assert read32(config, 0x1C) == 0xFFFFF008  # 4 KiB, 32-bit, prefetchable
    assert read32(config, 0x20) == 0  # not implemented


def test_bar_address_combines_64_bit_halves(config: ConfigSpace) -> None:
    write32(config, 0x10, 0xFEDC4000)
    write32(config, 0x14, 0x12)
    assert config.bar_address(0) == 0x12_FEDC4000
    assert config.bar_address(1) is None


def test_command_and_w1c_status(config: ConfigSpace) -> None:
    config.write(0x04, (0xFFFF).to_bytes(2, "little"))
    assert config.command == 0x0547  # only implemented command bits stick
    config.data[0x07] = 0xF9  # device reported errors
    config.write(0x06, (0x0800).to_bytes(2, "little"))  # clear "signalled target abort"
    assert config.read_int(0x06, 2) == 0xF100
    config.write(0x06, (0xFFFF).to_bytes(2, "little"))
    assert config.read_int(0x06, 2) == 0


def test_accesses_outside_config_space_are_refused(config: ConfigSpace) -> None:
    with pytest.raises(IndexError):
        config.read(4095, 2)
    with pytest.raises(IndexError):
        config.write(-1, b"\0")


def test_capability_list_walks_in_order_with_status_bit() -> None:
    space = ConfigSpace()
    space.init_header(1, 2, 3)
    assert not space.read_int(0x06, 2) & 0x10
    PowerManagement().install(space)
    Msi(vectors=4).install(space)
    MsiX(vectors=8, table_bar=0, table_offset=0x2000, pba_bar=0, pba_offset=0x3000).install(space)
    PciExpress().install(space)
    assert [cap for _, cap in space.capabilities()] == [CAP_PM, CAP_MSI, CAP_MSIX, CAP_EXPRESS]
    assert space.read_int(0x06, 2) & 0x10
    offsets = [off for off, _ in space.capabilities()]
    assert offsets[0] == space.data[0x34] == 0x40
    assert all(off % 4 == 0 for off in offsets)
    msix = space.find_capability(CAP_MSIX)
    assert msix is not None
    assert space.read_int(msix + 2, 2) == 7  # table size - 1
    assert space.read_int(msix + 4, 4) == 0x2000 and space.read_int(msix + 8, 4) == 0x3000


def test_capability_walk_survives_a_loop() -> None:
    space = ConfigSpace()
    space.init_header(1, 2, 3)
    first = PowerManagement().install(space)
    space.data[first + 1] = first  # a broken list pointing at itself
    assert space.capabilities() == [(first, CAP_PM)]


def test_msi_control_bits() -> None:
    space = ConfigSpace()
    space.init_header(1, 2, 3)
    offset = Msi(vectors=8).install(space)
    control = space.read_int(offset + 2, 2)
    assert control == (3 << 1) | (1 << 7) | (1 << 8)  # 8 vectors, 64-bit, maskable
    space.write(offset + 2, (0xFFFF).to_bytes(2, "little"))
    assert Msi.enabled(space, offset)
    assert Msi.enabled_vectors(space, offset) == 128  # software may ask more; models cap it
    assert space.read_int(offset + 2, 2) & 0x0E == 6  # multiple-message capable is RO


def test_bar_layout_validation() -> None:
    with pytest.raises(ValueError):
        BarLayout(0, 3000)
    with pytest.raises(ValueError):
        BarLayout(6, 4096)
    with pytest.raises(ValueError):
        BarLayout(5, 4096, BarKind.MEM64)


class _Flr(DeviceModel):
    name = "flr-test"
    vendor_id, device_id, class_code = 0x1B36, 0x0001, 0xFF0000
    bars = (Bar(0, 4096),)
    capabilities = (PowerManagement(), PciExpress())


def test_function_level_reset_through_device_control() -> None:
    model = _Flr()
    pcie = model.config.find_capability(CAP_EXPRESS)
    assert pcie is not None
    assert model.config.read_int(pcie + 4, 4) & (1 << 28)  # FLR capable
    model.config.write(0x04, (0x6).to_bytes(2, "little"))
    model.config.write(0x10, (0xFE000000).to_bytes(4, "little"))
    model.config.write(pcie + 8, (1 << 15).to_bytes(2, "little"))
    assert model.config.command == 0
    assert model.config.bar_address(0) == 0
