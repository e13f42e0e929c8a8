"""The log format's one owner: header from a model's declaration, what the diff derives
from it, and the reader's checks of each event against the format's field table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.difflog import LogError, diff_logs
from harness.difflog.profile import DeviceProfile
from tests.loggen import HEADER, mmio, write_log
from vfio_bridge import logformat
from vfio_bridge.models import create_model

#: The NVMe model's header as format 2 wrote it (``log_identity``, commit 5b353f9):
#: the diff's conclusions, written by the model layer. Format 3 logs the model's
#: declaration instead; the diff must reach the same conclusions from it.
FORMAT_2_NVME = {
    "xvpci_log": 2,
    "model": "nvme",
    "vendor_id": 6966,
    "device_id": 238,
    "msix": {"table": [0, 8192, 272], "pba": [0, 12288, 8]},
    "path_specific_config": [[84, 144], [72, 84]],
    "address_registers": [[0, 40, 8], [0, 48, 8]],
    "descriptors": [
        {"tag": "sqe", "addresses": [24, 32], "ignore": [[2, 4]], "address_list": False},
        {"tag": "cqe", "addresses": [], "ignore": [[12, 14]], "address_list": False},
        {"tag": "prp_list", "addresses": [], "ignore": [], "address_list": True},
    ],
}


def test_diff_derives_from_the_declaration_what_format_2_headers_stated() -> None:
    head = logformat.header("direct", device=create_model("nvme").declaration())
    assert head["xvpci_log"] == 3 and head["model"] == "nvme" and head["device_id"] == 0xEE
    assert "msix" not in head and "path_specific_config" not in head  # the model only describes
    derived = DeviceProfile.from_header(json.loads(logformat.dumps(head)))
    stated = DeviceProfile.from_header(FORMAT_2_NVME)
    assert derived.skip_mmio == stated.skip_mmio == ((0, 0x2000, 0x2110), (0, 0x3000, 0x3008))
    assert sorted(derived.path_specific_config) == sorted(stated.path_specific_config)
    assert derived.address_registers == stated.address_registers == {(0, 0x28), (0, 0x30)}
    assert derived.descriptors == stated.descriptors
    # Only the declaration names registers (for reports): ASQ at 0x28, as in the NVMe spec.
    assert derived.register_names[(0, 0x28)] == "asq" and stated.register_names == {}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("msix", {"table": [0, 8192]}, "header.msix.table is [0, 8192], not a list of 3 items"),
        ("path_specific_config", [84], "header.path_specific_config[0] is 84, not a list of 2"),
        ("address_registers", [[0, "40", 8]], "header.address_registers[0][1] is '40', not an"),
        ("descriptors", [{"addresses": [24]}], 'header.descriptors[0] has no "tag"'),
    ],
)
def test_a_format_2_header_is_checked_as_it_was_written(
    tmp_path: Path, field: str, value: object, problem: str
) -> None:
    """What the diff reads of a legacy header has a shape: the one format 2 wrote."""
    assert logformat.check_header(FORMAT_2_NVME) is None
    bad = {**FORMAT_2_NVME, field: value}
    assert (logformat.check_header(bad) or "").startswith(problem)
    log = write_log(tmp_path / "a.jsonl", [mmio("mmio_read", 0, 0x1C, 1)], bad)
    with pytest.raises(LogError, match=re.escape(f":1: {problem}")):
        diff_logs(log, log)


def test_window_header_is_the_childs_declaration_naming_the_window() -> None:
    head = logformat.header("window", device=create_model("window").declaration())
    assert head["model"] == "nvme" and head["window"] == "8086:a77f"
    assert DeviceProfile.from_header(head).skip_mmio == ((0, 0x2000, 0x2110), (0, 0x3000, 0x3008))


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (
            {"kind": "mmio_read", "bar": 0, "offset": 0, "size": 4},
            'mmio_read event without "value"',
        ),
        ({"kind": "dma_write", "addr": 0, "len": 4}, 'dma_write event without "digest"'),
        ({"kind": "irq", "irq_type": "msix"}, 'irq event without "vector"'),
        (
            {"kind": "cfg_read", "offset": 0, "size": 4},
            'cfg_read event without "value" or "digest"',
        ),
        ({"kind": "teleport"}, "unknown event kind 'teleport'"),
    ],
)
def test_reader_names_the_line_of_a_malformed_event(
    tmp_path: Path, event: dict, problem: str
) -> None:
    good = write_log(tmp_path / "good.jsonl", [mmio("mmio_read", 0, 0, 1)])
    bad = write_log(tmp_path / "bad.jsonl", [mmio("mmio_read", 0, 0, 1), event])
    with pytest.raises(LogError, match=rf"bad\.jsonl:3: {problem}"):
        diff_logs(good, bad)


def test_event_lines_are_json_with_the_fields_the_table_names() -> None:
    lines = [
        logformat.config_line(0, 1, True, 4, 2, b"\x06\x00", None),
        logformat.config_line(1, 2, False, 0, 16, bytes(16), None),
        logformat.mmio_line(2, 3, False, 0, 0x1C, 4, 1, logformat.WINDOW_STREAM),
        logformat.dma_line(3, 4, True, 0x1000, b"\xab" * 80, "cqe"),
        logformat.irq_line(4, 5, "msix", 2, None),
        logformat.event_line(5, 6, "reset", {"reason": "vfio"}),
    ]
    events = [json.loads(line) for line in lines]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert [logformat.check_event(e) for e in events] == [None] * 6
    assert events[0] == {
        "seq": 0,
        "t_ns": 1,
        "kind": "cfg_write",
        "offset": 4,
        "size": 2,
        "value": 6,
    }
    assert events[2]["stream"] == "window" and "stream" not in events[0]
    assert events[3]["data"] == "ab" * 80 and events[3]["tag"] == "cqe"  # tagged: bytes kept
    with pytest.raises(ValueError, match="reset event without reason"):
        logformat.event_line(6, 7, "reset", {})


def test_header_of_the_generator_is_the_formats() -> None:
    assert HEADER["xvpci_log"] == logformat.FORMAT_VERSION
    assert HEADER["digest_algorithm"] == "xxh3-128"
