"""Transaction-log diff: read, normalise, align per stream, report."""

from .engine import DiffResult, Divergence, diff_logs
from .reader import LogError
from .rules import Rules

__all__ = ["DiffResult", "Divergence", "LogError", "Rules", "diff_logs"]
