"""Hostile guest input through the models, over a real vfio-user socket.

Each case must end in a defined device-level error (an error reply, an NVMe
status, a DMA that does not happen, an interrupt that is not sent) and a
``device_error`` event in the transaction log, with the server still serving.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ThreadedServer, read_log
from tests.nvme_host import ClientPort, NvmeHost
from tests.test_server import BAR0, CONFIG, enable_bus_master, run_edu_dma
from vfio_bridge.client import ClientError, VfioUserClient
from vfio_bridge.models.nvme_spec import NvmeStatus

EDU_ID = 0x010000ED


def logged_events(server: ThreadedServer, client: VfioUserClient) -> list[dict]:
    """The events the server has logged for every request answered so far.

    The server flushes its log after each burst, before it reads the next
    request; one more round trip therefore guarantees the earlier ones are on
    disk, without touching the recorder from this thread.
    """
    client.region_read(CONFIG, 0, 2)
    return read_log(server.log_path)[1]


def device_errors(server: ThreadedServer, client: VfioUserClient) -> list[dict]:
    return [e for e in logged_events(server, client) if e["kind"] == "device_error"]


@contextlib.contextmanager
def serving(
    model: str, sockdir: Path, tmp_path: Path
) -> Iterator[tuple[ThreadedServer, VfioUserClient]]:
    """A threaded server for ``model`` with a negotiated client; stopped on exit."""
    server = ThreadedServer(model, sockdir, tmp_path / f"{model}.jsonl")
    try:
        with VfioUserClient(server.socket_path) as client:
            client.negotiate()
            yield server, client
    finally:
        server.stop()


@pytest.fixture
def edu(sockdir: Path, tmp_path: Path) -> Iterator[tuple[ThreadedServer, VfioUserClient]]:
    with serving("edu", sockdir, tmp_path) as served:
        yield served


@pytest.mark.parametrize(
    ("offset", "count", "err"),
    [
        (0x100000, 4, errno.EINVAL),  # just past the 1 MiB BAR
        (0xFFFFC, 8, errno.EINVAL),  # straddles the end
        ((1 << 64) - 4, 8, errno.EINVAL),  # offset + count overflows 64 bits
        (0, 0, errno.EINVAL),  # no width at all
        (0, (1 << 20) + 1, errno.E2BIG),  # wider than the negotiated transfer size
    ],
)
def test_out_of_range_bar_accesses(edu, offset: int, count: int, err: int) -> None:
    server, client = edu
    with pytest.raises(ClientError) as info:
        client.region_read(BAR0, offset, count)
    assert info.value.errno == err
    with pytest.raises(ClientError) as info:
        client.region_write(BAR0, offset, bytes(count))
    assert info.value.errno == err
    assert client.read32(BAR0, 0) == EDU_ID
    refused = device_errors(server, client)
    assert [e["error"] for e in refused] == ["refused", "refused"]
    assert all(f"command {cmd}:" in e["detail"] for cmd, e in zip((9, 10), refused, strict=True))


def test_odd_widths_are_split_into_aligned_accesses(edu) -> None:
    server, client = edu
    client.write32(BAR0, 0x04, 0x12345678)  # liveness register: reads back inverted
    raw = client.region_read(BAR0, 0x01, 6)  # unaligned, not a power of two
    assert (
        raw
        == (0x010000ED).to_bytes(4, "little")[1:]
        + (~0x12345678 & 0xFFFFFFFF).to_bytes(4, "little")[:3]
    )
    events = logged_events(server, client)
    reads = [(e["offset"], e["size"]) for e in events if e["kind"] == "mmio_read"]
    assert reads[-4:] == [(1, 1), (2, 2), (4, 2), (6, 1)]


def test_dma_outside_mapped_memory_and_overflowing(edu) -> None:
    server, client = edu
    memory = client.map_memory(0x100000, 0x1000)
    enable_bus_master(client)
    memory.write(0x100000, b"\xaa" * 64)
    run_edu_dma(client, (1 << 64) - 32, 0x40000, 64, 0x1)  # source wraps around 2**64
    run_edu_dma(client, 0x7000000, 0x40000, 64, 0x1)  # not mapped
    run_edu_dma(client, 0x100F00, 0x40000, 512, 0x1)  # runs off the end of the mapping
    run_edu_dma(client, 0x100000, 0x40000 + 4090, 64, 0x1)  # off the end of edu's buffer
    assert client.read32(BAR0, 0) == EDU_ID
    codes = [e["error"] for e in device_errors(server, client)]
    assert codes == ["dma_fault", "dma_fault", "dma_fault", "dma_range"]
    dma = [e for e in read_log(server.log_path)[1] if e["kind"].startswith("dma_r")]
    assert dma == []  # nothing was transferred by a failed DMA


@pytest.fixture
def nvme(sockdir: Path, tmp_path: Path) -> Iterator[tuple[ThreadedServer, NvmeHost]]:
    with serving("nvme", sockdir, tmp_path) as (server, client):
        host = NvmeHost(ClientPort(client, client.map_memory(0, 4 << 20)))
        host.enable()
        yield server, host


@pytest.mark.parametrize(
    ("cdw10", "cdw11", "status"),
    [
        (0xFFFF << 16 | 1, 1, NvmeStatus.INVALID_QUEUE_SIZE),  # 65536 entries, beyond MQES
        (0 << 16 | 1, 1, NvmeStatus.INVALID_QUEUE_SIZE),  # a queue of one entry
        (15 << 16 | 1, 100 << 16 | 3, NvmeStatus.INVALID_INTERRUPT_VECTOR),
        (15 << 16 | 0xFFFF, 1, NvmeStatus.INVALID_QUEUE_IDENTIFIER),
    ],
)
def test_nvme_bogus_queues_and_vectors(nvme, cdw10: int, cdw11: int, status: int) -> None:
    server, host = nvme
    done = host.submit(0, 0x05, prp1=host.page(), cdw=(cdw10, cdw11))
    assert done.status == status
    assert host.port.mmio_read(0x1C, 4) & 0x2 == 0  # CSTS.CFS: the controller is not dead
    codes = [e["error"] for e in device_errors(server, host.port.client)]
    assert codes == [f"status_{status:#05x}"]
    assert host.create_io_queue(1, 8, vector=1).status == NvmeStatus.SUCCESS  # still works


def test_nvme_hostile_doorbells_and_queue_memory(nvme) -> None:
    server, host = nvme
    host.port.mmio_write(0x1000 + 8 * 7, 4, 1)  # tail doorbell of a queue that does not exist
    host.port.mmio_write(0x1000, 4, 0xFFFF)  # admin tail beyond the queue size
    host.port.mmio_write(0x1002, 2, 1)  # a doorbell written with the wrong width
    assert host.create_io_queue(1, 8, vector=1).status == NvmeStatus.SUCCESS
    codes = [e["error"] for e in device_errors(server, host.port.client)]
    assert codes == ["bad_doorbell"] * 3
    # An I/O command whose data buffer is outside guest memory: a DMA fault and
    # a Data Transfer Error status, not a dead controller.
    done = host.submit(1, 0x02, nsid=1, prp1=0x7F000000, cdw=(0, 0, 0))
    assert done.status == NvmeStatus.DATA_TRANSFER_ERROR
    assert device_errors(server, host.port.client)[-1]["error"] == "dma_fault"
