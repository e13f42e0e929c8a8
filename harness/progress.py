"""Progress lines on stderr for long steps (provisioning, image builds, boots)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("provision") as p: p.step("downloading")`` prints timed steps."""

    def __init__(self, task: str, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.task = task
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.start = time.monotonic()

    def step(self, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.start
        print(f"[{self.task} {elapsed:6.1f}s] {message}", file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.step("done")
