"""One log's lines cut into event bodies by a second process, for the diff's fast lane.

The raw diff compares two logs' lines without their ``seq`` and ``t_ns`` (the
lines' *bodies*); reading log B and cutting its bodies out takes about a third
of the diff's time. :class:`.reader.LogReader` runs this file as a script
(``python -I -S cutter.py PATH OFFSET``: the standard library only, so it starts
in milliseconds) to do that on the other CPU: from byte OFFSET of PATH it writes
to its standard output, per block of whole lines, a header (:data:`HEADER`: the
number of lines, of raw bytes and of body bytes), the raw lines, and their bodies
joined by newlines (a body holds no newline, so two blocks' bodies agree line by
line exactly when the joined bytes do). A block with a line not shaped like an
event (:data:`EVENT_LINE`) gets :data:`NOT_CUT` as its body length and no bodies:
the reader cuts that one itself. The pipe bounds how far it runs ahead.
"""

from __future__ import annotations

import re
import struct
import sys
from typing import BinaryIO

#: An event line as the recorder writes it (``logformat.*_line``), its ``seq`` and
#: ``t_ns`` apart from the rest: what two paths' events must share to be the same event.
EVENT_LINE = re.compile(rb'^\{"seq":\d+,"t_ns":\d+,(.*)$', re.MULTILINE)
#: Per block: lines, raw bytes, body bytes (or NOT_CUT).
HEADER = struct.Struct("<III")
NOT_CUT = 0xFFFFFFFF
BLOCK = 1 << 19  # bytes read at once: about 5000 lines


def cut(log: BinaryIO, out: BinaryIO) -> None:
    """Write the blocks of ``log`` from where it stands to ``out``."""
    rest = b""
    while True:
        chunk = log.read(BLOCK)
        if chunk:
            chunk = rest + chunk
            end = chunk.rfind(b"\n") + 1
            if not end:  # a line longer than a block: read on
                rest = chunk
                continue
            raw, rest = chunk[:end], chunk[end:]
        else:
            raw, rest = rest, b""  # a last line without its newline, if any
            if not raw:
                return
        lines = raw.count(b"\n") + (not raw.endswith(b"\n"))
        bodies = EVENT_LINE.findall(raw)
        joined = b"\n".join(bodies) if len(bodies) == lines else b""
        size = len(joined) if len(bodies) == lines else NOT_CUT
        out.write(HEADER.pack(lines, len(raw), size))
        out.write(raw)
        out.write(joined)


def main() -> None:
    path, offset = sys.argv[1], int(sys.argv[2])
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            cut(log, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except BrokenPipeError:  # the diff stopped reading: it has what it needs
        sys.stderr.close()
    except OSError as exc:  # the reader names the log and the line
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
