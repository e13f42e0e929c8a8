"""MMIO round trips per second: our edu model over vfio-user vs QEMU's built-in edu.

Measured side by side in one run, in interleaved rounds (the median round
counts, as these machines are noisy):

- the Python client reading our server directly (no QEMU);
- QEMU (qtest as the CPU) reading and writing our edu on vfio-user-pci, with
  the server's adaptive polling on (the default) and off (``--poll-us 0``);
- QEMU reading and writing its own ``-device edu`` in the same machine.

A libvfio-user sample-server column needs a libvfio-user build, which Debian
does not package; the table says so when it is absent.
Usage: python -m bench.mmio [--accesses N] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.qemu_install import find_qemu
from harness.qtest import QtestMachine, vfio_user_device
from harness.served import ServedModel
from vfio_bridge.client import VfioUserClient

from .common import print_table, save

EDU_ID = 0x010000ED
EDU_SCRATCH = 0x04
#: slot -> BAR0 address for the three edu devices in the machine.
SLOTS = {"builtin": (3, 0xFE000000), "polling": (4, 0xFE100000), "no polling": (5, 0xFE200000)}


def _enable(machine: QtestMachine, slot: int, bar: int) -> None:
    devfn = slot << 3
    machine.pci_write(devfn, 0x10, bar)
    machine.pci_write(devfn, 0x04, 0x6)
    if machine.readl(bar) != EDU_ID:
        raise SystemExit(f"edu in slot {slot} does not answer at {bar:#x}")


def _rate(access: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        access()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accesses", type=int, default=3000, help="accesses per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    qemu = find_qemu()
    rates: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        rates.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory(prefix="xvpci-mmio-") as tmp:
        work = Path(tmp)
        polling = ServedModel("edu", work / "p", None, name="polling")
        quiet = ServedModel("edu", work / "q", None, name="quiet", server_args=["--poll-us", "0"])
        try:
            devices = [
                f"edu,addr={SLOTS['builtin'][0]}.0",
                vfio_user_device(polling.socket_path, addr=f"{SLOTS['polling'][0]}.0"),
                vfio_user_device(quiet.socket_path, addr=f"{SLOTS['no polling'][0]}.0"),
            ]
            with QtestMachine(qemu, devices, work) as machine:
                for slot, bar in SLOTS.values():
                    _enable(machine, slot, bar)
                for _ in range(args.rounds):
                    for name, (_, bar) in SLOTS.items():
                        note(f"read {name}", _rate(lambda b=bar: machine.readl(b), args.accesses))
                        write = lambda b=bar: machine.writel(b + EDU_SCRATCH, 0x5A)  # noqa: E731
                        note(f"write {name}", _rate(write, args.accesses))
            with VfioUserClient(polling.socket_path) as client:
                client.negotiate()
                for _ in range(args.rounds):
                    note("read client", _rate(lambda: client.region_read(0, 0, 4), args.accesses))
        finally:
            polling.stop()
            quiet.stop()
    median = {key: statistics.median(values) for key, values in rates.items()}
    rows = []
    for kind in ("read", "write"):
        builtin = median[f"{kind} builtin"]
        rows.append([f"QEMU qtest {kind}s -> our edu, polling on", median[f"{kind} polling"],
                     median[f"{kind} polling"] / builtin])  # fmt: skip
        rows.append([f"QEMU qtest {kind}s -> our edu, polling off", median[f"{kind} no polling"],
                     median[f"{kind} no polling"] / builtin])  # fmt: skip
        rows.append([f"QEMU qtest {kind}s -> QEMU built-in edu", builtin, 1.0])
    rows.append(["Python client reads -> our server", median["read client"], "-"])
    rows.append(["libvfio-user sample server", "not built here", "-"])
    print_table(
        f"MMIO on the edu device, median of {args.rounds} interleaved rounds of "
        f"{args.accesses} accesses",
        ["path", "accesses/s", "vs built-in"],
        rows,
    )
    print(
        "\nQEMU posts vfio-user region writes (no reply awaited), so its write rate to our"
        "\nmodel can exceed the built-in device's; reads are full round trips."
    )
    data = {
        "accesses_per_round": args.accesses,
        "rounds": args.rounds,
        "median_per_s": median,
        "ratio_read_to_builtin": median["read polling"] / median["read builtin"],
        "ratio_write_to_builtin": median["write polling"] / median["write builtin"],
        "ratio_read_to_builtin_without_polling": median["read no polling"] / median["read builtin"],
        "libvfio_user": "not available: Debian does not package libvfio-user",
    }
    print(f"\nresult: {save('mmio', data)}")


if __name__ == "__main__":
    main()
