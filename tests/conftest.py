"""Shared fixtures: one provisioned QEMU per machine, served models, log readers."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.served import ServedModel
from vfio_bridge.logformat import END_KEY

pytest_plugins = ["pytester"]


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private directory for UNIX sockets (their paths are limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="xvpci-t-") as name:
        path = Path(name)
        os.chmod(path, 0o700)
        yield path


@pytest.fixture
def serve_model(sockdir: Path, tmp_path: Path) -> Iterator[object]:
    """``serve_model("edu")`` starts a server process; all are stopped by pid afterwards."""
    started: list[ServedModel] = []

    def start(model: str, *options: str, name: str | None = None) -> ServedModel:
        label = name or model
        served = ServedModel(model, sockdir, tmp_path / f"{label}.jsonl", options, name=label)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def has(event: dict, **fields: object) -> bool:
    """Whether ``event`` holds every one of ``fields`` with that value."""
    return all(event.get(key) == value for key, value in fields.items())


def read_log(path: Path) -> tuple[dict, list[dict], dict | None]:
    """Header, events and trailer (None when the log was cut short) of a transaction log."""
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    events: list[dict] = []
    trailer = None
    for line in lines[1:]:
        record = json.loads(line)
        if END_KEY in record:
            trailer = record
        else:
            events.append(record)
    return header, events, trailer


class ThreadedServer:
    """A VfioUserServer on a real socket, served from a thread of the test process."""

    def __init__(
        self, model_name: str, sockdir: Path, log_path: Path, options: tuple[str, ...] = ()
    ) -> None:
        import threading

        from vfio_bridge.models import create_model
        from vfio_bridge.recorder import Recorder
        from vfio_bridge.server import VfioUserServer

        self.model = create_model(model_name, options)
        self.log_path = log_path
        self.recorder = Recorder(log_path, "direct", device=self.model.declaration())
        self.socket_path = sockdir / f"{model_name}.sock"
        self.server = VfioUserServer(self.model, self.socket_path, self.recorder)
        self.server.listen()
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "server thread did not stop"
        self.server.close()
        self.recorder.close()


@pytest.fixture
def edu_server(sockdir: Path, tmp_path: Path) -> Iterator[ThreadedServer]:
    server = ThreadedServer("edu", sockdir, tmp_path / "edu.jsonl")
    yield server
    server.stop()


@pytest.fixture
def client(edu_server: ThreadedServer) -> Iterator[object]:
    from vfio_bridge.client import VfioUserClient

    with VfioUserClient(edu_server.socket_path) as connected:
        connected.negotiate()
        yield connected


def assert_process_gone(pid: int) -> None:
    """The process was ended and reaped (no zombie left behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    raise AssertionError(f"process {pid} is still there")


def child_pids() -> set[int]:
    """Live (not reaped) children of this test process, from /proc."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me:
            found.add(int(entry.name))
    return found
