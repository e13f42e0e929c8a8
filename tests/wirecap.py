"""Record a vfio-user session byte for byte: a UNIX-socket proxy between QEMU and a server.

The proxy forwards every chunk in both directions, descriptors included (SCM_RIGHTS
in, SCM_RIGHTS out), and keeps what went by: direction, the bytes, and what kind of
file each descriptor was (``memfd``, ``eventfd``...), since a recorded fd cannot be
replayed, only replaced by a fresh one of the same kind. ``python -m tests.record_wire``
uses it to write the fixtures under ``tests/fixtures/wire/``.
"""

from __future__ import annotations

import array
import gzip
import json
import os
import select
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

MAX_FDS = 16


@dataclass
class Chunk:
    to_server: bool
    data: bytes
    fd_kinds: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "dir": "client->server" if self.to_server else "server->client",
            "data": self.data.hex(),
            "fds": self.fd_kinds,
        }


def fd_kind(fd: int) -> str:
    """What a descriptor refers to, as /proc names it (``memfd``, ``eventfd``, ``socket``)."""
    target = os.readlink(f"/proc/self/fd/{fd}")
    if target.startswith("/memfd:"):
        return "memfd"
    if target.startswith("anon_inode:"):
        return target.removeprefix("anon_inode:").strip("[]")
    return target.split(":", 1)[0] if ":" in target else "file"


class WireProxy:
    """Listen on ``listen_path``; for the one client that connects, connect to
    ``server_path`` and relay both ways until either side closes."""

    def __init__(self, listen_path: Path, server_path: Path) -> None:
        self.listen_path = listen_path
        self.server_path = server_path
        self.chunks: list[Chunk] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(listen_path))
        self._listener.listen(1)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        ready, _, _ = select.select([self._listener, self._stop_r], [], [])
        if self._stop_r in ready:
            return
        client, _ = self._listener.accept()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(str(self.server_path))
        peers = {client: server, server: client}
        try:
            while True:
                ready, _, _ = select.select([client, server, self._stop_r], [], [])
                if self._stop_r in ready:
                    return
                for source in ready:
                    if not self._relay(source, peers[source], source is client):
                        return
        finally:
            client.close()
            server.close()

    def _relay(self, source: socket.socket, target: socket.socket, to_server: bool) -> bool:
        fds = array.array("i")
        data, ancdata, _, _ = source.recvmsg(1 << 20, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:
            return False
        try:
            self.chunks.append(Chunk(to_server, data, [fd_kind(fd) for fd in fds]))
            if fds:
                target.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            else:
                target.sendall(data)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        self._listener.close()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def save(self, path: Path, description: dict[str, object]) -> None:
        with gzip.open(path, "wt") as out:
            out.write(json.dumps(description) + "\n")
            for chunk in self.chunks:
                out.write(json.dumps(chunk.as_json()) + "\n")


def load(path: Path) -> tuple[dict[str, object], list[Chunk]]:
    """A recorded session: its description line and its chunks, in order."""
    with gzip.open(path, "rt") as source:
        description = json.loads(source.readline())
        chunks = []
        for line in source:
            record = json.loads(line)
            chunks.append(
                Chunk(
                    record["dir"] == "client->server",
                    bytes.fromhex(record["data"]),
                    record["fds"],
                )
            )
    return description, chunks
