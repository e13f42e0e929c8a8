"""The cutter's block format (harness/difflog/cutter.py), run in this process.

The reader starts the cutter as a script in a second process
(tests/test_diff_cutter.py checks the diff's results through it); here its
functions run in-process on in-memory files, so that each rule of the format is
checked on its own bytes. The expected blocks are written out by hand from the
format the module's docstring gives: per block a header of three little-endian
32-bit counts (lines, raw bytes, body bytes, or 0xFFFFFFFF when the block is not
cut), the raw lines, then the bodies (each line after its ``seq`` and ``t_ns``)
joined by newlines.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.difflog import cutter

MMIO = b'{"seq":1,"t_ns":500,"kind":"mmio","addr":16}\n'
IRQ = b'{"seq":2,"t_ns":970,"kind":"irq","vector":0}\n'
MMIO_BODY = b'"kind":"mmio","addr":16}'
IRQ_BODY = b'"kind":"irq","vector":0}'
LOG_HEADER = b'{"format":"xvpci-log","version":3}\n'


def blocks_of(data: bytes) -> bytes:
    out = io.BytesIO()
    cutter.cut(io.BytesIO(data), out)
    return out.getvalue()


def test_two_event_lines_are_one_block_with_their_bodies() -> None:
    raw = MMIO + IRQ
    assert len(raw) == 90 and len(MMIO_BODY + b"\n" + IRQ_BODY) == 49
    assert blocks_of(raw) == (
        b"\x02\x00\x00\x00" b"\x5a\x00\x00\x00" b"\x31\x00\x00\x00"
        + raw
        + MMIO_BODY + b"\n" + IRQ_BODY
    )  # fmt: skip


def test_a_block_with_a_line_that_is_no_event_is_not_cut() -> None:
    raw = LOG_HEADER + MMIO
    assert blocks_of(raw) == (
        b"\x02\x00\x00\x00" + len(raw).to_bytes(4, "little") + b"\xff\xff\xff\xff" + raw
    )


def test_an_event_line_with_a_seq_that_is_not_a_number_is_no_event() -> None:
    raw = b'{"seq":x,"t_ns":1,"kind":"irq"}\n'
    assert blocks_of(raw)[8:12] == b"\xff\xff\xff\xff"


def test_a_last_line_without_its_newline_is_a_block_of_its_own() -> None:
    # A newline ends what a block takes from a read; the line after the last one is
    # held back until the file's end shows that no newline follows.
    assert blocks_of(MMIO + IRQ[:-1]) == (
        b"\x01\x00\x00\x00" b"\x2d\x00\x00\x00" b"\x18\x00\x00\x00" + MMIO + MMIO_BODY
        + b"\x01\x00\x00\x00" b"\x2c\x00\x00\x00" b"\x18\x00\x00\x00" + IRQ[:-1] + IRQ_BODY
    )  # fmt: skip


def test_a_log_of_one_line_without_its_newline() -> None:
    assert blocks_of(IRQ[:-1]) == (
        b"\x01\x00\x00\x00" b"\x2c\x00\x00\x00" b"\x18\x00\x00\x00" + IRQ[:-1] + IRQ_BODY
    )  # fmt: skip


def test_an_empty_log_gives_no_block() -> None:
    assert blocks_of(b"") == b""


def parse_blocks(data: bytes) -> list[tuple[int, bytes, bytes | None]]:
    """(lines, raw, bodies or None) per block, as the reader takes them apart."""
    blocks = []
    pos = 0
    while pos < len(data):
        lines, raw_size, cut_size = struct.unpack_from("<III", data, pos)
        pos += 12
        raw = data[pos : pos + raw_size]
        pos += raw_size
        if cut_size == 0xFFFFFFFF:
            blocks.append((lines, raw, None))
        else:
            blocks.append((lines, raw, data[pos : pos + cut_size]))
            pos += cut_size
    return blocks


def test_blocks_hold_whole_lines_of_at_most_a_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # A read of 100 bytes holds two lines (45 bytes each) and the start of a third: each
    # block ends at the last newline read, the rest starts the next block.
    monkeypatch.setattr(cutter, "BLOCK", 100)
    raw = (MMIO + IRQ) * 3
    assert parse_blocks(blocks_of(raw)) == [
        (2, MMIO + IRQ, MMIO_BODY + b"\n" + IRQ_BODY),
        (2, MMIO + IRQ, MMIO_BODY + b"\n" + IRQ_BODY),
        (2, MMIO + IRQ, MMIO_BODY + b"\n" + IRQ_BODY),
    ]


def test_a_line_longer_than_a_read_is_read_on_until_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cutter, "BLOCK", 16)
    assert parse_blocks(blocks_of(MMIO + IRQ)) == [
        (1, MMIO, MMIO_BODY),
        (1, IRQ, IRQ_BODY),
    ]


def test_the_not_cut_block_does_not_stop_the_next_from_being_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cutter, "BLOCK", 40)
    assert parse_blocks(blocks_of(LOG_HEADER + MMIO)) == [
        (1, LOG_HEADER, None),
        (1, MMIO, MMIO_BODY),
    ]


def test_a_cut_log_read_in_small_pieces_ends_with_its_last_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cutter, "BLOCK", 50)
    assert parse_blocks(blocks_of(MMIO + IRQ[:-1])) == [
        (1, MMIO, MMIO_BODY),
        (1, IRQ[:-1], IRQ_BODY),
    ]


def test_main_cuts_the_file_from_the_offset_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    log = tmp_path / "b.jsonl"
    log.write_bytes(LOG_HEADER + MMIO + IRQ)
    monkeypatch.setattr(sys, "argv", ["cutter.py", str(log), str(len(LOG_HEADER))])
    cutter.main()
    assert capsysbinary.readouterr() == (blocks_of(MMIO + IRQ), b"")


def test_main_names_a_file_it_cannot_read_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    missing = tmp_path / "gone.jsonl"
    monkeypatch.setattr(sys, "argv", ["cutter.py", str(missing), "0"])
    with pytest.raises(SystemExit) as exit:
        cutter.main()
    assert exit.value.code == 2
    assert capsysbinary.readouterr() == (b"", f"{missing}: No such file or directory\n".encode())


class ClosedPipe:
    """A standard output whose reader went away, as a pipe the diff closed."""

    def write(self, data: bytes) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_main_ends_quietly_when_the_diff_stops_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader closes the pipe once it has what it needs; the cutter's write fails
    # then, and it ends without a word (its standard error closed, so that Python's own
    # complaint at exit about the output it could not flush is not printed either).
    log = tmp_path / "b.jsonl"
    log.write_bytes(MMIO + IRQ)
    monkeypatch.setattr(sys, "argv", ["cutter.py", str(log), "0"])
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=ClosedPipe()))
    monkeypatch.setattr(sys, "stderr", err)
    cutter.main()
    assert err.closed
