"""Variants of our server side by side with libvfio-user, everything on one CPU.

For a change to the per-access path, or another interpreter, measured the way
``bench.mmio`` measures its one-CPU layout: one QEMU under qtest (the benchmark
plays the CPU) holds an edu from libvfio-user (``bench/libvfio_user_edu.c``)
and from each variant, QEMU, this process and every server are pinned to one
CPU, polling is off, and rounds interleave the servers in an order that turns.
Reported per kind of access: rates and the server's CPU per access (medians),
and each variant's median per-round ratio to libvfio-user.

A variant is ``NAME=PYTHON:SOURCE[:ARG,ARG...]``: the interpreter to run
``python -m vfio_bridge serve`` with, a source tree holding ``vfio_bridge``
(this checkout, or a ``git worktree`` of another commit), and extra ``serve``
arguments. For example, the code of two commits under one interpreter, and
the second again under ``SCHED_BATCH``::

    git worktree add /tmp/before HEAD~3
    python -m bench.mmio_ab --libvfio-user-src DIR before=.venv/bin/python:/tmp/before \\
        after=.venv/bin/python:. after-batch=.venv/bin/python:.:--sched,batch

Unlike ``bench.mmio``, it needs libvfio-user: that is what the ratios are to.
Servers run with ``python -P`` (Python 3.11 or later) from a scratch
directory, so that neither the working directory nor an installed copy shadows
``SOURCE``; each variant's ``vfio_bridge`` is checked to come from its tree
before anything runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

from . import libvfio_user
from .common import SocketServer, print_table, save
from .mmio import (
    OPS,
    WRITE,
    MachineWithServers,
    add_libvfio_user_argument,
    measure_edu,
    measuring,
    pin,
    rotate,
)

LIBVFIO_USER = "libvfio-user"


@dataclass(frozen=True)
class Variant:
    """One server to measure: its interpreter, source tree and extra ``serve`` arguments."""

    name: str
    python: str
    source: Path
    args: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``NAME=PYTHON:SOURCE[:ARG,ARG...]``; raises ValueError saying what is wrong."""
        name, sep, rest = text.partition("=")
        parts = rest.split(":")
        if not sep or not name or len(parts) not in (2, 3) or not all(parts[:2]):
            raise ValueError(f"{text!r} is not NAME=PYTHON:SOURCE[:ARG,ARG...]")
        if name == LIBVFIO_USER:
            raise ValueError(f"{name!r} names the reference column; choose another name")
        args = tuple(a for a in parts[2].split(",") if a) if len(parts) == 3 else ()
        # A path to the interpreter is made absolute but not resolved: a venv's
        # python is a symlink, and the venv is found through its path.
        python = os.path.abspath(parts[0]) if os.sep in parts[0] else parts[0]
        return cls(name, python, Path(parts[1]).resolve(), args)

    def _python(self, *args: str) -> list[str]:
        """The variant's interpreter on its tree alone (``-P``: not the working directory)."""
        return ["env", f"PYTHONPATH={self.source}", self.python, "-P", *args]

    def argv(self, *serve: str) -> list[str]:
        return self._python("-m", "vfio_bridge", *serve)

    def check(self) -> None:
        """The interpreter runs and imports ``vfio_bridge`` from the variant's tree."""
        probe = self._python("-c", "import vfio_bridge; print(vfio_bridge.__file__)")
        try:
            found = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise HarnessError(
                f"variant {self.name}: {self.python} cannot import vfio_bridge "
                f"from {self.source}: {exc}"
            ) from None
        where = Path(found.stdout.strip()).resolve()
        if not where.is_relative_to(self.source):
            raise HarnessError(
                f"variant {self.name}: vfio_bridge comes from {where}, not from {self.source}"
            )


class Bench(MachineWithServers):
    """libvfio-user and the variants, two devices each (posted and non-posted writes),
    in one QEMU; every process ended by its pid on close."""

    def __init__(self, work: Path, built: libvfio_user.Build, variants: list[Variant]) -> None:
        super().__init__()
        try:
            for name in (LIBVFIO_USER, *(v.name for v in variants)):
                variant = next((v for v in variants if v.name == name), None)
                for posted in (True, False):
                    sock = work / f"{name}-{'p' if posted else 'np'}.sock"
                    server: SocketServer
                    if variant is None:
                        server = libvfio_user.EduServer(built, sock)
                    else:
                        serve = ["serve", "--model", "edu", "--socket", str(sock)]
                        argv = variant.argv(*serve, "--poll-us", "0", *variant.args)
                        server = SocketServer(argv, name, sock, 30)
                    self.add(name, posted, server)
            self.boot(work)
            assert self.machine is not None
            cpu = {min(os.sched_getaffinity(0))}
            os.sched_setaffinity(0, cpu)
            pin(self.machine.process.pid, cpu)
            for server in self.servers:
                pin(server.pid, cpu)
        except BaseException:
            self.close()
            raise

    def measure(self, name: str, op: str, count: int) -> tuple[float, float]:
        """Accesses per second and the server's CPU microseconds per access."""
        assert self.machine is not None
        device = self.device(name, op != WRITE)
        measured = measure_edu(self.machine, op, device.bar, count, device.server_pid)
        rate, used = measured.rate, measured.cpu_us
        assert used is not None
        return rate, used


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variants", nargs="+", metavar="NAME=PYTHON:SOURCE[:ARG,...]")
    add_libvfio_user_argument(parser)
    parser.add_argument("--accesses", type=int, default=3000, help="accesses per measurement")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--save", metavar="NAME", help="write bench/results/NAME.json")
    args = parser.parse_args()
    try:
        variants = [Variant.parse(text) for text in args.variants]
    except ValueError as exc:
        parser.error(str(exc))
    if len({v.name for v in variants}) != len(variants):
        parser.error("two variants share a name")
    try:
        built = libvfio_user.build(libvfio_user.source_from(args.libvfio_user_src))
        for variant in variants:
            variant.check()
    except (libvfio_user.Unavailable, HarnessError) as exc:
        raise SystemExit(f"error: {exc}") from None

    names = [LIBVFIO_USER, *(v.name for v in variants)]
    rates = {op: {n: [] for n in names} for op in OPS}
    cpu = {op: {n: [] for n in names} for op in OPS}
    load_start = os.getloadavg()[0]
    own_cpus = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory(prefix="xvpci-mmio-ab-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # no server finds a vfio_bridge in its working directory
        try:
            bench = Bench(work, built, variants)
        except HarnessError as exc:
            raise SystemExit(f"error: {exc}") from None
        with measuring(bench, own_cpus):
            for round_no in range(args.rounds):
                order = names if round_no % 2 == 0 else names[::-1]
                for name in rotate(order, round_no // 2):
                    for op in OPS:
                        rate, used = bench.measure(name, op, args.accesses)
                        rates[op][name].append(rate)
                        cpu[op][name].append(used)
                print(f"round {round_no + 1}/{args.rounds} done", flush=True)
    load_end = os.getloadavg()[0]

    table: dict[str, dict[str, dict[str, float]]] = {}
    for op in OPS:
        table[op] = {}
        for name in names:
            ratios = [a / b for a, b in zip(rates[op][name], rates[op][LIBVFIO_USER], strict=True)]
            table[op][name] = {
                "per_s": statistics.median(rates[op][name]),
                "server_cpu_us": statistics.median(cpu[op][name]),
                "ratio_to_libvfio_user": statistics.median(ratios),
            }
        rows = [[n, *table[op][n].values()] for n in names]
        print_table(
            f"{op}, all on one CPU, no polling: median of {args.rounds} rounds of {args.accesses}",
            ["server", "accesses/s", "server CPU us/access", "vs libvfio-user"],
            rows,
        )
    print(f"\nload average {load_start:.2f} at the start, {load_end:.2f} at the end")
    if args.save:
        data = {
            "variants": {
                v.name: {"python": v.python, "source": str(v.source), "args": v.args}
                for v in variants
            },
            "accesses_per_measurement": args.accesses,
            "rounds": args.rounds,
            "load_average_1min": {"start": load_start, "end": load_end},
            "results": table,
        }
        print(f"result: {save(args.save, data)}")


if __name__ == "__main__":
    main()
