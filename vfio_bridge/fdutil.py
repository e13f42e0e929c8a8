"""File-descriptor helpers shared by the protocol edge and the session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable


def close_quietly(fds: int | Iterable[int]) -> None:
    """Close descriptors, ignoring ones already closed."""
    for fd in [fds] if isinstance(fds, int) else list(fds):
        with contextlib.suppress(OSError):
            os.close(fd)
