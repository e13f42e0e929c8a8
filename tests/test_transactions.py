"""The transaction level: decoders on real logs, the transaction diff, perturbations found
at the command they hit, the reports and the CLI's --level.

The fixtures are logs recorded by ``xvpci run --model nvme --workload fio-pattern``
(direct and window paths), xz-compressed; perturbation tests modify copies of them.
"""

from __future__ import annotations

import itertools
import json
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.difflog import Rules
from harness.difflog.reader import LogInfo
from harness.difflog.transactions import (
    TransactionResult,
    diff_transaction_logs,
    diff_transactions,
)
from tests.conftest import ThreadedServer
from vfio_bridge import logformat
from vfio_bridge.logformat import block_digests, payload_digest, split_block_digests
from vfio_bridge.models import DECODERS
from vfio_bridge.models.nvme import FLUSH, READ, WRITE
from vfio_bridge.models.nvme_spec import CompletionEntry, NvmeStatus
from vfio_bridge.transaction import ZERO_BLOCK, Extent, Transaction

FIXTURES = Path(__file__).parent / "fixtures"
Events = list[dict]


def fixture_log(name: str, tmp_path: Path, edit: Callable[[Events], object] | None = None) -> Path:
    """A recorded log, decompressed into ``tmp_path``; ``edit`` may change its events."""
    lines = lzma.decompress((FIXTURES / f"{name}.jsonl.xz").read_bytes()).decode().splitlines()
    header, events, trailer = lines[0], [json.loads(line) for line in lines[1:-1]], lines[-1]
    if edit is not None:
        edit(events)
        trailer = json.dumps(logformat.trailer(len(events)))  # as a server would have ended it
    path = tmp_path / f"{Path(name).name}.jsonl"
    path.write_text("\n".join([header, *(json.dumps(e) for e in events), trailer]) + "\n")
    return path


def decode(path: Path) -> list[Transaction]:
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    events = (json.loads(line) for line in lines[1:-1])
    return list(DECODERS[header["model"]](header, events))


def data_events(events: Events, write: bool) -> Events:
    """Untagged DMA carrying block data: reads' data (device writes memory) or writes'."""
    kind = "dma_write" if write else "dma_read"
    return [e for e in events if e["kind"] == kind and "blocks" in e]


# --- log format: per-block digests ---------------------------------------------------


def test_block_digests_change_only_for_the_block_that_changed() -> None:
    data = bytearray(4 * 512)
    before = split_block_digests(block_digests(bytes(data), 512))
    data[2 * 512 + 7] ^= 1
    after = split_block_digests(block_digests(bytes(data), 512))
    assert len(before) == len(after) == 4
    assert [i for i in range(4) if before[i] != after[i]] == [2]
    assert before[0] == before[1] == before[3] == after[0]  # zero blocks digest alike


@pytest.mark.parametrize("length", [0, 1, 511, 512, 513, 4096, 131072, 131072 + 100])
def test_block_digests_are_each_blocks_xxh3_64_in_big_endian_hex(length: int) -> None:
    """The log format's definition (Rule 5), whatever the fast path cuts and joins:
    a last partial block is digested as it is."""
    import xxhash

    data = bytes((i * 131 + i // 512) & 0xFF for i in range(length))
    for size in (512, 4096):
        expected = [
            f"{xxhash.xxh3_64_intdigest(data[i : i + size]):016x}" for i in range(0, length, size)
        ]
        assert list(split_block_digests(block_digests(data, size))) == expected


# --- the NVMe decoder on real logs ---------------------------------------------------


def test_nvme_decoder_on_a_recorded_fio_log(tmp_path: Path) -> None:
    path = fixture_log("fio-pattern-direct", tmp_path)
    events = {
        e["seq"]: e for e in json.loads("[" + ",".join(path.read_text().splitlines()[1:-1]) + "]")
    }
    txns = decode(path)
    ops = {op: sum(1 for t in txns if t.op == op) for op in {t.op for t in txns}}
    # fio-pattern: 2048 4 KiB pattern writes, their verify reads, 64 128 KiB reads
    assert ops["write"] == 2048 and ops["read"] == 2115
    assert ops["create_cq"] == ops["create_sq"] == 1
    assert all(t.status == NvmeStatus.SUCCESS for t in txns if t.op != "identify")
    assert all(t.signalled and t.irq is not None for t in txns)
    writes = [t for t in txns if t.op == "write"]
    assert all(len(t.written) == 1 and t.written[0].blocks == 8 for t in writes)
    assert all(len(t.written[0].digests) == 8 for t in writes)
    assert all(t.queue == 1 and t.params[0] == ("opcode", 1) for t in writes)
    # the events a write is made of: doorbell, entry, data, completion, interrupt
    first = writes[0]
    kinds = [(events[s]["kind"], events[s].get("tag")) for s in first.seqs]
    assert kinds == [
        ("mmio_write", None),
        ("dma_read", "sqe"),
        ("dma_read", None),
        ("dma_write", "cqe"),
        ("irq", None),
    ]
    assert events[first.seqs[0]]["offset"] == 0x1008  # SQ1TDBL
    cqe = CompletionEntry.parse(bytes.fromhex(events[first.seqs[3]]["data"]))
    assert cqe.cid == first.cid and cqe.sq_id == first.queue
    entry = events[first.seqs[2]]
    assert first.written[0].digests == split_block_digests(entry["blocks"])
    # the pattern written, 0x5a6b7c8d repeated, is what every written block holds
    pattern = bytes.fromhex("5a6b7c8d") * 128
    assert set(first.written[0].digests) == {split_block_digests(block_digests(pattern, 512))[0]}


def test_nvme_decoder_finds_the_admin_commands_parameters(tmp_path: Path) -> None:
    txns = decode(fixture_log("fio-pattern-window", tmp_path))
    create_cq = next(t for t in txns if t.op == "create_cq")
    assert create_cq.param("qid") == 1 and create_cq.param("ien") == 1
    assert create_cq.param("vector") == 1 and create_cq.queue == 0
    identify = [t for t in txns if t.op == "identify"]
    assert {t.param("cns") for t in identify} >= {0x0, 0x1}
    assert all(t.payload_out for t in identify if t.status == 0)


# --- the diff on real logs, and perturbations found at their command -----------------


def test_fio_direct_and_window_are_equivalent_transactions(tmp_path: Path) -> None:
    result = diff_transaction_logs(
        fixture_log("fio-pattern-direct", tmp_path), fixture_log("fio-pattern-window", tmp_path)
    )
    assert result.equivalent, [d.detail for d in result.divergences[:5]]
    assert result.paired == 4173 and result.unpaired_a == result.unpaired_b == 0
    assert result.blocks_written == 16384  # 8 MiB of 512-byte blocks
    assert result.blocks_read_checked > 16384
    # each side's timeline starts at its own first command (the boots take different times)
    assert result.timeline["A"][0][0] == result.timeline["B"][0][0] == 0


def _perturbed(tmp_path: Path, edit: Callable[[Events], object]) -> TransactionResult:
    return diff_transaction_logs(
        fixture_log("fio-pattern-direct", tmp_path),
        fixture_log("fio-pattern-window", tmp_path, edit),
    )


def test_a_read_returning_a_changed_byte_is_found_at_that_read(tmp_path: Path) -> None:
    changed = {}

    def flip(events: Events) -> None:
        event = data_events(events, write=True)[100]  # the 101st read's data
        blocks = list(split_block_digests(event["blocks"]))
        blocks[3] = "0123456789abcdef"
        event["blocks"] = "".join(blocks)
        event["digest"] = payload_digest(b"changed")
        changed["seq"] = event["seq"]

    result = _perturbed(tmp_path, flip)
    assert not result.equivalent
    hits = [d for d in result.divergences if d.kind == "data"]
    assert hits and all(changed["seq"] in d.seqs_b for d in hits)
    hit = hits[0]
    assert hit.b is not None and hit.b.op == "read" and hit.side in ("B", "both")
    assert hit.lba == hit.b.read[0].lba + 3
    assert "read LBA" in hit.command and str(hit.lba) in hit.detail
    assert result.by_kind.keys() == {"data"}  # nothing else moved


def test_a_command_completing_with_another_status_is_found_at_that_command(
    tmp_path: Path,
) -> None:
    changed = {}

    def fail(events: Events) -> None:
        cqes = [e for e in events if e.get("tag") == "cqe"]
        event = cqes[500]
        raw = bytearray(bytes.fromhex(event["data"]))
        raw[14:16] = ((NvmeStatus.INTERNAL_ERROR << 1) | (raw[14] & 1)).to_bytes(2, "little")
        event["data"] = raw.hex()
        changed["seq"] = event["seq"]

    result = _perturbed(tmp_path, fail)
    [hit] = [d for d in result.divergences if d.kind == "status"]
    assert changed["seq"] in hit.seqs_b
    assert hit.a is not None and hit.b is not None and hit.a.key == hit.b.key
    assert hit.b.status == NvmeStatus.INTERNAL_ERROR and hit.a.status == 0
    assert f"{NvmeStatus.INTERNAL_ERROR:#05x}" in hit.detail


def test_an_interrupt_not_raised_is_found_at_the_command_it_signalled(tmp_path: Path) -> None:
    removed = {}

    def drop(events: Events) -> None:
        cqes = [i for i, e in enumerate(events) if e.get("tag") == "cqe"]
        index = cqes[700]
        irq = next(
            i
            for i in range(index, len(events))
            if events[i]["kind"] == "irq" and "stream" not in events[i]
        )
        removed["cqe"] = events[index]["seq"]
        removed["irq"] = events[irq]["seq"]
        del events[irq]

    result = _perturbed(tmp_path, drop)
    hits = [d for d in result.divergences if d.kind == "interrupt"]
    assert len(hits) == 1 and result.total_divergences == 1
    hit = hits[0]
    assert hit.side == "B" and removed["cqe"] in hit.seqs_b
    assert hit.b is not None and hit.b.irq is None and hit.b.irq_expected == 1
    assert hit.a is not None and hit.a.irq == 1


def _move(events: Events, index: int, to: int) -> None:
    """Move ``events[index]`` to before ``events[to]`` and number the events again in
    file order, as the recorder would have (the decoder orders by ``seq``)."""
    event = events.pop(index)
    events.insert(to - 1 if to > index else to, event)
    for seq, e in enumerate(events):
        e["seq"] = seq


def _io_entry(event: dict, opcode: int) -> bool:
    """An entry fetch of an I/O command (namespace 1: admin entries name none) of ``opcode``."""
    if event.get("tag") != "sqe":
        return False
    entry = bytes.fromhex(event["data"])
    return entry[0] == opcode and int.from_bytes(entry[4:8], "little") == 1


def _io_doorbell(event: dict) -> bool:
    return event["kind"] == "mmio_write" and event["offset"] == 0x1008 and "stream" not in event


def test_real_runs_keep_the_order_the_specification_imposes(tmp_path: Path) -> None:
    """Rule 5 flags nothing on recorded runs: every read and write moved its data before
    its completion; the fs-verify pair's 24 flushes each."""
    for name in ("fs-verify", "fio-pattern", "logs/nvme-fs-verify"):  # two fs-verify runs
        verdict = diff_transaction_logs(
            fixture_log(f"{name}-direct", tmp_path), fixture_log(f"{name}-window", tmp_path)
        )
        assert verdict.equivalent and not verdict.by_kind["order"]
        assert verdict.ops_a["write"] > 100
    txns = decode(fixture_log("fs-verify-direct", tmp_path))
    flushes = [t for t in txns if t.op == "flush"]
    assert len(flushes) == 24 and all(t.submitted is not None for t in flushes)
    io = [t for t in txns if t.op in ("read", "write")]
    assert all(t.data_moved and t.data_moved[1] < t.completed for t in io)  # type: ignore[operator]


def test_a_read_completed_before_its_data_is_found_at_that_read(tmp_path: Path) -> None:
    """ "A completion after its command's data": the completion entry of one read of a
    recorded run moved before the read's data (the host may read the buffer at once)."""
    hit: dict = {}

    def complete_early(events: Events) -> None:
        fetch = [i for i, e in enumerate(events) if _io_entry(e, READ)][40]
        data = next(i for i in range(fetch, len(events)) if events[i]["kind"] == "dma_write")
        assert "tag" not in events[data] and "blocks" in events[data]  # the read's data
        cqe = next(i for i in range(data, len(events)) if events[i].get("tag") == "cqe")
        hit["data"] = events[data]
        _move(events, cqe, data)

    verdict = diff_transaction_logs(
        fixture_log("fs-verify-direct", tmp_path, complete_early),
        fixture_log("fs-verify-window", tmp_path),
    )
    [divergence] = verdict.divergences
    assert divergence.kind == "order" and divergence.side == "A"
    assert divergence.a is not None and divergence.a.op == "read"
    assert "posted before its data moved" in divergence.detail
    assert hit["data"]["seq"] in divergence.seqs_a  # linked to the raw events


def test_a_flush_covering_a_write_whose_data_had_not_moved_is_found_at_that_write(
    tmp_path: Path,
) -> None:
    """A Flush covers the writes completed before it was submitted: here one write of a
    recorded fs-verify run moves its data only after the next flush's doorbell (what
    ``perturb=late_data@N`` makes the model do)."""
    hit: dict = {}

    def hold_data(events: Events) -> None:
        fetches = [i for i, e in enumerate(events) if e.get("tag") == "sqe"]
        for fetch, after in itertools.pairwise(fetches):
            if _io_entry(events[fetch], WRITE) and _io_entry(events[after], FLUSH):
                break
        else:
            raise AssertionError("no write followed by a flush")
        data = next(
            i
            for i in range(fetch, after)
            if events[i]["kind"] == "dma_read" and "tag" not in events[i]
        )
        doorbell = max(i for i in range(fetch, after) if _io_doorbell(events[i]))
        hit["write"] = events[fetch]
        _move(events, data, doorbell + 1)

    verdict = diff_transaction_logs(
        fixture_log("fs-verify-direct", tmp_path, hold_data),
        fixture_log("fs-verify-window", tmp_path),
    )
    [divergence] = verdict.divergences
    assert divergence.kind == "order" and divergence.side == "A"
    assert divergence.a is not None and divergence.a.op == "write"
    assert hit["write"]["seq"] in divergence.seqs_a  # the write whose data was held
    assert "the flush submitted in between" in divergence.detail
    assert divergence.lba == divergence.a.written[0].lba


def test_a_write_storing_other_data_shows_in_the_blocks_it_wrote(tmp_path: Path) -> None:
    def corrupt(events: Events) -> None:
        event = data_events(events, write=False)[10]  # the 11th write's data
        blocks = list(split_block_digests(event["blocks"]))
        blocks[0] = "fedcba9876543210"
        event["blocks"] = "".join(blocks)

    result = _perturbed(tmp_path, corrupt)
    assert not result.equivalent
    kinds = {d.kind for d in result.divergences}
    assert "end_state" in kinds or "blocks" in kinds or "data" in kinds


# --- the diff's rules on synthetic transactions ------------------------------------


def _info(name: str) -> LogInfo:
    return LogInfo(Path(name), {"model": "nvme", "start_t_ns": 0})


def _write(lba: int, contents: str, seq: int = 0, queue: int = 1) -> Transaction:
    digests = tuple(c * 16 for c in contents)
    return Transaction(
        "write", (("opcode", 1), ("fua", 0), ("nsid", 1)),
        written=(Extent(lba, len(contents), digests),),
        status=0, irq=queue, irq_expected=queue, queue=queue, seqs=(seq,),
    )  # fmt: skip


def _read(lba: int, contents: str, seq: int = 0) -> Transaction:
    return Transaction(
        "read", (("opcode", 2), ("fua", 0), ("nsid", 1)),
        read=(Extent(lba, len(contents), tuple(c * 16 for c in contents)),),
        status=0, irq=1, irq_expected=1, queue=1, seqs=(seq,),
    )  # fmt: skip


def _diff(
    a: list[Transaction], b: list[Transaction], rules: Rules | None = None
) -> TransactionResult:
    return diff_transactions(a, b, _info("a"), _info("b"), rules)


def test_merged_split_and_reordered_writes_are_equivalent() -> None:
    a = [_write(0, "abcdefgh"), _write(100, "xy"), _read(0, "abcd")]
    b = [_write(100, "xy", queue=2), _write(4, "efgh"), _write(0, "abcd"), _read(2, "cdef")]
    result = _diff(a, b)
    assert result.equivalent, [d.detail for d in result.divergences]
    assert result.paired == 1 and result.unpaired_a == 2 and result.unpaired_b == 3


def test_a_block_written_differently_is_named_with_its_commands() -> None:
    result = _diff(
        [_write(0, "abcdefgh", seq=7)], [_write(0, "abcd", seq=9), _write(4, "eXgh", seq=11)]
    )
    [hit] = result.divergences
    assert hit.kind == "end_state" and hit.lba == 5 and hit.blocks == 1
    assert hit.seqs_a == (7,) and hit.seqs_b == (11,)
    assert "write LBA 4+4" in hit.detail and "write LBA 0+8" in hit.detail


def test_a_read_must_return_what_its_side_wrote() -> None:
    result = _diff([_write(0, "ab"), _read(0, "ab")], [_write(0, "ab"), _read(0, "aX", seq=5)])
    assert [d.kind for d in result.divergences] == ["data"]
    hit = result.divergences[0]
    assert hit.side == "B" and hit.lba == 1 and hit.seqs_b == (5,)


def test_reads_of_blocks_never_written_compare_across_sides() -> None:
    result = _diff([_read(50, "zz")], [_read(50, "zq"), _read(49, "q")])
    [hit] = result.divergences
    assert hit.kind == "data" and hit.lba == 51


def test_intermediate_writes_differ_and_rules_can_accept_it() -> None:
    a = [_write(5, "x"), _write(5, "y")]
    b = [_write(5, "y")]
    assert [d.kind for d in _diff(a, b).divergences] == ["blocks"]
    rules = Rules().merge({"transaction": {"block_history": False}})
    assert _diff(a, b, rules).equivalent


def test_rules_can_leave_blocks_out() -> None:
    a, b = [_write(8, "ab")], [_write(8, "aZ")]
    assert not _diff(a, b).equivalent
    rules = Rules().merge({"transaction": {"ignore_blocks": [[9, 1]]}})
    assert _diff(a, b, rules).equivalent


def test_an_admin_command_on_one_side_only_diverges_but_an_extra_flush_does_not() -> None:
    identify = Transaction("identify", (("opcode", 6), ("cns", 1)), status=0, queue=0)
    flush = Transaction("flush", (("opcode", 0), ("nsid", 1)), status=0, queue=1)
    result = _diff([identify, flush, flush], [flush])
    assert [(d.kind, d.side) for d in result.divergences] == [("unmatched", "A")]


def test_an_unpaired_failed_write_diverges() -> None:
    failed = Transaction(
        "write", (("opcode", 1),), written=(Extent(0, 1, ("a" * 16,)),), status=0x6, queue=1
    )
    result = _diff([_write(0, "a")], [failed])
    assert "status" in {d.kind for d in result.divergences}


def test_zero_blocks_written_and_zeroes_read_agree() -> None:
    zeroes = Transaction(
        "write_zeroes", (("opcode", 8),), written=(Extent(0, 2, (ZERO_BLOCK,) * 2),), status=0
    )
    read = Transaction("read", (("opcode", 2),), read=(Extent(0, 2, (ZERO_BLOCK,) * 2),), status=0)
    assert _diff([zeroes, read], [zeroes, read]).equivalent


def test_fields_a_source_cannot_supply_are_not_compared_and_are_reported() -> None:
    a = _write(0, "ab")
    b = Transaction(
        "write", a.params, written=(Extent(0, 2),), status=0, queue=1, unknown=frozenset({"data"})
    )
    result = _diff([a], [b])
    assert "data" in result.not_compared


# --- edu: a log recorded through the real server ---------------------------------------


def test_edu_decoder_on_a_recorded_log(sockdir: Path, tmp_path: Path) -> None:
    from vfio_bridge.client import VfioUserClient
    from vfio_bridge.protocol import Region

    bar0, config = Region.BAR0, Region.CONFIG
    server = ThreadedServer("edu", sockdir, tmp_path / "edu.jsonl")
    try:
        with VfioUserClient(server.socket_path) as client:
            client.negotiate()
            memory = client.map_memory(0x100000, 0x10000, shared=True)
            client.region_write(config, 0x04, (0x6).to_bytes(2, "little"))
            client.write32(bar0, 0x04, 0x0F0F0F0F)
            assert client.read32(bar0, 0x04) == 0xF0F0F0F0
            client.write32(bar0, 0x08, 5)
            assert client.read32(bar0, 0x08) == 120
            memory.write(0x100000, b"\x11" * 64)
            for reg, value in ((0x80, 0x100000), (0x88, 0x40000), (0x90, 64), (0x98, 0x1)):
                client.write64(bar0, reg, value)
            client.read64(bar0, 0x98)
    finally:
        server.stop()
    txns = decode(tmp_path / "edu.jsonl")
    by_op = {t.op: t for t in txns}
    assert by_op["liveness"].result == 0xF0F0F0F0
    assert by_op["factorial"].param("n") == 5 and by_op["factorial"].result == 120
    dma = by_op["dma_from_ram"]
    assert dma.param("count") == 64 and dma.param("buffer_offset") == 0
    assert dma.payload_in == payload_digest(b"\x11" * 64) and dma.status == 0


def _served_nvme_writes(
    sockdir: Path,
    tmp_path: Path,
    name: str,
    data: bytes,
    options: tuple[str, ...] = (),
    flush: bool = False,
) -> Path:
    """A served NVMe model (its real log) given one write of ``data`` at LBA 8 (then a
    flush, with ``flush``) and a read of it back, by the test host driver over a
    vfio-user socket, one command at a time."""
    from tests.nvme_host import ClientPort, NvmeHost
    from vfio_bridge.client import VfioUserClient

    log = tmp_path / f"{name}.jsonl"
    server = ThreadedServer("nvme", sockdir, log, options)
    try:
        with VfioUserClient(server.socket_path) as client:
            client.negotiate()
            host = NvmeHost(ClientPort(client, client.map_memory(0, 4 << 20)))
            host.enable()
            assert host.create_io_queue(1, 8, vector=1).status == NvmeStatus.SUCCESS
            page = host.page()
            host.port.mem_write(page, data)
            blocks = len(data) // 512
            assert host.submit(1, 0x01, 1, page, cdw=(8, 0, blocks - 1)).status == 0
            if flush:
                assert host.submit(1, FLUSH, 1).status == 0
            assert host.submit(1, 0x02, 1, host.page(), cdw=(8, 0, blocks - 1)).status == 0
    finally:
        server.stop()
    return log


def test_block_digests_off_leaves_block_data_uncompared_and_says_so(
    sockdir: Path, tmp_path: Path
) -> None:
    """The model option ``block_digests=off`` (README: what it costs to turn off): the
    log has no per-block digests, two runs writing different data are then EQUIVALENT,
    with block data named as not compared; with the default they diverge at those blocks."""
    first, second = bytes(range(256)) * 8, bytes(range(255, -1, -1)) * 8  # 4 blocks each
    runs = {
        (digests, n): _served_nvme_writes(
            sockdir, tmp_path, f"{digests}{n}", data, (f"block_digests={digests}",)
        )
        for digests in ("on", "off")
        for n, data in enumerate((first, second))
    }
    events = [json.loads(line) for line in runs[("off", 0)].read_text().splitlines()[1:-1]]
    assert not any("blocks" in e for e in events)
    [write] = [t for t in decode(runs[("on", 0)]) if t.op == "write"]
    assert write.written == (Extent(8, 4, split_block_digests(block_digests(first, 512))),)
    default = diff_transaction_logs(runs[("on", 0)], runs[("on", 1)])
    assert not default.equivalent and "data" not in default.not_compared
    assert {(d.kind, d.lba, d.blocks) for d in default.divergences} == {("end_state", 8, 4)}
    off = diff_transaction_logs(runs[("off", 0)], runs[("off", 1)])
    assert off.equivalent and off.not_compared == {"data"}


def test_the_model_holding_a_writes_data_past_a_flush_is_found_at_that_write(
    sockdir: Path, tmp_path: Path
) -> None:
    """``perturb=late_data@1``: the model completes the first write and takes its data
    only when it fetches the next entry, the flush the host submitted after seeing the
    write complete. Against the same commands unperturbed: one ``order`` divergence, at
    that write; its data did arrive, so the blocks agree."""
    data = bytes(range(256)) * 8
    held = _served_nvme_writes(
        sockdir, tmp_path, "held", data, ("perturb=late_data@1",), flush=True
    )
    right = _served_nvme_writes(sockdir, tmp_path, "right", data, flush=True)
    verdict = diff_transaction_logs(held, right)
    [divergence] = verdict.divergences
    assert divergence.kind == "order" and divergence.side == "A"
    assert divergence.a is not None and divergence.a.op == "write"
    assert (divergence.lba, divergence.blocks) == (8, 4)
    assert "the flush submitted in between" in divergence.detail
    assert diff_transaction_logs(right, right).equivalent


# --- reports and the command line -------------------------------------------------------


def test_cli_level_picks_the_verdict_and_reports_carry_both(tmp_path: Path, capsys) -> None:
    def noise(events: Events) -> None:
        # A status poll answered differently: raw events differ, no command does.
        read = next(e for e in events if e["kind"] == "mmio_read" and e["offset"] == 0x8)
        read["value"] ^= 0x100

    a = fixture_log("fio-pattern-direct", tmp_path)
    b = fixture_log("fio-pattern-window", tmp_path, noise)
    html, js, junit = tmp_path / "d.html", tmp_path / "d.json", tmp_path / "d.xml"
    status = main(
        ["diff", str(a), str(b), "--html", str(html), "--json", str(js), "--junit", str(junit)]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "EQUIVALENT (transactions)" in out and "DIVERGED:" in out  # raw as context
    assert main(["diff", str(a), str(b), "--level", "raw"]) == 1
    data = json.loads(js.read_text())
    assert data["verdict"] == {"level": "transaction", "equivalent": True}
    assert data["transaction"]["paired"] == 4173 and data["equivalent"] is False
    page = html.read_text()
    assert '<svg class="timeline"' in page and "queue 1" in page
    assert "xvpci.transactions" in junit.read_text()


def test_html_marks_divergences_on_the_timeline_and_names_registers(tmp_path: Path) -> None:
    def fail(events: Events) -> None:
        event = [e for e in events if e.get("tag") == "cqe"][600]
        raw = bytearray(bytes.fromhex(event["data"]))
        raw[14] |= 0x0C  # some status
        event["data"] = raw.hex()

    a = fixture_log("fio-pattern-direct", tmp_path)
    b = fixture_log("fio-pattern-window", tmp_path, fail)
    html = tmp_path / "d.html"
    assert main(["diff", str(a), str(b), "--html", str(html)]) == 1
    page = html.read_text()
    assert 'href="#t0"' in page and 'id="t0"' in page  # marker linked to the divergence
    assert "SQ1TDBL" in page  # the doorbell that submitted it, by its declared name
    assert "mmio_write bar0+0x1008" not in page


@pytest.mark.parametrize(
    "rules", ["[transaction]\nbogus = 1\n", "[transaction]\nignore_blocks = [1]\n"]
)
def test_bad_transaction_rules_are_user_errors(tmp_path: Path, rules: str, capsys) -> None:
    a = fixture_log("fio-pattern-direct", tmp_path)
    path = tmp_path / "rules.toml"
    path.write_text(rules)
    assert main(["diff", str(a), str(a), "--rules", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


# --- fs-verify: a real file system, batched differently on each boot ---------------------


def test_fs_verify_is_equivalent_in_transactions_while_raw_events_diverge(tmp_path: Path) -> None:
    from harness.difflog import diff_logs

    a, b = fixture_log("fs-verify-direct", tmp_path), fixture_log("fs-verify-window", tmp_path)
    raw = diff_logs(a, b)
    assert not raw.equivalent and raw.by_kind["missing"] and raw.by_kind["extra"]
    result = diff_transaction_logs(a, b)
    assert result.equivalent, [d.detail for d in result.divergences[:5]]
    assert result.ops_a["write"] > 100 and result.ops_a["flush"] > 0
    assert result.ops_a["dataset_management"] and result.ops_a["write_zeroes"]  # mkfs
    assert result.blocks_written == 131072  # mkfs discarded the whole 64 MiB namespace
    assert result.registers_compared == ["cc", "aqa"]


def test_fs_verify_block_written_differently_is_named_with_its_write(tmp_path: Path) -> None:
    changed = {}

    def corrupt(events: Events) -> None:
        event = data_events(events, write=False)[60]  # a write's data (dma_read by the device)
        blocks = list(split_block_digests(event["blocks"]))
        blocks[1] = "00000000deadbeef"
        event["blocks"] = "".join(blocks)
        changed["seq"] = event["seq"]

    result = diff_transaction_logs(
        fixture_log("fs-verify-direct", tmp_path),
        fixture_log("fs-verify-window", tmp_path, corrupt),
    )
    assert not result.equivalent
    blocks = [d for d in result.divergences if d.kind in ("end_state", "blocks")]
    assert blocks and blocks[0].b is not None and changed["seq"] in blocks[0].seqs_b
    assert blocks[0].b.op == "write" and blocks[0].lba == blocks[0].b.written[0].lba + 1
    assert "00000000dead" in blocks[0].detail  # the content that differs, and by which write


def test_a_state_register_ending_differently_diverges(tmp_path: Path) -> None:
    def shut_down_differently(events: Events) -> None:
        cc = [e for e in events if e["kind"] == "mmio_write" and e["offset"] == 0x14]
        cc[-1]["value"] ^= 0x4000  # CC.SHN

    result = diff_transaction_logs(
        fixture_log("fs-verify-direct", tmp_path),
        fixture_log("fs-verify-window", tmp_path, shut_down_differently),
    )
    [hit] = result.divergences
    assert hit.kind == "register" and "register cc" in hit.detail


# --- the NVMe decoder on a log recorded through the real server ---------------------------


def test_nvme_decoder_on_errors_outstanding_commands_and_queues_without_interrupts(
    sockdir: Path, tmp_path: Path
) -> None:
    import os

    from tests.nvme_host import SQE, ClientPort, NvmeHost, Queue
    from vfio_bridge.client import VfioUserClient

    server = ThreadedServer("nvme", sockdir, tmp_path / "nvme.jsonl")
    payload = os.urandom(4096)
    try:
        with VfioUserClient(server.socket_path) as client:
            client.negotiate()
            memory = client.map_memory(0, 1 << 22, shared=True)
            host = NvmeHost(ClientPort(client, memory))
            host.enable()
            assert host.create_io_queue(1, 8, vector=1).status == 0
            cq, sq = host.page(), host.page()  # queue 2: interrupts off (IEN clear)
            assert host.submit(0, 0x05, prp1=cq, cdw=(7 << 16 | 2, 2 << 16 | 0x1)).status == 0
            assert host.submit(0, 0x01, prp1=sq, cdw=(7 << 16 | 2, 2 << 16 | 0x1)).status == 0
            host.queues[2] = Queue(2, sq, cq, 8)
            buf = host.page()
            memory.write(buf, payload)
            assert host.submit(1, 0x01, nsid=1, prp1=buf, cdw=(16, 0, 7)).status == 0
            assert host.submit(2, 0x02, nsid=1, prp1=buf, cdw=(16, 0, 7)).status == 0
            assert host.submit(1, 0x7F, nsid=1).status == NvmeStatus.INVALID_OPCODE
            admin = host.queues[0]  # an async event request: never completes
            memory.write(
                admin.sq_base + admin.sq_tail * 64, SQE.pack(0x0C, 0, 99, 0, 0, 0, *[0] * 6)
            )
            admin.sq_tail += 1
            client.write32(0, 0x1000, admin.sq_tail)
            client.read32(0, 0x1C)
    finally:
        server.stop()
    txns = decode(tmp_path / "nvme.jsonl")
    write = next(t for t in txns if t.op == "write")
    assert write.written == (Extent(16, 8, split_block_digests(block_digests(payload, 512))),)
    assert write.signalled and write.irq_expected == 1 and write.queue == 1
    read = next(t for t in txns if t.op == "read")
    assert read.read[0].digests == write.written[0].digests and read.queue == 2
    assert read.irq_expected is None and read.signalled  # no interrupt was due
    bad = next(t for t in txns if t.op == "io_0x7f")
    assert bad.status == NvmeStatus.INVALID_OPCODE and bad.signalled
    aer = next(t for t in txns if t.op == "async_event")
    assert aer.status is None and aer.cid == 99 and aer.queue == 0
