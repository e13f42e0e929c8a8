"""The ``xvpci`` command line.

Exit status everywhere: 0 success (or logs equivalent), 1 divergence found or
a check failed, 2 bad input or an environment problem (the message says which).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vfio_bridge import cli as bridge_cli
from vfio_bridge.models import MODELS

from .errors import HarnessError
from .progress import Progress
from .qemu_install import find_qemu, provision

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


def _models(args: argparse.Namespace) -> int:
    for name in sorted(MODELS):
        cls = MODELS[name]
        print(cls.describe())
        for opt in cls.options:
            print(f"    --opt {opt.name}=... (default {opt.default!r}): {opt.help}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xvpci",
        description="Cross-validate a PCI device model reached directly over vfio-user "
        "and through a window device.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prov = sub.add_parser(
        "provision",
        help="install QEMU 11 from Debian trixie-backports into the cache",
        description="Build (once) a Debian trixie root holding QEMU 11 in the cache "
        "directory ($XVPCI_CACHE, default ~/.cache/xvpci) and print the QEMU binary.",
        epilog="examples:\n  sudo xvpci provision\n  xvpci provision --check && echo usable\n\n"
        + EXIT_CODES,
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
    except KeyboardInterrupt:
        print("xvpci: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
