"""A model answering one path wrongly, in a real run, is judged DIVERGED at that command."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from harness.difflog.transactions import diff_transaction_logs
from harness.run import run

pytestmark = pytest.mark.qemu

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_read_answered_wrongly_in_a_real_run_is_found_at_that_read(
    linux_image, tmp_path: Path
) -> None:
    # The 2100th I/O command of fio-pattern is one of its verify reads; the model
    # flips one byte of what it returns, on the direct path only.
    result = run("nvme", ["direct"], "fio-pattern", tmp_path, options=["perturb=read_byte@2100"])
    [direct] = result.results
    assert not direct.passed  # fio's own verification noticed, and stopped
    window = tmp_path / "window.jsonl"
    window.write_bytes(lzma.decompress((FIXTURES / "fio-pattern-window.jsonl.xz").read_bytes()))
    verdict = diff_transaction_logs(direct.log, window)
    assert not verdict.equivalent
    [hit] = verdict.divergences  # fio stopping early is not a device divergence
    assert hit.kind == "data" and hit.side == "A"
    assert hit.a is not None and hit.a.op == "read" and hit.b is None
    assert hit.lba == hit.a.read[0].lba  # the flipped byte is in its first block
    # every command before it, and the writes it read back, were paired by content
    assert verdict.paired == sum(verdict.ops_a.values())


def test_fs_verify_direct_and_window_are_equivalent_transactions(
    linux_image, tmp_path: Path
) -> None:
    """A real file system on both paths: the guest batches and orders its I/O differently
    on each boot, but the device is given the same commands. (That the raw events diverge
    is usual but not certain in one run; the recorded fixtures show it.)"""
    result = run("nvme", ["direct", "window"], "fs-verify", tmp_path, options=[])
    assert all(r.passed for r in result.results), [r.output[-500:] for r in result.results]
    direct, window = (r.log for r in result.results)
    verdict = diff_transaction_logs(direct, window)
    assert verdict.equivalent, [d.detail for d in verdict.divergences[:5]]
    assert verdict.ops_a["write"] > 100 and verdict.blocks_written > 0
    assert result.verdict is not None and result.verdict.equivalent  # the run's own verdict
