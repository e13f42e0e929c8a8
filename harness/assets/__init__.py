"""The files the commands read that are not Python: the guest's init and workloads, the kext.

They live at the top of the repository (``guests/``, ``kext/``) and are
installed as the data packages ``harness.assets.guests`` and
``harness.assets.kext`` (``setup.py`` maps them), so they are found through
importlib.resources in the installed package, from a wheel or from an
editable install of a checkout alike, never through the repository's path.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def guest_files() -> Traversable:
    """The ``guests/`` tree: ``linux/init``, ``linux/workloads/*.sh``."""
    return files(f"{__name__}.guests")


def kext_files() -> Traversable:
    """The ``kext/`` tree: sources, Info.plist, Makefile and what else the kext needs."""
    return files(f"{__name__}.kext")
