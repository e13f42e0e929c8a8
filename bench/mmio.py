"""MMIO round trips per second through QEMU: libvfio-user, our server, QEMU's own edu.

One QEMU under qtest (the benchmark plays the CPU) holds an edu-like device
from each server, side by side:

- libvfio-user (nutanix/libvfio-user, release build) serving the small C
  server ``bench/libvfio_user_edu.c`` (see :mod:`bench.libvfio_user`), as it
  runs by default and under ``SCHED_BATCH`` (the policy our server takes on one
  CPU, which libvfio-user's servers could take too: how much of a ratio is the
  policy, not the server);
- our edu model, with the server's adaptive polling on (``--poll-us 200
  --sched normal``, the default with two CPUs or more) and off (``--poll-us 0
  --sched batch``, the default on one CPU);
- QEMU's built-in ``-device edu``;
- the floor of any Python server (:mod:`bench.floor_server`): the same two
  system calls per access as ours, a canned reply and nothing else, under
  ``SCHED_BATCH`` without polling. What a server in CPython cannot go below.

Each vfio-user server serves two devices, one with QEMU's posted region
writes (its default) and one with ``x-no-posted-writes=on``. Three kinds of
access: reads of the identification register, non-posted writes, and posted
writes (a round of posted writes ends with one read, which waits for them
all, so the server's work is in the time).

Three CPU layouts, switched by pinning every thread of QEMU, the servers and
this process: all on one CPU; QEMU and this process on one CPU and the
servers on another; unpinned. Each round visits every layout and device, in
an order that turns from round to round; the tables give medians over rounds,
and ratios are medians of the per-round ratios (both sides measured moments
apart). Without a libvfio-user checkout the column stays empty and the output
says why.

Usage: python -m bench.mmio [--libvfio-user-src DIR] [--accesses N] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

from harness.errors import HarnessError
from harness.qemu_install import find_qemu
from harness.qtest import QtestMachine, vfio_user_device
from harness.served import ServedModel
from vfio_bridge.polling import DEFAULT_POLL_MAX_US

from . import floor_server, libvfio_user
from .common import SocketServer, print_table, save

EDU_ID = 0x010000ED
EDU_LIVENESS = 0x04
BAR_BASE = 0xFE000000
BAR_STRIDE = 0x100000  # every edu's BAR0 is 1 MiB
FIRST_SLOT = 3

LIBVFIO_USER = "libvfio-user"
LIBVFIO_USER_BATCH = "libvfio-user, batch"
POLLING = "ours, polling"
NO_POLLING = "ours, no polling"
FLOOR = "Python floor"
BUILTIN = "built-in edu"
PATHS = (LIBVFIO_USER, LIBVFIO_USER_BATCH, POLLING, NO_POLLING, FLOOR, BUILTIN)
LIBVFIO_USER_PATHS = (LIBVFIO_USER, LIBVFIO_USER_BATCH)
OURS = (POLLING, NO_POLLING)
#: Compared with libvfio-user under SCHED_BATCH as well: all run under it or may.
BATCH_COMPARED = (*OURS, FLOOR)
READ, WRITE, POSTED = "read", "write (non-posted)", "write (posted)"
OPS = (READ, WRITE, POSTED)
T = TypeVar("T")
ONE_CPU, OWN_CPU, UNPINNED = "all on one CPU", "server on its own CPU", "unpinned"


@dataclass
class Device:
    """One edu in the machine: who serves it, its slot and BAR0 address, and whether
    QEMU posts its writes."""

    label: str  # the server (a path, a variant), or the built-in edu's
    slot: int
    bar: int
    posted: bool
    server_pid: int | None  # None: QEMU's own device


@dataclass
class Layout:
    name: str
    driver: set[int]  # this process and QEMU
    servers: set[int]


def layouts(cpus: list[int]) -> tuple[list[Layout], str | None]:
    """The layouts this machine can hold, and why one is left out (or None)."""
    every = set(cpus)
    chosen = [Layout(ONE_CPU, {cpus[0]}, {cpus[0]})]
    skipped = None
    if len(cpus) > 1:
        chosen.append(Layout(OWN_CPU, {cpus[0]}, {cpus[1]}))
    else:
        skipped = f"{OWN_CPU}: this process may use only CPU {cpus[0]}"
    chosen.append(Layout(UNPINNED, every, every))
    return chosen, skipped


def _each_thread(pid: int, action: Callable[[int], object]) -> None:
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            action(int(task))


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of ``pid`` (QEMU has several)."""
    _each_thread(pid, lambda tid: os.sched_setaffinity(tid, cpus))


def batch(pid: int) -> None:
    """Put every thread of ``pid`` under SCHED_BATCH (as our server's ``--sched batch``)."""
    _each_thread(pid, lambda tid: os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0)))


def pci_address(slot: int) -> str:
    """``slot``'s ``addr`` property: QEMU reads slot and function in hexadecimal
    (``set_pci_devfn`` in hw/core/qdev-properties-system.c), so "10.0" is slot 16."""
    return f"{slot:02x}.0"


def cpu_ns(pid: int) -> int:
    """Nanoseconds ``pid``'s main thread has run (the servers serve on it)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


def switches(pid: int) -> tuple[int, int]:
    """How often ``pid``'s main thread has left its CPU: (blocking, preempted)."""
    counts = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name.endswith("ctxt_switches"):
                counts[name] = int(value)
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


class Measured(NamedTuple):
    """One measurement: accesses per second; per access, the server's CPU
    microseconds and how often it left the CPU blocking and preempted (None
    without a server)."""

    rate: float
    cpu_us: float | None = None
    blocked: float | None = None
    preempted: float | None = None


def measure_edu(
    machine: QtestMachine, op: str, bar: int, count: int, server_pid: int | None
) -> Measured:
    """``count`` accesses of kind ``op`` to the edu at ``bar`` after a short warm-up,
    and what they cost ``server_pid`` (see :class:`Measured`)."""
    ident = bar
    liveness = bar + EDU_LIVENESS
    if op == READ:
        access: Callable[[], object] = lambda: machine.readl(ident)  # noqa: E731
        finish: Callable[[], object] = _nothing
    else:
        access = lambda: machine.writel(liveness, 0x5A)  # noqa: E731
        # Posted writes are done when a read behind them returns.
        finish = (lambda: machine.readl(ident)) if op == POSTED else _nothing
    _timed(access, max(50, count // 10), finish)
    if server_pid is None:
        return Measured(_timed(access, count, finish))
    ran, (blocked, preempted) = cpu_ns(server_pid), switches(server_pid)
    rate = _timed(access, count, finish)
    now_blocked, now_preempted = switches(server_pid)
    return Measured(
        rate,
        (cpu_ns(server_pid) - ran) / count / 1000,
        (now_blocked - blocked) / count,
        (now_preempted - preempted) / count,
    )


def add_libvfio_user_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--libvfio-user-src",
        metavar="DIR",
        help=f"clone of nutanix/libvfio-user to build (default ${libvfio_user.SOURCE_ENV})",
    )


def _timed(access: Callable[[], object], count: int, finish: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(count):
        access()
    finish()
    return count / (time.perf_counter() - start)


def _nothing() -> None:
    return None


class FloorServer(SocketServer):
    """:mod:`bench.floor_server` on ``socket_path``; ``stop()`` ends it by its pid."""

    def __init__(self, socket_path: Path, timeout: float = 15.0) -> None:
        argv = [sys.executable, str(Path(floor_server.__file__).resolve()), str(socket_path)]
        super().__init__(argv, "floor server", socket_path, timeout)


class MachineWithServers:
    """One QEMU under qtest, its edu devices and the server processes behind them:
    :meth:`add` a device (with its server) for each, then :meth:`boot`; :meth:`close`
    ends QEMU and every server by its pid."""

    def __init__(self) -> None:
        self.machine: QtestMachine | None = None
        self.servers: list[ServedModel | SocketServer] = []
        self.devices: list[Device] = []
        self._specs: list[str] = []

    def add(self, label: str, posted: bool, server: ServedModel | SocketServer | None) -> None:
        """A device served by ``server`` (the built-in edu with None), posting its writes
        or not; the server is this machine's to end from now on."""
        slot = FIRST_SLOT + len(self.devices)
        pid = None if server is None else server.pid
        self.devices.append(
            Device(label, slot, BAR_BASE + BAR_STRIDE * len(self.devices), posted, pid)
        )
        if server is None:
            self._specs.append(f"edu,addr={pci_address(slot)}")
            return
        self.servers.append(server)
        props = {} if posted else {"x-no-posted-writes": True}
        self._specs.append(vfio_user_device(server.socket_path, addr=pci_address(slot), **props))

    def boot(self, work: Path) -> None:
        """Start QEMU with the devices added, and enable and check each."""
        self.machine = machine = QtestMachine(find_qemu(), self._specs, work)
        for device in self.devices:
            devfn = device.slot << 3
            machine.pci_write(devfn, 0x10, device.bar)
            machine.pci_write(devfn, 0x04, 0x6)  # memory space, bus master
            ident = machine.readl(device.bar)
            machine.writel(device.bar + EDU_LIVENESS, 0x5A)
            inverted = machine.readl(device.bar + EDU_LIVENESS)
            if ident != EDU_ID or inverted != 0xFFFFFFA5:
                raise HarnessError(
                    f"{device.label} edu in slot {device.slot} answers {ident:#x}/{inverted:#x} "
                    f"instead of {EDU_ID:#x}/0xffffffa5"
                )

    def device(self, label: str, posted: bool) -> Device:
        return next(d for d in self.devices if d.label == label and d.posted == posted)

    def close(self) -> None:
        if self.machine is not None:
            self.machine.close()
            self.machine = None
        for server in self.servers:
            server.stop()
        self.servers.clear()


class Bench(MachineWithServers):
    """The machine, its devices and their servers; every process ended by its pid on close."""

    def __init__(self, work: Path, libvfio_build: libvfio_user.Build | None) -> None:
        super().__init__()
        try:
            self.add(BUILTIN, True, None)
            if libvfio_build is not None:
                for path in LIBVFIO_USER_PATHS:
                    for posted in (True, False):
                        name = f"lvu{'-batch' if path == LIBVFIO_USER_BATCH else ''}"
                        socket_path = work / f"{name}-{'p' if posted else 'np'}.sock"
                        server = libvfio_user.EduServer(libvfio_build, socket_path)
                        self.add(path, posted, server)
                        if path == LIBVFIO_USER_BATCH:
                            batch(server.pid)
            for posted in (True, False):
                self.add(FLOOR, posted, FloorServer(work / f"floor-{'p' if posted else 'np'}.sock"))
            # Both explicit: the servers start unpinned, with the defaults of two CPUs.
            polling = ["--poll-us", str(DEFAULT_POLL_MAX_US), "--sched", "normal"]
            quiet = ["--poll-us", "0", "--sched", "batch"]
            for path, args in ((POLLING, polling), (NO_POLLING, quiet)):
                for posted in (True, False):
                    name = f"{'poll' if path == POLLING else 'quiet'}-{'p' if posted else 'np'}"
                    served = ServedModel("edu", work / "s", None, name=name, server_args=args)
                    self.add(path, posted, served)
            self.boot(work)
        except BaseException:
            self.close()
            raise

    def place(self, layout: Layout) -> None:
        assert self.machine is not None
        os.sched_setaffinity(0, layout.driver)
        pin(self.machine.process.pid, layout.driver)
        for server in self.servers:
            pin(server.pid, layout.servers)

    def measure(self, path: str, op: str, count: int) -> Measured:
        """``op`` on ``path``'s edu (after a short warm-up): see :class:`Measured`."""
        assert self.machine is not None
        # Reads and posted writes go to the device whose writes QEMU posts; the
        # built-in edu has only one kind of write.
        posted = op != WRITE or path == BUILTIN
        device = self.device(path, posted)
        return measure_edu(self.machine, op, device.bar, count, device.server_pid)


@contextlib.contextmanager
def measuring(bench: MachineWithServers, own_cpus: set[int]) -> Iterator[None]:
    """The rounds of a benchmark: a harness error ends it with its message, and either
    way ``bench`` is closed (every process ended by its pid) and this process gets its
    CPUs (``own_cpus``) back."""
    try:
        yield
    except HarnessError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        bench.close()
        os.sched_setaffinity(0, own_cpus)


def rotate(items: list[T], by: int) -> list[T]:
    by %= len(items)
    return items[by:] + items[:by]


def _median_ratio(numerators: Iterable[float], denominators: Iterable[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_libvfio_user_argument(parser)
    parser.add_argument("--accesses", type=int, default=2000, help="accesses per measurement")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    load_start = os.getloadavg()
    built: libvfio_user.Build | None = None
    try:
        built = libvfio_user.build(libvfio_user.source_from(args.libvfio_user_src))
        libvfio_status = f"built from {built.source} at {built.revision} (release)"
    except libvfio_user.Unavailable as exc:
        libvfio_status = f"not measured: {exc}"
    print(f"libvfio-user: {libvfio_status}", flush=True)
    paths = [p for p in PATHS if built is not None or p not in LIBVFIO_USER_PATHS]
    own_cpus = os.sched_getaffinity(0)
    chosen, skipped = layouts(sorted(own_cpus))

    # rates[layout][op][path] = one value per round
    rates = {lay.name: {op: {p: [] for p in paths} for op in OPS} for lay in chosen}
    servers = [p for p in paths if p != BUILTIN]
    # cpu_us[layout][op][path]: the server's CPU microseconds per access, one per round
    cpu_us = {lay.name: {op: {p: [] for p in servers} for op in OPS} for lay in chosen}
    # left[layout][op][path]: how often the server left the CPU per access, one
    # (blocking, preempted) pair per round
    left = {lay.name: {op: {p: [] for p in servers} for op in OPS} for lay in chosen}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xvpci-mmio-") as tmp:
        try:
            bench = Bench(Path(tmp), built)
        except HarnessError as exc:
            raise SystemExit(f"error: {exc}") from None
        with measuring(bench, own_cpus):
            for round_no in range(args.rounds):
                for layout in rotate(chosen, round_no):
                    bench.place(layout)
                    order = paths if round_no % 2 == 0 else paths[::-1]
                    for path in rotate(list(order), round_no // 2):
                        for op in OPS:
                            measured = bench.measure(path, op, args.accesses)
                            rates[layout.name][op][path].append(measured.rate)
                            if measured.cpu_us is not None:
                                cpu_us[layout.name][op][path].append(measured.cpu_us)
                                left[layout.name][op][path].append(
                                    (measured.blocked, measured.preempted)
                                )
                print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    seconds = time.monotonic() - started
    load_end = os.getloadavg()

    median = {
        lay: {op: {p: statistics.median(v) for p, v in by_p.items()} for op, by_p in by_op.items()}
        for lay, by_op in rates.items()
    }
    median_cpu = {
        lay: {op: {p: statistics.median(v) for p, v in by_p.items()} for op, by_p in by_op.items()}
        for lay, by_op in cpu_us.items()
    }
    median_left = {
        lay: {
            op: {
                p: {
                    "blocking": statistics.median(b for b, _ in pairs),
                    "preempted": statistics.median(q for _, q in pairs),
                }
                for p, pairs in by_p.items()
            }
            for op, by_p in by_op.items()
        }
        for lay, by_op in left.items()
    }
    versus: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for reference in (LIBVFIO_USER, LIBVFIO_USER_BATCH, BUILTIN):
        if reference not in paths:
            continue
        versus[reference] = {
            lay: {
                op: {
                    p: _median_ratio(rates[lay][op][p], rates[lay][op][reference])
                    for p in paths
                    if p != reference and (reference == LIBVFIO_USER or p in BATCH_COMPARED)
                }
                for op in OPS
            }
            for lay in rates
        }

    names = [lay.name for lay in chosen]
    for op in OPS:
        rows = [[p, *(median[lay][op][p] for lay in names)] for p in paths]
        print_table(
            f"{op}: accesses per second, median of {args.rounds} rounds of {args.accesses}",
            ["path", *names],
            rows,
        )
    rows = [
        [f"{op}, {p}", *(median_cpu[lay][op][p] for lay in names)] for op in OPS for p in servers
    ]
    print_table(
        "server CPU microseconds per access (median; polling spends CPU by design)",
        ["access, server", *names],
        rows,
    )
    rows = [
        [f"{op}, {p}", *(_left_text(median_left[lay][op][p]) for lay in names)]
        for op in OPS
        for p in servers
    ]
    print_table(
        "times the server left the CPU per access, blocking / preempted (median)",
        ["access, server", *names],
        rows,
    )
    for reference, table in versus.items():
        rows = [
            [f"{op}, {p}", *(table[lay][op][p] for lay in names)]
            for op in OPS
            for p in table[names[0]][op]
        ]
        print_table(f"vs {reference} (median of per-round ratios)", ["access, path", *names], rows)

    reached = _reached(versus.get(LIBVFIO_USER), names)
    reached_batch = _reached(versus.get(LIBVFIO_USER_BATCH), names)
    note = _note(
        reached,
        libvfio_status,
        skipped,
        max(load_start[0], load_end[0]),
        len(own_cpus),
        reached_batch,
    )
    print(f"\n{note}")
    print(
        f"\n{seconds:.0f} s; load average {load_start[0]:.2f} at the start, "
        f"{load_end[0]:.2f} at the end"
    )
    data = {
        "accesses_per_measurement": args.accesses,
        "rounds": args.rounds,
        "seconds": round(seconds, 1),
        "load_average_1min": {"start": load_start[0], "end": load_end[0]},
        "layouts": {
            lay.name: {
                "qemu_and_driver_cpus": sorted(lay.driver),
                "server_cpus": sorted(lay.servers),
            }
            for lay in chosen
        },
        "skipped_layout": skipped,
        "libvfio_user": libvfio_status,
        "median_per_s": median,
        "server_cpu_us_per_access": median_cpu,
        "server_switches_per_access": median_left,
        "ratio_to_libvfio_user": versus.get(LIBVFIO_USER),
        "ratio_to_libvfio_user_batch": versus.get(LIBVFIO_USER_BATCH),
        "ratio_to_builtin": versus.get(BUILTIN),
        "reaches_libvfio_user": reached,
        "reaches_libvfio_user_batch": reached_batch,
        "note": note,
    }
    print(f"\nresult: {save('mmio', data)}")


def _left_text(left: dict[str, float]) -> str:
    return f"{left['blocking']:.2f} / {left['preempted']:.2f}"


def _reached(
    table: dict[str, dict[str, dict[str, float]]] | None, names: list[str]
) -> dict[str, list[str]] | None:
    """For each of our configurations and accesses, the layouts where it is >= 1.0x libvfio-user."""
    if table is None:
        return None
    return {
        f"{op}, {path}": [lay for lay in names if table[lay][op][path] >= 1.0]
        for path in OURS
        for op in OPS
    }


def _note(
    reached: dict[str, list[str]] | None,
    status: str,
    skipped: str | None,
    load: float = 0.0,
    cpus: int = 1,
    reached_batch: dict[str, list[str]] | None = None,
) -> str:
    """What the run shows, in words: which layouts reach libvfio-user (as it runs by
    default, then under SCHED_BATCH), and whether the machine was quiet enough for
    round-trip rates to mean anything."""
    lines = []
    if load > cpus:
        # Other work then takes turns with QEMU and the servers, more with some than
        # with others: rates follow the scheduler, not the servers.
        lines.append(
            f"machine loaded (1-minute load average up to {load:.1f} on {cpus} CPUs): the "
            "rates and ratios below are not reliable; server CPU per access holds better"
        )
    if reached is None:
        lines.append(f"libvfio-user column empty: {status}")
    else:
        for reference, table in (("libvfio-user", reached), (LIBVFIO_USER_BATCH, reached_batch)):
            for key, where in (table or {}).items():
                layouts_text = ", ".join(where) if where else "no layout"
                lines.append(f"{key}: >= 1.0x {reference} in {layouts_text}")
    if skipped:
        lines.append(f"layout left out: {skipped}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
