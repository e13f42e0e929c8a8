"""``xvpci run``: the main job. Boot the guest once per path with the model
attached along that path, run the workload, keep every log in the output
directory, and summarise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import workloads
from .accel import choose_accel
from .errors import HarnessError
from .guest import LinuxGuest, ModelAttachment
from .linux_image import build
from .progress import Progress
from .qemu_install import find_qemu

PATHS = ("direct", "window")


@dataclass
class PathResult:
    path: str
    passed: bool
    status: int
    log: Path
    output: str
    boot_seconds: float
    workload_seconds: float


@dataclass
class RunResult:
    out: Path
    results: list[PathResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def attachments(model: str, options: list[str], path: str) -> list[ModelAttachment]:
    if path == "direct":
        return [ModelAttachment(model, options, path_label="direct", name=model)]
    window_options = [f"child={model}", f"child_options={';'.join(options)}"]
    return [ModelAttachment("window", window_options, path_label="window", name=model)]


def run(
    model: str,
    paths: list[str],
    workload: str,
    out: Path,
    options: list[str],
    accel: str = "tcg",
    progress: Progress | None = None,
) -> RunResult:
    progress = progress or Progress("run")
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise HarnessError(f"unknown path(s) {', '.join(unknown)} (choose from {', '.join(PATHS)})")
    workloads.script(workload)  # fail early on a bad name
    qemu = find_qemu()
    image = build(progress=progress)
    accel = choose_accel(accel, qemu, image)
    out.mkdir(parents=True, exist_ok=True)
    result = RunResult(out)
    for path in paths:
        workdir = out / path
        models = attachments(model, options, path)
        with LinuxGuest(qemu, image, workdir, models, accel=accel, progress=progress) as guest:
            progress.step(f"{path}: running workload {workload}")
            start = time.monotonic()
            outcome = workloads.run(guest.ssh, workload)
            seconds = time.monotonic() - start
            (workdir / f"{workload}.out").write_text(outcome.stdout + outcome.stderr)
            boot = guest.boot_seconds
        passed = outcome.status == 0
        progress.step(f"{path}: workload {'passed' if passed else 'FAILED'} in {seconds:.1f} s")
        result.results.append(
            PathResult(
                path,
                passed,
                outcome.status,
                workdir / f"{model}.jsonl",
                outcome.stdout,
                boot,
                seconds,
            )
        )
    summary = {
        "model": model,
        "workload": workload,
        "paths": {
            r.path: {
                "passed": r.passed,
                "status": r.status,
                "log": str(r.log),
                "boot_seconds": round(r.boot_seconds, 2),
                "workload_seconds": round(r.workload_seconds, 2),
            }
            for r in result.results
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result
