"""The one exception type the command line turns into a clear one-line error."""

from __future__ import annotations


class HarnessError(Exception):
    """A failure the user can act on; the message says what and where to look."""
