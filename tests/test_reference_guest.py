"""The reference path end to end: fs-verify on the NVMe model and on QEMU's own NVMe
controller (traced), and the model's commands diffed against QEMU's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.reference import diff_reference
from harness.run import report_all, run

pytestmark = pytest.mark.qemu


def test_model_against_qemus_nvme_on_fs_verify(linux_image, tmp_path: Path) -> None:
    result = run("nvme", ["direct", "reference"], "fs-verify", tmp_path, options=["size=64m"])
    direct, reference = result.results
    assert direct.passed and reference.passed, reference.output
    assert reference.log == tmp_path / "reference" / "nvme.trace"
    assert "fs-verify: 7 files verified" in (tmp_path / "reference" / "fs-verify.out").read_text()
    assert result.reference is not None
    data = json.loads((tmp_path / "report" / "reference.json").read_text())
    assert data["not_compared"] == ["data"] and data["compared"] and data["not_traced"]
    # Both controllers took the workload's commands: nearly all pair by content, and per
    # block, the same blocks were written in the same order; every completion the model
    # owed an interrupt got one, as in QEMU.
    assert data["paired"] > 250
    assert data["blocks_written"] > 0
    kinds = set(data["divergence_counts"])
    assert not kinds & {"blocks", "end_state", "interrupt", "incomplete", "data"}, kinds
    # What remains is what the two devices answer differently (optional features,
    # Set Features results): each divergence names its command.
    for divergence in data["divergences"]:
        assert divergence["command"] and divergence["kind"] in ("status", "result", "unmatched")
    assert result.reference.equivalent == (data["total_divergences"] == 0)
    assert "compared: " in result.reference.text and "not compared" in result.reference.text
    # ...and the HTML and JUnit reports say the same (tests/test_reference_reports.py)
    page = (tmp_path / "report" / "reference.html").read_text()
    assert f"{data['total_divergences']} divergences" in page or "EQUIVALENT" in page
    junit = (tmp_path / "report" / "reference.xml").read_text()
    assert 'name="compared"' in junit and 'name="not compared"' in junit
    # `xvpci report` re-renders it from the run directory.
    again = report_all(tmp_path)
    assert again.equivalent == result.reference.equivalent
    assert again.text.startswith("reference: the model's log")

    # The comparison can fail at a command: QEMU's trace, edited so that one read
    # completes with Unrecovered Read Error (0x281), is judged DIVERGED at that read.
    lines = reference.log.read_text().splitlines(keepends=True)
    read_cids = {}
    for number, line in enumerate(lines):
        match = re.search(
            r"pci_nvme_read cid (\d+) nsid 1 nlb (\d+) count \d+ lba (0x[0-9a-f]+)", line
        )
        if match:
            read_cids[match[1]] = (int(match[3], 16), int(match[2]))
            continue
        match = re.search(r"enqueue_req_completion cid (\d+) cqid 1 .* status 0x0$", line.strip())
        if match and match[1] in read_cids and number > len(lines) // 2:
            lines[number] = line.replace("status 0x0", "status 0x281")
            lba, blocks = read_cids[match[1]]
            break
    else:
        pytest.fail("no read completion in the trace")
    tampered = tmp_path / "tampered.trace"
    tampered.write_text("".join(lines))
    diff = diff_reference(direct.log, tampered)
    assert not diff.equivalent
    hits = [d for d in diff.divergences if d.kind == "status" and "0x281" in d.detail]
    assert len(hits) == 1 and f"read LBA {lba}+{blocks}" in hits[0].command
    baseline = diff_reference(direct.log, reference.log)
    assert diff.total_divergences == baseline.total_divergences + 1
