"""Child processes that are always ended by their own pid, never by name."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO


class ManagedProcess:
    """A ``subprocess.Popen`` that ``stop()`` ends: SIGTERM, then SIGKILL, then reap."""

    def __init__(
        self,
        argv: Sequence[str],
        name: str,
        stdout: Path | int | None = None,
        stderr: Path | int | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._files: list[IO[bytes]] = []
        out = self._open(stdout)
        err = self._open(stderr)
        self.stdout_path = stdout if isinstance(stdout, Path) else None
        self.stderr_path = stderr if isinstance(stderr, Path) else None
        try:
            self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=out, stderr=err)
        except OSError:
            self._close_files()
            raise

    def _open(self, target: Path | int | None) -> IO[bytes] | int | None:
        if isinstance(target, Path):
            handle = open(target, "wb")  # noqa: SIM115 (closed in stop())
            self._files.append(handle)
            return handle
        return target

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0, sig: int = signal.SIGTERM) -> int:
        """End the process (if still running) and reap it; returns its exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
        self._close_files()
        return self.proc.returncode

    def _close_files(self) -> None:
        for handle in self._files:
            handle.close()
        self._files.clear()

    def stderr_tail(self, lines: int = 5) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
