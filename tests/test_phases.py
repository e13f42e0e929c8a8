"""Phases: the diff compares from where the OS driver takes the device over and reports
what firmware did before apart (harness/difflog/phases.py)."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest

from harness import workloads
from harness.difflog.engine import diff_logs
from harness.difflog.phases import (
    PreOs,
    find_pre_os,
    find_pre_os_in,
    os_phase,
    phase_line,
    split_phases,
    takeover_rule,
)
from harness.difflog.reports import summary, write_json
from harness.difflog.transactions import diff_transaction_logs
from harness.guest import LinuxGuest
from harness.run import attachments
from vfio_bridge.models import create_model
from vfio_bridge.transaction import Transaction

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
    # Without the phases, the raw diff reports SeaBIOS's events as B's own (every DMA
    # of them at least), and no more than there are: what follows them still pairs.
    whole_raw = diff_logs(qboot, seabios, phases=False)
    firmware_dma = pre_seabios.kinds["dma_read"] + pre_seabios.kinds["dma_write"]
    assert 0 < firmware_dma <= whole_raw.by_kind["extra"]
    assert whole_raw.total_divergences <= sum(pre_seabios.kinds.values())

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


# --- the rules one at a time, on generated events ----------------------------------------


def test_the_takeover_rule_is_read_from_the_declaration_or_not_at_all() -> None:
    assert takeover_rule(HEADER) == (0, CC, 1, 0)
    declared = {"bar": "2", "offset": 8, "mask": 3, "value": 1}  # numbers as text: numbers
    assert takeover_rule({"device": {"takeover": declared}}) == (2, 8, 3, 1)
    for header in (
        {},
        {"device": None},
        {"device": "nvme"},
        {"device": {}},
        {"device": {"takeover": [0, 20, 1, 0]}},
        {"device": {"takeover": {"bar": 0, "offset": 20, "mask": 1}}},
        {"device": {"takeover": {"bar": 0, "offset": 20, "mask": None, "value": 0}}},
        {"device": {"takeover": {"bar": 0, "offset": "CC", "mask": 1, "value": 0}}},
    ):
        assert takeover_rule(header) is None, header


def test_only_the_declared_register_and_value_reset_the_device() -> None:
    def with_write(write: dict) -> list[dict]:
        events = _events(("cc", 0x460001), ("dma_read", None), ("irq", "msix"))
        return [{**write, "seq": 0}, *({**e, "seq": e["seq"] + 1} for e in events)]

    reset = {"kind": "mmio_write", "bar": 0, "offset": CC, "size": 4, "value": 0x460000}
    assert find_pre_os(HEADER, with_write(reset)).takeover == 0  # EN clear, other bits set
    for other in (
        {**reset, "bar": 2},  # the same offset in another BAR
        {**reset, "offset": CC + 4},  # another register
        {**reset, "kind": "mmio_read"},  # a read of it
        {**reset, "stream": "window"},  # the window driver's own register writes
    ):
        assert find_pre_os(HEADER, with_write(other)).takeover is None, other


def test_sessions_count_the_resets_before_the_takeover_and_kinds_what_they_held() -> None:
    events = _events(
        ("cc", 0x0),  # 0: firmware's first reset
        ("dma_read", None),
        ("cc", 0x1),
        ("cc", 0x0),  # 3: firmware again
        ("dma_write", None),
        ("irq", "intx"),  # firmware may take INTx: not an OS driver
        ("cc", 0x1),
        ("cc", 0x0),  # 7: the OS driver
        ("irq", "msi"),
    )
    pre = find_pre_os(HEADER, events)
    assert (pre.takeover, pre.sessions, pre.events) == (7, 2, 7)
    assert pre.kinds == {"mmio_write": 4, "dma_read": 1, "dma_write": 1, "irq": 1}
    window_irq = [*events[:8], {**events[8], "stream": "window"}]
    assert find_pre_os(HEADER, window_irq).takeover is None  # the window's interrupt is not one


def test_describe_says_where_the_os_phase_starts() -> None:
    assert PreOs().describe() == "no takeover found: the whole log is compared"
    assert PreOs(3).describe() == "the OS driver took the device over at #3 (first event)"
    pre = PreOs(9, collections.Counter({"mmio_write": 2, "dma_read": 5}), 1)
    assert pre.events == 7
    assert pre.describe() == (
        "7 events before the OS driver took the device over at #9 "
        "(1 earlier resets; dma_read 5, mmio_write 2)"
    )


def _log(path: Path, events: list[dict]) -> Path:
    lines = [json.dumps({**HEADER, "xvpci_log": 3, "path": "direct"})]
    for event in events:  # _events writes config reads as DMA-shaped placeholders
        if event["kind"] == "cfg_read":
            event = {"seq": event["seq"], "kind": "cfg_read", "offset": 0, "size": 4, "value": 1}
        lines.append(json.dumps({"t_ns": 0, **event}))
    path.write_text(
        "\n".join([*lines, json.dumps({"xvpci_end": True, "events": len(events)})]) + "\n"
    )
    return path


def test_both_phases_are_cut_only_when_a_side_shows_firmware(tmp_path: Path) -> None:
    firmware = _log(tmp_path / "seabios.jsonl", FIRMWARE_THEN_OS)
    os_only = _log(tmp_path / "qboot.jsonl", FIRMWARE_THEN_OS[5:])
    polling = _log(tmp_path / "poll.jsonl", [e for e in FIRMWARE_THEN_OS if e["kind"] != "irq"])
    assert find_pre_os_in(firmware) == find_pre_os(HEADER, FIRMWARE_THEN_OS)
    cut = split_phases(os_only, firmware)
    assert (cut[0].takeover, cut[1].takeover, cut[1].sessions) == (5, 5, 1)
    assert split_phases(firmware, os_only)[0].sessions == 1
    assert split_phases(os_only, os_only) == (PreOs(), PreOs())  # OS-only use: nothing cut
    assert split_phases(firmware, polling) == (PreOs(), PreOs())  # no takeover on one side
    assert split_phases(polling, firmware) == (PreOs(), PreOs())
    # A log cut short (the server killed) is read as far as it goes, to its end.
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(polling.read_text().splitlines()[:-1]) + "\n")
    assert find_pre_os_in(cut) == PreOs()


def test_the_os_phase_keeps_transactions_begun_at_or_after_the_takeover() -> None:
    txns = [Transaction("a", seqs=(1, 9)), Transaction("b", seqs=(5,)), Transaction("c")]
    txns.append(Transaction("d", seqs=(6, 7)))
    assert [t.op for t in os_phase(txns, PreOs())] == ["a", "b", "c", "d"]
    assert [t.op for t in os_phase(txns, PreOs(5))] == ["b", "c", "d"]
    assert [t.op for t in os_phase(txns, PreOs(0))] == ["a", "b", "c", "d"]


def test_the_phase_line_appears_only_when_something_was_cut() -> None:
    assert phase_line(None) is None
    assert phase_line((PreOs(), PreOs())) is None
    line = phase_line((PreOs(), PreOs(4, collections.Counter({"irq": 1}), 1)))
    assert line == (
        "pre-OS phase (reported apart, not compared): A: no takeover found: the whole log "
        "is compared; B: 1 events before the OS driver took the device over at #4 "
        "(1 earlier resets; irq 1)"
    )
    assert phase_line((PreOs(2), PreOs())) is not None


def test_the_os_phase_is_compared_from_the_takeover_write_on(tmp_path: Path) -> None:
    """What firmware did is cut; the takeover write itself and all after it are compared."""
    firmware = _log(tmp_path / "seabios.jsonl", FIRMWARE_THEN_OS)
    result = diff_logs(firmware, _log(tmp_path / "qboot.jsonl", FIRMWARE_THEN_OS[5:]))
    assert result.equivalent
    assert result.pre_os is not None  # what was cut, for the report's phase line
    assert (result.pre_os[0].takeover, result.pre_os[0].sessions) == (5, 1)
    whole = diff_logs(firmware, tmp_path / "qboot.jsonl", phases=False)  # nothing cut
    assert whole.by_kind["missing"] > 0 and whole.pre_os == (PreOs(), PreOs())
    for seq, value in ((5, 0x460000), (7, 0x460003)):  # the takeover (still one), and after
        changed = [dict(event) for event in FIRMWARE_THEN_OS]
        changed[seq]["value"] = value
        result = diff_logs(firmware, _log(tmp_path / f"changed{seq}.jsonl", changed))
        assert [(d.kind, d.seq_a) for d in result.divergences] == [("changed_value", seq)]
