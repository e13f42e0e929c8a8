"""QEMU under its qtest protocol: no guest, the harness plays the CPU.

Used to prove through QEMU itself that a vfio-user device enumerates, that
its BARs decode, and that its DMA and MSI reach guest memory.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import HarnessError
from .process import ManagedProcess
from .qemu_install import QemuInstall

PCI_CONFIG_ADDRESS = 0xCF8
PCI_CONFIG_DATA = 0xCFC


def vfio_user_device(socket_path: str | Path, addr: str | None = None, **props: object) -> str:
    """The JSON ``-device`` argument for a vfio-user-pci device."""
    spec: dict[str, object] = {
        "driver": "vfio-user-pci",
        "socket": {"type": "unix", "path": str(socket_path)},
        **props,
    }
    if addr is not None:
        spec["addr"] = addr
    return json.dumps(spec)


class QtestMachine:
    """A q35 QEMU driven over ``-qtest``; ``close()`` always ends the process."""

    def __init__(
        self,
        qemu: QemuInstall,
        devices: Sequence[str],
        workdir: Path,
        memory_mib: int = 256,
        shared_memory: bool = True,
        extra: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> None:
        self.workdir = workdir
        self.timeout = timeout
        # AF_UNIX paths are limited to 108 bytes: keep the socket in a short private dir.
        self._sockdir = tempfile.TemporaryDirectory(prefix="xvpci-qt-")
        qtest_path = Path(self._sockdir.name) / "qtest.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(qtest_path))
        listener.listen(1)
        listener.settimeout(timeout)
        argv = ["-machine", "q35", "-display", "none", "-nodefaults", "-m", f"{memory_mib}M"]
        # Debian builds QEMU without the qtest accelerator, so -qtest runs on
        # TCG: -S keeps the firmware from running and racing our accesses.
        argv += ["-S", "-qtest", f"unix:{qtest_path}"]
        if shared_memory:
            argv += [
                "-object",
                f"memory-backend-memfd,id=ram,size={memory_mib}M,share=on",
                "-machine",
                "memory-backend=ram",
            ]
        for device in devices:
            argv += ["-device", device]
        argv += list(extra)
        self.stderr_path = workdir / "qemu-qtest.stderr"
        self.process = ManagedProcess(
            qemu.argv(*argv), "qemu", stdout=workdir / "qemu-qtest.stdout", stderr=self.stderr_path
        )
        try:
            self.sock, _ = self._accept(listener)
        except BaseException:
            self.process.stop()
            raise
        finally:
            listener.close()
        self.sock.settimeout(timeout)
        self._buffer = b""
        self.irq_events: list[str] = []

    def _accept(self, listener: socket.socket) -> tuple[socket.socket, object]:
        deadline = time.monotonic() + self.timeout
        listener.settimeout(0.2)
        while True:
            try:
                return listener.accept()
            except TimeoutError:
                if not self.process.alive():
                    raise HarnessError(
                        f"QEMU exited with status {self.process.proc.returncode} before "
                        f"connecting to qtest: {self.process.stderr_tail()} "
                        f"(full stderr: {self.stderr_path})"
                    ) from None
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"QEMU did not connect to qtest within {self.timeout} s "
                        f"(stderr: {self.stderr_path})"
                    ) from None

    def command(self, line: str) -> str:
        """Send one qtest command; return the text after ``OK``."""
        self.sock.sendall(line.encode() + b"\n")
        while True:
            reply = self._readline()
            if reply.startswith("IRQ"):
                self.irq_events.append(reply)
                continue
            break
        if not reply.startswith("OK"):
            raise HarnessError(f"qtest {line!r} failed: {reply}")
        return reply[2:].strip()

    def _readline(self) -> str:
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise HarnessError(
                    f"QEMU stopped answering qtest (stderr: {self.stderr_path})"
                ) from None
            if not chunk:
                raise HarnessError(
                    f"QEMU closed qtest: {self.process.stderr_tail()} (stderr: {self.stderr_path})"
                )
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    # --- CPU-side accessors ---------------------------------------------------

    def outl(self, port: int, value: int) -> None:
        self.command(f"outl {port:#x} {value:#x}")

    def inl(self, port: int) -> int:
        return int(self.command(f"inl {port:#x}"), 16)

    def readl(self, addr: int) -> int:
        return int(self.command(f"readl {addr:#x}"), 16)

    def writel(self, addr: int, value: int) -> None:
        self.command(f"writel {addr:#x} {value:#x}")

    def readq(self, addr: int) -> int:
        return int(self.command(f"readq {addr:#x}"), 16)

    def writeq(self, addr: int, value: int) -> None:
        self.command(f"writeq {addr:#x} {value:#x}")

    def memread(self, addr: int, size: int) -> bytes:
        return bytes.fromhex(self.command(f"read {addr:#x} {size}")[2:])

    def memwrite(self, addr: int, data: bytes) -> None:
        self.command(f"write {addr:#x} {len(data)} 0x{data.hex()}")

    def pci_read(self, devfn: int, reg: int, bus: int = 0) -> int:
        """32-bit config read through the CF8/CFC mechanism."""
        self.outl(PCI_CONFIG_ADDRESS, 0x80000000 | (bus << 16) | (devfn << 8) | (reg & 0xFC))
        return self.inl(PCI_CONFIG_DATA)

    def pci_write(self, devfn: int, reg: int, value: int, bus: int = 0) -> None:
        self.outl(PCI_CONFIG_ADDRESS, 0x80000000 | (bus << 16) | (devfn << 8) | (reg & 0xFC))
        self.outl(PCI_CONFIG_DATA, value)

    def find_capability(self, devfn: int, cap_id: int) -> int:
        """Offset of capability ``cap_id`` in the function's list (HarnessError if absent)."""
        pointer = self.pci_read(devfn, 0x34) & 0xFC
        seen = set()
        while pointer and pointer not in seen:
            seen.add(pointer)
            header = self.pci_read(devfn, pointer)
            if header & 0xFF == cap_id:
                return pointer
            pointer = (header >> 8) & 0xFC
        raise HarnessError(f"function {devfn:#x} has no capability {cap_id:#x}")

    def wait_for(self, probe: str, predicate: object, timeout: float = 5.0) -> bool:
        """Poll ``probe`` (a qtest command) until ``predicate(result)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.command(probe)):  # type: ignore[operator]
                return True
            time.sleep(0.01)
        return False

    def close(self) -> int:
        """End QEMU by its pid and reap it; returns its exit status."""
        try:
            self.sock.close()
        finally:
            status = self.process.stop()
            self._sockdir.cleanup()
        return status

    def __enter__(self) -> QtestMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
