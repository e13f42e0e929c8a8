"""Guest workloads: shell scripts under ``guests/<os>/workloads``, run over SSH."""

from __future__ import annotations

from . import assets
from .errors import HarnessError
from .ssh import CommandResult, GuestSSH

WORKLOAD_DIR = assets.guest_files() / "linux" / "workloads"


def available() -> list[str]:
    return sorted(
        p.name.removesuffix(".sh")
        for p in WORKLOAD_DIR.iterdir()
        if p.name.endswith(".sh") and p.name != "common.sh"
    )


def script(name: str) -> bytes:
    path = WORKLOAD_DIR / f"{name}.sh"
    if name == "common" or not path.is_file():
        raise HarnessError(f"unknown workload {name!r} (known: {', '.join(available())})")
    return (WORKLOAD_DIR / "common.sh").read_bytes() + b"\n" + path.read_bytes()


def run(ssh: GuestSSH, name: str, timeout: float = 900.0) -> CommandResult:
    """Run workload ``name`` in the guest; the result carries its output and status."""
    return ssh.run("sh -s", timeout=timeout, stdin=script(name))
