"""The log reader (harness/difflog/reader.py): events in order, the header and counts it
fills in, and an error naming the file and line for every kind of bad log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.difflog import cutter
from harness.difflog import reader as reader_module
from harness.difflog.reader import ADDRESS_FIELD, EVENT_LINE, LogError, LogReader
from tests.loggen import HEADER, dma, irq, mmio, write_log
from vfio_bridge import logformat
from vfio_bridge.models import create_model

EVENTS = [mmio("mmio_write", 0, 0x14, 1), irq(2), dma("dma_read", 0x1000, b"x" * 8)]


def _text(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _error(path: Path, allow_truncated: bool = False) -> str:
    with pytest.raises(LogError) as caught:
        list(LogReader(path, allow_truncated))
    return str(caught.value)


def test_events_come_in_order_and_the_info_counts_them(tmp_path: Path) -> None:
    path = write_log(tmp_path / "a.jsonl", EVENTS)
    reader = LogReader(path)
    assert reader.info.header == json.loads(path.read_text().splitlines()[0])
    assert reader.info.path == path and reader.info.events == 0 and not reader.info.complete
    assert reader.info.digest_algorithm == "xxh3-128"
    events = list(reader)
    assert [e["kind"] for e in events] == ["mmio_write", "irq", "dma_read"]
    assert [e["seq"] for e in events] == [0, 1, 2] and events[0]["value"] == 1
    assert reader.info.events == 3 and reader.info.complete and reader.ended
    assert reader.line_no == 5  # header, three events, end marker


def test_a_64_bit_register_value_is_read_exactly(tmp_path: Path) -> None:
    # (Integers past 64 bits, which the recorder never writes, come back from orjson
    # 3.13 as floats, not as the error the module's docstring expects.)
    top = (1 << 64) - 1
    path = write_log(tmp_path / "a.jsonl", [mmio("mmio_read", 0, 0, top, size=8)])
    [event] = list(LogReader(path))
    assert event["value"] == top and isinstance(event["value"], int)


def test_a_format_1_log_names_its_digests_as_format_2_does(tmp_path: Path) -> None:
    header = {k: v for k, v in HEADER.items() if k != "digest_algorithm"}
    header["xvpci_log"] = 1
    old = {"kind": "dma_read", "addr": 0, "len": 4, "sha256": "ab" * 32}
    path = write_log(tmp_path / "old.jsonl", [old], header)
    reader = LogReader(path)
    [event] = list(reader)
    assert event["digest"] == "ab" * 32 and "sha256" not in event
    assert reader.info.digest_algorithm == "sha256"
    # a format-2 log's field of that name is no digest
    new = {**old, "digest": "cd" * 16}
    [event] = list(LogReader(write_log(tmp_path / "new.jsonl", [new])))
    assert event["digest"] == "cd" * 16 and event["sha256"] == "ab" * 32


def test_a_log_without_its_end_marker_is_truncated_unless_allowed(tmp_path: Path) -> None:
    path = write_log(tmp_path / "cut.jsonl", EVENTS, end=False)
    with pytest.raises(LogError, match="log is truncated after 3 events"):
        list(LogReader(path))  # refused by default
    assert _error(path) == (
        f"{path}:4: log is truncated after 3 events "
        "(no end marker: the server was killed or the disk filled up)"
    )
    reader = LogReader(path, allow_truncated=True)
    assert len(list(reader)) == 3 and not reader.info.complete
    # A last line cut in the middle (the server killed mid-write) ends the log there.
    lines = write_log(tmp_path / "whole.jsonl", EVENTS).read_text().splitlines()
    cut = tmp_path / "cut-line.jsonl"
    cut.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    assert _error(cut) == (
        f"{cut}:4: log is truncated after 2 events "
        "(no end marker: the server was killed or the disk filled up)"
    )
    reader = LogReader(cut, allow_truncated=True)
    assert [e["seq"] for e in reader] == [0, 1] and not reader.info.complete


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "1: empty file, not an xvpci log"),
        (("{not json",), "1: not an xvpci log header (not JSON)"),
        (("[1, 2]",), '1: not an xvpci log header (no "xvpci_log" key)'),
        (('{"model": "nvme"}',), '1: not an xvpci log header (no "xvpci_log" key)'),
        (
            ('{"xvpci_log": 9}',),
            "1: unknown log format version 9 (this xvpci reads "
            + ", ".join(map(str, logformat.READABLE_VERSIONS))
            + ")",
        ),
        (
            ('{"xvpci_log": "3"}',),
            "1: unknown log format version '3' (this xvpci reads "
            + ", ".join(map(str, logformat.READABLE_VERSIONS))
            + ")",
        ),
    ],
)
def test_a_bad_header_is_named(tmp_path: Path, lines: tuple[str, ...], message: str) -> None:
    path = _text(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(LogError) as caught:
        LogReader(path)
    assert str(caught.value) == f"{path}:{message}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json}", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('{"seq": 1, "t_ns": 0}', 'event without a "kind"'),
        ('{"seq": 1, "t_ns": 0, "kind": ["irq"]}', "unknown event kind ['irq']"),
        ('{"xvpci_end": false, "events": 1}', 'event without a "kind"'),
        ('{"seq": 1, "t_ns": 0, "kind": "irq", "irq_type": "msix"}', 'irq event without "vector"'),
        ('{"seq": 1, "kind": "irq", "irq_type": "msix", "vector": 1}', 'irq event without "t_ns"'),
    ],
)
def test_a_bad_event_is_named_with_its_line(tmp_path: Path, line: str, message: str) -> None:
    good = write_log(tmp_path / "good.jsonl", EVENTS[:2]).read_text().splitlines()
    path = _text(tmp_path / "bad.jsonl", *good[:3], line, good[3])
    assert _error(path) == f"{path}:4: {message}"
    assert _error(path, allow_truncated=True) == f"{path}:4: {message}"


MMIO_LINE = '{"seq": 1, "t_ns": 0, "kind": "mmio_read", "bar": 0, "offset": 0, "size": 4, '
DMA_LINE = '{"seq": 1, "t_ns": 0, "kind": "dma_write", "addr": 0, "len": 4, "digest": "00", '


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # orjson reads integers beyond 64 bits as floats; they must not pass for numbers.
        (MMIO_LINE + '"value": 18446744073709551616}', '"value" is 1.84467e+19, beyond 64 bits'),
        (MMIO_LINE + '"value": 1e300}', '"value" is 1e+300, beyond 64 bits'),
        (MMIO_LINE + '"value": 4.5}', '"value" is 4.5, not an unsigned integer'),
        (MMIO_LINE + '"value": "0x10"}', "\"value\" is '0x10', not an unsigned integer"),
        (MMIO_LINE + '"value": true}', '"value" is True, not an unsigned integer'),
        (MMIO_LINE + '"value": -1}', '"value" is -1, below zero'),
        (MMIO_LINE + '"value": 1, "stream": 7}', '"stream" is 7, not a string'),
        (
            '{"seq": "1", "t_ns": 0, "kind": "irq", "irq_type": "msix", "vector": 1}',
            "\"seq\" is '1', not an unsigned integer",
        ),
        (
            '{"seq": 1, "t_ns": 0, "kind": "dma_read", "addr": 4096.0, "len": 4, "digest": "00"}',
            '"addr" is 4096.0, not an unsigned integer',
        ),
        (
            '{"seq": 1, "t_ns": 0, "kind": "dma_read", "addr": 0, "len": 4, "digest": null}',
            '"digest" is None, not a string',
        ),
        # Rules 4 and 5: the payload's bytes in hex, one digest per logical block.
        (DMA_LINE + '"data": "zz00aa11"}', '"data" is not hex digits in pairs'),
        (DMA_LINE + '"data": "00aa1"}', '"data" is not hex digits in pairs'),
        (DMA_LINE + '"data": "00 aa 11"}', '"data" is not hex digits in pairs'),
        (DMA_LINE + '"data": "00aa"}', '"data" holds 2 bytes, "len" says 4'),
        (DMA_LINE + '"tag": "sqe"}', 'tagged "sqe" without its "data"'),
        (
            DMA_LINE + '"blocks": "' + "0" * 16 + '"}',
            '"blocks" without a "block" size above 0 and a "len"',
        ),
        (
            DMA_LINE + '"block": 0, "blocks": ""}',
            '"blocks" without a "block" size above 0 and a "len"',
        ),
        (
            DMA_LINE + '"block": 2, "blocks": "' + "0" * 16 + '"}',
            '"blocks" is not 32 hex digits (one digest per block)',
        ),
        (
            DMA_LINE + '"block": 3, "blocks": "' + "x" * 32 + '"}',
            '"blocks" is not 32 hex digits (one digest per block)',
        ),
    ],
)
def test_a_malformed_field_is_named(tmp_path: Path, line: str, message: str) -> None:
    good = write_log(tmp_path / "good.jsonl", EVENTS[:2]).read_text().splitlines()
    path = _text(tmp_path / "bad.jsonl", *good[:3], line, good[3])
    kind = json.loads(line)["kind"]
    assert _error(path) == f"{path}:4: {kind} event: {message}"


def test_the_largest_64_bit_value_is_read_exactly(tmp_path: Path) -> None:
    path = write_log(tmp_path / "a.jsonl", [mmio("mmio_read", 0, 0, 2**64 - 1, size=8)])
    assert [event["value"] for event in LogReader(path)] == [2**64 - 1]


BAR = {"index": 0, "registers": [{"name": "cc", "offset": 20}]}


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ([1, 2], "header.device is [1, 2], not an object"),
        ({"bars": "x"}, "header.device.bars is 'x', not a list of items"),
        ({"bars": [{"registers": []}]}, 'header.device.bars[0] has no "index"'),
        (
            {"bars": [{**BAR, "registers": [{"name": "cc", "offset": "0x14"}]}]},
            "header.device.bars[0].registers[0].offset is '0x14', not an unsigned integer",
        ),
        (
            {"bars": [{**BAR, "registers": [{"name": "cc", "offset": 20, "state": 1}]}]},
            "header.device.bars[0].registers[0].state is 1, not true or false",
        ),
        (
            {"capabilities": [{"name": "msix", "offset": 64, "length": 12, "table": [0, 8192]}]},
            "header.device.capabilities[0].table is [0, 8192], not a list of 3 items",
        ),
        (
            {"descriptors": [{"tag": "sqe", "ignore": [[2, -4]]}]},
            "header.device.descriptors[0].ignore[0][1] is -4, not an unsigned integer",
        ),
        (
            {"takeover": {"bar": 0, "offset": 20, "mask": 1}},
            'header.device.takeover has no "value"',
        ),
        (
            {"bars": [{**BAR, "ranges": [{"offset": 4096, "size": 64, "stride": 0}]}]},
            "header: a range of BAR 0 has a stride of 0",
        ),
        (
            {"bars": [{**BAR, "ranges": [{"offset": 4096, "size": 64, "names": ["DB{m}"]}]}]},
            "header: register name pattern 'DB{m}' is not 'NAME{n}'-like",
        ),
    ],
)
def test_a_device_description_readers_cannot_use_is_named(
    tmp_path: Path, device: object, message: str
) -> None:
    events = write_log(tmp_path / "good.jsonl", EVENTS).read_text().splitlines()[1:]
    path = _text(tmp_path / "bad.jsonl", json.dumps({**HEADER, "device": device}), *events)
    assert _error(path) == f"{path}:1: {message}"


@pytest.mark.parametrize("name", ["edu", "nvme", "window"])
def test_every_models_declaration_is_a_header_readers_can_use(name: str) -> None:
    header = logformat.header("direct", device=create_model(name).declaration())
    assert logformat.check_header(header) is None


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(LogError) as caught:
        LogReader(missing)
    assert str(caught.value) == f"{missing}: cannot read: No such file or directory"


def test_lines_taken_and_given_back_come_again_in_order(tmp_path: Path) -> None:
    path = write_log(tmp_path / "a.jsonl", [irq(n) for n in range(10)])
    reader = LogReader(path)
    first = reader.take(4)
    assert [json.loads(line)["vector"] for line in first] == [0, 1, 2, 3]
    assert reader.line_no == 5
    reader.unread(first[2:])
    assert reader.line_no == 3
    again = reader.take(3)
    assert [json.loads(line)["vector"] for line in again] == [2, 3, 4]
    rest = reader.take(100)  # fewer at the end: the last events and the end marker
    assert [json.loads(line).get("vector") for line in rest] == [5, 6, 7, 8, 9, None]
    assert reader.take(5) == []
    assert reader.line_no == 12


def test_iterating_after_taking_parses_what_was_given_back(tmp_path: Path) -> None:
    path = write_log(tmp_path / "a.jsonl", [irq(n) for n in range(5)])
    reader = LogReader(path)
    taken = reader.take(3)
    reader.unread(taken[1:])
    reader.info.events += 1  # a line the caller keeps is the caller's to count (the fast lane)
    assert [e["vector"] for e in reader] == [1, 2, 3, 4]
    assert reader.info.events == 5 and reader.info.complete


def test_a_log_that_lost_or_gained_a_line_is_named(tmp_path: Path) -> None:
    lines = write_log(tmp_path / "a.jsonl", EVENTS).read_text().splitlines(keepends=True)
    for name, edited in (("lost", lines[:2] + lines[3:]), ("gained", [*lines[:2], *lines[1:]])):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(edited))
        held = len(EVENTS) - 1 if name == "lost" else len(EVENTS) + 1
        assert _error(path) == (
            f"{path}: holds {held} events, its end marker says {len(EVENTS)} "
            "(lines lost or added after it was written)"
        )


def test_the_line_patterns_split_seq_and_time_from_the_event() -> None:
    line = logformat.dumps({"seq": 12, "t_ns": 345, "kind": "dma_read", "addr": 4096, "len": 8})
    match = EVENT_LINE.match(line.encode())
    assert match is not None
    assert match.group(1) == b'"kind":"dma_read","addr":4096,"len":8}'
    assert EVENT_LINE.match(b'{"t_ns":1,"seq":2,"kind":"irq"}\n') is None
    assert ADDRESS_FIELD.sub(b'"addr":0', match.group(1)) == b'"kind":"dma_read","addr":0,"len":8}'
    assert ADDRESS_FIELD.search(b'"addr":0}').group(1) == b"0"
    assert ADDRESS_FIELD.search(b'"addr":012,') is None  # not a JSON number
    assert ADDRESS_FIELD.search(b'"addr":12x') is None


def test_bytes_that_are_not_utf_8_are_replaced_not_fatal(tmp_path: Path) -> None:
    # A model's free-text field (a device error's detail) with a stray byte in it.
    header = logformat.dumps({**HEADER, "note": "caf~"}).replace("~", "\udcff")
    event = logformat.dumps({"seq": 0, "t_ns": 0, "kind": "device_error", "error": "e~"})
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(
        header.encode("utf-8", "surrogateescape")
        + event.replace("~", "\udcfe").encode("utf-8", "surrogateescape")
        + logformat.dumps(logformat.trailer(1)).encode()
    )
    reader = LogReader(path)
    assert reader.info.header["note"] == "caf\ufffd"
    [error] = list(reader)
    assert error["error"] == "e\ufffd" and reader.info.complete


def test_reading_ahead_is_bounded_by_what_was_asked(tmp_path: Path) -> None:
    """The diff takes lines in batches; a batch must not pull the rest of the file into
    memory (logs run to millions of events)."""
    path = write_log(tmp_path / "long.jsonl", [irq(n % 32) for n in range(20_000)])
    reader = LogReader(path)
    assert len(reader.take(10)) == 10
    assert reader._lines_read < 100  # lines read from the file so far, header included
    assert len(reader.take(1000)) == 1000 and reader._lines_read < 3000  # not 20 002
    # exactly as many lines asked as are buffered: none read from the file
    lines_read, buffered = reader._lines_read, len(reader._unread)
    assert buffered and len(reader.take(buffered)) == buffered
    assert reader._lines_read == lines_read


def test_nothing_is_taken_after_the_log_ended(tmp_path: Path) -> None:
    reader = LogReader(write_log(tmp_path / "a.jsonl", EVENTS))
    assert len(list(reader)) == 3
    assert reader.take(4) == [] and reader.take(1) == []


@pytest.mark.parametrize("bodies", ["cut", "not cut"])
def test_a_cutter_ending_inside_a_block_is_an_error_not_a_short_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bodies: str
) -> None:
    # A stand-in for a cutter process killed while writing a block, whose lines were
    # cut into bodies or were not (a line not shaped like an event in the block).
    size = 4000 if bodies == "cut" else cutter.NOT_CUT
    dying = tmp_path / "dying_cutter.py"
    dying.write_text(
        "import struct, sys\n"
        f"sys.stdout.buffer.write(struct.pack('<III', 100, 5000, {size}) + b'{{\"seq\":1')\n"
    )
    monkeypatch.setattr(reader_module, "CUT_ELSEWHERE", 0)
    monkeypatch.setattr(cutter, "__file__", str(dying))
    log = LogReader(write_log(tmp_path / "a.jsonl", EVENTS))
    with pytest.raises(LogError, match=r"a\.jsonl: cannot read past line 1$"):
        log.take_block()
    log.stop()
