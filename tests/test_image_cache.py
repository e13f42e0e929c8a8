"""The guest image cache is shared by every checkout and version of xvpci on a machine."""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness.linux_image import STALE_AFTER_SECONDS, _drop_stale_images


def _image(root: Path, name: str, age: float) -> Path:
    directory = root / name
    directory.mkdir()
    manifest = directory / "manifest.json"
    manifest.write_text("{}")
    then = time.time() - age
    os.utime(manifest, (then, then))
    return directory


def test_a_build_keeps_images_other_checkouts_use_and_drops_abandoned_ones(
    tmp_path: Path,
) -> None:
    current = _image(tmp_path, "linux-current", 0)
    recent = _image(tmp_path, "linux-other-checkout", 3600)
    abandoned = _image(tmp_path, "linux-old", STALE_AFTER_SECONDS + 3600)
    _drop_stale_images(current)
    assert current.is_dir() and recent.is_dir()
    assert not abandoned.exists()
