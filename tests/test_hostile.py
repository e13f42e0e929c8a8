"""Hostile clients: random and malformed message streams never take the server down."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ThreadedServer
from vfio_bridge.client import VfioUserClient
from vfio_bridge.models.edu import Edu
from vfio_bridge.protocol import Version, VfioCommand, frame
from vfio_bridge.recorder import Recorder
from vfio_bridge.server import ServerError, VfioUserServer

VERSION = frame(0, VfioCommand.VERSION, Version(0, 0, {"capabilities": {}}).pack())

messages = st.one_of(
    st.binary(max_size=64),  # raw garbage
    st.builds(
        lambda cmd, flags, body: frame(1, cmd, body, flags),
        st.integers(0, 20),
        st.sampled_from([0, 0x10, 0x1, 0x20]),
        st.binary(max_size=48),
    ),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    sockdir = tmp_path_factory.mktemp("s", numbered=True)
    running = ThreadedServer("edu", sockdir, sockdir / "edu.jsonl")
    yield running
    running.stop()


@settings(
    max_examples=int(os.environ.get("XVPCI_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stream=st.lists(messages, max_size=6), negotiate=st.booleans())
def test_random_streams_never_break_the_server(
    server: ThreadedServer, stream: list[bytes], negotiate: bool
) -> None:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(str(server.socket_path))
    try:
        if negotiate:
            raw.sendall(VERSION)
        for chunk in stream:
            raw.sendall(chunk)
    except OSError:
        pass  # the server may hang up on garbage: that is allowed
    finally:
        raw.close()
    with VfioUserClient(server.socket_path) as client:
        client.negotiate()
        assert client.read32(0, 0) == 0x010000ED
    assert server.thread.is_alive()


def test_server_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep")
    link = tmp_path / "edu.sock"
    link.symlink_to(target)
    server = VfioUserServer(Edu(), link, Recorder(None))
    with pytest.raises(ServerError, match="not a socket"):
        server.listen()
    server.close()
    assert target.read_text() == "keep" and link.is_symlink()
