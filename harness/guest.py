"""A booted Linux guest with device models attached over vfio-user, reachable over SSH.

``LinuxGuest`` starts one server process per model, boots QEMU with the
models as ``vfio-user-pci`` devices, waits for the guest, and connects SSH.
Leaving the ``with`` block ends everything it started, by pid, in reverse
order, whether the body succeeded or not.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

from .errors import HarnessError
from .linux_image import LinuxImage
from .machine import Machine, MachineSpec
from .progress import Progress
from .qemu_install import QemuInstall
from .qtest import vfio_user_device
from .served import ServedModel
from .ssh import GuestCommandTimeout, GuestLinkError, GuestSSH

READY_MARKER = "XVPCI-GUEST-READY"

#: The Linux guest's kernel command line. Not part of the image (changing it does not
#: rebuild one). ``no_timer_check``: early in boot the kernel waits ten ticks and
#: panics ("IO-APIC + timer doesn't work!") if too few arrived (``timer_irq_works()``
#: in arch/x86/kernel/apic/io_apic.c), as happens under TCG on a loaded host; the
#: parameter skips that count (it returns at once).
KERNEL_ARGS = "console=ttyS0 panic=-1 rdinit=/init no_timer_check"

# Served models sit on pcie.0 as integrated endpoints at fixed slots, 0x10, 0x11, ...
# in attachment order, so a model has the same address on every run whatever else
# the machine holds (QEMU gives the other devices the lowest free slots, from 1).
# Not behind root ports: macOS is reported not to see NVMe behind hot-pluggable ones.
# If a root port is ever used, also pass
# `-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off` (OSX-KVM does).
FIRST_MODEL_SLOT = 0x10
LAST_MODEL_SLOT = 0x1E  # 0x1f holds the ICH9 LPC, SATA and SMBus functions


@dataclass
class ModelAttachment:
    """A model to serve and attach: its options, log label and PCI address."""

    model: str
    options: Sequence[str] = ()
    path_label: str = "direct"
    name: str | None = None
    pci_addr: str | None = None  # QEMU's addr= ("0x10", "4.0"); None: the next pinned slot
    device_props: dict[str, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.model


def model_addresses(models: Sequence[ModelAttachment]) -> list[str]:
    """Each model's PCI address on pcie.0: its own ``pci_addr``, else the next slot from
    :data:`FIRST_MODEL_SLOT` that no other model names."""
    taken = {int(m.pci_addr.split(".")[0], 16) for m in models if m.pci_addr is not None}
    free = (slot for slot in range(FIRST_MODEL_SLOT, LAST_MODEL_SLOT + 1) if slot not in taken)
    addresses = []
    for model in models:
        if model.pci_addr is not None:
            addresses.append(model.pci_addr)
            continue
        slot = next(free, None)
        if slot is None:
            raise HarnessError(
                f"more models than free slots {FIRST_MODEL_SLOT:#x}-{LAST_MODEL_SLOT:#x} on pcie.0"
            )
        addresses.append(f"{slot:#x}")
    return addresses


class ServedGuest:
    """What every guest shares: model servers, a QEMU machine, SSH, and a teardown
    that ends them all by pid, in reverse order, whether the body succeeded or not."""

    guest_name = "guest"

    def __init__(
        self,
        qemu: QemuInstall,
        workdir: Path,
        models: Sequence[ModelAttachment],
        progress: Progress | None,
    ) -> None:
        self.qemu = qemu
        self.workdir = workdir
        self.models = list(models)
        self.progress = progress or Progress(self.guest_name, quiet=True)
        self.servers: dict[str, ServedModel] = {}
        self.machine: Machine | None = None
        self._ssh: GuestSSH | None = None
        self._sockdir: tempfile.TemporaryDirectory[str] | None = None
        self.boot_seconds = 0.0

    @property
    def ssh(self) -> GuestSSH:
        if self._ssh is None:
            raise HarnessError("the guest is not up")
        return self._ssh

    def log_path(self, label: str) -> Path:
        return self.workdir / f"{label}.jsonl"

    def serve_models(self) -> list[str]:
        """Start one server per model; returns their ``-device`` arguments."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Sockets live in a short private directory: AF_UNIX paths end at 108 bytes.
        self._sockdir = tempfile.TemporaryDirectory(prefix="xvpci-")
        devices = []
        # One `qemu --version` for all the models' log headers.
        meta = {"qemu_version": self.qemu.version_string, "guest": self.guest_name}
        for attachment, addr in zip(self.models, model_addresses(self.models), strict=True):
            self.progress.step(f"serving model {attachment.model} as {attachment.label}")
            served = ServedModel(
                attachment.model,
                Path(self._sockdir.name),
                self.log_path(attachment.label),
                attachment.options,
                path_label=attachment.path_label,
                name=attachment.label,
                meta=meta,
            )
            self.servers[attachment.label] = served
            devices.append(
                vfio_user_device(served.socket_path, addr=addr, **attachment.device_props)
            )
        return devices

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """End SSH, QEMU and the servers (each by pid); safe after a failed start."""
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None
        if self.machine is not None:
            self.machine.close()
        for served in self.servers.values():
            with contextlib.suppress(Exception):
                served.stop()
        if self._sockdir is not None:
            # Keep the servers' stderr with the other logs before the directory goes.
            for served in self.servers.values():
                if served.stderr_path.exists():
                    shutil.copyfile(served.stderr_path, self.workdir / served.stderr_path.name)
            self._sockdir.cleanup()
            self._sockdir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def diagnose(self) -> str:
        """Which side failed, when a guest command broke off: QEMU, a server, or the guest."""
        problems = []
        machine = self.machine
        # A process that just died may close its sockets (dropping our SSH link)
        # a moment before it can be reaped: give each a short grace.
        processes = [served.process for served in self.servers.values()]
        if machine is not None and machine.process is not None:
            processes.append(machine.process)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(timeout=2)
        panicked = False
        if machine is not None:
            with contextlib.suppress(OSError):
                panicked = "Kernel panic" in machine.serial_log.read_text(errors="replace")
        if panicked:
            # QEMU runs with -no-reboot, so it exits (status 0) after a panic.
            problems.append(f"the guest kernel panicked (serial log: {machine.serial_log})")
        if machine is not None and machine.process is not None and not machine.process.alive():
            status = machine.process.proc.returncode
            if not (panicked and status == 0):
                problems.append(
                    f"QEMU exited with status {status} "
                    f"(stderr: {machine.stderr_log}, serial log: {machine.serial_log})"
                )
        for label, served in self.servers.items():
            if not served.process.alive():
                problems.append(
                    f"the server for {label} exited with status {served.process.proc.returncode} "
                    f"(stderr: {self.workdir / served.stderr_path.name}; "
                    f"its log so far: {served.log_path})"
                )
        return (
            "; ".join(problems)
            or "QEMU and the servers are still running: the guest itself stopped answering"
        )


_Outcome = TypeVar("_Outcome")


def run_workload(
    guest: ServedGuest, label: str, workdir: Path, exercise: Callable[[], _Outcome]
) -> tuple[_Outcome, float]:
    """``exercise()`` on a booted guest and the seconds it took. A lost SSH link or a
    command that timed out becomes a :class:`HarnessError` naming ``label``, the cause
    the guest's own logs show (:meth:`ServedGuest.diagnose`) and where they are kept."""
    start = time.monotonic()
    try:
        outcome = exercise()
    except (GuestLinkError, GuestCommandTimeout) as exc:
        raise HarnessError(
            f"{label}: {exc}\n  cause: {guest.diagnose()}\n  logs kept in {workdir}"
        ) from None
    return outcome, time.monotonic() - start


class LinuxGuest(ServedGuest):
    """Boot the Linux image with ``models`` attached; ``ssh`` is ready inside the block."""

    guest_name = "linux"

    def __init__(
        self,
        qemu: QemuInstall,
        image: LinuxImage,
        workdir: Path,
        models: Sequence[ModelAttachment] = (),
        accel: str = "tcg",
        memory_mib: int = 1024,
        boot_timeout: float = 180.0,
        ssh_timeout: float = 60.0,
        kernel_args: str | None = None,
        extra_args: Sequence[str] = (),
        nic: str = "virtio-net-pci",
        progress: Progress | None = None,
        firmware: str = "qboot.rom",
    ) -> None:
        super().__init__(qemu, workdir, models, progress)
        self.firmware = firmware
        self.image = image
        self.accel = accel
        self.memory_mib = memory_mib
        self.boot_timeout = boot_timeout
        self.ssh_timeout = ssh_timeout
        self.kernel_args = KERNEL_ARGS if kernel_args is None else kernel_args
        self.extra_args = list(extra_args)
        self.nic = nic
        self.ssh_seconds = 0.0

    def start(self) -> None:
        devices = self.serve_models()
        spec = MachineSpec(
            guest_args=[
                # qboot by default rather than SeaBIOS: SeaBIOS drives NVMe controllers
                # itself, so the direct path would see firmware traffic the window path
                # cannot (the diff's phases cut it: harness/difflog/phases.py).
                "-bios", self.firmware,
                *self.image.boot_args(self.kernel_args),
            ],
            memory_mib=self.memory_mib,
            accel=self.accel,
            nic=self.nic,
            devices=devices,
            extra_args=self.extra_args,
        )  # fmt: skip
        self.machine = Machine(self.qemu, spec, self.workdir, name="linux")
        self.progress.step(f"booting the Linux guest ({self.accel})")
        self.machine.start()
        self.boot_seconds = self.machine.wait_for_serial(READY_MARKER, self.boot_timeout)
        self.progress.step(f"guest up after {self.boot_seconds:.1f} s; connecting SSH")
        ssh = GuestSSH(
            "127.0.0.1", self.machine.ssh_port, self.image.host_key, self.image.client_key
        )
        machine = self.machine
        assert machine.process is not None
        self.ssh_seconds = ssh.connect(self.ssh_timeout, alive=machine.process.alive)
        self._ssh = ssh
        self.progress.step("SSH ready")
