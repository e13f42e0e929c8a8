"""A client that shrinks the memory it mapped cannot crash the server (issue 20.1).

Over a real socket: the client maps an unsealed memfd with DMA_MAP, shrinks it to
nothing, and has the edu model DMA into and out of that range. Had the server
mmapped it, the first access would raise SIGBUS and kill the process; it serves
the range through DMA_READ/DMA_WRITE messages instead and says why, once.
"""

from __future__ import annotations

import os

from tests.conftest import ThreadedServer, read_log
from tests.test_server import BAR0, enable_bus_master, run_edu_dma
from vfio_bridge.client import GuestMemory, VfioUserClient
from vfio_bridge.protocol import DmaMap, VfioCommand

IOVA = 0x200000
SIZE = 0x10000


def test_a_shrunk_unsealed_memfd_is_served_by_messages(edu_server: ThreadedServer) -> None:
    unsealed = os.memfd_create("shrinkable")
    os.ftruncate(unsealed, SIZE)
    with VfioUserClient(edu_server.socket_path) as client:
        client.negotiate()
        # The client answers DMA messages from its own copy; the fd it passes is the trap.
        client.memory.append(GuestMemory(IOVA, SIZE, -1, bytearray(SIZE)))
        client.request(VfioCommand.DMA_MAP, DmaMap(32, 3, 0, IOVA, SIZE).pack(), fds=(unsealed,))
        os.ftruncate(unsealed, 0)  # pulled from under any mapping of it
        os.close(unsealed)
        enable_bus_master(client)
        client.region_write(BAR0, 0x40000, b"into guest memory")
        run_edu_dma(client, 0x40000, IOVA + 0x100, 17, 0x3)  # edu buffer -> the range
        run_edu_dma(client, IOVA + 0x100, 0x40800, 17, 0x1)  # and back
        assert client.region_read(BAR0, 0x40800, 17) == b"into guest memory"
        assert client.dma_requests_served >= 2  # served by messages, not by a mapping
        assert client.read32(BAR0, 0) == 0x010000ED  # still serving
    edu_server.stop()
    _, events, trailer = read_log(edu_server.log_path)
    assert trailer is not None  # closed cleanly: nothing lost
    (mapped,) = [e for e in events if e["kind"] == "dma_map"]
    assert mapped["shared"] is False and "not sealed against shrinking" in mapped["reason"]
    assert [e["len"] for e in events if e["kind"] in ("dma_read", "dma_write")] == [17, 17]
