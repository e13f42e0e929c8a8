"""The main job as a user runs it: `xvpci run` on the built-in default, then `xvpci report`.

fio-pattern (fixed seed, queue depth 1, verified patterns) is deterministic, so the
direct and window paths must be judged EQUIVALENT; anything else is a regression in
the server, the window model, the guest's drivers or the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu

XVPCI = [sys.executable, "-m", "harness.cli"]


def _xvpci(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XVPCI_CACHE": str(cache)}
    return subprocess.run(
        [*XVPCI, *args], capture_output=True, text=True, timeout=1500, env=env, check=False
    )


def test_run_judges_fio_pattern_equivalent_and_report_rerenders_it(
    linux_image, tmp_path: Path
) -> None:
    cache = linux_image.directory.parents[1]
    out = tmp_path / "out"
    ran = _xvpci(
        "run", "--model", "nvme", "--paths", "direct,window", "--workload", "fio-pattern",
        "--out", str(out), cache=cache,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "direct: fio-pattern passed" in ran.stdout
    assert "window: fio-pattern passed" in ran.stdout
    assert "EQUIVALENT" in ran.stdout and "Traceback" not in ran.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["paths"]) == {"direct", "window"}
    verdict = json.loads((out / "report" / "diff.json").read_text())
    assert verdict["equivalent"] is True and verdict["total_divergences"] == 0
    junit = (out / "report" / "junit.xml").read_text()
    assert 'failures="0"' in junit

    # The reports are derived from the logs alone: `xvpci report` writes them again.
    shutil.rmtree(out / "report")
    rendered = _xvpci("report", str(out), cache=cache)
    assert rendered.returncode == 0, rendered.stderr
    assert "EQUIVALENT" in rendered.stdout
    again = json.loads((out / "report" / "diff.json").read_text())
    assert again["equivalent"] is True
    assert again["events"] == verdict["events"]
    assert (out / "report" / "diff.html").is_file() and (out / "report" / "trace.json").is_file()


def test_report_of_a_directory_that_is_not_a_run_is_a_one_line_error(tmp_path: Path) -> None:
    done = _xvpci("report", str(tmp_path), cache=tmp_path / "cache")
    assert done.returncode == 2
    assert "not an `xvpci run` output directory" in done.stderr
    assert "Traceback" not in done.stderr
