"""MMIO round trips per second: our edu model over vfio-user vs QEMU's built-in edu.

Three columns measured in one run: reads through our server from the Python
client (no QEMU), and reads through QEMU (qtest as the CPU) of our edu on
vfio-user-pci and of QEMU's own ``-device edu``.
Usage: python -m bench.mmio [--reads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.qemu_install import find_qemu
from harness.qtest import QtestMachine, vfio_user_device
from harness.served import ServedModel
from vfio_bridge.client import VfioUserClient

from .common import print_table, save

BAR = 0xFE000000


def _qtest_rate(machine: QtestMachine, devfn: int, reads: int) -> float:
    machine.pci_write(devfn, 0x10, BAR)
    machine.pci_write(devfn, 0x04, 0x6)
    assert machine.readl(BAR) == 0x010000ED
    start = time.perf_counter()
    for _ in range(reads):
        machine.readl(BAR)
    return reads / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=5000)
    args = parser.parse_args()
    qemu = find_qemu()
    with tempfile.TemporaryDirectory(prefix="xvpci-mmio-") as tmp:
        work = Path(tmp)
        served = ServedModel("edu", work / "s", None)
        try:
            with VfioUserClient(served.socket_path) as client:
                client.negotiate()
                start = time.perf_counter()
                for _ in range(args.reads * 4):
                    client.region_read(0, 0, 4)
                client_rate = args.reads * 4 / (time.perf_counter() - start)
            with QtestMachine(qemu, [vfio_user_device(served.socket_path, addr="4.0")], work) as m:
                ours = _qtest_rate(m, 4 << 3, args.reads)
        finally:
            served.stop()
        with QtestMachine(qemu, ["edu,addr=5.0"], work) as m:
            builtin = _qtest_rate(m, 5 << 3, args.reads)
    rows = [
        ["Python client -> our server", client_rate, "-"],
        ["QEMU qtest -> our edu (vfio-user)", ours, ours / builtin],
        ["QEMU qtest -> QEMU built-in edu", builtin, 1.0],
    ]
    print_table("MMIO reads of the edu ID register", ["path", "reads/s", "vs built-in"], rows)
    data = {
        "client_reads_per_s": client_rate,
        "qtest_ours_per_s": ours,
        "qtest_builtin_per_s": builtin,
        "ratio_ours_to_builtin": ours / builtin,
    }
    print(f"\nresult: {save('mmio', data)}")


if __name__ == "__main__":
    main()
