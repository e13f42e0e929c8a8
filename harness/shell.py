"""``xvpci guest shell``: an interactive shell in a booted guest, or a script from stdin."""

from __future__ import annotations

import os
import select
import shutil
import sys
import termios
import tty

from .ssh import GuestSSH


def interactive(ssh: GuestSSH) -> int:
    """A terminal session over SSH until the remote shell exits; returns its status."""
    size = shutil.get_terminal_size()
    channel = ssh.client.invoke_shell(
        term=os.environ.get("TERM", "vt100"), width=size.columns, height=size.lines
    )
    stdin_fd = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin_fd)
    try:
        tty.setraw(stdin_fd)
        while not channel.exit_status_ready() or channel.recv_ready():
            readable, _, _ = select.select([channel, stdin_fd], [], [], 0.5)
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin_fd in readable:
                data = os.read(stdin_fd, 4096)
                if not data:
                    break
                channel.send(data)
    finally:
        termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
    return channel.recv_exit_status()  # -1 when the link dropped without a status


def scripted(ssh: GuestSSH, script: bytes, timeout: float) -> int:
    """Run ``script`` with the guest's sh; print its output; return the last command's status."""
    result = ssh.run("sh -s", timeout=timeout, stdin=script)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.stdout.flush()
    return result.status
