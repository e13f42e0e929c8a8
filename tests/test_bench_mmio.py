"""bench.mmio's set-up rules: where libvfio-user comes from, which CPU layouts run,
what its note says, how slots are named to QEMU; bench.mmio_ab's variants; what
bench.floor_server answers without its model."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import libvfio_user
from bench.floor_server import IDENT, LIVENESS, LIVENESS_VALUE, FloorSession
from bench.mmio import ONE_CPU, OWN_CPU, FloorServer, _note, layouts, pci_address, switches
from bench.mmio_ab import Variant
from harness.errors import HarnessError
from vfio_bridge.client import VfioUserClient
from vfio_bridge.models.edu import Edu
from vfio_bridge.recorder import Recorder
from vfio_bridge.session import MAX_MESSAGE_SIZE, MAX_MSG_FDS
from vfio_bridge.transport import PeerClosed, SocketChannel


def test_no_source_named_says_how_to_name_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(libvfio_user.SOURCE_ENV, raising=False)
    with pytest.raises(libvfio_user.Unavailable, match=libvfio_user.SOURCE_ENV):
        libvfio_user.source_from(None)


def test_a_directory_that_is_not_a_checkout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(libvfio_user.Unavailable, match="not a libvfio-user checkout"):
        libvfio_user.source_from(str(tmp_path))


def test_the_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "include").mkdir()
    (tmp_path / "include/libvfio-user.h").write_text("")
    (tmp_path / "meson.build").write_text("")
    monkeypatch.setenv(libvfio_user.SOURCE_ENV, "/nonexistent")
    assert libvfio_user.source_from(str(tmp_path)) == tmp_path.resolve()


def test_layouts_on_one_cpu_leave_out_the_server_cpu() -> None:
    chosen, skipped = layouts([3])
    assert [layout.name for layout in chosen] == ["all on one CPU", "unpinned"]
    assert skipped is not None and OWN_CPU in skipped


def test_layouts_on_two_cpus_put_the_server_apart() -> None:
    chosen, skipped = layouts([0, 1])
    assert skipped is None
    own = next(layout for layout in chosen if layout.name == OWN_CPU)
    assert own.driver == {0} and own.servers == {1}
    assert chosen[0].driver == chosen[0].servers == {0}


def test_the_note_says_when_the_machine_was_too_loaded_for_rates() -> None:
    reached = {"read, ours, no polling": [ONE_CPU]}
    quiet = _note(reached, "built", None, load=0.9, cpus=2)
    assert "not reliable" not in quiet
    assert quiet == "read, ours, no polling: >= 1.0x libvfio-user in all on one CPU"
    loaded = _note(reached, "built", None, load=7.5, cpus=2)
    assert loaded.startswith("machine loaded (1-minute load average up to 7.5 on 2 CPUs)")
    assert loaded.endswith(quiet)


def test_the_note_compares_with_libvfio_user_under_batch_scheduling_too() -> None:
    note = _note(
        {"read, ours, no polling": [ONE_CPU]},
        "built",
        None,
        reached_batch={"read, ours, no polling": []},
    )
    assert note.splitlines() == [
        "read, ours, no polling: >= 1.0x libvfio-user in all on one CPU",
        "read, ours, no polling: >= 1.0x libvfio-user, batch in no layout",
    ]


def test_slots_are_given_to_qemu_in_hexadecimal() -> None:
    # QEMU parses addr=SLOT.FN with "%x.%x" (set_pci_devfn, hw/core/qdev-properties-system.c):
    # "10.0" put the bench's eighth device at slot 0x10, where nothing answered at 0x0a.
    assert pci_address(3) == "03.0"
    assert pci_address(10) == "0a.0"
    assert pci_address(0x1F) == "1f.0"


def test_a_variant_names_an_interpreter_a_tree_and_serve_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    variant = Variant.parse("after=.venv/bin/python:src:--sched,batch")
    assert variant.name == "after"
    assert variant.python == str(tmp_path / ".venv/bin/python")  # absolute, not resolved
    assert variant.source == (tmp_path / "src").resolve()
    assert variant.args == ("--sched", "batch")
    assert Variant.parse("x=python3:.").python == "python3"  # found on PATH
    for bad in ("python3:.", "x=python3", "x=:.", "libvfio-user=python3:."):
        with pytest.raises(ValueError):
            Variant.parse(bad)


def test_a_variant_must_import_vfio_bridge_from_its_own_tree(tmp_path: Path) -> None:
    import sys

    repo = Path(__file__).resolve().parents[1]
    Variant("here", sys.executable, repo).check()
    # A tree without the package: the installed copy would be imported instead.
    with pytest.raises(HarnessError, match="not from"):
        Variant("elsewhere", sys.executable, tmp_path).check()


@contextlib.contextmanager
def floor_client() -> Iterator[tuple[VfioUserClient, Recorder]]:
    """A client of bench.floor_server's session on a socketpair, served on a thread;
    the recorder counts what reached the model."""
    server_end, client_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    recorder = Recorder(None)
    channel = SocketChannel(server_end, MAX_MESSAGE_SIZE, MAX_MSG_FDS)
    session = FloorSession(Edu(), channel, recorder, poll_max_us=0)

    def serve() -> None:
        with contextlib.suppress(PeerClosed):
            session.run()

    thread = threading.Thread(target=serve)
    thread.start()
    client = VfioUserClient.over(client_end)
    try:
        client.negotiate()
        yield client, recorder
    finally:
        client.close()
        thread.join(timeout=10)
        session.close()
        channel.close()
    assert not thread.is_alive()


def test_the_floor_answers_the_benchmarks_reads_without_the_model() -> None:
    with floor_client() as (client, recorder):
        before = recorder.seq
        assert [client.read32(0, IDENT) for _ in range(3)] == [0x010000ED] * 3
        assert recorder.seq == before  # canned: nothing reached the model
        client.read32(0, LIVENESS)  # any other access is the model's
        assert recorder.seq == before + 1


def test_the_floor_cans_a_write_only_once_the_model_holds_its_value() -> None:
    inverted = ~LIVENESS_VALUE & 0xFFFFFFFF
    with floor_client() as (client, recorder):
        assert client.read32(0, LIVENESS) == 0  # the reset value
        before = recorder.seq
        client.write32(0, LIVENESS, LIVENESS_VALUE)  # the first reaches the model
        assert recorder.seq == before + 1
        client.write32(0, LIVENESS, LIVENESS_VALUE)
        client.region_write(0, LIVENESS, LIVENESS_VALUE.to_bytes(4, "little"), posted=True)
        assert recorder.seq == before + 1  # canned, posted or not
        assert client.read32(0, LIVENESS) == inverted
        client.write32(0, LIVENESS, 0x11)  # another value is the model's again
        assert client.read32(0, LIVENESS) == ~0x11 & 0xFFFFFFFF


def test_the_floor_server_serves_from_its_own_process_until_stopped(tmp_path: Path) -> None:
    server = FloorServer(tmp_path / "floor.sock")
    try:
        client = VfioUserClient(server.socket_path)
        client.negotiate()
        assert client.read32(0, IDENT) == 0x010000ED
        client.close()
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)


def test_switches_count_a_blocking_wait_as_blocking() -> None:
    thread = threading.get_native_id()  # /proc/<tid> is this thread, whichever runs the test
    blocked, preempted = switches(thread)
    time.sleep(0.01)
    now_blocked, now_preempted = switches(thread)
    assert now_blocked > blocked and now_preempted >= preempted
