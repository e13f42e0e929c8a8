"""Record the wire fixtures: QEMU 11's vfio-user client talking to our server.

    .venv/bin/python -m tests.record_wire      # rewrites tests/fixtures/wire/*.jsonl.gz

Each session runs QEMU under qtest with one ``vfio-user-pci`` device whose socket
is a :class:`~tests.wirecap.WireProxy` in front of ``python -m vfio_bridge serve``,
and drives the device the way a guest driver would: enumeration, BAR sizing,
MMIO, MSI or MSI-X, DMA. The recorded client bytes are QEMU's, not ours: the
unit tests in ``test_wire_capture.py`` parse and answer them without QEMU.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from harness.qemu_install import find_qemu
from harness.qtest import QtestMachine, vfio_user_device
from harness.served import ServedModel
from tests.wirecap import WireProxy

FIXTURES = Path(__file__).parent / "fixtures" / "wire"
DEVFN = 4 << 3
BAR0 = 0xFE000000
MSI_TARGET = 0x00100000
RAM_SRC = 0x00200000
RAM_DST = 0x00300000


def drive_edu(machine: QtestMachine) -> None:
    """Enumerate, size BAR0, MMIO, MSI and DMA both ways (edu's register map)."""
    machine.pci_read(DEVFN, 0x00)
    machine.pci_write(DEVFN, 0x10, 0xFFFFFFFF)
    machine.pci_read(DEVFN, 0x10)
    machine.pci_write(DEVFN, 0x10, BAR0)
    machine.pci_write(DEVFN, 0x04, 0x6)
    machine.readl(BAR0)
    machine.writel(BAR0 + 0x04, 0x12345678)
    machine.readl(BAR0 + 0x04)
    msi = machine.find_capability(DEVFN, 0x05)
    machine.pci_write(DEVFN, msi + 4, MSI_TARGET)
    machine.pci_write(DEVFN, msi + 8, 0)
    machine.pci_write(DEVFN, msi + 12, 0x4321)
    machine.pci_write(DEVFN, msi, machine.pci_read(DEVFN, msi) | 1 << 16)
    machine.writel(BAR0 + 0x20, 0x80)
    machine.writel(BAR0 + 0x08, 5)
    machine.wait_for(f"readl {MSI_TARGET:#x}", lambda v: int(v, 16) == 0x4321)
    machine.writel(BAR0 + 0x64, 0x1)
    payload = bytes(range(64))
    machine.memwrite(RAM_SRC, payload)
    machine.writeq(BAR0 + 0x80, RAM_SRC)
    machine.writeq(BAR0 + 0x88, 0x40000)
    machine.writeq(BAR0 + 0x90, len(payload))
    machine.writeq(BAR0 + 0x98, 0x1)
    machine.wait_for(f"readq {BAR0 + 0x98:#x}", lambda v: not int(v, 16) & 1)
    machine.writeq(BAR0 + 0x80, 0x40000)
    machine.writeq(BAR0 + 0x88, RAM_DST)
    machine.writeq(BAR0 + 0x98, 0x3)
    machine.wait_for(f"readq {BAR0 + 0x98:#x}", lambda v: not int(v, 16) & 1)


def drive_window(machine: QtestMachine) -> None:
    """Enumerate the window, size its BARs, enable MSI-X, read the child's IDs through CFGBAR."""
    machine.pci_read(DEVFN, 0x00)
    for reg, base in ((0x10, 0xE0000000), (0x18, 0xF0000000), (0x20, 0xF1000000)):
        machine.pci_write(DEVFN, reg, 0xFFFFFFFF)
        machine.pci_read(DEVFN, reg)
        machine.pci_write(DEVFN, reg, base)
        machine.pci_write(DEVFN, reg + 4, 0)
    machine.pci_write(DEVFN, 0x04, 0x6)
    msix = machine.find_capability(DEVFN, 0x11)
    machine.pci_write(DEVFN, msix, machine.pci_read(DEVFN, msix) | 1 << 31)
    machine.readl(0xE0000000)  # the child (bus 0, device 0 of the window) through CFGBAR
    machine.readl(0xE0000000 + 0x08)
    machine.writel(0xE0000000 + 0x04, 0x6)  # the child's command register


SESSIONS = {
    "edu-shared": ("edu", (), True, drive_edu),
    "edu-messages": ("edu", (), False, drive_edu),
    "window-edu": ("window", ("child=edu",), True, drive_window),
}


def record(name: str, workdir: Path) -> Path:
    model, options, shared, drive = SESSIONS[name]
    qemu = find_qemu()
    served = ServedModel(model, workdir / "s", workdir / f"{name}.jsonl", options)
    proxy = WireProxy(workdir / "s" / "proxy.sock", served.socket_path)
    try:
        device = vfio_user_device(proxy.listen_path, addr="4.0")
        with QtestMachine(qemu, [device], workdir, shared_memory=shared) as machine:
            drive(machine)
    finally:
        proxy.close()
        served.stop()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    target = FIXTURES / f"{name}.jsonl.gz"
    proxy.save(
        target,
        {
            "session": name,
            "model": model,
            "options": list(options),
            "shared_memory": shared,
            "qemu": qemu.version_string,
            "recorded_by": "python -m tests.record_wire",
        },
    )
    return target


def main() -> int:
    names = sys.argv[1:] or list(SESSIONS)
    with tempfile.TemporaryDirectory(prefix="xvpci-wire-") as tmp:
        for name in names:
            workdir = Path(tmp) / name
            workdir.mkdir()
            target = record(name, workdir)
            print(
                f"{target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target}"
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
