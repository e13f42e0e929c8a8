"""The server over a real UNIX socket, driven by our client: commands, errors, DMA, IRQs."""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import struct
import threading
import time

import pytest

from tests.conftest import ThreadedServer, has, read_log
from vfio_bridge.client import ClientError, VfioUserClient, sealed_memfd
from vfio_bridge.models.edu import Edu
from vfio_bridge.protocol import (
    DeviceFlags,
    DmaMap,
    Header,
    IrqIndex,
    IrqInfoFlags,
    IrqSet,
    IrqSetFlags,
    Message,
    MessageReader,
    MsgFlags,
    Region,
    RegionAccess,
    RegionFlags,
    VfioCommand,
    frame,
)
from vfio_bridge.recorder import Recorder
from vfio_bridge.session import MAX_MESSAGE_SIZE, MAX_MSG_FDS, Session
from vfio_bridge.transport import PeerClosed, SocketChannel

BAR0 = Region.BAR0
CONFIG = Region.CONFIG


def enable_bus_master(client: VfioUserClient) -> None:
    client.region_write(CONFIG, 0x04, (0x6).to_bytes(2, "little"))


def test_socket_is_private(edu_server: ThreadedServer) -> None:
    assert stat.S_IMODE(os.stat(edu_server.socket_path).st_mode) == 0o600


def test_negotiation_and_device_description(client: VfioUserClient) -> None:
    caps = client.server_capabilities["capabilities"]
    assert caps["max_data_xfer_size"] == 1 << 20 and caps["pgsizes"] == 4096
    info = client.device_info()
    assert info.flags == DeviceFlags.PCI | DeviceFlags.RESET
    assert (info.num_regions, info.num_irqs) == (9, 5)
    bar0 = client.region_info(BAR0)
    assert bar0.size == 1 << 20 and bar0.flags == RegionFlags.READ | RegionFlags.WRITE
    assert client.region_info(Region.BAR1).size == 0
    assert client.region_info(CONFIG).size == 4096
    assert client.irq_info(IrqIndex.MSI).count == 1
    assert client.irq_info(IrqIndex.MSIX).count == 0
    intx = client.irq_info(IrqIndex.INTX)
    assert intx.count == 1 and intx.flags & IrqInfoFlags.AUTOMASKED


def test_commands_before_version_are_refused(edu_server: ThreadedServer) -> None:
    with VfioUserClient(edu_server.socket_path) as fresh:
        with pytest.raises(ClientError) as info:
            fresh.device_info()
        assert info.value.errno == errno.EINVAL
        fresh.negotiate()
        assert fresh.device_info().num_regions == 9


def test_edu_registers(client: VfioUserClient) -> None:
    assert client.read32(CONFIG, 0) == 0x11E81234
    assert client.read32(BAR0, 0x00) == 0x010000ED
    client.write32(BAR0, 0x04, 0x0F0F0F0F)
    assert client.read32(BAR0, 0x04) == 0xF0F0F0F0
    client.write32(BAR0, 0x08, 12)
    assert client.read32(BAR0, 0x08) == 479001600
    client.write32(BAR0, 0x08, 40)
    assert client.read32(BAR0, 0x08) == 0  # 40! mod 2**32
    assert client.read32(BAR0, 0x1000) == 0  # unmapped


def test_posted_write_gets_no_reply_and_is_ordered(client: VfioUserClient) -> None:
    client.region_write(BAR0, 0x04, (1).to_bytes(4, "little"), posted=True)
    assert client.read32(BAR0, 0x04) == 0xFFFFFFFE


@pytest.mark.parametrize(
    ("region", "offset", "count", "err"),
    [
        (BAR0, (1 << 20) - 2, 4, errno.EINVAL),
        (CONFIG, 4096, 1, errno.EINVAL),
        (Region.BAR1, 0, 4, errno.EINVAL),
        (12, 0, 4, errno.EINVAL),
        (BAR0, 0, 0, errno.EINVAL),
        (BAR0, 0, (1 << 20) + 1, errno.E2BIG),
    ],
)
def test_out_of_bounds_accesses_get_error_replies(
    client: VfioUserClient, region: int, offset: int, count: int, err: int
) -> None:
    with pytest.raises(ClientError) as info:
        client.region_read(region, offset, count)
    assert info.value.errno == err
    assert client.read32(BAR0, 0) == 0x010000ED  # still serving


def test_unknown_command_and_short_bodies_keep_the_connection(client: VfioUserClient) -> None:
    with pytest.raises(ClientError) as info:
        client.request(99)
    assert info.value.errno == errno.ENOSYS
    with pytest.raises(ClientError):
        client.request(VfioCommand.REGION_READ, b"\x00" * 7)
    with pytest.raises(ClientError):
        client.request(VfioCommand.REGION_WRITE, RegionAccess(0, 0, 8).pack() + b"abc")
    with pytest.raises(ClientError):
        client.request(VfioCommand.DEVICE_SET_IRQS, b"\x00" * 20)  # no data type, no action
    assert client.read32(BAR0, 0) == 0x010000ED


def test_garbage_closes_the_connection_and_the_next_client_is_served(
    edu_server: ThreadedServer,
) -> None:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(str(edu_server.socket_path))
    raw.sendall(Header(1, 1, 8).pack())  # size smaller than a header
    assert raw.recv(100) == b""  # server hung up
    raw.close()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(str(edu_server.socket_path))
    raw.sendall(Header(1, 1, MAX_MESSAGE_SIZE + 1).pack())  # absurd size
    assert raw.recv(100) == b""
    raw.close()
    with VfioUserClient(edu_server.socket_path) as again:
        again.negotiate()
        assert again.read32(BAR0, 0) == 0x010000ED


def test_second_client_waits_for_the_first(
    edu_server: ThreadedServer, client: VfioUserClient
) -> None:
    client.write32(BAR0, 0x04, 0)
    client.close()
    with VfioUserClient(edu_server.socket_path) as second:
        second.negotiate()
        assert second.read32(BAR0, 0x04) == 0  # device was reset for the new client


def run_edu_dma(client: VfioUserClient, src: int, dst: int, count: int, cmd: int) -> None:
    client.write64(BAR0, 0x80, src)
    client.write64(BAR0, 0x88, dst)
    client.write64(BAR0, 0x90, count)
    client.write64(BAR0, 0x98, cmd)
    for _ in range(100):  # polling also lets the client serve DMA messages
        if not client.read64(BAR0, 0x98) & 1:
            return
    raise AssertionError("edu DMA did not finish")


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "messages"])
def test_edu_dma_both_ways(
    edu_server: ThreadedServer, client: VfioUserClient, shared: bool
) -> None:
    memory = client.map_memory(0x100000, 0x10000, shared=shared)
    enable_bus_master(client)
    payload = os.urandom(256)
    memory.write(0x100000, payload)
    run_edu_dma(client, 0x100000, 0x40000, 256, 0x1)
    assert client.region_read(BAR0, 0x40000, 256) == payload
    run_edu_dma(client, 0x40000, 0x108000, 256, 0x3)
    assert memory.read(0x108000, 256) == payload
    assert (client.dma_requests_served > 0) is not shared
    client.unmap_memory(memory)
    client.close()
    edu_server.stop()
    _, events, _ = read_log(edu_server.log_path)
    assert any(has(e, kind="dma_map", addr=0x100000, len=0x10000, shared=shared) for e in events)
    assert any(has(e, kind="dma_read", addr=0x100000, len=256) for e in events)
    assert any(has(e, kind="dma_write", addr=0x108000, len=256) for e in events)
    assert any(has(e, kind="dma_unmap", addr=0x100000) for e in events)


def test_dma_outside_mapped_memory_is_a_device_error_not_a_crash(client: VfioUserClient) -> None:
    client.map_memory(0x100000, 0x1000)
    enable_bus_master(client)
    run_edu_dma(client, 0x7000000, 0x40000, 64, 0x1)  # RAM address not mapped
    run_edu_dma(client, 0x100F00, 0x40000, 512, 0x1)  # runs off the end of the mapping
    assert client.read32(BAR0, 0) == 0x010000ED


def test_pipelined_requests_with_a_descriptor_between_them(
    edu_server: ThreadedServer, client: VfioUserClient
) -> None:
    """Requests sent without waiting reach the server as one chunk of the stream;
    the memfd must go to the DMA_MAP it was sent with, and every reply comes in order."""
    memory = sealed_memfd("pipelined", 0x1000)
    try:
        channel = client.channel
        bus_master = RegionAccess(0x04, CONFIG, 2, (0x6).to_bytes(2, "little")).pack()
        channel.send(
            frame(100, VfioCommand.REGION_WRITE, bus_master, MsgFlags.NO_REPLY)
            + frame(101, VfioCommand.REGION_WRITE, RegionAccess(0x04, BAR0, 4, bytes(4)).pack())
        )
        channel.send(
            frame(102, VfioCommand.DMA_MAP, DmaMap(32, 3, 0, 0x200000, 0x1000).pack()), (memory,)
        )
        channel.send(frame(103, VfioCommand.REGION_READ, RegionAccess(0x04, BAR0, 4).pack()))
        replies = []
        while len(replies) < 3:
            replies.append(channel.receive())
        assert [(r.header.msg_id, r.header.is_error) for r in replies] == [
            (101, False),
            (102, False),
            (103, False),
        ]
        assert RegionAccess.unpack(replies[2].body, with_data=True).data == b"\xff" * 4
        client.region_write(BAR0, 0x40000, b"pipelined")
        run_edu_dma(client, 0x40000, 0x200100, 9, 0x3)  # edu buffer -> the memfd
        assert os.pread(memory, 9, 0x100) == b"pipelined"
        assert client.dma_requests_served == 0  # shared memory, not DMA messages
    finally:
        os.close(memory)


def test_dma_map_refuses_two_fds_and_overlaps(client: VfioUserClient) -> None:
    a, b = os.memfd_create("a"), os.memfd_create("b")
    try:
        with pytest.raises(ClientError):
            client.request(VfioCommand.DMA_MAP, DmaMap(32, 3, 0, 0, 4096).pack(), fds=(a, b))
    finally:
        os.close(a)
        os.close(b)
    client.map_memory(0, 0x2000, shared=False)
    with pytest.raises(ClientError):
        client.map_memory(0x1000, 0x1000, shared=False)


def eventfd_fired(fd: int, timeout: float = 2.0) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    if readable:
        os.eventfd_read(fd)
    return bool(readable)


def test_msi_through_eventfd(edu_server: ThreadedServer, client: VfioUserClient) -> None:
    efd = os.eventfd(0)
    try:
        client.set_irq_eventfds(IrqIndex.MSI, 0, [efd])
        msi = 0x48  # after PM at 0x40
        assert client.region_read(CONFIG, msi, 1) == b"\x05"
        client.region_write(CONFIG, msi + 2, (1).to_bytes(2, "little"))
        client.write32(BAR0, 0x60, 0x10)  # raise interrupt by hand
        assert eventfd_fired(efd)
        assert client.read32(BAR0, 0x24) == 0x10
        client.write32(BAR0, 0x64, 0x10)
        assert client.read32(BAR0, 0x24) == 0
    finally:
        os.close(efd)


def test_interrupts_raised_in_one_burst_are_signalled_once_and_logged_each(
    edu_server: ThreadedServer, client: VfioUserClient
) -> None:
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        client.set_irq_eventfds(IrqIndex.MSI, 0, [efd])
        client.region_write(CONFIG, 0x48 + 2, (1).to_bytes(2, "little"))  # MSI enable
        raise_by_hand = RegionAccess(0x60, BAR0, 4, (0x10).to_bytes(4, "little")).pack()
        # One sendmsg, so the server receives both writes as one burst.
        client.channel.send(
            frame(200, VfioCommand.REGION_WRITE, raise_by_hand, MsgFlags.NO_REPLY)
            + frame(201, VfioCommand.REGION_WRITE, raise_by_hand, MsgFlags.NO_REPLY)
        )
        # The reply to this read may be part of the same burst: PCIe ordering
        # still puts the interrupt before it.
        assert client.read32(BAR0, 0x24) == 0x10
        assert os.eventfd_read(efd) == 1  # the counter: signalled once, not twice
        client.close()
        edu_server.stop()
        _, events, _ = read_log(edu_server.log_path)
        assert sum(has(e, kind="irq", irq_type="msi", vector=0) for e in events) == 2
    finally:
        os.close(efd)


def test_a_reply_never_passes_the_interrupt_its_request_raised(
    client: VfioUserClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 3 on the region-access hot path: a lone write that raises an MSI is
    answered only once the MSI's eventfd is signalled (checked as the reply is sent)."""
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        client.set_irq_eventfds(IrqIndex.MSI, 0, [efd])
        client.region_write(CONFIG, 0x48 + 2, (1).to_bytes(2, "little"))  # MSI enable
        signalled_at_reply: list[bool] = []
        send = SocketChannel.send

        def watched(channel: SocketChannel, data: bytes, fds: tuple[int, ...] = ()) -> None:
            _, command, _, flags, _ = struct.unpack_from("<HHIII", data)
            if flags & MsgFlags.REPLY and command == VfioCommand.REGION_WRITE:
                signalled_at_reply.append(bool(select.select([efd], [], [], 0)[0]))
            send(channel, data, fds)

        monkeypatch.setattr(SocketChannel, "send", watched)
        client.write32(BAR0, 0x60, 0x10)  # raise interrupt by hand, non-posted
        assert signalled_at_reply == [True]
    finally:
        os.close(efd)


def test_intx_is_level_and_automasked(client: VfioUserClient) -> None:
    efd = os.eventfd(0)
    try:
        client.set_irq_eventfds(IrqIndex.INTX, 0, [efd])
        client.write32(BAR0, 0x60, 0x1)
        assert eventfd_fired(efd)
        assert client.region_read(CONFIG, 0x06, 1)[0] & 0x08  # status: interrupt pending
        client.write32(BAR0, 0x60, 0x2)
        assert not eventfd_fired(efd, 0.2)  # masked until the EOI unmask
        client.set_irqs(IrqIndex.INTX, int(IrqSetFlags.DATA_NONE | IrqSetFlags.ACTION_UNMASK), 0, 1)
        assert eventfd_fired(efd)  # still asserted, so it fires again
        client.write32(BAR0, 0x64, 0x3)
        assert not client.region_read(CONFIG, 0x06, 1)[0] & 0x08
    finally:
        os.close(efd)


def test_set_irqs_checks_fd_count_and_range(client: VfioUserClient) -> None:
    efd = os.eventfd(0)
    try:
        flags = int(IrqSetFlags.DATA_EVENTFD | IrqSetFlags.ACTION_TRIGGER)
        with pytest.raises(ClientError):
            client.request(
                VfioCommand.DEVICE_SET_IRQS,
                IrqSet(20, flags, IrqIndex.MSI, 0, 2).pack(),
                fds=(efd,),
            )
        with pytest.raises(ClientError):
            client.set_irq_eventfds(IrqIndex.MSI, 1, [efd])  # edu has one MSI vector
        with pytest.raises(ClientError):
            client.set_irq_eventfds(7, 0, [efd])
    finally:
        os.close(efd)


def test_device_reset(client: VfioUserClient) -> None:
    client.write32(BAR0, 0x04, 0)
    client.reset()
    assert client.read32(BAR0, 0x04) == 0


def test_take_access_parses_a_lone_access_and_frames_everything_else() -> None:
    """The channel's hot path: only an access that begins a receive, with no
    descriptors, skips the backlog; what follows it, in the same receive, is
    framed before it is served; anything else goes to the backlog as from fill()."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel = SocketChannel(ours, MAX_MESSAGE_SIZE, MAX_MSG_FDS)
    read = frame(1, VfioCommand.REGION_READ, RegionAccess(0, BAR0, 4).pack())
    info = frame(2, VfioCommand.DEVICE_GET_INFO, bytes(16))
    try:
        assert channel.take_access(block=False) is None  # nothing arrived
        theirs.send(read + info)
        assert channel.take_access() == (1, VfioCommand.REGION_READ, 0, 0, 0, 4, b"")
        assert [m.header.msg_id for m in _drain(channel)] == [2]
        # a descriptor with it: the general path, which hands the descriptor over
        theirs.sendmsg([read], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", 0))])
        assert channel.take_access() is None
        (message,) = _drain(channel)
        assert message.header.msg_id == 1 and len(message.fds) == 1
        message.close_fds()
        # half a message, then the rest (which begins mid-message): the general path
        theirs.send(info[:20])
        assert channel.take_access() is None and not channel.backlog
        theirs.send(info[20:] + read)
        assert channel.take_access() is None
        assert [m.header.msg_id for m in _drain(channel)] == [2, 1]
        # the rest of a message that looks like an access of its own is still the rest
        carrier = frame(3, VfioCommand.REGION_WRITE, RegionAccess(0, BAR0, 32, read).pack())
        theirs.send(carrier[:32])
        assert channel.take_access() is None and not channel.backlog
        theirs.send(carrier[32:])
        assert channel.take_access() is None
        (message,) = _drain(channel)
        assert message.header.msg_id == 3 and message.body[16:] == read
        # messages already waiting come first: no receive while the backlog holds any
        theirs.send(info + read)
        assert channel.fill() and channel.take_access() is None
        theirs.send(read)
        assert [m.header.msg_id for m in _drain(channel)] == [2, 1]
        assert channel.take_access() == (1, VfioCommand.REGION_READ, 0, 0, 0, 4, b"")
        theirs.close()
        with pytest.raises(PeerClosed):
            channel.take_access()
    finally:
        channel.close()
        theirs.close()


def _drain(channel: SocketChannel) -> list[Message]:
    messages = []
    while (message := channel.next_message()) is not None:
        messages.append(message)
    return messages


def test_reader_limit_matches_the_advertised_transfer_size() -> None:
    reader = MessageReader(MAX_MESSAGE_SIZE, 16)
    big = frame(1, VfioCommand.REGION_WRITE, RegionAccess(0, 0, 1 << 20, bytes(1 << 20)).pack())
    assert len(reader.feed(big)) == 1


def test_stop_ends_a_session_waiting_for_its_client(
    edu_server: ThreadedServer, client: VfioUserClient
) -> None:
    # Between requests the session waits in a blocking receive, not on the wakeup
    # pipe; stop() shuts the connection down so that the receive returns.
    assert client.read32(BAR0, 0) == 0x010000ED
    edu_server.stop()  # fails if the serving thread is still there
    assert edu_server.server.connections == 1


def test_a_posted_write_yields_the_cpu_once_and_the_session_then_sleeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without polling, a burst that wanted no reply (a posted write) is followed by
    one sched_yield, so the client may go on sending, and then by a blocking
    receive: not a spin. What comes after is served in order."""
    yields: list[int] = []
    real_yield = os.sched_yield
    monkeypatch.setattr(os, "sched_yield", lambda: (yields.append(1), real_yield())[1])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    session = Session(
        Edu(), SocketChannel(ours, MAX_MESSAGE_SIZE, MAX_MSG_FDS), Recorder(None), poll_max_us=0
    )
    ended: list[BaseException] = []

    def serve() -> None:
        try:
            session.run()
        except PeerClosed as exc:
            ended.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    reader = MessageReader(MAX_MESSAGE_SIZE, MAX_MSG_FDS)

    def reply() -> Message:
        while not (messages := reader.feed(theirs.recv(4096))):
            pass
        (message,) = messages
        return message

    try:
        theirs.send(frame(0, VfioCommand.VERSION, struct.pack("<HH", 0, 0) + b"{}\0"))
        assert reply().header.command == VfioCommand.VERSION
        assert yields == []  # a burst with a reply: no yield
        write = RegionAccess(4, BAR0, 4, (1).to_bytes(4, "little")).pack()
        theirs.send(frame(1, VfioCommand.REGION_WRITE, write, MsgFlags.NO_REPLY))
        deadline = time.monotonic() + 10
        while not yields and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # a spinning session would yield again meanwhile
        assert yields == [1]
        theirs.send(frame(2, VfioCommand.REGION_READ, RegionAccess(4, BAR0, 4).pack()))
        answer = reply()
        assert answer.header.msg_id == 2
        assert answer.body[16:] == (0xFFFFFFFE).to_bytes(4, "little")  # the write landed first
        assert yields == [1]
    finally:
        theirs.close()
        thread.join(timeout=10)
        session.close()
        ours.close()
    assert not thread.is_alive() and len(ended) == 1
