"""Guest access over SSH with paramiko: pinned host key, bounded waits, timeouts.

The same code path serves the Linux guest and the macOS guest.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from .errors import HarnessError

_KEY_TYPES: dict[str, type[paramiko.PKey]] = {
    "ssh-ed25519": paramiko.Ed25519Key,
    "ecdsa-sha2-nistp256": paramiko.ECDSAKey,
    "ssh-rsa": paramiko.RSAKey,
}


class GuestLinkError(HarnessError):
    """SSH to the guest failed or dropped."""


class GuestSSHTimeout(GuestLinkError):
    """sshd did not answer within the readiness timeout (the guest may still be booting)."""


class GuestCommandTimeout(HarnessError):
    """A guest command did not finish in time."""


@dataclass
class CommandResult:
    command: str
    status: int
    stdout: str
    stderr: str

    def check(self) -> CommandResult:
        if self.status != 0:
            raise HarnessError(
                f"guest command failed with status {self.status}: {self.command}\n"
                f"  stdout: {self.stdout.strip()[-500:]}\n  stderr: {self.stderr.strip()[-500:]}"
            )
        return self


def parse_host_key(line: str) -> paramiko.PKey:
    """A pinned host key from its ``known_hosts`` form (``type base64``)."""
    fields = line.split()
    if len(fields) < 2:
        raise HarnessError(f"host key {line!r} is not of the form 'TYPE BASE64'")
    kind, b64 = fields[:2]
    if kind not in _KEY_TYPES:
        raise HarnessError(f"unsupported host key type {kind} (use one of {', '.join(_KEY_TYPES)})")
    try:
        return _KEY_TYPES[kind](data=base64.b64decode(b64))
    except (ValueError, paramiko.SSHException) as exc:
        raise HarnessError(f"host key {kind} {b64[:16]}... does not decode: {exc}") from None


class GuestSSH:
    """An SSH connection to a guest whose host key we know in advance."""

    def __init__(
        self,
        host: str,
        port: int,
        host_key: str,
        client_key: Path,
        user: str = "root",
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self.client = paramiko.SSHClient()
        name = host if port == 22 else f"[{host}]:{port}"
        pinned = parse_host_key(host_key)
        self.client.get_host_keys().add(name, pinned.get_name(), pinned)
        # An unknown key means something else answers on that port: refuse it.
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self._pkey = paramiko.ECDSAKey.from_private_key_file(str(client_key))

    def connect(self, timeout: float = 60.0, alive: object = None) -> float:
        """Retry until sshd answers or ``timeout`` passes; ``alive()`` False aborts early."""
        start = time.monotonic()
        last: Exception | None = None
        # While sshd is still starting, paramiko's transport thread logs every
        # refused banner as an error; the outcome is reported by us instead.
        logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)
        while time.monotonic() - start < timeout:
            if alive is not None and not alive():  # type: ignore[operator]
                raise GuestLinkError("the guest went away while waiting for sshd")
            try:
                self.client.connect(
                    self.host,
                    self.port,
                    username=self.user,
                    pkey=self._pkey,
                    timeout=5,
                    banner_timeout=10,
                    auth_timeout=10,
                    allow_agent=False,
                    look_for_keys=False,
                )
                return time.monotonic() - start
            except paramiko.BadHostKeyException as exc:
                raise GuestLinkError(f"guest host key does not match the image's: {exc}") from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                last = exc
                time.sleep(0.5)
        raise GuestSSHTimeout(f"no SSH to {self.host}:{self.port} within {timeout:.0f} s ({last})")

    def run(
        self, command: str, timeout: float = 120.0, stdin: bytes | None = None
    ) -> CommandResult:
        """Run ``command``; raises on timeout or a dropped link, never hangs."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise GuestLinkError("SSH link to the guest is down")
        try:
            channel = transport.open_session(timeout=10)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            stdout, stderr = _drain(channel, timeout, command)
            status = channel.recv_exit_status()
            if status == -1 and not transport.is_active():
                # The connection went away without the command's exit status.
                raise GuestLinkError(f"SSH link dropped during {command!r}")
        except (GuestCommandTimeout, GuestLinkError):
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise GuestLinkError(f"SSH link dropped during {command!r}: {exc}") from None
        return CommandResult(
            command, status, stdout.decode(errors="replace"), stderr.decode(errors="replace")
        )

    def put(self, data: bytes, remote: str, mode: int = 0o644) -> None:
        """Write ``data`` to ``remote`` in the guest (no SFTP needed: plain cat)."""
        self.run(f"cat > {remote} && chmod {mode:o} {remote}", stdin=data).check()

    def get(self, remote: str, timeout: float = 120.0) -> bytes:
        """Binary-safe copy of a guest file to the host."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise GuestLinkError("SSH link to the guest is down")
        channel = transport.open_session(timeout=10)
        channel.exec_command(f"cat {remote}")
        channel.shutdown_write()
        stdout, stderr = _drain(channel, timeout, f"cat {remote}")
        if channel.recv_exit_status() != 0:
            raise HarnessError(
                f"cannot read {remote} in the guest: {stderr.decode(errors='replace').strip()}"
            )
        return stdout

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> GuestSSH:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(channel: paramiko.Channel, timeout: float, command: str) -> tuple[bytes, bytes]:
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            channel.close()
            raise GuestCommandTimeout(f"guest command timed out after {timeout:.0f} s: {command}")
        got = False
        while channel.recv_ready():
            out += channel.recv(65536)
            got = True
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
            got = True
        if (
            channel.exit_status_ready()
            and not channel.recv_ready()
            and not channel.recv_stderr_ready()
        ):
            break
        if channel.closed and not got:
            break
        if not got:
            time.sleep(0.02)
    return bytes(out), bytes(err)
