"""QEMU 11's own vfio-user-pci client against our server, with QEMU's qtest as the CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

from harness.qemu_install import QemuInstall
from harness.qtest import QtestMachine, vfio_user_device
from tests.conftest import has, read_log

pytestmark = pytest.mark.qemu

DEVFN = 4 << 3  # slot 4, function 0
BAR0 = 0xFE000000
MSI_TARGET = 0x00100000  # MSI address pointed at RAM so qtest can see the write
RAM_SRC = 0x00200000
RAM_DST = 0x00300000
PCI_COMMAND_MEMORY_AND_MASTER = 0x6


def _wait_dma_done(machine: QtestMachine) -> None:
    assert machine.wait_for(f"readq {BAR0 + 0x98:#x}", lambda v: not int(v, 16) & 1), "DMA stuck"


@pytest.mark.parametrize("shared", [True, False], ids=["memfd-shared", "message-dma"])
def test_edu_through_qemu_vfio_user(
    qemu: QemuInstall, serve_model, tmp_path: Path, shared: bool
) -> None:
    served = serve_model("edu")
    device = vfio_user_device(served.socket_path, addr="4.0")
    payload = os.urandom(64)
    with QtestMachine(qemu, [device], tmp_path, shared_memory=shared) as machine:
        # Enumeration through QEMU's config space emulation of the vfio device.
        assert machine.pci_read(DEVFN, 0x00) == 0x11E81234
        assert machine.pci_read(DEVFN, 0x08) >> 8 == 0x00FF00

        # BAR sizing and assignment, then the identification register over MMIO.
        machine.pci_write(DEVFN, 0x10, 0xFFFFFFFF)
        assert machine.pci_read(DEVFN, 0x10) == 0xFFF00000  # 1 MiB, 32-bit memory
        machine.pci_write(DEVFN, 0x10, BAR0)
        machine.pci_write(DEVFN, 0x04, PCI_COMMAND_MEMORY_AND_MASTER)
        assert machine.readl(BAR0 + 0x00) == 0x010000ED

        machine.writel(BAR0 + 0x04, 0x12345678)
        assert machine.readl(BAR0 + 0x04) == 0xEDCBA987

        machine.writel(BAR0 + 0x08, 10)
        assert machine.wait_for(f"readl {BAR0 + 0x20:#x}", lambda v: not int(v, 16) & 1)
        assert machine.readl(BAR0 + 0x08) == 3628800

        # MSI: QEMU writes the message to the address we programmed.
        msi = machine.find_capability(DEVFN, 0x05)
        machine.pci_write(DEVFN, msi + 4, MSI_TARGET)
        machine.pci_write(DEVFN, msi + 8, 0)
        machine.pci_write(DEVFN, msi + 12, 0x4321)
        control = machine.pci_read(DEVFN, msi) | (1 << 16)
        machine.pci_write(DEVFN, msi, control)
        machine.writel(BAR0 + 0x20, 0x80)  # interrupt when the factorial is done
        machine.writel(BAR0 + 0x08, 5)
        assert machine.wait_for(f"readl {MSI_TARGET:#x}", lambda v: int(v, 16) == 0x4321)
        assert machine.readl(BAR0 + 0x24) == 0x1
        assert machine.readl(BAR0 + 0x08) == 120
        machine.writel(BAR0 + 0x64, 0x1)
        assert machine.readl(BAR0 + 0x24) == 0

        # DMA both ways through QEMU's DMA_MAP (shared) or DMA_READ/WRITE (not shared).
        machine.memwrite(RAM_SRC, payload)
        machine.writeq(BAR0 + 0x80, RAM_SRC)
        machine.writeq(BAR0 + 0x88, 0x40000)
        machine.writeq(BAR0 + 0x90, len(payload))
        machine.writeq(BAR0 + 0x98, 0x1)
        _wait_dma_done(machine)
        buffer = b"".join(
            machine.readl(BAR0 + 0x40000 + i).to_bytes(4, "little") for i in range(0, 64, 4)
        )
        assert buffer == payload
        machine.writeq(BAR0 + 0x80, 0x40000)
        machine.writeq(BAR0 + 0x88, RAM_DST)
        machine.writeq(BAR0 + 0x98, 0x3)
        _wait_dma_done(machine)
        assert machine.memread(RAM_DST, 64) == payload
    assert served.stop() == 0

    header, events, trailer = read_log(served.log_path)
    assert header["xvpci_log"] == 3 and header["model"] == "edu" and header["path"] == "direct"
    assert trailer is not None
    kinds = {e["kind"] for e in events}
    assert {
        "cfg_read",
        "cfg_write",
        "mmio_read",
        "mmio_write",
        "dma_read",
        "dma_write",
        "irq",
    } <= kinds

    def logged(kind: str, **fields: object) -> bool:
        return any(has(e, kind=kind, **fields) for e in events)

    assert logged("mmio_read", bar=0, offset=0, size=4, value=0x010000ED)
    assert logged("mmio_write", bar=0, offset=8, size=4, value=10)
    assert logged("mmio_read", bar=0, offset=8, size=4, value=3628800)
    assert logged("irq", irq_type="msi", vector=0)
    digest = xxhash.xxh3_128_hexdigest(payload)
    assert logged("dma_read", addr=RAM_SRC, len=64, digest=digest, data=payload.hex())
    assert logged("dma_write", addr=RAM_DST, len=64, digest=digest)
    maps = [e for e in events if e["kind"] == "dma_map"]
    assert maps and any(m["shared"] is shared for m in maps)
    if not shared:
        assert not any(m["shared"] for m in maps)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
