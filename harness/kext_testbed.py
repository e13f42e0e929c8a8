"""``xvpci kext testbed``: the kext's own source, executed for real in the Linux guest.

``kext/XvpciWindow.cpp`` is compiled unchanged for Linux, statically, against
the fakes in ``kext/testbed/`` (libkern, IOKit and IOPCIFamily behaviour
transcribed from Apple's sources, see ``kext/testbed/README.md``). One guest
boots with the NVMe model attached twice: directly, and behind the window
device; the guest's own nvme and vmd drivers are kept off both
(``module_blacklist``), so every access to the models comes from the test
bed. The binary is copied in over SSH and run: the kext drives the window,
IOPCIFamily's configurator (faked) enumerates through the kext's accessors,
a small IOKit NVMe driver runs on the child nub the kext publishes and on
the direct device, and issue 17's points 1-10 are checked. The two server
logs are then diffed with the project's diff engine.

What this leaves untested is in ``kext/testbed/README.md``.
"""

from __future__ import annotations

import json
import logging
import plistlib
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import assets
from .accel import choose_accel
from .difflog import LogError, Rules, diff_logs, reports
from .errors import HarnessError
from .guest import KERNEL_ARGS, LinuxGuest, ModelAttachment
from .kext import KMOD_INFO_TEMPLATE, BundleInfo
from .linux_image import build
from .progress import Progress
from .qemu_install import find_qemu
from .ssh import GuestCommandTimeout, GuestLinkError

log = logging.getLogger(__name__)

KEXT_DIR = Path(str(assets.kext_files()))  # on disk in every install: compilers read it
TESTBED_DIR = KEXT_DIR / "testbed"
#: Both paths serve the same NVMe model with the same options (so Identify data agree).
NVME_OPTIONS = ("size=32m", "serial=XVPCITB01")
#: Keep the guest's own drivers off both functions: every access is the test bed's.
KERNEL_ARGS_EXTRA = "module_blacklist=nvme,vmd"
GUEST_BINARY = "/tmp/xvpci-testbed"
GUEST_PERSONALITIES = "/tmp/xvpci-personalities.tsv"
RUN_TIMEOUT = 900.0
POINTS = tuple(range(1, 11))

_CHECK = re.compile(r"^CHECK (\d+) (PASS|FAIL) (.*)$")
_RESULT = re.compile(r"^RESULT (\w+) (.*)$")
_FIELD = re.compile(r"(\w+)=('[^']*'|\S+)")


@dataclass
class Check:
    point: int
    passed: bool
    text: str


@dataclass
class TestbedRun:
    out: Path
    output: str = ""
    status: int | None = None
    checks: dict[int, Check] = field(default_factory=dict)
    drivers: dict[str, dict[str, str]] = field(default_factory=dict)
    testbed_passed: bool = False
    equivalent: bool | None = None
    diff_summary: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        checks_ok = all(p in self.checks and self.checks[p].passed for p in POINTS)
        return self.testbed_passed and checks_ok and self.equivalent is True


def personalities(plist: Path) -> str:
    """The IOKitPersonalities of ``plist``, one per line, as the test bed reads them."""
    try:
        data = plistlib.loads(plist.read_bytes())
    except (OSError, plistlib.InvalidFileException, ValueError) as exc:
        raise HarnessError(f"cannot read {plist}: {exc}") from None
    found = data.get("IOKitPersonalities")
    if not isinstance(found, dict) or not found:
        raise HarnessError(f"{plist}: no IOKitPersonalities")
    lines = []
    for name, personality in sorted(found.items()):
        if not isinstance(personality, dict):
            raise HarnessError(f"{plist}: personality {name} is not a dictionary")
        fields = []
        for key, value in personality.items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for sub, item in items:
                label = f"{key}.{sub}" if sub else key
                if isinstance(item, bool) or not isinstance(item, int | str):
                    continue  # the matcher uses strings and numbers only
                text = f"#{item}" if isinstance(item, int) else item
                if "\t" in text or "\n" in text:
                    raise HarnessError(f"{plist}: {name}.{label} holds a tab or newline")
                fields.append(f"{label}={text}")
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def bundle_identifier(plist: Path) -> str:
    try:
        return str(plistlib.loads(plist.read_bytes())["CFBundleIdentifier"])
    except (OSError, plistlib.InvalidFileException, ValueError, KeyError) as exc:
        raise HarnessError(f"cannot read CFBundleIdentifier from {plist}: {exc}") from None


def build_binary(out_dir: Path, kext_source: Path | None = None) -> Path:
    """Compile the test bed (static, x86-64 Linux) with the kext source; returns the binary.

    ``kext_source`` defaults to ``kext/XvpciWindow.cpp``; another revision (for
    example the old kext) is compiled with its own directory first on the
    include path, and without kmod info unless a ``kmod_info.c.in`` sits beside it.
    """
    compiler = shutil.which("g++")
    if compiler is None or shutil.which("make") is None:
        raise HarnessError(
            "g++ or make not found: install them (Debian: g++ make), ci/setup.sh does"
        )
    source = (kext_source or KEXT_DIR / "XvpciWindow.cpp").resolve()
    if not source.is_file():
        raise HarnessError(f"no kext source at {source}")
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "xvpci-testbed"
    command = [
        "make", "-s", "-C", str(TESTBED_DIR), f"OUT={binary}", f"KEXT_SRC={source}",
        f"CXX={compiler}",
    ]  # fmt: skip
    template = source.parent / KMOD_INFO_TEMPLATE
    plist = source.parent / "Info.plist"
    if template.is_file() and plist.is_file():
        info = BundleInfo.read(plist)  # the same kmod info `xvpci kext check` compiles
        kmod = out_dir / "kmod_info.c"
        kmod.write_text(
            template.read_text().replace("@ID@", info.identifier).replace("@VERSION@", info.version)
        )
        command.append(f"KMOD_SRC={kmod}")
    binary.unlink(missing_ok=True)
    try:
        made = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise HarnessError(f"cannot run make for the test bed: {exc}") from None
    if made.returncode != 0 or not binary.is_file():
        errors = [line for line in made.stderr.splitlines() if "error" in line][:5]
        detail = "; ".join(errors) or made.stderr.strip()[-400:] or "no output"
        raise HarnessError(f"cannot build the test bed against {source}: {detail}")
    return binary


def parse_output(text: str) -> tuple[dict[int, Check], dict[str, dict[str, str]], bool]:
    """CHECK lines, RESULT lines and the final TESTBED verdict of the binary's output."""
    checks: dict[int, Check] = {}
    drivers: dict[str, dict[str, str]] = {}
    passed = False
    for line in text.splitlines():
        if match := _CHECK.match(line):
            point = int(match.group(1))
            checks[point] = Check(point, match.group(2) == "PASS", match.group(3))
        elif match := _RESULT.match(line):
            drivers[match.group(1)] = {
                key: value.strip("'") for key, value in _FIELD.findall(match.group(2))
            }
        elif line.startswith("TESTBED "):
            passed = line.split()[1] == "PASS"
    return checks, drivers, passed


def attachments() -> list[ModelAttachment]:
    return [
        ModelAttachment("nvme", list(NVME_OPTIONS), path_label="direct", name="direct"),
        ModelAttachment(
            "window",
            ["child=nvme", f"child_options={';'.join(NVME_OPTIONS)}"],
            path_label="window",
            name="window",
        ),
    ]


def run_testbed(
    out: Path,
    accel: str = "tcg",
    kext_source: Path | None = None,
    progress: Progress | None = None,
    paths: Sequence[str] = ("window", "direct"),
) -> TestbedRun:
    """Build, boot, run the test bed in the guest, diff the two logs; see the module doc."""
    progress = progress or Progress("kext testbed", quiet=True)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = TestbedRun(out)
    started = time.monotonic()
    progress.step("building the test bed with the kext source")
    binary = build_binary(out / "build", kext_source)
    plist = (kext_source.parent if kext_source else KEXT_DIR) / "Info.plist"
    if not plist.is_file():
        plist = KEXT_DIR / "Info.plist"
    table = personalities(plist)
    bundle = bundle_identifier(plist)
    run.timings["build"] = time.monotonic() - started
    qemu = find_qemu()
    image = build(progress=progress)
    accel = choose_accel(accel, qemu, image)
    workdir = out / "guest"
    kernel_args = f"{KERNEL_ARGS} {KERNEL_ARGS_EXTRA}"
    with LinuxGuest(
        qemu, image, workdir, attachments(), accel=accel, kernel_args=kernel_args,
        progress=progress,
    ) as guest:  # fmt: skip
        progress.step("copying the test bed into the guest")
        try:
            payload = binary.read_bytes()
        except OSError as exc:
            raise HarnessError(f"cannot read the test bed binary: {exc}") from None
        guest.ssh.put(payload, GUEST_BINARY, 0o755)
        guest.ssh.put(table.encode(), GUEST_PERSONALITIES)
        progress.step("running the kext in the test bed (window path, then direct)")
        begun = time.monotonic()
        command = (
            # mlocked pages must stay where pagemap said: no compaction of them.
            "echo 0 > /proc/sys/vm/compact_unevictable_allowed; "
            f"{GUEST_BINARY} --personalities {GUEST_PERSONALITIES} --bundle-id {bundle} "
            f"--paths {','.join(paths)}"
        )
        try:
            ran = guest.ssh.run(command, timeout=RUN_TIMEOUT)
        except (GuestLinkError, GuestCommandTimeout) as exc:
            raise HarnessError(
                f"test bed in the guest: {exc}; cause: {guest.diagnose()}; logs kept in {workdir}"
            ) from None
        run.timings["testbed"] = time.monotonic() - begun
    run.output = ran.stdout + ran.stderr
    run.status = ran.status
    (out / "testbed.out").write_text(run.output)
    run.checks, run.drivers, run.testbed_passed = parse_output(run.output)
    if run.status not in (0, 1):
        tail = " | ".join(run.output.strip().splitlines()[-3:])
        raise HarnessError(
            f"the test bed stopped with status {run.status}: {tail} (output: {out / 'testbed.out'})"
        )
    if {"window", "direct"} <= set(paths):
        progress.step("diffing the direct and window logs")
        _diff(run, workdir / "direct.jsonl", workdir / "window.jsonl")
    (out / "summary.json").write_text(json.dumps(_summary(run), indent=2) + "\n")
    return run


def _diff(run: TestbedRun, direct: Path, window: Path) -> None:
    try:
        result = diff_logs(direct, window, Rules())
    except LogError as exc:
        raise HarnessError(f"cannot diff the test bed's logs: {exc}") from None
    run.equivalent = result.equivalent
    run.diff_summary = reports.summary(result, direct, window)
    report = run.out / "report"
    report.mkdir(exist_ok=True)
    reports.write_all(
        result, direct, window,
        html_path=report / "diff.html", json_path=report / "diff.json",
        junit_path=report / "junit.xml", trace_path=report / "trace.json",
    )  # fmt: skip
    (report / "summary.txt").write_text(run.diff_summary + "\n")
    log.info("diff: %s", "EQUIVALENT" if result.equivalent else "DIVERGENT")


def _summary(run: TestbedRun) -> dict[str, object]:
    return {
        "passed": run.passed,
        "testbed_passed": run.testbed_passed,
        "status": run.status,
        "checks": {str(p): {"passed": c.passed, "text": c.text} for p, c in run.checks.items()},
        "drivers": run.drivers,
        "equivalent": run.equivalent,
        "timings": {k: round(v, 2) for k, v in run.timings.items()},
    }
