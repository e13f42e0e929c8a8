"""The NVMe controller model: admin and I/O commands, PRPs, queues, status codes."""

from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import ThreadedServer
from tests.nvme_host import ClientPort, LocalPort, NvmeHost
from vfio_bridge.client import VfioUserClient
from vfio_bridge.device.local import LocalBus
from vfio_bridge.models.nvme import ZERO_CHUNK, Namespace, Nvme
from vfio_bridge.models.nvme_spec import NvmeCommand, NvmeError, NvmeStatus, prp_segments

MEMORY = 4 << 20


def make_host(**options: object) -> tuple[NvmeHost, Nvme, LocalBus]:
    model = Nvme(**options)
    bus = LocalBus(model, memory_size=MEMORY)
    host = NvmeHost(LocalPort(bus))
    host.enable()
    return host, model, bus


@pytest.fixture
def host() -> NvmeHost:
    nvme_host, _, _ = make_host(size=8 << 20)
    assert nvme_host.create_io_queue(1, 16, vector=1).status == NvmeStatus.SUCCESS
    return nvme_host


# --- PRP walking ------------------------------------------------------------------


def memory_reader(memory: bytearray):
    def read(addr: int, n: int) -> bytes:
        return bytes(memory[addr : addr + n])

    return read


def test_prp_single_page_and_page_crossing() -> None:
    read = memory_reader(bytearray(1 << 20))
    assert prp_segments(0x5000, 0, 512, read) == [(0x5000, 512)]
    assert prp_segments(0x5F00, 0x9000, 512, read) == [(0x5F00, 256), (0x9000, 256)]
    assert prp_segments(0x5000, 0x6000, 8192, read) == [(0x5000, 8192)]  # contiguous: merged


def test_prp_list_spanning_two_list_pages() -> None:
    memory = bytearray(8 << 20)
    data_pages = [0x100000 + 0x2000 * i for i in range(20)]  # not contiguous
    list1 = 0x3FF0  # 2 entries left in this page: one data pointer, one chain pointer
    list2 = 0x7000
    struct.pack_into("<QQ", memory, list1, data_pages[1], list2)
    struct.pack_into(f"<{18}Q", memory, list2, *data_pages[2:])
    segments = prp_segments(data_pages[0] + 0x800, list1, 0x800 + 19 * 4096, memory_reader(memory))
    assert segments[0] == (data_pages[0] + 0x800, 0x800)
    assert [addr for addr, _ in segments[1:]] == data_pages[1:]
    assert sum(size for _, size in segments) == 0x800 + 19 * 4096


def test_prp_list_pointing_at_itself_terminates() -> None:
    memory = bytearray(1 << 20)
    struct.pack_into("<512Q", memory, 0x4000, *([0x8000] * 511 + [0x4000]))
    segments = prp_segments(0x1000, 0x4000, 4096 * 1200, memory_reader(memory))
    assert sum(size for _, size in segments) == 4096 * 1200


def test_prp_offsets_where_none_is_allowed() -> None:
    read = memory_reader(bytearray(1 << 20))
    with pytest.raises(NvmeError) as info:
        prp_segments(0x5000, 0x9010, 8192, read)
    assert info.value.status == NvmeStatus.PRP_OFFSET_INVALID
    memory = bytearray(1 << 20)
    struct.pack_into("<QQ", memory, 0x4000, 0x9000, 0xA008)
    with pytest.raises(NvmeError):
        prp_segments(0x5000, 0x4000, 3 * 4096, memory_reader(memory))


# --- admin commands -------------------------------------------------------------


def test_identify_controller_namespace_and_lists(host: NvmeHost) -> None:
    port = host.port
    buf = host.page()
    assert host.submit(0, 0x06, prp1=buf, cdw=(1,)).status == NvmeStatus.SUCCESS
    ctrl = port.mem_read(buf, 4096)
    assert struct.unpack_from("<H", ctrl, 0)[0] == 0x1B36
    assert ctrl[4:24].strip() == b"XVPCI0001" and ctrl[77] == 5
    assert struct.unpack_from("<I", ctrl, 516)[0] == 1  # one namespace
    assert host.submit(0, 0x06, nsid=1, prp1=buf, cdw=(0,)).status == NvmeStatus.SUCCESS
    ns = port.mem_read(buf, 4096)
    assert struct.unpack_from("<Q", ns, 0)[0] == (8 << 20) // 512
    assert (struct.unpack_from("<I", ns, 128)[0] >> 16) & 0xFF == 9  # 512-byte LBAs
    assert host.submit(0, 0x06, prp1=buf, cdw=(2,)).status == NvmeStatus.SUCCESS
    assert struct.unpack_from("<2I", port.mem_read(buf, 8)) == (1, 0)
    assert host.submit(0, 0x06, nsid=1, prp1=buf, cdw=(3,)).status == NvmeStatus.SUCCESS
    assert port.mem_read(buf, 2) == b"\x03\x10"  # a UUID descriptor


def test_features_and_log_pages(host: NvmeHost) -> None:
    done = host.submit(0, 0x0A, cdw=(0x07,))
    assert done.status == NvmeStatus.SUCCESS and done.dw0 == (15 << 16 | 15)
    assert host.submit(0, 0x09, cdw=(0x08, 0x0A05)).status == NvmeStatus.SUCCESS
    assert host.submit(0, 0x0A, cdw=(0x08,)).dw0 == 0x0A05
    buf = host.page()
    assert host.submit(0, 0x02, prp1=buf, cdw=(0x02 | (127 << 16),)).status == NvmeStatus.SUCCESS
    assert host.port.mem_read(buf + 3, 1) == b"\x64"  # available spare 100 %


def test_io_read_write_with_every_prp_form(host: NvmeHost) -> None:
    port = host.port
    cases = [
        (1, host.page(), 0),  # one block, PRP1 only
        (12, host.page() + 0x800, None),  # 6 KiB from mid-page: PRP1 + PRP2
        (200, host.page() + 0x200, "list"),  # 100 KiB: PRP list
    ]
    lba = 0
    for blocks, prp1, prp2 in cases:
        length = blocks * 512
        payload = os.urandom(length)
        pages = host.page(60)
        first = 4096 - prp1 % 4096
        if prp2 is None:
            prp2 = pages
            chunks = [(prp1, first), (pages, length - first)]
        elif prp2 == "list":
            prp_list = host.page()
            data_pages = [pages + 0x2000 * i for i in range(26)]  # scattered pages
            port.mem_write(prp_list, struct.pack(f"<{len(data_pages)}Q", *data_pages))
            prp2 = prp_list
            chunks, rest, i = [(prp1, first)], length - first, 0
            while rest > 0:
                chunks.append((data_pages[i], min(4096, rest)))
                rest -= 4096
                i += 1
        else:
            chunks = [(prp1, length)]
        pos = 0
        for addr, size in chunks:
            port.mem_write(addr, payload[pos : pos + size])
            pos += size
        write = host.submit(1, 0x01, nsid=1, prp1=prp1, prp2=prp2, cdw=(lba, 0, blocks - 1))
        assert write.status == NvmeStatus.SUCCESS
        for addr, size in chunks:
            port.mem_write(addr, bytes(size))
        read = host.submit(1, 0x02, nsid=1, prp1=prp1, prp2=prp2, cdw=(lba, 0, blocks - 1))
        assert read.status == NvmeStatus.SUCCESS
        assert b"".join(port.mem_read(a, s) for a, s in chunks) == payload
        lba += blocks


def test_write_zeroes_deallocate_and_flush(host: NvmeHost) -> None:
    port = host.port
    buf = host.page()
    port.mem_write(buf, b"\xaa" * 4096)
    assert host.submit(1, 0x01, nsid=1, prp1=buf, cdw=(10, 0, 7)).status == NvmeStatus.SUCCESS
    assert (
        host.submit(1, 0x08, nsid=1, cdw=(10, 0, 3)).status == NvmeStatus.SUCCESS
    )  # zero 4 blocks
    ranges = host.page()
    port.mem_write(ranges, struct.pack("<IIQ", 0, 2, 16))  # deallocate blocks 16, 17
    assert host.submit(1, 0x09, nsid=1, prp1=ranges, cdw=(0, 0x4)).status == NvmeStatus.SUCCESS
    assert host.submit(1, 0x00, nsid=1).status == NvmeStatus.SUCCESS
    assert host.submit(1, 0x02, nsid=1, prp1=buf, cdw=(10, 0, 7)).status == NvmeStatus.SUCCESS
    assert port.mem_read(buf, 4096) == bytes(2048) + b"\xaa" * 1024 + bytes(1024)


def test_zeroing_a_whole_namespace_allocates_a_chunk_not_the_range(tmp_path: Path) -> None:
    """A deallocate range may cover the whole namespace (mkfs discards all of it)."""
    size = 64 << 20
    namespace = Namespace(size, 512, str(tmp_path / "ns.img"))
    for lba in (0, 8191, namespace.blocks - 1):
        namespace.write(lba, b"\xaa" * 512)
    tracemalloc.start()
    try:
        namespace.zero(1, namespace.blocks - 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        contents = Path(namespace.path).read_bytes()
        namespace.close()
    assert peak <= 2 * ZERO_CHUNK
    assert contents == b"\xaa" * 512 + bytes(size - 1024) + b"\xaa" * 512


def test_queue_wrap_around_flips_the_phase() -> None:
    host, model, bus = make_host(size=1 << 20)
    assert host.create_io_queue(1, 4, vector=1).status == NvmeStatus.SUCCESS
    for i in range(1, 12):
        done = host.submit(1, 0x00, nsid=1)
        assert done.status == NvmeStatus.SUCCESS and done.sq_head == i % 4
        # The host only sees completion i if the phase tag flipped on each wrap.
        assert host.queues[1].phase == 1 ^ ((i // 4) % 2)
    assert model.cqs[1].phase == host.queues[1].phase
    assert bus.irqs and all(kind == "intx" for kind, _ in bus.irqs)  # MSI-X off: INTx


@pytest.mark.parametrize(
    ("qid", "opcode", "nsid", "cdw", "prp", "expected"),
    [
        (0, 0x7F, 0, (), (0, 0), NvmeStatus.INVALID_OPCODE),
        (1, 0x7F, 1, (), (0, 0), NvmeStatus.INVALID_OPCODE),
        (0, 0x06, 0, (0x10,), (0x20000, 0), NvmeStatus.INVALID_FIELD),
        (1, 0x02, 2, (0, 0, 0), (0x20000, 0), NvmeStatus.INVALID_NAMESPACE),
        (1, 0x02, 1, (16384, 0, 0), (0x20000, 0), NvmeStatus.LBA_OUT_OF_RANGE),
        (1, 0x02, 1, (16383, 0, 1), (0x20000, 0), NvmeStatus.LBA_OUT_OF_RANGE),
        (1, 0x02, 1, (0, 0, 15), (0x20000, 0x30010), NvmeStatus.PRP_OFFSET_INVALID),
        (1, 0x02, 1, (0, 0, 0), (0x7F000000, 0), NvmeStatus.DATA_TRANSFER_ERROR),
        (1, 0x02, 1, (0, 0, 0x1FF), (0x20000, 0x30000), NvmeStatus.INVALID_FIELD),  # over MDTS
        (0, 0x05, 0, (15 << 16 | 0,), (0x40000, 0), NvmeStatus.INVALID_QUEUE_IDENTIFIER),
        (0, 0x05, 0, (15 << 16 | 99,), (0x40000, 0), NvmeStatus.INVALID_QUEUE_IDENTIFIER),
        (0, 0x05, 0, (0 << 16 | 2,), (0x40000, 0), NvmeStatus.INVALID_QUEUE_SIZE),
        (
            0,
            0x05,
            0,
            (15 << 16 | 2, 100 << 16 | 3),
            (0x40000, 0),
            NvmeStatus.INVALID_INTERRUPT_VECTOR,
        ),
        (
            0,
            0x01,
            0,
            (15 << 16 | 2, 9 << 16 | 1),
            (0x40000, 0),
            NvmeStatus.COMPLETION_QUEUE_INVALID,
        ),
        (0, 0x00, 0, (7,), (0, 0), NvmeStatus.INVALID_QUEUE_IDENTIFIER),
        (0, 0x02, 0, (0x42 | 127 << 16,), (0x20000, 0), NvmeStatus.INVALID_LOG_PAGE),
        # 512 KiB of SMART log, over MDTS (128 KiB): refused as QEMU does, not padded.
        (0, 0x02, 0, (0x02 | 0xFFFF << 16, 1), (0x20000, 0), NvmeStatus.INVALID_FIELD),
        (0, 0x09, 0, (1 << 31 | 0x08, 0), (0, 0), NvmeStatus.FEATURE_NOT_SAVEABLE),
        (0, 0x09, 0, (0x80,), (0, 0), NvmeStatus.INVALID_FIELD),
    ],
)
def test_status_codes(
    host: NvmeHost, qid: int, opcode: int, nsid: int, cdw: tuple, prp: tuple, expected: NvmeStatus
) -> None:
    done = host.submit(qid, opcode, nsid=nsid, prp1=prp[0], prp2=prp[1], cdw=cdw)
    assert done.status == expected
    assert host.submit(1, 0x00, nsid=1).status == NvmeStatus.SUCCESS  # controller carries on


def test_async_event_limit() -> None:
    host, _, _ = make_host(size=1 << 20)
    q = host.queues[0]
    for _ in range(4):  # AERL + 1 outstanding requests are allowed and stay pending
        host.port.mem_write(q.sq_base + q.sq_tail * 64, bytes([0x0C]) + bytes(63))
        q.sq_tail += 1
    host.port.mmio_write(0x1000, 4, q.sq_tail)
    assert host.submit(0, 0x0C).status == NvmeStatus.ASYNC_EVENT_LIMIT_EXCEEDED


def test_msix_vector_per_completion_queue() -> None:
    host, model, bus = make_host(size=1 << 20)
    msix = model.config.find_capability(0x11)
    model.config.write(msix + 2, (1 << 15).to_bytes(2, "little"))
    assert host.create_io_queue(1, 8, vector=1).status == NvmeStatus.SUCCESS
    assert host.create_io_queue(2, 8, vector=2).status == NvmeStatus.SUCCESS
    bus.irqs.clear()
    host.submit(2, 0x00, nsid=1)
    host.submit(1, 0x00, nsid=1)
    assert bus.irqs == [("msix", 2), ("msix", 1)]


def test_controller_reset_and_flr_drop_queues() -> None:
    host, model, _ = make_host(size=1 << 20)
    assert host.create_io_queue(1, 8).status == NvmeStatus.SUCCESS
    host.port.mmio_write(0x14, 4, 0)
    assert not host.port.mmio_read(0x1C, 4) & 1
    assert not model.sqs and not model.cqs
    host.enable()
    assert host.create_io_queue(1, 8).status == NvmeStatus.SUCCESS  # qid 1 is free again
    pcie = model.config.find_capability(0x10)
    model.config.write(pcie + 9, b"\x80")  # initiate FLR
    assert model.regs["cc"] == 0 and not model.sqs


def test_file_backing_persists_and_4k_blocks(tmp_path: Path) -> None:
    backing = tmp_path / "ns.img"
    host, model, _ = make_host(size=1 << 20, block_size=4096, backing=str(backing))
    assert host.create_io_queue(1, 8).status == NvmeStatus.SUCCESS
    buf = host.page()
    payload = os.urandom(4096)
    host.port.mem_write(buf, payload)
    assert host.submit(1, 0x01, nsid=1, prp1=buf, cdw=(3, 0, 0)).status == NvmeStatus.SUCCESS
    model.namespace.close()
    assert backing.read_bytes()[3 * 4096 : 4 * 4096] == payload
    host2, _, _ = make_host(size=1 << 20, block_size=4096, backing=str(backing))
    assert host2.create_io_queue(1, 8).status == NvmeStatus.SUCCESS
    buf2 = host2.page()
    assert host2.submit(1, 0x02, nsid=1, prp1=buf2, cdw=(3, 0, 0)).status == NvmeStatus.SUCCESS
    assert host2.port.mem_read(buf2, 4096) == payload
    with pytest.raises(ValueError, match="block size"):
        Nvme(block_size=1024)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "dma-messages"])
def test_nvme_over_vfio_user_socket(sockdir: Path, tmp_path: Path, shared: bool) -> None:
    server = ThreadedServer("nvme", sockdir, tmp_path / "nvme.jsonl")
    try:
        with VfioUserClient(server.socket_path) as client:
            client.negotiate()
            memory = client.map_memory(0, MEMORY, shared=shared)
            host = NvmeHost(ClientPort(client, memory))
            host.enable()
            assert host.create_io_queue(1, 8, vector=1).status == NvmeStatus.SUCCESS
            buf = host.page()
            payload = os.urandom(8192)
            memory.write(buf, payload)
            assert (
                host.submit(1, 0x01, nsid=1, prp1=buf, prp2=buf + 4096, cdw=(0, 0, 15)).status == 0
            )
            memory.write(buf, bytes(8192))
            assert (
                host.submit(1, 0x02, nsid=1, prp1=buf, prp2=buf + 4096, cdw=(0, 0, 15)).status == 0
            )
            assert memory.read(buf, 8192) == payload
            assert (client.dma_requests_served > 0) is not shared
    finally:
        server.stop()


def test_a_commands_lba_range_is_read_from_the_specifications_offsets() -> None:
    # NVM Command Set, Read: SLBA in CDW10-11 (bytes 40-47 of the 64-byte entry),
    # NLB zero-based in CDW12 bits 15:0 (bytes 48-49); FUA is CDW12 bit 30.
    raw = bytearray(64)
    raw[0] = 0x02  # Read
    raw[40:48] = (0x1_2345_6789).to_bytes(8, "little")
    raw[48:52] = ((1 << 30) | 7).to_bytes(4, "little")
    assert NvmeCommand.parse(bytes(raw)).lba_range() == (0x1_2345_6789, 8)
