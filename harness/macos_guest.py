"""A macOS guest with device models attached, reachable over SSH (the user's images).

Like :class:`~harness.guest.LinuxGuest`: one server process per model, QEMU
with the macOS profile (KVM only), a readiness wait on SSH (macOS boots in
minutes), and everything ended by pid on the way out. Built for users who
have a macOS image and working KVM; it cannot run on machines without them.
The host checks (configuration, ``kvm.ignore_msrs``, the OVMF pair) run in the
constructor, before any process is started.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .guest import ModelAttachment, ServedGuest
from .machine import GuestBootError, Machine, MachineSpec
from .macos import ENV, IGNORE_MSRS, MacosConfig, guest_args, machine_options, preflight
from .progress import Progress
from .qemu_install import QemuInstall
from .ssh import GuestSSH, GuestSSHTimeout


class MacosGuest(ServedGuest):
    """Boot macOS with ``models`` attached; ``ssh`` is ready inside the ``with`` block.

    ``ssh_timeout`` defaults to the configuration's (``XVPCI_MACOS_SSH_TIMEOUT``);
    ``ignore_msrs`` is the sysfs parameter to check (a test names its own).
    """

    guest_name = "macos"

    def __init__(
        self,
        qemu: QemuInstall,
        config: MacosConfig,
        workdir: Path,
        models: Sequence[ModelAttachment] = (),
        ssh_timeout: float | None = None,
        progress: Progress | None = None,
        ignore_msrs: Path = IGNORE_MSRS,
    ) -> None:
        self.ovmf = preflight(config, qemu, ignore_msrs)
        super().__init__(qemu, workdir, models, progress)
        self.config = config
        self.ssh_timeout = ssh_timeout if ssh_timeout is not None else config.ssh_timeout

    def machine_spec(self, devices: list[str]) -> MachineSpec:
        """The machine to boot with ``devices`` attached (a fresh copy of the VARS store)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        vars_copy = self.workdir / "OVMF_VARS.fd"
        shutil.copyfile(self.ovmf.vars, vars_copy)
        return MachineSpec(
            guest_args=guest_args(self.config, self.ovmf.code, vars_copy),
            devices=devices,
            **machine_options(),
        )

    def start(self) -> None:
        spec = self.machine_spec(self.serve_models())
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
        try:
            seconds = ssh.connect(self.ssh_timeout, alive=self.machine.process.alive)
        except GuestSSHTimeout:
            raise GuestBootError(
                f"macOS did not answer SSH within {self.ssh_timeout:.0f} s: check that the "
                "OpenCore image boots macOS by itself (no picker waiting for a key: "
                "Misc/Boot ShowPicker=false, see the README), that Remote Login is on, or raise "
                f"{ENV['ssh_timeout']} (QEMU stderr: {self.machine.stderr_log})"
            ) from None
        self._ssh = ssh
        self.boot_seconds = seconds
        self.progress.step(f"macOS answers SSH after {seconds:.0f} s")
