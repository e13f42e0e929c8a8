"""A blocking vfio-user client on the same sans-I/O layer as the server.

Tests, tools and benchmarks drive any vfio-user server with it. Guest memory
can be shared (a memfd passed with DMA_MAP) or private to the client, in
which case the client answers the server's DMA_READ/DMA_WRITE from it.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from .fdutil import close_quietly
from .protocol import (
    DeviceInfo,
    DmaAccess,
    DmaMap,
    DmaMapFlags,
    DmaUnmap,
    IrqInfo,
    IrqSet,
    IrqSetFlags,
    Message,
    MsgFlags,
    RegionAccess,
    RegionInfo,
    Version,
    VfioCommand,
    frame,
)
from .protocol.constants import MAJOR_VERSION, MINOR_VERSION
from .transport import PeerClosed, SocketChannel


class ClientError(Exception):
    """The server answered with an error (``errno`` set) or broke the protocol."""

    def __init__(self, message: str, err: int = 0) -> None:
        super().__init__(message)
        self.errno = err


def sealed_memfd(name: str, size: int) -> int:
    """A memfd of ``size`` bytes sealed against shrinking and growing, as QEMU's
    ``memory-backend-memfd`` makes guest RAM: the only kind a server maps for DMA."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass
class GuestMemory:
    """A range of guest memory the client owns; ``shared`` ones are memfds."""

    iova: int
    size: int
    fd: int = -1
    view: mmap.mmap | bytearray = field(default_factory=bytearray)

    @classmethod
    def create(cls, iova: int, size: int, shared: bool) -> GuestMemory:
        if not shared:
            return cls(iova, size, -1, bytearray(size))
        fd = sealed_memfd(f"xvpci-guest-{iova:x}", size)
        return cls(iova, size, fd, mmap.mmap(fd, size))

    def read(self, addr: int, length: int) -> bytes:
        start = addr - self.iova
        return bytes(self.view[start : start + length])

    def write(self, addr: int, data: bytes) -> None:
        start = addr - self.iova
        self.view[start : start + len(data)] = data

    def contains(self, addr: int, length: int) -> bool:
        return self.iova <= addr and addr + length <= self.iova + self.size

    def close(self) -> None:
        if isinstance(self.view, mmap.mmap):
            self.view.close()
        if self.fd >= 0:
            close_quietly(self.fd)
            self.fd = -1


class VfioUserClient:
    """Connect to a server socket and speak vfio-user to it."""

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(socket_path))
        except OSError:
            sock.close()
            raise
        self._setup(sock)

    @classmethod
    def over(cls, sock: socket.socket) -> VfioUserClient:
        """A client on an already connected socket (e.g. one end of a socketpair)."""
        client = cls.__new__(cls)
        client._setup(sock)
        return client

    def _setup(self, sock: socket.socket) -> None:
        self.channel = SocketChannel(sock, max_message_size=64 << 20, max_fds=16)
        self.memory: list[GuestMemory] = []
        self.server_capabilities: dict[str, Any] = {}
        self.dma_requests_served = 0
        self._next_id = 0

    # --- plumbing ------------------------------------------------------------

    def send_raw(self, data: bytes, fds: tuple[int, ...] = ()) -> None:
        """Put arbitrary bytes on the wire (for tests of malformed input)."""
        self.channel.send(data, fds)

    def request(
        self,
        command: int,
        body: bytes = b"",
        fds: tuple[int, ...] = (),
        flags: int = 0,
        expect_reply: bool = True,
    ) -> Message | None:
        """Send a request; return its reply (serving server requests meanwhile)."""
        msg_id = self._next_id
        self._next_id = (msg_id + 1) & 0xFFFF
        self.channel.send(frame(msg_id, command, body, flags), fds)
        if not expect_reply:
            return None
        return self.wait_reply(msg_id)

    def wait_reply(self, msg_id: int) -> Message:
        while True:
            message = self.channel.receive()
            header = message.header
            if header.is_reply:
                message.close_fds()
                if header.msg_id != msg_id:
                    raise ClientError(f"reply id {header.msg_id} while waiting for {msg_id}")
                if header.is_error:
                    raise ClientError(
                        f"command {header.command} failed: {os.strerror(header.error)}",
                        header.error,
                    )
                return message
            self._serve(message)

    def _serve(self, message: Message) -> None:
        """Answer a server request (DMA_READ/DMA_WRITE) from client-owned memory."""
        header = message.header
        message.close_fds()
        try:
            if header.command == VfioCommand.DMA_READ:
                access = DmaAccess.unpack(message.body, with_data=False)
                data = self._memory_for(access.addr, access.count).read(access.addr, access.count)
                body = DmaAccess(access.addr, access.count, data).pack()
            elif header.command == VfioCommand.DMA_WRITE:
                access = DmaAccess.unpack(message.body, with_data=True)
                self._memory_for(access.addr, access.count).write(access.addr, access.data)
                body = b""
            else:
                raise ClientError(f"server sent unexpected command {header.command}", errno.ENOSYS)
        except ClientError as exc:
            self.channel.send(
                frame(
                    header.msg_id, header.command, b"", MsgFlags.REPLY | MsgFlags.ERROR, exc.errno
                )
            )
            return
        self.dma_requests_served += 1
        self.channel.send(frame(header.msg_id, header.command, body, MsgFlags.REPLY))

    def serve_forever(self) -> None:
        """Answer the server's DMA requests until it hangs up."""
        try:
            while True:
                self._serve(self.channel.receive())
        except (PeerClosed, OSError):
            return

    def _memory_for(self, addr: int, length: int) -> GuestMemory:
        for mem in self.memory:
            if mem.contains(addr, length):
                return mem
        raise ClientError(f"server touched unmapped guest memory {addr:#x}+{length}", errno.EFAULT)

    # --- commands -----------------------------------------------------------------

    def negotiate(self, capabilities: dict[str, Any] | None = None) -> Version:
        caps = (
            capabilities
            if capabilities is not None
            else {"capabilities": {"max_msg_fds": 16, "max_data_xfer_size": 1 << 20}}
        )
        reply = self.request(
            VfioCommand.VERSION, Version(MAJOR_VERSION, MINOR_VERSION, caps).pack()
        )
        assert reply is not None
        version = Version.unpack(reply.body)
        self.server_capabilities = version.capabilities
        return version

    def device_info(self) -> DeviceInfo:
        reply = self.request(VfioCommand.DEVICE_GET_INFO, DeviceInfo(16).pack())
        assert reply is not None
        return DeviceInfo.unpack(reply.body)

    def region_info(self, index: int, argsz: int = RegionInfo.FIXED_SIZE) -> RegionInfo:
        reply = self.request(
            VfioCommand.DEVICE_GET_REGION_INFO, RegionInfo(argsz, index=index).pack()
        )
        assert reply is not None
        return RegionInfo.unpack(reply.body)

    def irq_info(self, index: int) -> IrqInfo:
        reply = self.request(VfioCommand.DEVICE_GET_IRQ_INFO, IrqInfo(16, index=index).pack())
        assert reply is not None
        return IrqInfo.unpack(reply.body)

    def set_irq_eventfds(self, index: int, start: int, fds: list[int]) -> None:
        flags = IrqSetFlags.DATA_EVENTFD | IrqSetFlags.ACTION_TRIGGER
        body = IrqSet(20, int(flags), index, start, len(fds)).pack()
        self.request(VfioCommand.DEVICE_SET_IRQS, body, fds=tuple(fds))

    def set_irqs(self, index: int, flags: int, start: int, count: int, data: bytes = b"") -> None:
        self.request(
            VfioCommand.DEVICE_SET_IRQS,
            IrqSet(20 + len(data), flags, index, start, count, data).pack(),
        )

    def region_read(self, region: int, offset: int, count: int) -> bytes:
        reply = self.request(VfioCommand.REGION_READ, RegionAccess(offset, region, count).pack())
        assert reply is not None
        access = RegionAccess.unpack(reply.body, with_data=True)
        return access.data

    def region_write(self, region: int, offset: int, data: bytes, posted: bool = False) -> None:
        body = RegionAccess(offset, region, len(data), data).pack()
        flags = MsgFlags.NO_REPLY if posted else 0
        self.request(VfioCommand.REGION_WRITE, body, flags=flags, expect_reply=not posted)

    def read32(self, region: int, offset: int) -> int:
        return int.from_bytes(self.region_read(region, offset, 4), "little")

    def write32(self, region: int, offset: int, value: int) -> None:
        self.region_write(region, offset, value.to_bytes(4, "little"))

    def read64(self, region: int, offset: int) -> int:
        return int.from_bytes(self.region_read(region, offset, 8), "little")

    def write64(self, region: int, offset: int, value: int) -> None:
        self.region_write(region, offset, value.to_bytes(8, "little"))

    def map_memory(self, iova: int, size: int, shared: bool = True) -> GuestMemory:
        """Create guest memory and DMA_MAP it (with its memfd when ``shared``)."""
        mem = GuestMemory.create(iova, size, shared)
        flags = DmaMapFlags.READ | DmaMapFlags.WRITE
        body = DmaMap(32, int(flags), 0, iova, size).pack()
        try:
            self.request(VfioCommand.DMA_MAP, body, fds=(mem.fd,) if shared else ())
        except Exception:
            mem.close()
            raise
        self.memory.append(mem)
        return mem

    def unmap_memory(self, mem: GuestMemory) -> None:
        self.request(VfioCommand.DMA_UNMAP, DmaUnmap(24, 0, mem.iova, mem.size).pack())
        self.memory.remove(mem)
        mem.close()

    def reset(self) -> None:
        self.request(VfioCommand.DEVICE_RESET)

    def close(self) -> None:
        self.channel.close()
        for mem in self.memory:
            mem.close()
        self.memory.clear()

    def __enter__(self) -> VfioUserClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
