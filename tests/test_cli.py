"""The serve and provision command lines, as users run them."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.qemu_install import QemuInstall
from harness.served import ServedModel
from tests.conftest import read_log
from tests.loggen import mmio, write_log
from vfio_bridge.client import ClientError, VfioUserClient


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_run_and_diff_name_a_path_they_cannot_write(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    done = run("-m", "harness.cli", "run", "--out", str(not_a_dir / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"cannot create the output directory {not_a_dir / 'out'}: Not a directory" in done.stderr
    log = write_log(tmp_path / "a.jsonl", [mmio("mmio_read", 0, 0, 1)])
    done = run("-m", "harness.cli", "diff", "--html", str(not_a_dir / "r.html"), str(log), str(log))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"xvpci diff: cannot write {not_a_dir / 'r.html'}: Not a directory" in done.stderr


def test_a_cache_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    env = {**os.environ, "XVPCI_CACHE": str(not_a_dir / "cache")}
    done = run("-m", "harness.cli", "guest", "build", "linux", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    cache = not_a_dir / "cache"
    assert f"cannot create the cache directory {cache}: Not a directory" in done.stderr


def test_serve_prints_one_ready_line_and_stops_cleanly(sockdir: Path, tmp_path: Path) -> None:
    served = ServedModel("edu", sockdir, tmp_path / "edu.jsonl")
    with VfioUserClient(served.socket_path) as client:
        client.negotiate()
        assert client.read32(0, 0) == 0x010000ED
    assert served.stop() == 0
    assert not served.socket_path.exists()
    assert served.stderr_path.read_text() == ""  # nothing but errors, and there were none
    header, events, trailer = read_log(tmp_path / "edu.jsonl")
    assert header["model"] == "edu" and trailer is not None and events


def test_serve_advertises_and_enforces_a_smaller_transfer_limit(sockdir: Path) -> None:
    served = ServedModel("edu", sockdir, None, server_args=["--max-data-xfer", "4096"])
    try:
        with VfioUserClient(served.socket_path) as client:
            client.negotiate()
            assert client.server_capabilities["capabilities"]["max_data_xfer_size"] == 4096
            assert len(client.region_read(0, 0x40000, 4096)) == 4096  # edu's DMA buffer
            with pytest.raises(ClientError) as refused:
                client.region_read(0, 0x40000, 4097)
            assert refused.value.errno == errno.E2BIG
    finally:
        assert served.stop() == 0


def test_sigint_stops_the_server_too(sockdir: Path) -> None:
    served = ServedModel("edu", sockdir, None)
    os.kill(served.pid, signal.SIGINT)
    assert served.process.proc.wait(timeout=10) == 0
    assert not served.socket_path.exists()


def test_serve_refuses_to_replace_a_regular_file(sockdir: Path) -> None:
    victim = sockdir / "precious"
    victim.write_text("keep me")
    done = run("-m", "vfio_bridge", "serve", "--model", "edu", "--socket", str(victim))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {victim} exists and is not a socket; not touching it"
    assert victim.read_text() == "keep me"


def test_serve_replaces_a_stale_socket(sockdir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sockdir / "edu.sock"))
    stale.close()  # file left behind, nobody listening
    served = ServedModel("edu", sockdir, None)
    with VfioUserClient(served.socket_path) as client:
        client.negotiate()
    assert served.stop() == 0


def test_serve_refuses_a_socket_in_use(sockdir: Path) -> None:
    first = ServedModel("edu", sockdir, None)
    try:
        done = run(
            "-m", "vfio_bridge", "serve", "--model", "edu", "--socket", str(first.socket_path)
        )
        assert done.returncode == 2 and "in use by another server" in done.stderr
    finally:
        first.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nosuch", "--socket", "x"], "invalid choice: 'nosuch'"),
        (["--model", "edu", "--socket", "x", "--opt", "bogus=1"], "has no option 'bogus'"),
        (
            ["--model", "edu", "--socket", "x", "--opt", "dma_mask_bits=many"],
            "option dma_mask_bits: 'many' is not a whole number",
        ),
        (
            ["--model", "nvme", "--socket", "x", "--opt", "size=abc"],
            "option size: 'abc' is not a size in bytes (a number, k, m or g after it)",
        ),
        (["--model", "edu", "--socket", "/nonexistent/dir/s"], "cannot create socket"),
        (["--model", "edu", "--socket", "x", "--max-data-xfer", "0"], "0 is not in 1..1048576"),
        (["--model", "edu", "--socket", "x", "--max-data-xfer", "2M"], "'2M' is not a number"),
    ],
)
def test_serve_usage_errors_are_one_line_with_status_2(args: list[str], message: str) -> None:
    done = run("-m", "harness.cli", "serve", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_help_has_examples() -> None:
    for command in ("provision", "serve", "models"):
        done = run("-m", "harness.cli", command, "--help")
        assert done.returncode == 0 and "example" in done.stdout


def test_models_lists_edu_with_options() -> None:
    done = run("-m", "harness.cli", "models")
    assert done.returncode == 0
    assert "edu:" in done.stdout and "1234:11e8" in done.stdout and "dma_mask_bits" in done.stdout


@pytest.mark.qemu
def test_provision_check_and_rerun(qemu: QemuInstall) -> None:
    done = run("-m", "harness.cli", "provision", "--check")
    assert done.returncode == 0, done.stderr
    assert "QEMU 11." in done.stdout and str(qemu.binary) in done.stdout
    again = run("-m", "harness.cli", "provision")
    assert again.returncode == 0 and "already provisioned" in again.stderr


def test_provision_check_fails_clearly_without_qemu(tmp_path: Path) -> None:
    env = {**os.environ, "XVPCI_QEMU": str(tmp_path / "missing-qemu")}
    done = run("-m", "harness.cli", "provision", "--check", env=env)
    assert done.returncode == 1
    assert "missing-qemu is not a file" in done.stderr and "Traceback" not in done.stderr
    env = {**os.environ, "XVPCI_CACHE": str(tmp_path / "empty-cache")}
    env.pop("XVPCI_QEMU", None)
    done = run("-m", "harness.cli", "provision", "--check", env=env)
    assert done.returncode == 1 and "run `xvpci provision`" in done.stderr


def test_provision_without_network_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "XVPCI_CACHE": str(tmp_path / "cache")}
    env.pop("XVPCI_QEMU", None)
    done = run(
        "-m", "harness.cli", "provision", "-q", "--mirror", "http://127.0.0.1:9/debian", env=env
    )
    assert done.returncode == 2
    mirror = "http://127.0.0.1:9/debian"
    assert done.stderr.strip().splitlines() == [
        f"xvpci: error: provisioning failed: cannot download from {mirror} (no network?)"
    ]
    assert not list((tmp_path / "cache").glob("qemu-root*/"))  # no half-built root left
