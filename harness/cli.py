"""The ``xvpci`` command line.

Exit status everywhere: 0 success (or logs equivalent), 1 divergence found or
a check failed, 2 bad input or an environment problem (the message says which).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING

from vfio_bridge import cli as bridge_cli
from vfio_bridge.models import MODELS

from .errors import HarnessError

if TYPE_CHECKING:
    from pathlib import Path

    from .run import RunResult
from .progress import Progress
from .qemu_install import find_qemu, provision

LEVEL_HELP = (
    "which level's verdict sets the exit status: transaction (default: the commands the "
    "device was given, matched by content, blocks compared per logical block; right for "
    "real workloads) or raw (every event, aligned per stream); both are reported"
)

EXIT_CODES = """\
exit status: 0 success, 1 divergence or failed check, 2 bad input or environment
"""


def _provision(args: argparse.Namespace) -> int:
    if args.check:
        try:
            install = find_qemu()
            install.check()
        except HarnessError as exc:
            print(f"not usable: {exc}", file=sys.stderr)
            return 1
        print(f"{install.binary} (QEMU {install.version_string})")
        return 0
    install = provision(mirror=args.mirror, progress=Progress("provision", quiet=args.quiet))
    print(f"{install.binary} (QEMU {install.version_string})")
    return 0


def _guest_build(args: argparse.Namespace) -> int:
    from .linux_image import build

    image = build(progress=Progress("guest build", quiet=args.quiet), force=args.force)
    print(image.directory)
    return 0


def _guest_shell(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from .accel import choose_accel
    from .guest import LinuxGuest, ModelAttachment
    from .linux_image import build
    from .shell import interactive, scripted

    progress = Progress("guest", quiet=args.quiet)
    qemu = find_qemu()
    image = build(progress=progress)
    accel = choose_accel(args.accel, qemu, image)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="xvpci-shell-"))
    models = [ModelAttachment(args.model, args.opt)] if args.model else []
    with LinuxGuest(qemu, image, workdir, models, accel=accel, progress=progress) as guest:
        if sys.stdin.isatty():
            status = interactive(guest.ssh)
        else:
            status = scripted(guest.ssh, sys.stdin.buffer.read(), args.timeout)
    if args.model:
        progress.step(f"transaction log: {guest.log_path(args.model)}")
    return status


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .run import run

    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    out = Path(args.out)
    progress = Progress("run", quiet=args.quiet)
    if args.guest == "macos":
        from .run import run_macos

        result = run_macos(args.model, paths, out, args.opt, progress)
        return _print_run(result, "raw-verify", out)
    result = run(
        args.model,
        paths,
        args.workload,
        out,
        args.opt,
        accel=args.accel,
        progress=progress,
        level=args.level,
    )
    return _print_run(result, args.workload, out)


def _print_run(result: RunResult, workload: str, out: Path) -> int:
    for path_result in result.results:
        verdict = "passed" if path_result.passed else f"FAILED (status {path_result.status})"
        print(f"{path_result.path}: {workload} {verdict}; log {path_result.log}")
        if not path_result.passed:
            print("  " + "\n  ".join(path_result.output.strip().splitlines()[-10:]))
    if result.verdict is not None:
        print(result.verdict.text)
    if result.reference is not None:
        print(result.reference.text)
    print(f"reports and logs in {out}")
    return 0 if result.passed else 1


def _diff(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .difflog import LogError, Rules
    from .run import diff_both_levels

    a, b = Path(args.a), Path(args.b)
    wanted = {name: getattr(args, name) for name in ("html", "json", "junit", "trace")}
    try:
        rules = Rules.load(Path(args.rules) if args.rules else None)
        equivalent, text = diff_both_levels(
            a, b, rules, args.level, None, args.allow_truncated,
            {name: Path(value) if value else None for name, value in wanted.items()},
        )  # fmt: skip
    except LogError as exc:
        print(f"xvpci diff: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a report that cannot be written where it was asked for
        print(f"xvpci diff: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    print(text)
    return 0 if equivalent else 1


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .difflog import LogError
    from .run import report_all

    try:
        verdict = report_all(
            Path(args.run_dir), Path(args.rules) if args.rules else None, args.level
        )
    except LogError as exc:
        print(f"xvpci report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the reports go beside the logs, in the run's directory
        print(f"xvpci report: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    print(verdict.text)
    return 0 if verdict.equivalent else 1


def _models(args: argparse.Namespace) -> int:
    for name in sorted(MODELS):
        cls = MODELS[name]
        print(cls.describe())
        for opt in cls.options:
            print(f"    --opt {opt.name}=... (default {opt.default!r}): {opt.help}")
    return 0


def version() -> str:
    """The installed distribution's version (pyproject.toml's ``version`` is the one source)."""
    try:
        return metadata.version("xvpci")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install the project)"


def _kext_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .kext import KEXT_DIR, KextCheckFailed, run_check, sdk_path

    progress = Progress("kext check", quiet=args.quiet)
    try:
        result = run_check(
            sdk=sdk_path(args.sdk),
            update=args.update,
            xnu=Path(args.xnu) if args.xnu else None,
            iopcifamily=Path(args.iopcifamily) if args.iopcifamily else None,
            kext_dir=Path(args.kext_dir) if args.kext_dir else KEXT_DIR,
            progress=progress,
        )
    except KextCheckFailed as exc:
        print(f"xvpci kext check: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{bundle} {count}" for bundle, count in sorted(result.by_bundle.items()))
    print(f"{len(result.imports)} imports, all exported ({counts}) [{result.source}]")
    if result.defined_only:
        print(
            f"{len(result.defined_only)} of them only defined in IOPCIFamily's sources, "
            "not in its config/IOPCIFamily.exports (see README 'macOS kext')"
        )
    if result.link:
        print(f"link: {result.link}")
    return 0


def _kext_testbed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .kext_testbed import POINTS, run_testbed

    progress = Progress("kext testbed", quiet=args.quiet)
    run = run_testbed(
        Path(args.out),
        accel=args.accel,
        kext_source=Path(args.kext_source) if args.kext_source else None,
        progress=progress,
    )
    for path, fields in sorted(run.drivers.items()):
        state = "ok" if fields.get("ok") == "1" else f"FAILED ({fields.get('error') or 'no run'})"
        print(
            f"{path}: test driver {state}: VS {fields.get('vs', '?')}, "
            f"{fields.get('verified', '0')} bytes verified, "
            f"{fields.get('by_interrupt', '0')} completions by interrupt"
        )
    for point in POINTS:
        check = run.checks.get(point)
        if check is None:
            print(f"point {point:2}: NOT RUN")
        else:
            print(f"point {point:2}: {'pass' if check.passed else 'FAIL'}  {check.text}")
    if run.equivalent is not None:
        print(f"diff direct vs window: {'EQUIVALENT' if run.equivalent else 'DIVERGENT'}")
        print(run.diff_summary)
    print(f"output: {run.out}")
    return 0 if run.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xvpci",
        description="Cross-validate a PCI device model reached directly over vfio-user "
        "and through a window device.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xvpci {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prov = sub.add_parser(
        "provision",
        help="install QEMU 11 from Debian trixie-backports into the cache",
        description="Build (once) a Debian trixie root holding QEMU 11 in the cache "
        "directory ($XVPCI_CACHE, default ~/.cache/xvpci) and print the QEMU binary.",
        epilog="examples:\n  xvpci provision            # as root: installs mmdebstrap if missing\n"
        "  xvpci provision --check && echo usable\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prov.add_argument("--check", action="store_true", help="only check: exit 0 if usable")
    prov.add_argument(
        "--mirror", help="Debian mirror (default $XVPCI_DEBIAN_MIRROR or deb.debian.org)"
    )
    prov.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    prov.set_defaults(func=_provision)

    serve = sub.add_parser(
        "serve",
        help="serve a device model on a vfio-user socket",
        description="Serve one device model on a UNIX socket for QEMU's vfio-user-pci.",
        epilog=bridge_cli.EXAMPLES.replace("python -m vfio_bridge", "xvpci"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bridge_cli.add_serve_arguments(serve)
    serve.set_defaults(func=bridge_cli.run_serve)

    guest = sub.add_parser(
        "guest",
        help="build a guest image or open a shell in a booted guest",
        description="Guest images and interactive guests.",
    )
    guest_sub = guest.add_subparsers(dest="guest_command", required=True, metavar="ACTION")
    gbuild = guest_sub.add_parser(
        "build",
        help="build (or reuse) the cached guest image",
        description="Build the Linux guest image (Debian kernel + initramfs from Debian "
        "packages) into the cache; rebuilt only when its inputs in this package change.",
        epilog="example:\n  xvpci guest build linux\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gbuild.add_argument("os", choices=["linux"], help="guest operating system")
    gbuild.add_argument("--force", action="store_true", help="rebuild even if cached")
    gbuild.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    gbuild.set_defaults(func=_guest_build)
    gshell = guest_sub.add_parser(
        "shell",
        help="boot a guest (with a model attached) and open a shell in it",
        description="Boot the guest, optionally with a device model on vfio-user-pci, and "
        "open a shell over SSH. When standard input is not a terminal, run the commands "
        "read from it, print their output and exit with the last command's status.",
        epilog="examples:\n  xvpci guest shell linux --model edu\n"
        "  echo 'lspci -nn' | xvpci guest shell linux --model edu\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gshell.add_argument("os", choices=["linux"], help="guest operating system")
    gshell.add_argument("--model", choices=sorted(MODELS), help="device model to attach")
    gshell.add_argument(
        "--opt", action="append", default=[], metavar="NAME=VALUE", help="model option"
    )
    gshell.add_argument(
        "--accel",
        default="tcg",
        choices=["tcg", "kvm", "auto"],
        help="accelerator (default tcg; kvm only after a probe boots)",
    )
    gshell.add_argument("--workdir", help="where logs go (default: a new temporary directory)")
    gshell.add_argument(
        "--timeout", type=float, default=600, help="seconds for a script from stdin"
    )
    gshell.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    gshell.set_defaults(func=_guest_shell)

    from .workloads import available

    runp = sub.add_parser(
        "run",
        help="run a workload against a model along one or both paths",
        description="Boot the Linux guest with the model attached along each path, run the "
        "workload in it, and keep the transaction logs, serial logs and workload output in "
        "the output directory.",
        epilog="examples:\n  xvpci run        # nvme, direct vs window, fio-pattern, into ./out\n"
        "  xvpci run --model nvme --paths direct --workload fs-verify\n"
        "  xvpci run --model nvme --paths direct --workload fio-verify --out out/fio\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    runp.add_argument(
        "--model", default="nvme", choices=sorted(MODELS), help="device model (default nvme)"
    )
    runp.add_argument(
        "--paths",
        default="direct,window",
        help="comma-separated: direct, window (default both), reference (QEMU's own "
        "device of the model's kind, traced: the model's commands are diffed against it)",
    )
    runp.add_argument(
        "--workload",
        default="fio-pattern",
        choices=available(),
        help="guest workload (default fio-pattern: deterministic, so the paths' logs "
        "must match; fs-verify and fio-verify exercise more but their timing varies)",
    )
    runp.add_argument(
        "--guest", default="linux", choices=["linux", "macos"], help="guest OS (default linux)"
    )
    runp.add_argument("--out", default="out", help="output directory (default ./out)")
    runp.add_argument(
        "--opt", action="append", default=[], metavar="NAME=VALUE", help="model option"
    )
    runp.add_argument(
        "--accel", default="tcg", choices=["tcg", "kvm", "auto"], help="accelerator (default tcg)"
    )
    runp.add_argument(
        "--level", default="transaction", choices=["transaction", "raw"], help=LEVEL_HELP
    )
    runp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    runp.set_defaults(func=_run)

    diffp = sub.add_parser(
        "diff",
        help="compare two transaction logs",
        description="Compare two transaction logs at two levels. Transactions: the model's "
        "decoder turns each log into the commands the device was given; commands are "
        "paired by content, and what batching merged or split is compared per logical "
        "block. Raw events: normalised (status polls, path-specific config and MSI-X, "
        "the window's own stream) and aligned per stream with a bounded reorder window, "
        "each log's guest addresses paired with the other's by the events that match.",
        epilog="examples:\n  xvpci diff out/direct/nvme.jsonl out/window/nvme.jsonl\n"
        "  xvpci diff A.jsonl B.jsonl --html diff.html --junit diff.xml --rules rules.toml\n"
        "  xvpci diff A.jsonl B.jsonl --level raw      # today's event-by-event verdict\n\n"
        "exit status: 0 equivalent, 1 diverged, 2 bad input (unreadable, truncated, "
        "unknown version: the message names file and line)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diffp.add_argument("a", help="reference log (A), e.g. the direct path")
    diffp.add_argument("b", help="log to check (B), e.g. the window path")
    diffp.add_argument("--html", help="write a self-contained side-by-side HTML report")
    diffp.add_argument("--json", help="write every divergence as JSON")
    diffp.add_argument("--junit", help="write JUnit XML (one test case per stream)")
    diffp.add_argument("--trace", help="write a Chrome/Perfetto trace of both logs")
    diffp.add_argument("--rules", help="TOML rules: registers to ignore or mask, window size...")
    diffp.add_argument("--allow-truncated", action="store_true", help="compare cut-short logs")
    diffp.add_argument(
        "--level", default="transaction", choices=["transaction", "raw"], help=LEVEL_HELP
    )
    diffp.set_defaults(func=_diff)

    reportp = sub.add_parser(
        "report",
        help="re-render the reports of a run directory from its logs",
        epilog="example:\n  xvpci report out\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reportp.add_argument("run_dir", help="output directory of `xvpci run`")
    reportp.add_argument("--rules", help="TOML rules for the diff")
    reportp.add_argument(
        "--level", default="transaction", choices=["transaction", "raw"], help=LEVEL_HELP
    )
    reportp.set_defaults(func=_report)

    kext = sub.add_parser(
        "kext",
        help="build and check the macOS kext",
        description="The macOS window kext (kext/): build and symbol check.",
    )
    kext_sub = kext.add_subparsers(dest="kext_command", required=True, metavar="ACTION")
    kcheck = kext_sub.add_parser(
        "check",
        help="compile the kext for macOS and check every import is exported",
        description="With MacKernelSDK (--sdk or $XVPCI_MACKERNELSDK): compile kext/ for "
        "x86_64-apple-macos12 with its kmod info, try ld64.lld, and compare the undefined "
        "symbols with kext/symbols/imports.txt. Without it: check that record still matches "
        "the sources. Then every import must be exported (kext/symbols/exports.txt) by a "
        "bundle in OSBundleLibraries.",
        epilog="examples:\n  xvpci kext check\n"
        "  xvpci kext check --sdk ~/src/MacKernelSDK --update\n"
        "  xvpci kext check --sdk SDK --xnu ~/src/xnu --iopcifamily ~/src/IOPCIFamily\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kcheck.add_argument("--sdk", help="MacKernelSDK checkout (default $XVPCI_MACKERNELSDK)")
    kcheck.add_argument(
        "--update", action="store_true", help="rewrite kext/symbols/imports.txt from the build"
    )
    kcheck.add_argument(
        "--xnu", help="git checkout of apple-oss-distributions/xnu: regenerate exports"
    )
    kcheck.add_argument(
        "--iopcifamily", help="git checkout of apple-oss-distributions/IOPCIFamily (with --xnu)"
    )
    kcheck.add_argument("--kext-dir", help=argparse.SUPPRESS)
    kcheck.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    kcheck.set_defaults(func=_kext_check)
    ktest = kext_sub.add_parser(
        "testbed",
        help="run the kext's own source against the real window device in the Linux guest",
        description="Compile kext/XvpciWindow.cpp unchanged for Linux against the IOKit and "
        "IOPCIFamily fakes of kext/testbed/, boot the Linux guest with the NVMe model attached "
        "directly and behind the window, run the kext, the configurator and a small NVMe "
        "driver in the guest, check issue 17's points 1-10, and diff the two server logs.",
        epilog="examples:\n  xvpci kext testbed\n  xvpci kext testbed --out /tmp/tb\n"
        "  xvpci kext testbed --kext-source old/XvpciWindow.cpp   # expect failed points\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ktest.add_argument(
        "--out", default="xvpci-testbed", help="output directory (default %(default)s)"
    )
    ktest.add_argument(
        "--accel", default="tcg", choices=("tcg", "kvm", "auto"), help="accelerator (default tcg)"
    )
    ktest.add_argument("--kext-source", help="another XvpciWindow.cpp to run instead of kext/'s")
    ktest.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    ktest.set_defaults(func=_kext_testbed)

    models = sub.add_parser(
        "models",
        help="list device models and their options",
        epilog="example:\n  xvpci models\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models.set_defaults(func=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"xvpci: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file the command reads or writes that the commands do not name themselves:
        # still the user's to fix, so a line rather than a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xvpci: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xvpci: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
