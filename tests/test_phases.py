"""Phases: the diff compares from where the OS driver takes the device over and reports
what firmware did before apart (harness/difflog/phases.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import workloads
from harness.difflog.engine import diff_logs
from harness.difflog.phases import find_pre_os, find_pre_os_in, split_phases
from harness.difflog.reports import summary, write_json
from harness.difflog.transactions import diff_transaction_logs
from harness.guest import LinuxGuest
from harness.run import attachments
from vfio_bridge.models import create_model

HEADER = {"model": "nvme", "device": create_model("nvme").declaration()}
CC = 0x14


def _events(*specs: tuple[str, Any]) -> list[dict[str, Any]]:
    events = []
    for seq, (kind, value) in enumerate(specs):
        if kind == "cc":
            events.append({"seq": seq, "kind": "mmio_write", "bar": 0, "offset": CC,
                           "size": 4, "value": value})  # fmt: skip
        elif kind == "irq":
            events.append({"seq": seq, "kind": "irq", "irq_type": value, "vector": 0})
        else:
            events.append({"seq": seq, "kind": kind, "addr": 0, "len": 64, "digest": "x"})
    return events


FIRMWARE_THEN_OS = _events(
    ("cfg_read", None),
    ("cc", 0x0),  # 1: firmware disables
    ("cc", 0x460001),  # firmware enables and polls (INTx at most)
    ("dma_read", None),
    ("irq", "intx"),
    ("cc", 0x0),  # 5: the OS driver disables: the takeover
    ("cc", 0x460000),  # written again while disabled: not another reset
    ("cc", 0x460001),
    ("dma_read", None),
    ("irq", "msix"),
)


def test_the_takeover_opens_the_first_session_with_a_message_signalled_interrupt() -> None:
    pre = find_pre_os(HEADER, FIRMWARE_THEN_OS)
    assert pre.takeover == 5 and pre.sessions == 1
    assert pre.kinds == {"cfg_read": 1, "mmio_write": 2, "dma_read": 1, "irq": 1}
    assert "5 events before the OS driver took the device over at #5" in pre.describe()


def test_os_only_use_has_no_earlier_session() -> None:
    pre = find_pre_os(HEADER, FIRMWARE_THEN_OS[5:])
    assert pre.takeover == 5 and pre.sessions == 0 and pre.events == 0


def test_no_rule_or_no_interrupt_means_one_phase() -> None:
    assert find_pre_os({"device": {}}, FIRMWARE_THEN_OS).takeover is None
    polling_only = [e for e in FIRMWARE_THEN_OS if e.get("irq_type") != "msix"]
    assert find_pre_os(HEADER, polling_only).takeover is None
    # An interrupt before any reset: nothing to cut.
    assert find_pre_os(HEADER, _events(("irq", "msix"), ("cc", 0x0))).takeover is None


@pytest.mark.qemu
def test_seabios_direct_log_against_a_qboot_one(linux_image, qemu, tmp_path: Path) -> None:
    """SeaBIOS (QEMU's bios-256k.bin, which has an NVMe driver) drives the model before
    Linux does; qboot does not. From the takeover on, the two logs agree."""
    logs = {}
    for firmware in ("bios-256k.bin", "qboot.rom"):
        workdir = tmp_path / firmware
        models = attachments("nvme", ["size=64m"], "direct")
        with LinuxGuest(qemu, linux_image, workdir, models, firmware=firmware) as guest:
            outcome = workloads.run(guest.ssh, "fio-pattern")
            assert outcome.status == 0, outcome.stdout + outcome.stderr
        logs[firmware] = workdir / "nvme.jsonl"
    seabios, qboot = logs["bios-256k.bin"], logs["qboot.rom"]

    pre_seabios, pre_qboot = find_pre_os_in(seabios), find_pre_os_in(qboot)
    assert pre_seabios.sessions >= 1 and pre_qboot.sessions == 0
    # SeaBIOS set the controller up and used it: queue entries fetched, completions posted.
    assert pre_seabios.kinds["dma_read"] and pre_seabios.kinds["dma_write"]
    assert not pre_qboot.kinds["dma_read"]
    assert split_phases(qboot, seabios) == (pre_qboot, pre_seabios)

    whole = diff_transaction_logs(qboot, seabios, phases=False)
    firmware_only = [d for d in whole.divergences if d.kind == "unmatched" and d.side == "B"]
    assert {d.b.op for d in firmware_only if d.b} >= {"create_cq", "identify"}
    assert diff_logs(qboot, seabios, phases=False).total_divergences > 1000

    txn = diff_transaction_logs(qboot, seabios)
    raw = diff_logs(qboot, seabios)
    assert txn.pre_os == raw.pre_os == (pre_qboot, pre_seabios)
    # What remains is the firmware's mark on the device's own state: the SMART log
    # counts the blocks SeaBIOS read.
    assert set(txn.by_kind) <= {"data"} and txn.total_divergences <= 1
    for divergence in txn.divergences:
        assert divergence.a is not None and divergence.a.op == "get_log_page"
        assert divergence.a.param("lid") == 0x02
    assert raw.total_divergences <= 1 and txn.paired > 4000
    report = tmp_path / "diff.json"
    write_json(raw, report, qboot, seabios, txn, "transaction")
    pre_os = json.loads(report.read_text())["pre_os"]
    assert pre_os["b"]["takeover"] == pre_seabios.takeover and pre_os["b"]["resets"] >= 1
    assert "pre-OS phase (reported apart, not compared)" in summary(raw, qboot, seabios)
