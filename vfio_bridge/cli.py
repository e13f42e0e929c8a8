"""``python -m vfio_bridge serve``: serve one device model on a vfio-user socket."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from .dispatch import MAX_DATA_XFER, checked_max_data_xfer
from .models import MODELS, create_model
from .polling import (
    DEFAULT_POLL_MAX_US,
    SCHEDULING,
    server_defaults,
    use_scheduling,
)
from .recorder import Recorder
from .server import ServerError, VfioUserServer

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  python -m vfio_bridge serve --model edu --socket /tmp/edu.sock --log edu.jsonl
  qemu-system-x86_64 ... -device '{"driver":"vfio-user-pci",
      "socket":{"type":"unix","path":"/tmp/edu.sock"}}'

It prints one line when the socket is ready (with its polling and scheduling),
then only errors. SIGINT or SIGTERM stops it; the socket file is removed and the
log gets its trailer. When the server may run on one CPU only, it neither polls
nor preempts by default (no polling, SCHED_BATCH): there the CPU is the client's
vCPU's too.
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
    parser.add_argument(
        "--max-data-xfer",
        type=_transfer_size,
        default=MAX_DATA_XFER,
        metavar="BYTES",
        help="largest region access the client may make, advertised in the VERSION "
        f"reply (1..{MAX_DATA_XFER}, default {MAX_DATA_XFER}; libvfio-user's is the same)",
    )
    parser.add_argument(
        "--sched",
        choices=SCHEDULING,
        help="scheduling policy: batch (SCHED_BATCH) does not preempt the client's thread "
        "when a request wakes the server (default batch when the server may run on one "
        "CPU only, else normal)",
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


def _transfer_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes") from None
    try:
        return checked_max_data_xfer(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value} is not in 1..{MAX_DATA_XFER}") from None


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
    default_poll_us, default_sched, one_cpu = server_defaults()
    poll_us = args.poll_us if args.poll_us is not None else default_poll_us
    sched = args.sched or default_sched
    if one_cpu and args.poll_us is None:
        log.info("polling off: %s (--poll-us turns it on)", one_cpu)
    if one_cpu and args.sched is None:
        log.info("batch scheduling: %s (--sched normal turns it off)", one_cpu)
    try:
        use_scheduling(sched)
        scheduling = f"{sched} scheduling"
    except OSError as exc:
        log.warning("scheduling policy %s refused (%s); running under the current one", sched, exc)
        scheduling = "scheduling unchanged"
    server = VfioUserServer(
        model, args.socket, recorder, poll_max_us=poll_us, max_data_xfer=args.max_data_xfer
    )
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
    polling += f", {scheduling}" + (" (one CPU)" if one_cpu else "")
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
