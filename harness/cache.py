"""The one cache directory for everything xvpci downloads or builds, and its locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import HarnessError


def cache_dir() -> Path:
    """``$XVPCI_CACHE``, else ``$XDG_CACHE_HOME/xvpci``, else ``~/.cache/xvpci``."""
    explicit = os.environ.get("XVPCI_CACHE")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "xvpci"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"cannot create the cache directory {path}: {exc.strerror} (XVPCI_CACHE names another)"
        ) from None
    return path


@contextlib.contextmanager
def locked(name: str) -> Iterator[Path]:
    """Hold an exclusive lock ``<cache>/<name>.lock`` (one provisioning per machine)."""
    lock_path = cache_dir() / f"{name}.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield lock_path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
