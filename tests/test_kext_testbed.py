"""The kext's Linux test bed: the kext's own source, run for real against the window device.

The guest tests boot one Linux guest each (TCG) with the NVMe model attached
directly and behind the window, run ``xvpci kext testbed`` and read its
output. The new kext must pass issue 17's points 1-10 with equivalent logs;
the old kext (commit 5b353f9) must fail every one of them, which is what
shows each check can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kext_testbed import (
    KEXT_DIR,
    POINTS,
    build_binary,
    parse_output,
    personalities,
)

OLD_KEXT = "5b353f9"
REPO = Path(__file__).resolve().parent.parent
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def _xvpci(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


@pytest.fixture(scope="module")
def old_kext(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kext before issue 17 (IOPCIBridge on the window's IOPCIDevice), from git."""
    directory = tmp_path_factory.mktemp("old-kext")
    for name in ("XvpciWindow.cpp", "XvpciWindow.hpp", "Info.plist"):
        shown = subprocess.run(
            ["git", "show", f"{OLD_KEXT}:kext/{name}"],
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        if shown.returncode != 0:
            pytest.skip(f"git cannot show {OLD_KEXT}:kext/{name} (shallow clone?)")
        (directory / name).write_bytes(shown.stdout)
    return directory / "XvpciWindow.cpp"


def test_personalities_come_from_the_info_plist() -> None:
    lines = personalities(KEXT_DIR / "Info.plist").splitlines()
    tables = [dict(field.split("=", 1) for field in line.split("\t")) for line in lines]
    window = next(t for t in tables if t.get("IOProviderClass") == "IOPCIDevice")
    assert window["IOPCIMatch"].lower() == "0xa77f8086"
    # every personality names a class the kext defines
    source = (KEXT_DIR / "XvpciWindow.cpp").read_text()
    for table in tables:
        assert f"OSDefineMetaClassAndStructors({table['IOClass']}," in source


def test_output_parsing() -> None:
    text = (
        "RESULT window ran=1 ok=1 vs=0x10400 model='xvpci NVMe model' error=''\n"
        "CHECK 1 PASS child nub published\nCHECK 5 FAIL config 0x000 = 0x1, 0x100 = 0x1\n"
        "TESTBED FAIL (1 check(s) failed)\n"
    )
    checks, drivers, passed = parse_output(text)
    assert checks[1].passed and not checks[5].passed and "0x100" in checks[5].text
    assert drivers["window"]["model"] == "xvpci NVMe model" and drivers["window"]["vs"] == "0x10400"
    assert not passed
    assert parse_output("TESTBED PASS (0 check(s) failed)\n")[2]


@needs_gxx
def test_the_kext_source_compiles_unchanged_for_linux(tmp_path: Path) -> None:
    binary = build_binary(tmp_path)
    assert binary.is_file() and os.access(binary, os.X_OK)
    # static: it runs in the busybox guest, which has no C++ runtime
    assert b"libstdc++.so" not in binary.read_bytes()
    # the kext's classes and its kmod info are linked in
    symbols = subprocess.run(["nm", "-C", str(binary)], capture_output=True, text=True).stdout
    assert "XvpciHostBridge::configRead32" in symbols and " kmod_info" in symbols


@needs_gxx
def test_a_broken_kext_source_is_a_one_line_error(tmp_path: Path) -> None:
    broken = tmp_path / "kext" / "XvpciWindow.cpp"
    broken.parent.mkdir()
    broken.write_text("#include <IOKit/IOService.h>\nclass X : public IOService { int y = ; };\n")
    with pytest.raises(HarnessError, match="cannot build the test bed"):
        build_binary(tmp_path / "out", broken)
    ran = _xvpci("kext", "testbed", "--out", str(tmp_path / "o"), "--kext-source", str(broken))
    assert ran.returncode == 2
    errors = [line for line in ran.stderr.splitlines() if not line.startswith("[kext testbed")]
    assert len(errors) == 1 and errors[0].startswith("xvpci: error: cannot build the test bed")
    assert "expected primary-expression" in errors[0] and "Traceback" not in ran.stderr


@pytest.mark.qemu
@needs_gxx
def test_the_new_kext_passes_every_point_and_the_paths_agree(linux_image, tmp_path: Path) -> None:
    ran = _xvpci("kext", "testbed", "--out", str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    # timed progress lines on stderr
    assert "[kext testbed" in ran.stderr and "running the kext in the test bed" in ran.stderr
    for point in POINTS:
        assert f"point {point:2}: pass" in ran.stdout, ran.stdout
    assert "diff direct vs window: EQUIVALENT" in ran.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] and summary["equivalent"]
    for path in ("window", "direct"):
        driver = summary["drivers"][path]
        assert driver["ok"] == "1" and driver["vs"] == "0x10400"
        assert int(driver["verified"]) == 16384 and int(driver["by_interrupt"]) >= 6
    output = (tmp_path / "testbed.out").read_text()
    # the kext's own code ran: its IOLog lines, the host bridge it registered
    assert "IOLog: xvpci-window: bus 0xe0" in output
    assert "matching: XvpciHostBridge started on xvpci-window-bus" in output
    assert "configurator: e0:00.0 1b36:00ee class 010802" in output
    # the control for point 4: on the direct function (one shared vector, IOPCIFamily's
    # default) a second registration makes the PBA rule drop the completion, so the
    # rule the window path survives is live in the fakes
    assert "CONTROL direct two_sources_delivered=0" in output
    # both server logs hold the test driver's I/O
    for label in ("direct", "window"):
        log = (tmp_path / "guest" / f"{label}.jsonl").read_text()
        assert '"kind": "dma_write"' in log or '"kind":"dma_write"' in log


@pytest.mark.qemu
@needs_gxx
def test_the_old_kext_fails_every_point(linux_image, old_kext: Path, tmp_path: Path) -> None:
    ran = _xvpci("kext", "testbed", "--out", str(tmp_path), "--kext-source", str(old_kext))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    for point in POINTS:
        assert f"point {point:2}: FAIL" in ran.stdout, ran.stdout
    output = (tmp_path / "testbed.out").read_text()
    # it did run: the old kext's own log line, counting children it never published
    assert "IOLog: xvpci-window: published 1 device(s)" in output
    assert "0x100 = 0xee1b36" in output  # extended config aliased the header
