"""The window device with a synthetic child: CFGBAR, MEMBARs, MSI-X remapping, logging."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.difflog.profile import DeviceProfile
from tests.conftest import has, read_log
from vfio_bridge.device import Access, Bar, DeviceModel, MsiX, Register
from vfio_bridge.device.local import LocalBus
from vfio_bridge.models.window import CFGBAR, MEMBAR1, MEMBAR2, VmdWindow
from vfio_bridge.recorder import Recorder

WINDOW_MEMBAR1 = 0xE0000000
WINDOW_MEMBAR2 = 0x8_0000_0000


class Synthetic(DeviceModel):
    """A child with one register BAR, MSI-X in a second BAR, and a doorbell that interrupts."""

    name = "synthetic"
    vendor_id, device_id, class_code = 0x1B36, 0x00FD, 0xFF0000
    capabilities = (MsiX(vectors=4, table_bar=2, table_offset=0, pba_bar=2, pba_offset=0x800),)
    bars = (
        Bar(
            0,
            0x1000,
            registers=(
                Register("id", 0x0, access=Access.RO, reset=0xC0FFEE),
                Register("scratch", 0x4),
                Register("ring", 0x8, access=Access.WO, write="_ring"),
            ),
        ),
        Bar(2, 0x1000),
    )

    def _ring(self, vector: int) -> None:
        self.raise_irq(vector)


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.child = Synthetic()
        self.window = VmdWindow(child_model=self.child)
        self.bus = LocalBus(self.window, memory_size=4096)
        self.log = tmp_path / "window.jsonl"
        self.recorder = Recorder(self.log, "window", device=self.window.declaration())
        self.window.use_recorder(self.recorder)
        cfg = self.window.config
        cfg.write(0x10, (0xF0000000).to_bytes(4, "little"))  # CFGBAR
        cfg.write(0x18, WINDOW_MEMBAR1.to_bytes(4, "little"))
        cfg.write(0x20, (WINDOW_MEMBAR2 & 0xFFFFFFFF).to_bytes(4, "little"))
        cfg.write(0x24, (WINDOW_MEMBAR2 >> 32).to_bytes(4, "little"))
        cfg.write(0x04, (0x6).to_bytes(2, "little"))

    def mmio(self, bar: int, offset: int, size: int = 4, value: int | None = None) -> int:
        if value is None:
            result = self.bus.mmio_read(bar, offset, size)
            self.window.record_mmio(self.recorder, False, bar, offset, size, result)
            return result
        self.window.record_mmio(self.recorder, True, bar, offset, size, value)
        self.bus.mmio_write(bar, offset, size, value)
        return value

    def child_cfg(self, reg: int, value: int | None = None, size: int = 4) -> int:
        return self.mmio(CFGBAR, reg, size, value)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_cfgbar_decodes_the_child_and_absent_functions(env: Env) -> None:
    assert env.child_cfg(0x00) == 0x00FD1B36
    assert env.child_cfg(0x08) >> 8 == 0xFF0000
    assert env.mmio(CFGBAR, 1 << 12) == 0xFFFFFFFF  # device 0 function 1
    assert env.mmio(CFGBAR, 1 << 15) == 0xFFFFFFFF  # device 1
    assert env.mmio(CFGBAR, (31 << 15) | 0x8, 2) == 0xFFFF
    env.child_cfg(0x10, 0xFFFFFFFF)  # BAR sizing reaches the child's config space
    assert env.child_cfg(0x10) == 0xFFFFF000


def test_membars_reach_the_child_bars_at_programmed_addresses(env: Env) -> None:
    # The driver programs bus addresses inside MEMBAR1 (no shadow): MEMBAR address + offset.
    env.child_cfg(0x10, WINDOW_MEMBAR1 + 0x10000)
    env.child_cfg(0x04, 0x6)
    assert env.mmio(MEMBAR1, 0x10000) == 0xC0FFEE
    env.mmio(MEMBAR1, 0x10004, value=0x1234)
    assert env.child.registers(0)["scratch"] == 0x1234
    assert env.mmio(MEMBAR1, 0x0) == 0xFFFFFFFF  # nothing there
    # With QEMU's zero MEMBAR shadow the bus address is the offset alone.
    env.child_cfg(0x18, 0x3000)  # child BAR2 in MEMBAR2, past the reserved 0x2000
    assert env.mmio(MEMBAR2, 0x3800, 8) == 0  # the child's (empty) PBA
    env.child_cfg(0x04, 0x0)  # memory decoding off: no child any more
    assert env.mmio(MEMBAR1, 0x10000) == 0xFFFFFFFF


def test_child_msix_is_remapped_to_window_vectors(env: Env) -> None:
    window_msix = env.window.config.find_capability(0x11)
    env.window.config.write(window_msix + 2, (1 << 15).to_bytes(2, "little"))
    env.child_cfg(0x10, WINDOW_MEMBAR1)
    env.child_cfg(0x18, WINDOW_MEMBAR1 + 0x1000)
    env.child_cfg(0x04, 0x6)
    child_msix = env.child.config.find_capability(0x11)
    env.child_cfg(child_msix, 1 << 31)  # MSI-X enable (control is the upper half)
    table = WINDOW_MEMBAR1 + 0x1000 - WINDOW_MEMBAR1
    # The vmd driver's message format: address 0xFEE00000 | window vector << 12, data 0.
    for vector, window_vector in ((0, 1), (3, 5)):
        env.mmio(MEMBAR1, table + 16 * vector, value=0xFEE00000 | window_vector << 12)
        env.mmio(MEMBAR1, table + 16 * vector + 12, value=0)  # unmask
    env.mmio(MEMBAR1, 0x8, value=3)
    env.mmio(MEMBAR1, 0x8, value=0)
    assert env.bus.irqs == [("msix", 5), ("msix", 1)]

    # Masked: pending bit set, delivered on unmask, not logged twice.
    env.mmio(MEMBAR1, table + 16 * 3 + 12, value=1)
    env.mmio(MEMBAR1, 0x8, value=3)
    assert env.bus.irqs[-1] == ("msix", 1)
    assert env.mmio(MEMBAR1, table + 0x800, 8) == 1 << 3
    env.mmio(MEMBAR1, table + 16 * 3 + 12, value=0)
    assert env.bus.irqs[-1] == ("msix", 5)
    assert env.mmio(MEMBAR1, table + 0x800, 8) == 0

    env.recorder.close()
    header, events, _ = read_log(env.log)
    assert header["model"] == "synthetic" and header["window"] == "8086:a77f"
    profile = DeviceProfile.from_header(header)  # what the diff makes of the description
    assert profile.skip_mmio == ((2, 0, 64), (2, 0x800, 0x808))
    child_irqs = [e for e in events if e["kind"] == "irq" and "stream" not in e]
    assert [e["vector"] for e in child_irqs] == [3, 0, 3]  # the child's own vectors, once each
    # Child accesses are logged in the child's terms, like the direct path.
    assert any(has(e, kind="mmio_write", bar=0, offset=8, value=3) for e in events)
    assert any(has(e, kind="cfg_write", offset=0x10) and "stream" not in e for e in events)
    assert any(has(e, kind="mmio_write", bar=2, offset=16 * 3 + 12, value=0) for e in events)
    child_mmio = [e for e in events if e["kind"].startswith("mmio") and "stream" not in e]
    assert all(e["offset"] < 0x1000 for e in child_mmio)  # child BAR offsets, not MEMBAR ones


def test_window_own_accesses_are_a_separate_stream(env: Env) -> None:
    env.mmio(MEMBAR2, 0x0, value=0)  # the window's own MSI-X table
    env.mmio(CFGBAR, 1 << 15)  # absent function probe
    env.window.record_config(env.recorder, True, 0x44, 4, bytes(4))
    env.recorder.close()
    _, events, _ = read_log(env.log)
    assert len(events) == 3 and all(e["stream"] == "window" for e in events)


def test_window_refuses_itself_and_unknown_children() -> None:
    with pytest.raises(ValueError, match="another window"):
        VmdWindow(child="window")
    with pytest.raises(ValueError, match="unknown model"):
        VmdWindow(child="nosuch")
