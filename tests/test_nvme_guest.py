"""The stock Linux nvme driver against the NVMe model over vfio-user: real filesystem, real I/O."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.run import run
from tests.conftest import read_log

pytestmark = pytest.mark.qemu


@pytest.mark.parametrize("workload", ["fs-verify", "fio-verify"])
def test_workload_on_the_nvme_model(linux_image, tmp_path: Path, workload: str) -> None:
    result = run("nvme", ["direct"], workload, tmp_path, options=["size=64m"])
    [direct] = result.results
    output = (tmp_path / "direct" / f"{workload}.out").read_text()
    assert direct.passed, output
    if workload == "fs-verify":
        assert "vid       : 0x1b36" in output  # nvme id-ctrl through the stock driver
        assert "fs-verify: 7 files verified" in output
    else:
        assert "fio-verify: iodepth 16 ok" in output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["paths"]["direct"]["passed"] is True
    header, events, trailer = read_log(direct.log)
    assert header["model"] == "nvme" and header["path"] == "direct" and trailer is not None
    kinds = {e["kind"] for e in events}
    assert {"dma_read", "dma_write", "irq", "mmio_write", "cfg_write"} <= kinds
    assert any(e["kind"] == "irq" and e["irq_type"] == "msix" for e in events)
    serial = (tmp_path / "direct" / "linux.serial.log").read_text()
    assert "nvme nvme0: pci function" in serial
