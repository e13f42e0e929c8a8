"""``xvpci guest build`` and ``xvpci guest shell`` as a user runs them."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu

XVPCI = [sys.executable, "-m", "harness.cli"]


def test_guest_build_reuses_the_cached_image(linux_image) -> None:
    done = subprocess.run(
        [*XVPCI, "guest", "build", "linux"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(linux_image.directory)
    assert "up to date" in done.stderr


def test_shell_runs_stdin_and_returns_the_last_status(linux_image, tmp_path: Path) -> None:
    script = "lspci -n | grep -c 1234:11e8\necho done\nexit 7\n"
    done = subprocess.run(
        [*XVPCI, "guest", "shell", "linux", "--model", "edu", "-q", "--workdir", str(tmp_path)],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout == "1\ndone\n"
    assert (tmp_path / "edu.jsonl").stat().st_size > 0


def test_interactive_shell_on_a_terminal(linux_image, tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a pseudo-terminal
        os.execv(
            sys.executable, [*XVPCI, "guest", "shell", "linux", "-q", "--workdir", str(tmp_path)]
        )
    output = b""
    try:
        deadline = time.monotonic() + 240
        sent = False
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 1.0)
            if readable:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and b"# " in output:
                os.write(fd, b"echo $((6 * 7)); exit 3\r")
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert b"42" in output, output[-500:]
    assert os.waitstatus_to_exitcode(status) == 3
