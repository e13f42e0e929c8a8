"""A macOS guest with device models attached, reachable over SSH (the user's images).

Like :class:`~harness.guest.LinuxGuest`: one server process per model, QEMU
with the macOS profile (KVM only), a readiness wait on SSH (macOS boots in
minutes), and everything ended by pid on the way out. Built for users who
have a macOS image and working KVM; it cannot run on machines without them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .errors import HarnessError
from .guest import ModelAttachment, ServedGuest
from .machine import Machine, MachineSpec
from .macos import OVMF_VARS, MacosConfig, guest_args, machine_options
from .progress import Progress
from .qemu_install import QemuInstall
from .ssh import GuestSSH


class MacosGuest(ServedGuest):
    """Boot macOS with ``models`` attached; ``ssh`` is ready inside the ``with`` block."""

    guest_name = "macos"

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
        super().__init__(qemu, workdir, models, progress)
        self.config = config
        self.ssh_timeout = ssh_timeout

    def start(self) -> None:
        devices = self.serve_models()
        vars_copy = self.workdir / "OVMF_VARS.fd"
        firmware_vars = self.qemu.firmware(OVMF_VARS)
        if firmware_vars is None:
            raise HarnessError(f"OVMF variables not found in the QEMU root ({OVMF_VARS})")
        shutil.copyfile(firmware_vars, vars_copy)
        spec = MachineSpec(
            guest_args=guest_args(self.config, self.qemu, vars_copy),
            devices=devices,
            **machine_options(),
        )
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
        self._ssh = ssh
        self.progress.step(f"macOS answers SSH after {seconds:.0f} s")
