"""Build the macOS kext on Linux and check its imports against what macOS exports.

Theory of operation (``xvpci kext check``):

Rule 1, build. With MacKernelSDK (``--sdk`` or ``$XVPCI_MACKERNELSDK``),
clang compiles ``kext/XvpciWindow.cpp`` for ``x86_64-apple-macos12`` and a
``kmod_info.c`` made from ``kext/kmod_info.c.in`` and ``kext/Info.plist``
(``KMOD_EXPLICIT_DECL``, ``_realmain``, ``_antimain``); the SDK's ``libkmod.a``
supplies ``_start`` and ``_stop``. The build must define everything the kernel loader looks up
(``_kmod_info``, ``__realmain``, ``__antimain``, ``__start``, ``__stop``).
ld64.lld is then asked for a kext bundle and what it says is reported.

Rule 2, record. The build's imports (undefined symbols left after its own
objects resolve each other) are kept in ``kext/symbols/imports.txt`` with a
digest of the sources and flags they came from (``--update`` rewrites it).
Without the SDK, which CI does not have, the check runs on that record after
verifying the digest still matches the sources: a changed source with a
stale record fails.

Rule 3, exports. ``kext/symbols/exports.txt`` says, for each import, which
bundle exports it on macOS 12 *and* on the newest release read, with the
public file it was read from. It is regenerated from git checkouts of
apple-oss-distributions/xnu (``config/*.exports``) and IOPCIFamily
(``config/IOPCIFamily.exports``, else a definition in its sources) with
``--xnu`` and ``--iopcifamily``; only the symbols the kext imports are kept.

Rule 4, check. Every import must be exported by a bundle named in
``OSBundleLibraries``; the first that is not is the one-line failure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import plistlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers.expat import ExpatError

from . import assets
from .errors import HarnessError
from .progress import Progress

log = logging.getLogger(__name__)

KEXT_DIR = Path(str(assets.kext_files()))  # on disk in every install: compilers read it
SOURCES = ("XvpciWindow.cpp", "XvpciWindow.hpp", "XvpciRegs.hpp", "Info.plist", "kmod_info.c.in")
TARGET = "x86_64-apple-macos12"
CXXFLAGS = (
    "-std=c++17", "-mkernel", "-nostdinc", "-nostdinc++", "-DKERNEL",
    "-Wall", "-Wextra", "-Werror", "-O2",
)  # fmt: skip
CFLAGS = ("-mkernel", "-nostdinc", "-DKERNEL", "-Wall", "-Werror", "-O2")
SDK_ENV = "XVPCI_MACKERNELSDK"

# What the kernel's kext loader looks up in the executable (Mach-O names: C
# names get a leading underscore). _start/_stop come from libkmod.a.
LOADER_SYMBOLS = ("_kmod_info", "__realmain", "__antimain", "__start", "__stop")

KMOD_INFO_TEMPLATE = "kmod_info.c.in"  # shared with kext/Makefile

# Bundle -> xnu export files (config/Makefile: a symbol set is every
# EXPORTS_FILES entry that starts with its name, for x86_64 on MacOSX).
KPI_EXPORTS = {
    "com.apple.kpi.iokit": "IOKit",
    "com.apple.kpi.libkern": "Libkern",
    "com.apple.kpi.mach": "Mach",
    "com.apple.kpi.bsd": "BSDKernel",
    "com.apple.kpi.unsupported": "Unsupported",
    "com.apple.kpi.private": "Private",
    "com.apple.kpi.dsep": "MACFramework",
}
XNU_TAGS = ("xnu-8019.41.5", "xnu-11417.121.6")  # macOS 12.0.1; newest in the mirror read (15.6)
IOPCI_BUNDLE = "com.apple.iokit.IOPCIFamily"
IOPCI_TAGS = ("IOPCIFamily-484.40.6", "IOPCIFamily-726.0.5")  # macOS 12.0; current
IOPCI_SOURCES = (
    "IOPCIBridge.cpp",
    "IOPCIDevice.cpp",
    "IOPCIConfigurator.cpp",
    "IOPCIDeviceI386.cpp",
)


class KextCheckFailed(HarnessError):
    """The kext does not build, or it imports what no library of it exports."""


@dataclass(frozen=True)
class BundleInfo:
    identifier: str
    version: str
    libraries: dict[str, str]

    @classmethod
    def read(cls, plist: Path) -> BundleInfo:
        try:
            data = plistlib.loads(plist.read_bytes())
        except (OSError, ValueError, ExpatError) as exc:  # InvalidFileException is a ValueError
            raise HarnessError(f"cannot read {plist}: {exc}") from None
        libraries = data.get("OSBundleLibraries") if isinstance(data, dict) else None
        if not isinstance(libraries, dict):
            raise KextCheckFailed(f"{plist}: no OSBundleLibraries")
        try:
            return cls(str(data["CFBundleIdentifier"]), str(data["CFBundleVersion"]), libraries)
        except KeyError as exc:
            raise KextCheckFailed(f"{plist}: no {exc.args[0]}") from None


@dataclass(frozen=True)
class Tools:
    clang: str
    nm: str
    cxxfilt: str | None
    ld64: str | None

    @classmethod
    def find(cls) -> Tools:
        clang = _find_tool("clang")
        nm = _find_tool("llvm-nm")
        if clang is None or nm is None:
            raise HarnessError(
                "clang and llvm-nm are needed (Debian: apt-get install clang lld llvm)"
            )
        return cls(clang, nm, _find_tool("llvm-cxxfilt"), _find_tool("ld64.lld"))

    def version(self) -> str:
        out = subprocess.run([self.clang, "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0] if out else self.clang


def _find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for version in range(30, 10, -1):  # Debian's versioned names: clang-14, ld64.lld-22
        found = shutil.which(f"{name}-{version}")
        if found:
            return found
    return None


# --- the build -----------------------------------------------------------------------


@dataclass
class Build:
    objects: list[Path]
    defined: set[str]
    imports: set[str]
    link: str = ""


def source_digest(kext_dir: Path = KEXT_DIR) -> str:
    """What the record of imports depends on: sources, flags, kmod template."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (kext_dir / name).read_bytes() + b"\0")
    digest.update(" ".join((TARGET, *CXXFLAGS, *CFLAGS)).encode())
    return digest.hexdigest()


def sdk_path(explicit: str | None) -> Path | None:
    value = explicit or os.environ.get(SDK_ENV)
    if not value:
        return None
    sdk = Path(value)
    if not (sdk / "Headers" / "IOKit" / "pci" / "IOPCIBridge.h").is_file():
        raise HarnessError(
            f"{sdk} is not a MacKernelSDK checkout (no Headers/IOKit/pci/IOPCIBridge.h)"
        )
    return sdk


def compile_kext(
    tools: Tools, sdk: Path, out_dir: Path, kext_dir: Path = KEXT_DIR,
    extra_sources: Sequence[Path] = (),
) -> Build:  # fmt: skip
    """Compile the kext and its kmod info for macOS; resolve what it defines."""
    info = BundleInfo.read(kext_dir / "Info.plist")
    out_dir.mkdir(parents=True, exist_ok=True)
    kmod_c = out_dir / "kmod_info.c"
    template = (kext_dir / KMOD_INFO_TEMPLATE).read_text()
    kmod_c.write_text(template.replace("@ID@", info.identifier).replace("@VERSION@", info.version))
    include = ("-isystem", str(sdk / "Headers"))
    objects: list[Path] = []
    for source in (kext_dir / "XvpciWindow.cpp", *extra_sources):
        obj = out_dir / (source.stem + ".o")
        _compile([tools.clang, "-x", "c++", "-target", TARGET, *CXXFLAGS, *include], source, obj)
        objects.append(obj)
    kmod_o = out_dir / "kmod_info.o"
    _compile([tools.clang, "-x", "c", "-target", TARGET, *CFLAGS, *include], kmod_c, kmod_o)
    objects.append(kmod_o)
    payload = kmod_o.read_bytes()
    for field_value in (info.identifier, info.version):  # kmod_info_t name[64], version[64]
        if field_value.encode() + b"\0" not in payload:
            raise KextCheckFailed(f"kmod_info.o does not carry {field_value!r} from Info.plist")
    libkmod = sdk / "Library" / "x86_64" / "libkmod.a"
    if not libkmod.is_file():
        raise HarnessError(f"{libkmod} missing from the SDK")
    defined, undefined = symbol_table(tools, [*objects, libkmod])
    missing = [name for name in LOADER_SYMBOLS if name not in defined]
    if missing:
        raise KextCheckFailed(f"the build does not define {', '.join(missing)} (kmod info)")
    build = Build([*objects, libkmod], defined, undefined - defined)
    build.link = try_link(tools, build.objects, out_dir / "XvpciWindow")
    return build


def _compile(command: list[str], source: Path, obj: Path) -> None:
    log.debug("compiling: %s", " ".join([*command, "-c", str(source)]))
    proc = subprocess.run(
        [*command, "-c", str(source), "-o", str(obj)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        first = next(
            (line for line in proc.stderr.splitlines() if "error" in line), proc.stderr.strip()
        )
        raise KextCheckFailed(f"compiling {source.name} failed: {first}")


def symbol_table(tools: Tools, paths: Iterable[Path]) -> tuple[set[str], set[str]]:
    """External symbols (defined, undefined) of objects and archives, by llvm-nm."""
    proc = subprocess.run(
        [tools.nm, "-g", "-P", *map(str, paths)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise KextCheckFailed(f"llvm-nm failed: {proc.stderr.strip()}")
    defined: set[str] = set()
    undefined: set[str] = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.endswith(":"):
            continue  # "archive[member]:" headers
        (undefined if parts[1] in ("U", "u") else defined).add(parts[0])
    return defined, undefined


def try_link(tools: Tools, objects: Sequence[Path], output: Path) -> str:
    """Ask ld64.lld for an MH_KEXT_BUNDLE; say what came of it."""
    if tools.ld64 is None:
        return "no ld64.lld: kext bundle not linked (build it on a Mac: kext/Makefile)"
    proc = subprocess.run(
        [tools.ld64, "-arch", "x86_64", "-platform_version", "macos", "12.0", "12.0", "-kext",
         "-o", str(output), *map(str, objects)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode == 0 and _mach_filetype(output) == 0xB:
        return f"{Path(tools.ld64).name} linked an MH_KEXT_BUNDLE executable"
    said = " ".join(
        line.split(": ", 1)[-1] for line in proc.stderr.splitlines()[:2] if line.strip()
    )
    return (
        f"{Path(tools.ld64).name} cannot link a kext bundle (MH_KEXT_BUNDLE): it says "
        f"{said!r}; build the bundle on a Mac (kext/Makefile)"
    )


def _mach_filetype(path: Path) -> int | None:
    try:
        header = path.read_bytes()[:16]
    except OSError:
        return None
    return int.from_bytes(header[12:16], "little") if len(header) == 16 else None


# --- records: imports and exports ----------------------------------------------------


@dataclass
class ImportRecord:
    digest: str
    symbols: list[str]
    comment: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> ImportRecord:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise HarnessError(f"cannot read {path}: {exc}") from None
        digest = ""
        symbols: list[str] = []
        comment: list[str] = []
        for line in lines:
            if line.startswith("# sources-sha256 "):
                digest = line.split()[-1]
            elif line.startswith("#"):
                comment.append(line)
            elif line.strip():
                symbols.append(line.strip())
        if not digest:
            raise HarnessError(f"{path}: no '# sources-sha256' line")
        return cls(digest, symbols, comment)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = [*self.comment, f"# sources-sha256 {self.digest}", *sorted(self.symbols)]
        path.write_text("\n".join(body) + "\n")


@dataclass(frozen=True)
class Export:
    bundle: str
    provenance: str


def read_exports(path: Path) -> dict[str, Export]:
    exports: dict[str, Export] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise HarnessError(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split(maxsplit=2)
        if len(fields) != 3:
            raise HarnessError(f"{path}:{number}: expected 'bundle symbol provenance'")
        exports[fields[1]] = Export(fields[0], fields[2])
    return exports


def _git_head(repo: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else "(not a git checkout)"


def _git_show(repo: Path, tag: str, path: str) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(repo), "show", f"{tag}:{path}"], capture_output=True, text=True
    )
    return proc.stdout if proc.returncode == 0 else None


def _export_names(text: str) -> set[str]:
    """Names an xnu/IOPCIFamily .exports file exports ('name' or 'name:alias')."""
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line.split(":", 1)[0])
    return names


def _xnu_symbol_sets(xnu: Path, tag: str) -> dict[str, tuple[set[str], list[str]]]:
    sets: dict[str, tuple[set[str], list[str]]] = {}
    for bundle, stem in KPI_EXPORTS.items():
        names: set[str] = set()
        files: list[str] = []
        for name in (f"{stem}.exports", f"{stem}.x86_64.exports", f"{stem}.x86_64.MacOSX.exports"):
            text = _git_show(xnu, tag, f"config/{name}")
            if text is not None:
                names |= _export_names(text)
                files.append(f"config/{name}")
        if not files:
            raise HarnessError(f"{xnu}: no config/{stem}.exports at {tag}")
        sets[bundle] = (names, files)
    return sets


def _demangle(tools: Tools, symbols: Sequence[str]) -> dict[str, str]:
    if tools.cxxfilt is None or not symbols:
        return {}
    proc = subprocess.run(
        [tools.cxxfilt, "-_"], input="\n".join(symbols), capture_output=True, text=True
    )
    return dict(zip(symbols, proc.stdout.splitlines(), strict=False))


def _definition_pattern(demangled: str) -> re.Pattern[str] | None:
    """A source pattern that defines `demangled` (a member or metaclass symbol)."""
    match = re.match(r"(?:vtable for )?(\w+)(?:::(~?\w+))?", demangled)
    if match is None:
        return None
    cls, member = match.group(1), match.group(2)
    metaclass = rf"OSDefineMetaClassAnd\w*Structors\w*\(\s*{cls}\b"
    if demangled.startswith("vtable for ") or member in (
        None,
        "gMetaClass",
        "superClass",
        cls,
        f"~{cls}",
    ):
        return re.compile(metaclass)
    return re.compile(rf"^[\w:<>* \t]*\b{cls}::{member}\s*\(", re.MULTILINE)


def regenerate_exports(
    tools: Tools, imports: Sequence[str], xnu: Path, iopcifamily: Path
) -> list[str]:
    """Lines of kext/symbols/exports.txt for `imports`, read from the git checkouts."""
    found: dict[str, list[tuple[str, str]]] = {}  # symbol -> [(bundle, provenance)] per tag
    header = [
        "# Which bundle exports each symbol the kext imports, on macOS 12 and on the newest",
        "# release read; generated by `xvpci kext check --xnu DIR --iopcifamily DIR`.",
        "# A symbol is listed only if the same bundle exports it at every tag below.",
    ]
    per_tag_xnu = [_xnu_symbol_sets(xnu, tag) for tag in XNU_TAGS]
    for bundle, (_names, files) in per_tag_xnu[-1].items():
        header.append(
            f"# {bundle}: apple-oss-distributions/xnu {' and '.join(XNU_TAGS)}: {', '.join(files)}"
        )
    header.append(
        f"# {IOPCI_BUNDLE}: apple-oss-distributions/IOPCIFamily {' and '.join(IOPCI_TAGS)}: "
        "config/IOPCIFamily.exports ('exports'), else a definition in the named source file "
        "('defined:FILE'; IOPCIFamily's symbol-set list omits these, see README 'macOS kext')"
    )
    header.append("# bundle symbol provenance")
    pci_exports = []
    pci_sources = []
    for tag in IOPCI_TAGS:
        text = _git_show(iopcifamily, tag, "config/IOPCIFamily.exports")
        if text is None:
            raise HarnessError(f"{iopcifamily}: no config/IOPCIFamily.exports at {tag}")
        pci_exports.append(_export_names(text))
        pci_sources.append(
            {name: _git_show(iopcifamily, tag, name) or "" for name in IOPCI_SOURCES}
        )
    demangled = _demangle(tools, imports)
    for symbol in imports:
        per_tag: list[tuple[str, str]] = []
        for sets in per_tag_xnu:
            hit = next((b for b, (names, _f) in sets.items() if symbol in names), None)
            if hit is not None:
                per_tag.append((hit, "exports"))
        if len(per_tag) < len(XNU_TAGS):
            per_tag = []
            pattern = _definition_pattern(demangled.get(symbol, ""))
            for exported, sources in zip(pci_exports, pci_sources, strict=True):
                if symbol in exported:
                    per_tag.append((IOPCI_BUNDLE, "exports"))
                elif pattern is not None:
                    where = next((n for n, text in sources.items() if pattern.search(text)), None)
                    if where is not None:
                        per_tag.append((IOPCI_BUNDLE, f"defined:{where}"))
            if len(per_tag) < len(IOPCI_TAGS):
                continue
        if len({bundle for bundle, _p in per_tag}) == 1:
            provenance = "exports" if all(p == "exports" for _b, p in per_tag) else per_tag[-1][1]
            found[symbol] = [(per_tag[0][0], provenance)]
    lines = [f"{found[s][0][0]} {s} {found[s][0][1]}" for s in sorted(found)]
    return [*header, *lines]


# --- the check -----------------------------------------------------------------------


@dataclass
class CheckResult:
    imports: list[str]
    by_bundle: dict[str, int]
    defined_only: list[str]
    source: str
    link: str


def check_imports(
    imports: Iterable[str], exports: dict[str, Export], libraries: dict[str, str]
) -> tuple[dict[str, int], list[str]]:
    """Count imports per exporting bundle; raise on the first unresolved one."""
    by_bundle: dict[str, int] = {}
    defined_only: list[str] = []
    for symbol in sorted(imports):
        export = exports.get(symbol)
        if export is None:
            raise KextCheckFailed(
                f"unresolved symbol {symbol}: not exported on macOS 12 and later by any bundle "
                "kext/symbols/exports.txt knows (regenerate it with --xnu/--iopcifamily if the "
                "kext's imports changed)"
            )
        if export.bundle not in libraries:
            raise KextCheckFailed(
                f"unresolved symbol {symbol}: exported by {export.bundle}, "
                "which OSBundleLibraries does not name"
            )
        by_bundle[export.bundle] = by_bundle.get(export.bundle, 0) + 1
        if export.provenance.startswith("defined:"):
            defined_only.append(symbol)
    return by_bundle, defined_only


def run_check(
    *, sdk: Path | None, update: bool = False, xnu: Path | None = None,
    iopcifamily: Path | None = None, kext_dir: Path = KEXT_DIR,
    extra_sources: Sequence[Path] = (), progress: Progress | None = None,
) -> CheckResult:  # fmt: skip
    """Build (with an SDK) or verify the record (without), then check the imports."""
    progress = progress or Progress("kext check", quiet=True)
    info = BundleInfo.read(kext_dir / "Info.plist")
    record_path = kext_dir / "symbols" / "imports.txt"
    exports_path = kext_dir / "symbols" / "exports.txt"
    digest = source_digest(kext_dir)
    link = ""
    if sdk is not None:
        tools = Tools.find()
        progress.step(f"compiling for {TARGET} against {sdk} ({tools.version()})")
        with tempfile.TemporaryDirectory(prefix="xvpci-kext-") as tmp:
            build = compile_kext(tools, sdk, Path(tmp), kext_dir, extra_sources)
        link = build.link
        progress.step(f"kmod info defined ({', '.join(LOADER_SYMBOLS)}); {link}")
        imports = sorted(build.imports)
        progress.step(f"{len(imports)} undefined symbols")
        if update:
            comment = [
                "# Undefined symbols of the kext build (XvpciWindow.o, kmod_info.o, libkmod.a):",
                f"# {tools.version()} -target {TARGET}, MacKernelSDK {_git_head(sdk)}.",
                "# Rewritten by `xvpci kext check --sdk DIR --update`; CI uses it with no SDK.",
            ]
            ImportRecord(digest, imports, comment).write(record_path)
            progress.step(f"recorded {record_path}")
        elif not extra_sources:
            recorded = ImportRecord.read(record_path)
            if recorded.digest != digest or sorted(recorded.symbols) != imports:
                raise KextCheckFailed(
                    f"{record_path} does not match this build; rerun with --update and commit it"
                )
        source = "build"
    else:
        recorded = ImportRecord.read(record_path)
        if recorded.digest != digest:
            raise KextCheckFailed(
                f"kext sources changed since {record_path} was recorded; run "
                f"`xvpci kext check --sdk DIR --update` with MacKernelSDK (or ${SDK_ENV})"
            )
        imports = recorded.symbols
        progress.step(
            f"no SDK (${SDK_ENV}): {len(imports)} imports from {record_path}, sources match"
        )
        source = "record"
    if xnu is not None or iopcifamily is not None:
        if xnu is None or iopcifamily is None:
            raise HarnessError("--xnu and --iopcifamily go together")
        lines = regenerate_exports(Tools.find(), imports, xnu, iopcifamily)
        exports_path.write_text("\n".join(lines) + "\n")
        progress.step(f"regenerated {exports_path} from {xnu} and {iopcifamily}")
    by_bundle, defined_only = check_imports(imports, read_exports(exports_path), info.libraries)
    progress.step(
        "every import exported: "
        + ", ".join(f"{bundle} {count}" for bundle, count in sorted(by_bundle.items()))
    )
    return CheckResult(imports, by_bundle, defined_only, source, link)
