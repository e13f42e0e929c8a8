"""The transaction recorder: format, trailer, crash safety, disk full."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import xxhash

from tests.conftest import has, read_log
from vfio_bridge.recorder import Recorder


def test_header_events_and_trailer(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with Recorder(path, model="edu", path="direct", vendor_id=0x1234) as rec:
        rec.config(False, 0, 4, (0x11E81234).to_bytes(4, "little"))
        rec.config(False, 0, 4096, bytes(4096))
        rec.mmio(True, 0, 8, 4, 5)
        rec.dma(False, 0x2000, b"\x01" * 16)
        rec.dma(True, 0x3000, b"\x02" * 100)
        rec.irq("msix", 3)
        rec.event("reset", reason="vfio")
        rec.event("dma_map", addr=0, len=4096, flags=3, shared=True)
    header, events, trailer = read_log(path)
    assert header["xvpci_log"] == 3 and header["model"] == "edu" and header["path"] == "direct"
    assert header["vendor_id"] == 0x1234 and "start_time" in header
    assert trailer == {"xvpci_end": True, "events": 8}
    assert [e["seq"] for e in events] == list(range(8))
    assert all(isinstance(e["t_ns"], int) for e in events)
    assert has(events[0], kind="cfg_read", offset=0, size=4, value=0x11E81234)
    assert header["digest_algorithm"] == "xxh3-128"
    assert events[1]["digest"] == xxhash.xxh3_128_hexdigest(bytes(4096))
    assert "value" not in events[1]
    assert has(events[2], kind="mmio_write", bar=0, offset=8, size=4, value=5)
    assert events[3]["data"] == "01" * 16 and events[3]["len"] == 16
    assert "data" not in events[4]
    assert events[4]["digest"] == xxhash.xxh3_128_hexdigest(b"\x02" * 100)
    assert has(events[5], kind="irq", irq_type="msix", vector=3)
    assert has(events[7], kind="dma_map", addr=0, len=4096, flags=3, shared=True)


def test_unknown_event_kind_is_a_programming_error(tmp_path: Path) -> None:
    with Recorder(tmp_path / "x.jsonl") as rec, pytest.raises(ValueError):
        rec.event("bogus")


def test_killed_writer_leaves_every_line_readable(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        from vfio_bridge.recorder import Recorder
        rec = Recorder({str(path)!r}, model="edu")
        for i in range(1000):
            rec.mmio(True, 0, 4 * (i % 16), 4, i)
        rec.flush()  # what the session does after each burst of requests
        rec.mmio(True, 0, 0, 4, 1000)  # buffered, lost with the process
        print("written", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    _, events, trailer = read_log(path)
    assert trailer is None  # no clean close
    assert len(events) == 1000 and events[-1]["value"] == 999


def test_disk_full_stops_recording_without_raising(tmp_path: Path, caplog) -> None:
    rec = Recorder(tmp_path / "ok.jsonl")
    os.close(rec._fd)
    rec._fd = os.open("/dev/full", os.O_WRONLY)
    rec.mmio(False, 0, 0, 4, 1)
    rec.flush()
    rec.mmio(False, 0, 0, 4, 2)
    rec.flush()
    assert not rec.enabled
    assert sum("recording stopped" in r.message for r in caplog.records) == 1
    rec.close()


@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    """A 64 KiB tmpfs that fills up for real (needs root, as CI has)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "xvpci-tiny", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_filesystem_keeps_whole_lines(tiny_filesystem: Path, caplog) -> None:
    path = tiny_filesystem / "full.jsonl"
    rec = Recorder(path, model="edu")
    for i in range(5000):  # about 500 KiB of events, in flushes of 100
        rec.dma(True, 0x1000 * i, bytes(32))
        if i % 100 == 99:
            rec.flush()
    rec.close()
    assert not rec.enabled and rec.seq == 5000
    assert sum("recording stopped" in r.message for r in caplog.records) == 1
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends on a whole line
    header, *events = (json.loads(line) for line in lines[:-1])
    assert header["xvpci_log"] == 3 and 100 <= len(events) < 5000
    assert [e["seq"] for e in events] == list(range(len(events)))
    _, _, trailer = read_log(path)
    assert trailer is None  # the log says it is cut short


def test_no_path_counts_events_only() -> None:
    rec = Recorder(None)
    rec.mmio(False, 0, 0, 4, 1)
    rec.irq("intx", 0)
    assert rec.seq == 2 and not rec.enabled
    rec.close()


def test_lines_are_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Recorder(path) as rec:
        rec.mmio(False, 2, 0x10, 8, (1 << 64) - 1)
    header, event, trailer = (json.loads(line) for line in path.read_text().splitlines())
    assert header["xvpci_log"] == 3 and trailer["events"] == 1
    assert event["value"] == (1 << 64) - 1  # a u64 survives JSON exactly
