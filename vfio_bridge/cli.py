"""``python -m vfio_bridge serve``: serve one device model on a vfio-user socket."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from .models import MODELS, create_model
from .polling import DEFAULT_POLL_MAX_US, default_poll_max_us
from .recorder import Recorder
from .server import ServerError, VfioUserServer

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  python -m vfio_bridge serve --model edu --socket /tmp/edu.sock --log edu.jsonl
  qemu-system-x86_64 ... -device '{"driver":"vfio-user-pci",
      "socket":{"type":"unix","path":"/tmp/edu.sock"}}'

It prints one line when the socket is ready (with its polling setting), then
only errors. SIGINT or SIGTERM stops it; the socket file is removed and the log
gets its trailer. Polling is off by default when the server may run on one CPU
only: there it would take the CPU from the client's vCPU.
exit status: 0 stopped cleanly, 2 bad usage or the socket could not be created.
"""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=sorted(MODELS), help="device model")
    parser.add_argument("--socket", required=True, help="UNIX socket path to create")
    parser.add_argument("--log", help="transaction log (JSON Lines) to write")
    parser.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="model option (see `xvpci models`); repeatable",
    )
    parser.add_argument(
        "--path-label", default="direct", help="path name written in the log header"
    )
    parser.add_argument("--once", action="store_true", help="exit after the first client leaves")
    parser.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra log header field (e.g. qemu_version=11.1.3); repeatable",
    )
    parser.add_argument(
        "--poll-us",
        type=_non_negative,
        metavar="US",
        help="longest busy-poll between requests before sleeping, in microseconds; "
        f"adapts to the request rate, 0 turns it off (default {DEFAULT_POLL_MAX_US}, "
        "or 0 when the server may run on one CPU only)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} is not zero or more")
    return value


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        model = create_model(args.model, args.opt)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        meta = dict(pair.partition("=")[::2] for pair in args.meta)
        recorder = Recorder(args.log, args.path_label, device=model.declaration(), **meta)
    except OSError as exc:
        print(f"error: cannot write log {args.log}: {exc.strerror}", file=sys.stderr)
        return 2
    poll_us, why_not = (args.poll_us, None) if args.poll_us is not None else default_poll_max_us()
    if why_not:
        log.info("polling off: %s (--poll-us turns it on)", why_not)
    server = VfioUserServer(model, args.socket, recorder, poll_max_us=poll_us)
    try:
        server.listen()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        recorder.close()
        server.close()
        return 2

    def stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    polling = f"polling up to {poll_us:g} us" if poll_us else "no polling"
    if why_not:
        polling += " (one CPU)"
    print(
        f"ready: {model.name} on {args.socket}"
        + (f", log {args.log}" if args.log else "")
        + f", {polling}",
        flush=True,
    )
    try:
        server.serve(max_connections=1 if args.once else None)
    finally:
        server.close()
        recorder.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vfio_bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve a device model on a vfio-user socket",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(serve)
    args = parser.parse_args(argv)
    return run_serve(args)
