"""`xvpci kext check`: the kext's imports are exported by the libraries it names.

Without MacKernelSDK (CI) the check runs on kext/symbols/imports.txt, which
must match the sources; a real Mach-O object compiled here for macOS stands in
for the kext when a test injects an unresolved symbol. With
$XVPCI_MACKERNELSDK the kext itself is compiled and must match that record.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import kext
from harness.kext import (
    KEXT_DIR,
    Export,
    KextCheckFailed,
    Tools,
    check_imports,
    read_exports,
    run_check,
    symbol_table,
)
from vfio_bridge.models import window

HAVE_CLANG = kext._find_tool("clang") is not None and kext._find_tool("llvm-nm") is not None
needs_clang = pytest.mark.skipif(not HAVE_CLANG, reason="clang/llvm-nm not installed")
SDK = os.environ.get(kext.SDK_ENV)
needs_sdk = pytest.mark.skipif(not SDK, reason=f"${kext.SDK_ENV} not set (MacKernelSDK checkout)")
XNU_GIT = os.environ.get("XVPCI_XNU_GIT")
IOPCI_GIT = os.environ.get("XVPCI_IOPCIFAMILY_GIT")
needs_apple_sources = pytest.mark.skipif(
    not (XNU_GIT and IOPCI_GIT),
    reason="$XVPCI_XNU_GIT / $XVPCI_IOPCIFAMILY_GIT not set (git checkouts of Apple's sources)",
)
LIBRARIES = {"com.apple.kpi.iokit": "21.0", "com.apple.kpi.libkern": "21.0"}


def xvpci(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != kext.SDK_ENV}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "kext", "check", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
    )


def copy_kext(tmp_path: Path) -> Path:
    target = tmp_path / "kext"
    shutil.copytree(KEXT_DIR, target, ignore=shutil.ignore_patterns("testbed", "build"))
    return target


def test_committed_record_passes_without_sdk() -> None:
    proc = xvpci()
    assert proc.returncode == 0, proc.stderr
    count = len(kext.ImportRecord.read(KEXT_DIR / "symbols" / "imports.txt").symbols)
    assert count > 300  # every inherited virtual of IOService/IOPCIBridge is an import
    assert proc.stdout.startswith(f"{count} imports, all exported (com.apple.iokit.IOPCIFamily ")
    assert "[record]" in proc.stdout
    assert re.search(r"^\[kext check +\d+\.\ds\] every import exported", proc.stderr, re.M)


def test_injected_import_fails_naming_it(tmp_path: Path) -> None:
    kext_dir = copy_kext(tmp_path)
    record = kext_dir / "symbols" / "imports.txt"
    record.write_text(record.read_text() + "__ZN9IOService17xvpciNotExportedEv\n")
    proc = xvpci("--kext-dir", str(kext_dir), "-q")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith(
        "xvpci kext check: unresolved symbol __ZN9IOService17xvpciNotExportedEv: not exported "
    )


def test_changed_source_makes_the_record_stale(tmp_path: Path) -> None:
    kext_dir = copy_kext(tmp_path)
    source = kext_dir / "XvpciWindow.cpp"
    source.write_text(source.read_text() + "\n/* edited */\n")
    proc = xvpci("--kext-dir", str(kext_dir), "-q")
    assert proc.returncode == 1
    assert "kext sources changed since" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_sdk_is_an_environment_error(tmp_path: Path) -> None:
    proc = xvpci("--sdk", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("(no Headers/IOKit/pci/IOPCIBridge.h)")
    assert "Traceback" not in proc.stderr


def test_import_from_a_library_not_named_fails() -> None:
    exports = read_exports(KEXT_DIR / "symbols" / "exports.txt")
    record = kext.ImportRecord.read(KEXT_DIR / "symbols" / "imports.txt")
    with pytest.raises(KextCheckFailed, match=r"exported by com.apple.iokit.IOPCIFamily, which"):
        check_imports(record.symbols, exports, LIBRARIES)


def test_every_import_of_the_record_has_one_export_line() -> None:
    exports = read_exports(KEXT_DIR / "symbols" / "exports.txt")
    record = kext.ImportRecord.read(KEXT_DIR / "symbols" / "imports.txt")
    assert set(record.symbols) == set(exports)  # reduced to what the kext needs
    assert {e.bundle for e in exports.values()} <= set(kext.KPI_EXPORTS) | {kext.IOPCI_BUNDLE}


def test_export_file_syntax() -> None:
    text = "_IOLog\n_IOLockLock:_lck_mtx_lock\n# comment\n\n__ZN9IOService5startEPS_ # x\n"
    assert kext._export_names(text) == {"_IOLog", "_IOLockLock", "__ZN9IOService5startEPS_"}


def test_definition_pattern_finds_members_and_metaclass() -> None:
    source = (
        "OSDefineMetaClassAndAbstractStructors(IOPCIHostBridge, super);\n"
        "bool IOPCIHostBridge::configure(IOService * provider)\n{\n"
    )
    for demangled in (
        "IOPCIHostBridge::configure(IOService*)",
        "vtable for IOPCIHostBridge",
        "IOPCIHostBridge::gMetaClass",
        "IOPCIHostBridge::~IOPCIHostBridge()",
    ):
        pattern = kext._definition_pattern(demangled)
        assert pattern is not None and pattern.search(source), demangled
    probe = kext._definition_pattern("IOPCIHostBridge::probe(IOService*, int*)")
    assert probe is not None and not probe.search(source)


@needs_clang
def test_unresolved_symbol_of_a_real_macos_object_is_named(tmp_path: Path) -> None:
    """A Mach-O object for the kext's target, built here without any SDK."""
    source = tmp_path / "inject.c"
    source.write_text(
        "extern void IOLog(const char *format, ...);\n"
        "extern int xvpci_injected_missing(void);\n"
        'int xvpci_probe(void) { IOLog("x"); return xvpci_injected_missing(); }\n'
    )
    obj = tmp_path / "inject.o"
    tools = Tools(kext._find_tool("clang") or "", kext._find_tool("llvm-nm") or "", None, None)
    subprocess.run(
        [tools.clang, "-target", kext.TARGET, "-ffreestanding", "-nostdinc", "-c", str(source),
         "-o", str(obj)],
        check=True,
    )  # fmt: skip
    assert obj.read_bytes()[:4] == b"\xcf\xfa\xed\xfe"  # MH_MAGIC_64
    defined, undefined = symbol_table(tools, [obj])
    assert defined == {"_xvpci_probe"}
    assert undefined == {"_IOLog", "_xvpci_injected_missing"}
    exports = read_exports(KEXT_DIR / "symbols" / "exports.txt")
    assert exports["_IOLog"] == Export("com.apple.kpi.iokit", "exports")
    with pytest.raises(KextCheckFailed, match=r"^unresolved symbol _xvpci_injected_missing: "):
        check_imports(undefined - defined, exports, LIBRARIES)
    by_bundle, _ = check_imports({"_IOLog"}, exports, LIBRARIES)
    assert by_bundle == {"com.apple.kpi.iokit": 1}


def test_register_layout_matches_the_window_model() -> None:
    text = (KEXT_DIR / "XvpciRegs.hpp").read_text()

    def constant(name: str) -> int:
        match = re.search(rf"constexpr \w+ {name} = ([^;]+);", text)
        assert match, name
        value, _, shift = match.group(1).replace("U", "").partition("<<")
        return int(value, 0) << (int(shift, 0) if shift else 0)

    assert constant("kCfgBarIndex") == window.CFGBAR
    assert constant("kMemBar1Index") == window.MEMBAR1
    assert constant("kMemBar2Index") == window.MEMBAR2
    assert constant("kCfgBarBusBytes") == window.CFGBAR_SIZE
    assert constant("kWindowVectors") == window.WINDOW_VECTORS
    assert constant("kMsiAddress") == window.MSI_ADDRESS
    assert constant("kWindowMsixPba") < window.MEMBAR2_RESERVED
    msix = next(c for c in window.VmdWindow.capabilities if type(c).__name__ == "MsiX")
    assert (msix.table_bar, msix.table_offset, msix.pba_offset) == (
        window.MEMBAR2,
        constant("kWindowMsixTable"),
        constant("kWindowMsixPba"),
    )


@needs_clang
@needs_sdk
def test_sdk_build_matches_the_committed_record() -> None:
    """The record CI checks is what the real SDK produces from these sources."""
    result = run_check(sdk=Path(SDK or ""))
    assert result.source == "build"
    assert "MH_KEXT_BUNDLE" in result.link or "linked kext bundle" in result.link


@needs_clang
@needs_sdk
def test_sdk_build_with_an_injected_call_fails(tmp_path: Path) -> None:
    extra = tmp_path / "Injected.cpp"
    extra.write_text(
        '#include <IOKit/IOLib.h>\nextern "C" void xvpci_injected_kpi(void);\n'
        "void xvpciInjected() { xvpci_injected_kpi(); }\n"
    )
    with pytest.raises(KextCheckFailed, match=r"^unresolved symbol _xvpci_injected_kpi: "):
        run_check(sdk=Path(SDK or ""), extra_sources=[extra])


@needs_clang
@needs_apple_sources
def test_exports_regenerate_from_apple_sources_as_committed(tmp_path: Path) -> None:
    """kext/symbols/exports.txt is what xnu and IOPCIFamily at the named tags say."""
    record = kext.ImportRecord.read(KEXT_DIR / "symbols" / "imports.txt")
    tools = Tools.find()
    lines = kext.regenerate_exports(
        tools, record.symbols, Path(XNU_GIT or ""), Path(IOPCI_GIT or "")
    )
    assert "\n".join(lines) + "\n" == (KEXT_DIR / "symbols" / "exports.txt").read_text()
