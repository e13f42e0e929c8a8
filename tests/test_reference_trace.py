"""QEMU's NVMe trace as transactions (harness.nvme_trace): lines as QEMU
11's log backend writes them, and the agreement with the model's decoder that pairing needs."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.nvme_trace import (
    TRACED_PARAMS,
    UNKNOWN_CONTENT,
    TraceError,
    parse_line,
    project,
    transactions,
)
from harness.reference import reference_args, reference_namespace
from vfio_bridge.models.nvme import IDENTIFY, READ, SET_FEATURES, WRITE, WRITE_ZEROES
from vfio_bridge.models.nvme_spec import NvmeCommand
from vfio_bridge.models.nvme_transactions import command_fields
from vfio_bridge.transaction import ZERO_BLOCK, Extent, Transaction

T = "2026-11-29T03:53:58.934377Z "
# Lines copied from a trace of QEMU 11.1.3 (`-trace 'pci_nvme_*' -D FILE -msg timestamp=on`).
BOOT = [
    T + "pci_nvme_mmio_cfg wrote MMIO, config controller config=0x460061",
    T + "pci_nvme_admin_cmd cid 28 sqid 0 opc 0x6 opname 'NVME_ADM_CMD_IDENTIFY'",
    T + "pci_nvme_identify cid 28 cns 0x1 ctrlid 0 csi 0x0",
    T + "pci_nvme_identify_ctrl identify controller",
    T + "pci_nvme_enqueue_req_completion cid 28 cqid 0 dw0 0x0 dw1 0x0 status 0x0",
    T + "pci_nvme_irq_msix raising MSI-X IRQ vector 0",
    T + "pci_nvme_admin_cmd cid 4125 sqid 0 opc 0x9 opname 'NVME_ADM_CMD_SET_FEATURES'",
    T + "pci_nvme_setfeat cid 4125 nsid 0x0 fid 0x7 save 0x0 cdw11 0x0",
    T + "pci_nvme_enqueue_req_completion cid 4125 cqid 0 dw0 0x3f003f dw1 0x0 status 0x0",
    T + "pci_nvme_irq_msix raising MSI-X IRQ vector 0",
    T + "pci_nvme_admin_cmd cid 16411 sqid 0 opc 0x5 opname 'NVME_ADM_CMD_CREATE_CQ'",
    T + "pci_nvme_create_cq create completion queue, addr=0x1cd4000, cqid=1, vector=1, "
    "qsize=1023, qflags=3, ien=1",
    T + "pci_nvme_enqueue_req_completion cid 16411 cqid 0 dw0 0x0 dw1 0x0 status 0x0",
    T + "pci_nvme_irq_msix raising MSI-X IRQ vector 0",
    T + "pci_nvme_admin_cmd cid 16412 sqid 0 opc 0x1 opname 'NVME_ADM_CMD_CREATE_SQ'",
    T + "pci_nvme_create_sq create submission queue, addr=0x1d50000, sqid=1, cqid=1, "
    "qsize=1023, qflags=1",
    T + "pci_nvme_enqueue_req_completion cid 16412 cqid 0 dw0 0x0 dw1 0x0 status 0x0",
    T + "pci_nvme_irq_msix raising MSI-X IRQ vector 0",
]
WRITE_LINES = [
    T + "pci_nvme_io_cmd cid 4443 nsid 0x1 sqid 1 opc 0x1 opname 'NVME_NVM_CMD_WRITE'",
    T + "pci_nvme_write cid 4443 opname 'NVME_NVM_CMD_WRITE' nsid 1 nlb 8 count 4096 lba 0x10",
    T + "pci_nvme_map_prp trans_len 4096 len 4096 prp1 0x12662000 prp2 0x0 num_prps 1",
    T + "pci_nvme_rw_cb cid 4443 blk 'reference'",
    T + "pci_nvme_enqueue_req_completion cid 4443 cqid 1 dw0 0x0 dw1 0x0 status 0x0",
]


def test_lines_parse_with_either_timestamp_or_none() -> None:
    iso = parse_line(T + "pci_nvme_irq_msix raising MSI-X IRQ vector 3")
    assert iso is not None and iso[:2] == ("pci_nvme_irq_msix", (3,))
    assert iso[2] % 1_000_000_000 == 934_377_000 and iso[2] > 1_700_000_000 * 10**9
    old = parse_line("4242@1767225600.000123:pci_nvme_irq_msix raising MSI-X IRQ vector 3")
    assert old == ("pci_nvme_irq_msix", (3,), 1767225600 * 10**9 + 123_000)
    bare = parse_line("pci_nvme_dsm_deallocate slba 4096 nlb 2")
    assert bare == ("pci_nvme_dsm_deallocate", (4096, 2), 0)
    # Events the converter does not read, and other output in the -D file, are skipped.
    assert parse_line(T + "pci_nvme_map_addr addr 0x12662000 len 4096") is None
    assert parse_line("qemu-system-x86_64: warning: something") is None
    with pytest.raises(TraceError, match="pci_nvme_read"):
        parse_line(T + "pci_nvme_read cid 1 nsid one")


def test_commands_complete_and_are_signalled_on_their_queue_vector() -> None:
    txns = list(
        transactions([*BOOT, *WRITE_LINES, T + "pci_nvme_irq_msix raising MSI-X IRQ vector 1"])
    )
    ops = [t.op for t in txns]
    assert ops == ["identify", "set_features", "create_cq", "create_sq", "write"]
    identify, setfeat, create_cq, create_sq, write = txns
    assert identify.params == (("opcode", IDENTIFY), ("cns", 1), ("cntid", 0))
    assert setfeat.result == 0x3F003F and setfeat.status == 0
    assert dict(create_cq.params) == {
        "opcode": 5,
        "ien": 1,
        "pc": 1,
        "qid": 1,
        "qsize": 1024,
        "vector": 1,
    }
    assert dict(create_sq.params)["qsize"] == 1024 and dict(create_sq.params)["cqid"] == 1
    assert write.written == (Extent(0x10, 8, (UNKNOWN_CONTENT,) * 8),)
    assert write.irq == write.irq_expected == 1 and write.signalled
    assert write.queue == 1 and write.cid == 4443 and write.seqs == (len(BOOT) + 1,)
    assert all("data" in t.unknown for t in txns)


def test_a_completion_without_its_interrupt_is_not_signalled() -> None:
    # The interrupt that follows is on the admin vector, not the I/O queue's.
    lines = [*BOOT, *WRITE_LINES, T + "pci_nvme_irq_msix raising MSI-X IRQ vector 0"]
    write = next(t for t in transactions(lines) if t.op == "write")
    assert write.status == 0 and write.irq is None and not write.signalled


def test_outstanding_commands_end_without_status_at_a_controller_disable() -> None:
    lines = [*BOOT, *WRITE_LINES[:2], T + "pci_nvme_mmio_stopped cleared controller enable bit"]
    write = next(t for t in transactions(lines) if t.op == "write")
    assert write.status is None


def test_write_zeroes_and_deallocate_say_what_they_leave() -> None:
    lines = [
        *BOOT,
        T + "pci_nvme_io_cmd cid 7 nsid 0x1 sqid 1 opc 0x8 opname 'NVME_NVM_CMD_WRITE_ZEROES'",
        T + "pci_nvme_write cid 7 opname 'NVME_NVM_CMD_WRITE_ZEROES' nsid 1 nlb 4 count 0 lba 0x20",
        T + "pci_nvme_enqueue_req_completion cid 7 cqid 1 dw0 0x0 dw1 0x0 status 0x0",
        T + "pci_nvme_io_cmd cid 8 nsid 0x1 sqid 1 opc 0x9 opname 'NVME_NVM_CMD_DSM'",
        T + "pci_nvme_dsm nr 2 attr 0x4",
        T + "pci_nvme_dsm_deallocate slba 100 nlb 2",
        T + "pci_nvme_dsm_deallocate slba 200 nlb 0",
        T + "pci_nvme_enqueue_req_completion cid 8 cqid 1 dw0 0x0 dw1 0x0 status 0x4002",
        T + "pci_nvme_irq_msix raising MSI-X IRQ vector 1",
    ]
    zeroes, dsm = [t for t in transactions(lines) if t.queue == 1]
    assert zeroes.written == (Extent(0x20, 4, (ZERO_BLOCK,) * 4),)
    assert dsm.written == (Extent(100, 2, (ZERO_BLOCK,) * 2),)
    assert dict(dsm.params) == {"opcode": 9, "attributes": 4, "nsid": 1, "ranges": 2}
    assert dsm.status == 0x4002


def _sqe(opcode: int, nsid: int = 0, **cdws: int) -> NvmeCommand:
    values = {f"cdw{n}": cdws.get(f"cdw{n}", 0) for n in range(10, 16)}
    return NvmeCommand(opcode, 1, nsid, 0x1000, 0, **values, psdt=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sqe", "admin", "lines"),
    [
        (_sqe(IDENTIFY, cdw10=1), True, [
            "pci_nvme_admin_cmd cid 1 sqid 0 opc 0x6 opname 'X'",
            "pci_nvme_identify cid 1 cns 0x1 ctrlid 0 csi 0x0"]),
        (_sqe(SET_FEATURES, cdw10=7, cdw11=0x10001), True, [
            "pci_nvme_admin_cmd cid 1 sqid 0 opc 0x9 opname 'X'",
            "pci_nvme_setfeat cid 1 nsid 0x0 fid 0x7 save 0x0 cdw11 0x10001"]),
        (_sqe(0x0A, cdw10=0x206), True, [  # get features, current value (select 2)
            "pci_nvme_admin_cmd cid 1 sqid 0 opc 0xa opname 'X'",
            "pci_nvme_getfeat cid 1 nsid 0x0 fid 0x6 sel 0x2 cdw11 0x0"]),
        (_sqe(0x02, nsid=0xFFFFFFFF, cdw10=0x03FF0005), True, [  # get log page, 4 KiB
            "pci_nvme_admin_cmd cid 1 sqid 0 opc 0x2 opname 'X'",
            "pci_nvme_get_log cid 1 lid 0x5 lsp 0x0 rae 0x0 len 4096 off 0"]),
        (_sqe(0x05, cdw10=0x3FF0001, cdw11=0x10003), True, [
            "pci_nvme_admin_cmd cid 1 sqid 0 opc 0x5 opname 'X'",
            "pci_nvme_create_cq create completion queue, addr=0x1000, cqid=1, vector=1, "
            "qsize=1023, qflags=3, ien=1"]),
        (_sqe(0x01, cdw10=0x3FF0001, cdw11=0x10001), True, [
            "pci_nvme_admin_cmd cid 1 sqid 0 opc 0x1 opname 'X'",
            "pci_nvme_create_sq create submission queue, addr=0x1000, sqid=1, cqid=1, "
            "qsize=1023, qflags=1"]),
        (_sqe(0x00, cdw10=1), True, [
            "pci_nvme_admin_cmd cid 1 sqid 0 opc 0x0 opname 'X'",
            "pci_nvme_del_sq deleting submission queue sqid=1"]),
        (_sqe(READ, nsid=1, cdw10=0x800, cdw12=7 | 1 << 30), False, [
            "pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc 0x2 opname 'X'",
            "pci_nvme_read cid 1 nsid 1 nlb 8 count 4096 lba 0x800"]),
        (_sqe(WRITE, nsid=1, cdw10=0x800, cdw12=7), False, [
            "pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc 0x1 opname 'X'",
            "pci_nvme_write cid 1 opname 'X' nsid 1 nlb 8 count 4096 lba 0x800"]),
        (_sqe(WRITE_ZEROES, nsid=1, cdw10=0x800, cdw12=7), False, [
            "pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc 0x8 opname 'X'",
            "pci_nvme_write cid 1 opname 'X' nsid 1 nlb 8 count 0 lba 0x800"]),
        (_sqe(0x00, nsid=1), False, [
            "pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc 0x0 opname 'X'"]),
    ],
)  # fmt: skip
def test_a_traced_command_pairs_with_the_decoded_one(
    sqe: NvmeCommand, admin: bool, lines: list[str]
) -> None:
    """The projection of what the model's decoder makes of an entry has the same key as
    what the converter makes of QEMU's lines for it (pairing needs op and params equal)."""
    op, params, written, read = command_fields(sqe, admin)
    decoded = project(Transaction(op, params, written, read, status=0))
    queue_setup = BOOT[10:] if not admin else []  # the I/O queue must exist
    completion = (
        f"pci_nvme_enqueue_req_completion cid 1 cqid {0 if admin else 1} dw0 0x0 dw1 0x0 status 0x0"
    )
    traced = [
        t
        for t in transactions([*queue_setup, *lines, completion])
        if t.queue == (0 if admin else 1) and t.cid == 1
    ]
    assert len(traced) == 1
    assert traced[0].key == decoded.key
    assert set(dict(traced[0].params)) - {"opcode"} <= set(TRACED_PARAMS[op])


def test_projection_blinds_write_data_but_not_zeroes() -> None:
    txn = Transaction(
        "write", (("opcode", WRITE), ("fua", 1), ("nsid", 1)), (Extent(0, 2, ("ab", ZERO_BLOCK)),),
        payload_in="cd",
    )  # fmt: skip
    blind = project(txn)
    assert blind.params == (("opcode", WRITE), ("nsid", 1))
    assert blind.written == (Extent(0, 2, (UNKNOWN_CONTENT,) * 2),)
    assert blind.payload_in is None and "data" in blind.unknown
    zeroes = project(Transaction("write_zeroes", (("opcode", 8),), (Extent(0, 1, (ZERO_BLOCK,)),)))
    assert zeroes.written == (Extent(0, 1, (ZERO_BLOCK,)),)


def test_the_reference_device_takes_the_models_namespace(tmp_path) -> None:
    assert reference_namespace("nvme", []) == ("nvme", 64 << 20, 512, "XVPCI0001")
    device, size, block, serial = reference_namespace(
        "nvme", ["size=1m", "block_size=4096", "serial=REF1"]
    )
    assert (device, size, block, serial) == ("nvme", 1 << 20, 4096, "REF1")
    args = reference_args(device, block, serial, tmp_path / "d.img", tmp_path / "t")
    assert (
        "nvme,drive=reference,serial=REF1,logical_block_size=4096,physical_block_size=4096" in args
    )
    assert args[args.index("-trace") + 1] == "pci_nvme_*" and "-D" in args
    with pytest.raises(HarnessError, match="no reference device in QEMU"):
        reference_namespace("edu", [])
    with pytest.raises(HarnessError, match="block_size"):
        reference_namespace("nvme", ["block_size=nope"])
