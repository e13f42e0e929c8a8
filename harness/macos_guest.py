"""A macOS guest with device models attached, reachable over SSH (the user's images).

Like :class:`~harness.guest.LinuxGuest`: one server process per model, QEMU
with the macOS profile (KVM only), a readiness wait on SSH (macOS boots in
minutes), and everything ended by pid on the way out. Built for users who
have a macOS image and working KVM; it cannot run on machines without them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import HarnessError
from .guest import ModelAttachment
from .machine import Machine, MachineSpec
from .macos import OVMF_VARS, MacosConfig, guest_args, machine_options
from .progress import Progress
from .qemu_install import QemuInstall
from .qtest import vfio_user_device
from .served import ServedModel
from .ssh import GuestSSH


class MacosGuest:
    """Boot macOS with ``models`` attached; ``ssh`` is ready inside the ``with`` block."""

    def __init__(
        self,
        qemu: QemuInstall,
        config: MacosConfig,
        workdir: Path,
        models: Sequence[ModelAttachment] = (),
        ssh_timeout: float = 900.0,
        progress: Progress | None = None,
    ) -> None:
        missing = config.missing()
        if missing:
            raise HarnessError(missing)
        self.qemu, self.config, self.workdir = qemu, config, workdir
        self.models = list(models)
        self.ssh_timeout = ssh_timeout
        self.progress = progress or Progress("macos", quiet=True)
        self.servers: dict[str, ServedModel] = {}
        self.machine: Machine | None = None
        self.ssh: GuestSSH | None = None
        self._sockdir: tempfile.TemporaryDirectory[str] | None = None

    def log_path(self, label: str) -> Path:
        return self.workdir / f"{label}.jsonl"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._sockdir = tempfile.TemporaryDirectory(prefix="xvpci-")
        devices = []
        for attachment in self.models:
            served = ServedModel(
                attachment.model,
                Path(self._sockdir.name),
                self.log_path(attachment.label),
                attachment.options,
                path_label=attachment.path_label,
                name=attachment.label,
                meta={"qemu_version": self.qemu.version_string, "guest": "macos"},
            )
            self.servers[attachment.label] = served
            devices.append(vfio_user_device(served.socket_path, addr=attachment.pci_addr))
        vars_copy = self.workdir / "OVMF_VARS.fd"
        firmware_vars = self.qemu.firmware(OVMF_VARS)
        if firmware_vars is None:
            raise HarnessError(f"OVMF variables not found in the QEMU root ({OVMF_VARS})")
        shutil.copyfile(firmware_vars, vars_copy)
        spec = MachineSpec(
            guest_args=guest_args(self.config, self.qemu, vars_copy), devices=devices
        )
        for key, value in machine_options().items():
            setattr(spec, key, value)
        self.machine = Machine(self.qemu, spec, self.workdir, name="macos")
        self.progress.step("booting the macOS guest (KVM)")
        self.machine.start()
        ssh = GuestSSH(
            "127.0.0.1",
            self.machine.ssh_port,
            self.config.values["host_key"],
            self.config.path("ssh_key"),
            user=self.config.values["ssh_user"],
        )
        assert self.machine.process is not None
        seconds = ssh.connect(self.ssh_timeout, alive=self.machine.process.alive)
        self.ssh = ssh
        self.progress.step(f"macOS answers SSH after {seconds:.0f} s")

    def stop(self) -> None:
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None
        if self.machine is not None:
            self.machine.close()
        for served in self.servers.values():
            with contextlib.suppress(Exception):
                served.stop()
        if self._sockdir is not None:
            self._sockdir.cleanup()
            self._sockdir = None

    def __enter__(self) -> MacosGuest:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
