"""The QMP handshake of ``harness.machine``: retried on a fresh connection when it fails
while QEMU lives on, reported with its cause when it keeps failing.

QEMU's side is a scripted monitor on a real Unix socket: it speaks the greeting and
the ``qmp_capabilities`` exchange of the QMP specification (QEMU's
``docs/interop/qmp-spec.rst``, "Capabilities Negotiation"), answering the first
``refusals`` handshakes with an error reply.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from harness.machine import GuestBootError, connect_qmp

GREETING = {
    "QMP": {
        "version": {"qemu": {"micro": 0, "minor": 0, "major": 11}, "package": ""},
        "capabilities": ["oob"],
    }
}


class ScriptedMonitor:
    """A QMP server that refuses the first ``refusals`` negotiations."""

    def __init__(self, path: Path, refusals: int) -> None:
        self.refusals = refusals
        self.connections = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._session(conn, refuse=self.connections <= self.refusals)

    @staticmethod
    def _session(conn: socket.socket, refuse: bool) -> None:
        # QMP messages are JSON objects, not lines: qemu.qmp sends no newline after one.
        decoder = json.JSONDecoder()
        pending = ""

        def request() -> dict | None:
            nonlocal pending
            while True:
                try:
                    message, end = decoder.raw_decode(pending.lstrip())
                except json.JSONDecodeError:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return None
                    pending += chunk.decode()
                    continue
                pending = pending.lstrip()[end:]
                return message

        conn.sendall(json.dumps(GREETING).encode() + b"\r\n")
        negotiation = request()
        assert negotiation is not None and negotiation["execute"] == "qmp_capabilities"
        if refuse:
            conn.sendall(b'{"error": {"class": "GenericError", "desc": "not now"}}\r\n')
            return
        conn.sendall(b'{"return": {}}\r\n')
        while request() is not None:  # keep the session open until the client hangs up
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def qmp_path(tmp_path: Path) -> Path:
    return tmp_path / "m.qmp"


def still_running(seconds: float) -> None:
    """QEMU stays up: nothing to raise."""


def test_a_refused_handshake_is_tried_again_on_a_new_connection(qmp_path: Path) -> None:
    monitor = ScriptedMonitor(qmp_path, refusals=1)
    try:
        qmp = connect_qmp(qmp_path, still_running)
        qmp.close()
    finally:
        monitor.close()
    assert monitor.connections == 2


def test_a_handshake_that_keeps_failing_is_an_error_naming_the_socket_and_cause(
    qmp_path: Path,
) -> None:
    monitor = ScriptedMonitor(qmp_path, refusals=10)
    try:
        with pytest.raises(GuestBootError) as caught:
            connect_qmp(qmp_path, still_running, attempts=3)
    finally:
        monitor.close()
    assert monitor.connections == 3
    message = str(caught.value)
    assert str(qmp_path) in message and "3 attempts" in message
    assert "Negotiation failed" in message


def test_qemu_exiting_during_the_handshake_stops_the_attempts(qmp_path: Path) -> None:
    # No server at all: the connection is refused, and QEMU (here, the callback) is gone.
    class Exited(GuestBootError):
        pass

    calls: list[float] = []

    def exited(seconds: float) -> None:
        calls.append(seconds)
        raise Exited("QEMU exited with status 1 while starting: device failed to realize")

    with pytest.raises(Exited):
        connect_qmp(qmp_path, exited)
    assert len(calls) == 1
