"""``xvpci run``: the main job. Boot the guest once per path with the model
attached along that path, run the workload, keep every log in the output
directory, and summarise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from . import workloads
from .accel import choose_accel
from .difflog import LogError, Rules, diff_logs, reports
from .difflog.reports import write_all
from .difflog.transactions import diff_transaction_logs, has_decoder
from .errors import HarnessError
from .guest import LinuxGuest, ModelAttachment, ServedGuest, run_workload
from .linux_image import LinuxImage, build
from .macos import MacosConfig, preflight
from .macos_deploy import RAW_VERIFY, deploy_and_run
from .macos_guest import MacosGuest
from .progress import Progress
from .qemu_install import QemuInstall, find_qemu
from .reference import report_reference, run_reference

PATHS = ("direct", "window", "reference")  # reference: QEMU's own device (reference.py)


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
class Verdict:
    equivalent: bool
    text: str


@dataclass
class RunResult:
    out: Path
    results: list[PathResult] = field(default_factory=list)
    verdict: Verdict | None = None
    #: The model against QEMU's own device (``--paths ...,reference``).
    reference: Verdict | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def passed(self) -> bool:
        workloads_ok = all(r.passed for r in self.results)
        verdicts = [v for v in (self.verdict, self.reference) if v is not None]
        return workloads_ok and all(v.equivalent for v in verdicts)


def report_run(out: Path, rules_path: Path | None = None, level: str = "transaction") -> Verdict:
    """Diff the direct and window logs of a run directory at both levels; write reports to
    ``out/report``. ``level`` (``transaction`` or ``raw``) says whose verdict counts; a
    model without a transaction decoder is judged raw."""
    summary_file = out / "summary.json"
    if not summary_file.is_file():
        raise LogError(f"{out}: no summary.json, not an `xvpci run` output directory")
    summary = json.loads(summary_file.read_text())
    paths = summary.get("paths", {})
    if "direct" not in paths or "window" not in paths:
        raise LogError(f"{out}: the run has no direct and window logs to compare")
    log_a, log_b = Path(paths["direct"]["log"]), Path(paths["window"]["log"])
    verdict, text = diff_both_levels(log_a, log_b, Rules.load(rules_path), level, out / "report")
    return Verdict(verdict, text)


def diff_both_levels(
    log_a: Path,
    log_b: Path,
    rules: Rules,
    level: str,
    report: Path | None,
    allow_truncated: bool = False,
    paths: dict[str, Path | None] | None = None,
) -> tuple[bool, str]:
    """Raw and transaction diffs of two logs; reports into ``report`` (all of them) or
    to ``paths`` (``html``, ``json``, ``junit``, ``trace``). Returns the verdict of
    ``level`` and the summary text (the counting level first, the other as context)."""
    result = diff_logs(log_a, log_b, rules, allow_truncated)
    txn = None
    note = ""
    if has_decoder(log_a):
        txn = diff_transaction_logs(log_a, log_b, rules, allow_truncated)
    elif level == "transaction":
        note = "(this model has no transaction decoder: judged on raw events)"
        level = "raw"
    if report is not None:
        report.mkdir(exist_ok=True)
        paths = {
            "html": report / "diff.html", "json": report / "diff.json",
            "junit": report / "junit.xml", "trace": report / "trace.json",
        }  # fmt: skip
    paths = paths or {}
    write_all(
        result, log_a, log_b,
        html_path=paths.get("html"), json_path=paths.get("json"),
        junit_path=paths.get("junit"), trace_path=paths.get("trace"),
        txn=txn, level=level,
    )  # fmt: skip
    raw_text = reports.summary(result, log_a, log_b)
    txn_text = reports.txn_summary(txn, log_a, log_b) if txn is not None else ""
    if level == "transaction" and txn is not None:
        text = f"{txn_text}\nraw events (context, not the verdict):\n{raw_text}"
        equivalent = txn.equivalent
    else:
        text = raw_text + (
            f"\ntransactions (context, not the verdict):\n{txn_text}" if txn_text else ""
        )
        equivalent = result.equivalent
    if note:
        text = f"{note}\n{text}"
    if report is not None:
        text += f"\nreports: {report}"
        (report / "summary.txt").write_text(text + "\n")
    return equivalent, text


def attachments(model: str, options: list[str], path: str) -> list[ModelAttachment]:
    if path == "direct":
        return [ModelAttachment(model, options, path_label="direct", name=model)]
    window_options = [f"child={model}", f"child_options={';'.join(options)}"]
    return [ModelAttachment("window", window_options, path_label="window", name=model)]


class GuestKind(Protocol):
    """What differs between guest operating systems in a run: how a guest with the
    model attached is booted, and what exercises the model once it is up."""

    workload: str

    def boot(
        self, workdir: Path, models: list[ModelAttachment], progress: Progress
    ) -> AbstractContextManager[ServedGuest]: ...

    def exercise(self, guest: ServedGuest, path: str, workdir: Path) -> tuple[str, int]:
        """Run the workload in the booted guest: its output and exit status."""
        ...

    def reference(
        self, workdir: Path, model: str, options: list[str], progress: Progress
    ) -> PathResult:
        """The workload on QEMU's own device of the model's kind, traced (the reference path)."""
        ...


@dataclass
class LinuxKind:
    """Our Linux guest image under QEMU; the workload is a shell script from guests/linux."""

    qemu: QemuInstall
    image: LinuxImage
    accel: str
    workload: str

    def boot(self, workdir: Path, models: list[ModelAttachment], progress: Progress) -> LinuxGuest:
        return LinuxGuest(
            self.qemu, self.image, workdir, models, accel=self.accel, progress=progress
        )

    def exercise(self, guest: ServedGuest, path: str, workdir: Path) -> tuple[str, int]:
        outcome = workloads.run(guest.ssh, self.workload)
        (workdir / f"{self.workload}.out").write_text(outcome.stdout + outcome.stderr)
        return outcome.stdout, outcome.status

    def reference(
        self, workdir: Path, model: str, options: list[str], progress: Progress
    ) -> PathResult:
        ref = run_reference(
            self.qemu, self.image, workdir, model, options, self.workload, self.accel, progress
        )
        return PathResult(
            "reference", ref.passed, ref.status, ref.trace, ref.output,
            ref.boot_seconds, ref.workload_seconds,
        )  # fmt: skip


@dataclass
class MacosKind:
    """The user's macOS guest: stock drivers on the direct path, our kext behind the window."""

    qemu: QemuInstall
    config: MacosConfig
    workload: str = "raw-verify"

    def boot(self, workdir: Path, models: list[ModelAttachment], progress: Progress) -> MacosGuest:
        return MacosGuest(self.qemu, self.config, workdir, models, progress=progress)

    def exercise(self, guest: ServedGuest, path: str, workdir: Path) -> tuple[str, int]:
        if path == "window":
            report = deploy_and_run(guest.ssh, RAW_VERIFY)
            output, status = report.workload_output, 0
            (workdir / "guest-view.txt").write_text(report.guest_view)
        else:
            ran = guest.ssh.run("sh -s", timeout=900, stdin=RAW_VERIFY.encode())
            output, status = ran.stdout + ran.stderr, ran.status
        (workdir / f"{self.workload}.out").write_text(output)
        return output, status

    def reference(
        self, workdir: Path, model: str, options: list[str], progress: Progress
    ) -> PathResult:
        raise HarnessError("the reference path (QEMU's own device) runs on the Linux guest only")


def run(
    model: str,
    paths: list[str],
    workload: str,
    out: Path,
    options: list[str],
    accel: str = "tcg",
    progress: Progress | None = None,
    level: str = "transaction",
    path_options: Mapping[str, Sequence[str]] | None = None,
) -> RunResult:
    """The main job on our Linux guest: ``workload`` once per path, then the diff.
    ``path_options`` adds model options on one path only (a model perturbed on the
    window path, say: ``{"window": ["perturb=read_byte@2100"]}``)."""
    progress = progress or Progress("run")
    _check_paths(paths)
    workloads.script(workload)  # fail early on a bad name
    out = output_directory(out)  # and on an output directory that cannot be made
    qemu = find_qemu()
    started = time.monotonic()
    image = build(progress=progress)
    kind = LinuxKind(qemu, image, choose_accel(accel, qemu, image), workload)
    provisioning = time.monotonic() - started
    result = run_paths(kind, model, paths, out, options, progress, level, path_options)
    result.timings["provisioning"] = provisioning
    return result


def output_directory(out: Path) -> Path:
    """``out``, absolute (the summary names logs that `xvpci report` reads from
    anywhere) and made if need be; :class:`HarnessError` if it cannot be."""
    out = out.resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"cannot create the output directory {out}: {exc.strerror}") from None
    return out


def run_paths(
    kind: GuestKind,
    model: str,
    paths: list[str],
    out: Path,
    options: list[str],
    progress: Progress,
    level: str = "transaction",
    path_options: Mapping[str, Sequence[str]] | None = None,
) -> RunResult:
    """Boot a guest of ``kind`` once per path with the model attached along it, exercise
    it, keep every log in ``out``; with both paths, diff them (``level`` sets the exit
    status: ``transaction`` or ``raw``) and write the reports. ``path_options``: model
    options added on the path named (after ``options``)."""
    path_options = path_options or {}
    unknown = set(path_options) - set(paths)
    if unknown:
        raise HarnessError(
            f"options given for paths not run: {', '.join(sorted(unknown))} "
            f"(the run has {', '.join(paths)})"
        )
    out = output_directory(out)
    result = RunResult(out)
    for path in paths:
        workdir = out / path
        on_path = [*options, *path_options.get(path, ())]
        if path == "reference":
            result.results.append(kind.reference(workdir, model, on_path, progress))
            continue
        with kind.boot(workdir, attachments(model, on_path, path), progress) as guest:
            progress.step(f"{path}: running workload {kind.workload}")
            (output, status), seconds = run_workload(
                guest, f"{path} path", workdir, partial(kind.exercise, guest, path, workdir)
            )
            boot = guest.boot_seconds
        passed = status == 0
        progress.step(f"{path}: workload {'passed' if passed else 'FAILED'} in {seconds:.1f} s")
        log = workdir / f"{model}.jsonl"
        result.results.append(PathResult(path, passed, status, log, output, boot, seconds))
    return _finish(result, model, kind.workload, progress, level)


def _check_paths(paths: list[str]) -> None:
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise HarnessError(f"unknown path(s) {', '.join(unknown)} (choose from {', '.join(PATHS)})")


def _finish(
    result: RunResult, model: str, workload: str, progress: Progress, level: str = "transaction"
) -> RunResult:
    """Write summary.json and, with both paths, the diff and its reports."""
    out = result.out
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
    if {"direct", "window"} <= {r.path for r in result.results}:
        progress.step("diffing the direct and window logs")
        started = time.monotonic()
        result.verdict = report_run(out, level=level)
        result.timings["diff"] = time.monotonic() - started
    if "reference" in {r.path for r in result.results}:
        progress.step("diffing the model's log against the reference")
        result.reference = report_reference_run(out)
    return result


def report_reference_run(out: Path, rules_path: Path | None = None) -> Verdict | None:
    """Diff the model's log (direct, else window) of a run directory against its reference
    trace, into ``out/report``; None when the run has no reference or no model log."""
    summary = json.loads((out / "summary.json").read_text())
    paths = summary.get("paths", {})
    model = paths.get("direct") or paths.get("window")
    if "reference" not in paths or model is None:
        return None
    trace = Path(paths["reference"]["log"])
    equivalent, text = report_reference(
        Path(model["log"]), trace, out / "report", Rules.load(rules_path)
    )
    return Verdict(equivalent, text)


def report_all(out: Path, rules_path: Path | None = None, level: str = "transaction") -> Verdict:
    """``xvpci report``: every diff a run directory holds (direct against window, the
    model against the reference), re-rendered; one verdict for all."""
    summary_file = out / "summary.json"
    if not summary_file.is_file():
        raise LogError(f"{out}: no summary.json, not an `xvpci run` output directory")
    paths = json.loads(summary_file.read_text()).get("paths", {})
    verdicts = []
    if "reference" not in paths or {"direct", "window"} <= set(paths):
        verdicts.append(report_run(out, rules_path, level))
    reference = report_reference_run(out, rules_path)
    if reference is not None:
        verdicts.append(reference)
    return Verdict(all(v.equivalent for v in verdicts), "\n".join(v.text for v in verdicts))


def run_macos(
    model: str,
    paths: list[str],
    out: Path,
    options: list[str],
    progress: Progress,
    path_options: Mapping[str, Sequence[str]] | None = None,
) -> RunResult:
    """The main job on the user's macOS guest: the model directly (stock macOS drivers) and
    behind the window (the xvpci kext deployed over SSH); raw-device verification on each.

    Needs the user's images, working KVM with ``kvm.ignore_msrs=1`` and an OVMF pair;
    says in one line what is missing otherwise.
    """
    _check_paths(paths)
    config = MacosConfig.load()
    missing = config.missing()
    if missing:
        raise HarnessError(missing)
    qemu = find_qemu()
    preflight(config, qemu)  # ignore_msrs and the OVMF pair, before the KVM probe's boot
    if choose_accel("auto", qemu, build(progress=progress)) != "kvm":
        raise HarnessError("macOS guests need working KVM, and the KVM probe failed on this host")
    return run_paths(
        MacosKind(qemu, config), model, paths, out, options, progress, path_options=path_options
    )
