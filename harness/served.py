"""A device model served by ``python -m vfio_bridge serve`` in its own process."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import HarnessError
from .process import ManagedProcess


class ServedModel:
    """Start a vfio-user server for ``model`` and wait for its ready line.

    The socket lives in ``sockdir`` (created 0700); ``stop()`` ends the server
    by its pid with SIGTERM so it writes its log trailer and removes its socket.
    """

    def __init__(
        self,
        model: str,
        sockdir: Path,
        log_path: Path | None,
        options: Sequence[str] = (),
        path_label: str = "direct",
        name: str | None = None,
        timeout: float = 15.0,
        meta: dict[str, str] | None = None,
        server_args: Sequence[str] = (),
    ) -> None:
        sockdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.name = name or model
        self.socket_path = sockdir / f"{self.name}.sock"
        self.log_path = log_path
        argv = [sys.executable, "-m", "vfio_bridge", "serve", "--model", model]
        argv += ["--socket", str(self.socket_path), "--path-label", path_label]
        if log_path is not None:
            argv += ["--log", str(log_path)]
        for opt in options:
            argv += ["--opt", opt]
        for key, value in (meta or {}).items():
            argv += ["--meta", f"{key}={value}"]
        argv += server_args
        self.stderr_path = sockdir / f"{self.name}.server.stderr"
        self.process = start_ready(
            argv, f"server {self.name}", self.name, self.stderr_path, timeout
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        return stop_ready(self.process)

    def __enter__(self) -> ServedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ready(
    argv: list[str], label: str, name: str, stderr: Path, timeout: float
) -> ManagedProcess:
    """Start a server that prints "ready: ..." on stdout once it listens, and wait for
    that line; a server that fails to get there is ended by its pid before the error."""
    process = ManagedProcess(argv, label, stdout=subprocess.PIPE, stderr=stderr)
    try:
        wait_ready(process, name, timeout)
    except BaseException:
        stop_ready(process)
        raise
    return process


def stop_ready(process: ManagedProcess) -> int:
    """End a server started by :func:`start_ready` (by its pid); its exit status."""
    status = process.stop()
    if process.proc.stdout is not None:
        process.proc.stdout.close()
    return status


def wait_ready(process: ManagedProcess, name: str, timeout: float) -> None:
    """Wait for the line a server prints on stdout once its socket listens ("ready: ...")."""
    stdout = process.proc.stdout
    assert stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HarnessError(f"server for {name} not ready within {timeout} s")
        readable, _, _ = select.select([stdout], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(stdout.fileno(), 4096)
        if not chunk:
            process.proc.wait()
            raise HarnessError(
                f"server for {name} exited with status {process.proc.returncode}: "
                f"{process.stderr_tail()}"
            )
        line += chunk
    if not line.startswith(b"ready:"):
        raise HarnessError(f"server for {name} said {line!r} instead of ready")
