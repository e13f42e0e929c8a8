"""A QEMU guest under QMP: memfd RAM, user networking with an SSH port, serial log.

``Machine`` starts QEMU with a QMP socket it serves, waits on the serial log
for the guest's ready line (or a panic, or QEMU exiting), and on ``close()``
asks QEMU to quit over QMP, then SIGTERM, then SIGKILL, always by its pid.
Errors name the serial log or QEMU's stderr.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from .errors import HarnessError
from .process import ManagedProcess
from .qemu_install import QemuInstall

log = logging.getLogger(__name__)
# qemu.qmp logs a failed negotiation as an error; we report QEMU's own reason instead.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

PANIC_MARKERS = ("Kernel panic", "end Kernel panic")


class GuestBootError(HarnessError):
    """The guest did not come up: panic, timeout, or QEMU exited."""


@dataclass
class MachineSpec:
    """What to boot. ``guest_args`` are the OS-specific arguments (kernel, disks, firmware)."""

    guest_args: list[str]
    memory_mib: int = 1024
    cpus: int = 1
    accel: str = "tcg"
    machine: str = "q35"
    cpu: str = "max"
    nic: str = "virtio-net-pci"
    devices: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)


def free_port() -> int:
    """An ephemeral TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Machine:
    """One running guest; use as a context manager so it is always ended."""

    def __init__(
        self, qemu: QemuInstall, spec: MachineSpec, workdir: Path, name: str = "guest"
    ) -> None:
        self.qemu = qemu
        self.spec = spec
        self.workdir = workdir
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        self.serial_log = workdir / f"{name}.serial.log"
        self.stderr_log = workdir / f"{name}.qemu.stderr"
        # AF_UNIX paths end at 108 bytes: the QMP socket gets a short private directory.
        self._rundir = tempfile.TemporaryDirectory(prefix="xvpci-qmp-")
        self.qmp_path = Path(self._rundir.name) / f"{name}.qmp"
        self.ssh_port = free_port()
        self.qmp: QEMUMonitorProtocol | None = None
        self.process: ManagedProcess | None = None
        self.started = 0.0

    def argv(self) -> list[str]:
        spec = self.spec
        args = [
            "-machine", f"{spec.machine},accel={spec.accel},memory-backend=ram",
            "-cpu", spec.cpu,
            "-smp", str(spec.cpus),
            "-m", f"{spec.memory_mib}M",
            "-object", f"memory-backend-memfd,id=ram,size={spec.memory_mib}M,share=on",
            "-display", "none",
            "-nodefaults",
            "-no-reboot",
            "-serial", f"file:{self.serial_log}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device", f"{spec.nic},netdev=net0",
        ]  # fmt: skip
        for device in spec.devices:
            args += ["-device", device]
        return self.qemu.argv(*args, *spec.guest_args, *spec.extra_args)

    def start(self, timeout: float = 30.0) -> None:
        """Start QEMU and connect QMP; raises with QEMU's stderr if it exits early."""
        self.serial_log.write_bytes(b"")
        self.started = time.monotonic()
        self.process = ManagedProcess(
            self.argv(),
            f"qemu {self.name}",
            stdout=self.workdir / f"{self.name}.qemu.stdout",
            stderr=self.stderr_log,
        )
        deadline = time.monotonic() + timeout
        while not self.qmp_path.exists():
            self._check_alive("while starting")
            if time.monotonic() > deadline:
                raise GuestBootError(
                    f"QEMU made no QMP socket within {timeout} s (stderr: {self.stderr_log})"
                )
            time.sleep(0.05)
        self.qmp = connect_qmp(self.qmp_path, self._raise_if_exiting)

    def _raise_if_exiting(self, seconds: float) -> None:
        """Give QEMU ``seconds`` to exit; if it did, raise with its own reason."""
        assert self.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.proc.wait(timeout=seconds)
        self._check_alive("while starting")

    def _check_alive(self, when: str) -> None:
        assert self.process is not None
        if not self.process.alive():
            status = self.process.proc.returncode
            tail = self.process.stderr_tail(5) or "(no stderr)"
            raise GuestBootError(
                f"QEMU exited with status {status} {when}: {tail}\n"
                f"  QEMU stderr: {self.stderr_log}\n  serial log: {self.serial_log}"
            )

    def wait_for_serial(self, marker: str, timeout: float) -> float:
        """Wait until ``marker`` appears on the serial console; returns seconds since start."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.serial_log.read_text(errors="replace")
            if marker in text:
                return time.monotonic() - self.started
            if any(panic in text for panic in PANIC_MARKERS):
                raise GuestBootError(
                    f"guest kernel panicked:\n{_tail(text)}\n  serial log: {self.serial_log}"
                )
            self._check_alive("before the guest was ready")
            if time.monotonic() > deadline:
                raise GuestBootError(
                    f"guest not ready within {timeout:.0f} s (no {marker!r} on the console):\n"
                    f"{_tail(text)}\n  serial log: {self.serial_log}"
                )
            time.sleep(0.1)

    def command(self, name: str, **args: object) -> object:
        if self.qmp is None:
            raise HarnessError("QMP is not connected")
        return self.qmp.cmd(name, **args)

    def events(self) -> list[dict]:
        """QMP events received so far (SHUTDOWN, RESET, ...)."""
        return self.qmp.get_events(wait=False) if self.qmp is not None else []

    def close(self, grace: float = 10.0) -> int | None:
        """Quit over QMP, then SIGTERM, then SIGKILL; reap. Returns QEMU's exit status."""
        if self.process is None:
            self._rundir.cleanup()
            return None
        if self.qmp is not None:
            if self.process.alive():
                with contextlib.suppress(QMPError, OSError, EOFError, RuntimeError):
                    self.qmp.cmd("quit")
            with contextlib.suppress(Exception):
                self.qmp.close()
            self.qmp = None
        try:
            self.process.proc.wait(timeout=grace)
        except Exception:
            log.warning(
                "QEMU %s did not quit within %.0f s; terminating pid %d",
                self.name,
                grace,
                self.process.pid,
            )
        status = self.process.stop()
        self._rundir.cleanup()
        return status

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_qmp(
    path: Path, raise_if_exiting: Callable[[float], None], attempts: int = 3
) -> QEMUMonitorProtocol:
    """Connect to QEMU's QMP socket and negotiate capabilities, on a fresh connection
    each attempt.

    A failed handshake is either QEMU exiting (a device failed to realize:
    ``raise_if_exiting`` waits a moment and raises with QEMU's own reason) or a
    handshake that went wrong while QEMU lives on (seen once in CI under load:
    qemu.qmp's "Negotiation failed" with an empty cause, which its ``_negotiate``
    gives for a ``qmp_capabilities`` answer without ``return``); a new connection
    starts a new monitor session, so that is retried.
    """
    for attempt in range(1, attempts + 1):
        qmp = QEMUMonitorProtocol(str(path))
        try:
            qmp.connect()
            return qmp
        except (QMPError, OSError) as exc:
            with contextlib.suppress(Exception):
                qmp.close()
            raise_if_exiting(2.0)
            reason = _qmp_failure(exc)
            if attempt == attempts:
                raise GuestBootError(
                    f"cannot connect to QEMU's QMP socket {path} ({attempts} attempts): {reason}"
                ) from None
            log.warning("QMP handshake failed (%s); trying again on a new connection", reason)
    raise AssertionError("unreachable")


def _qmp_failure(exc: BaseException) -> str:
    """The error and its root cause: qemu.qmp wraps causes whose text may be empty."""
    cause = getattr(exc, "exc", None)
    text = f"{exc}"
    if cause is not None:
        text += f" (cause: {type(cause).__name__}{': ' + str(cause) if str(cause) else ''})"
    return text


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])
