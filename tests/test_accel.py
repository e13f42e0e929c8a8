"""Accelerator choice: TCG unless a probe guest really boots under KVM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.accel import choose_accel, probe_kvm
from harness.errors import HarnessError
from tests.conftest import child_pids

pytestmark = pytest.mark.qemu


def test_tcg_needs_no_probe(qemu, linux_image) -> None:
    assert choose_accel("tcg", qemu, linux_image) == "tcg"
    with pytest.raises(HarnessError, match="unknown accelerator"):
        choose_accel("hvf", qemu, linux_image)


def test_kvm_probe_is_bounded_cached_and_leaves_nothing(
    qemu, linux_image, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("XVPCI_CACHE", str(tmp_path))
    before = child_pids()
    ok, reason = probe_kvm(qemu, linux_image, timeout=20)
    assert child_pids() <= before  # the probe QEMU was ended and reaped, hung or not
    assert reason
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert not ok and "/dev/kvm" in reason
        return
    assert (tmp_path / "kvm-probe.json").is_file()
    assert probe_kvm(qemu, linux_image, timeout=20) == (ok, reason)  # cached for this boot
    if ok:
        assert choose_accel("auto", qemu, linux_image) == "kvm"
    else:
        assert choose_accel("auto", qemu, linux_image) == "tcg"
        with pytest.raises(HarnessError, match="KVM is not usable here"):
            choose_accel("kvm", qemu, linux_image)
