"""The pytest plugin as a user's test suite sees it (pytester, real QEMU where needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vfio_bridge.models import DECODERS


def test_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    out = result.stdout.str()
    for option in (
        "--guest={linux,macos}",
        "--model=MODEL",
        "--xvpci-out=XVPCI_OUT",
        "--xvpci-accel",
    ):
        assert option in out


def test_macos_without_images_skips_with_one_exact_line(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    monkeypatch.delenv("XVPCI_MACOS_IMAGE", raising=False)
    pytester.makepyfile("def test_on_mac(guest):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess("--guest=macos", "-rs")
    result.assert_outcomes(skipped=1)
    expected = (
        "macOS guest not configured: set XVPCI_MACOS_IMAGE, XVPCI_OPENCORE_IMAGE, "
        "XVPCI_MACOS_OSK, XVPCI_MACOS_USER, XVPCI_MACOS_SSH_KEY, XVPCI_MACOS_HOST_KEY "
        "(or name a TOML file in XVPCI_MACOS_CONFIG)"
    )
    assert any(expected in line for line in result.stdout.lines)


def test_vfio_device_fixture_serves_the_chosen_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from vfio_bridge.client import VfioUserClient

        def test_edu(vfio_device):
            with VfioUserClient(vfio_device.socket_path) as client:
                client.negotiate()
                assert client.read32(0, 0) == 0x010000ED
            assert vfio_device.log_path.parent.name.endswith("test_edu")
        """
    )
    result = pytester.runpytest_subprocess("--model=edu", f"--xvpci-out={pytester.path / 'out'}")
    result.assert_outcomes(passed=1)
    logs = list((pytester.path / "out").rglob("edu.jsonl"))
    assert len(logs) == 1 and logs[0].stat().st_size > 0


@pytest.mark.qemu
def test_guest_and_crossval_fixtures(
    pytester: pytest.Pytester, qemu, linux_image, monkeypatch
) -> None:
    """crossval passes when the paths agree and fails, naming the command, when the model
    answers one command wrongly on one path (the NVMe model's ``perturb`` option)."""
    # pytester gives the inner run its own HOME: point it at the cache this session uses.
    monkeypatch.setenv("XVPCI_CACHE", str(linux_image.directory.parents[1]))
    pytester.makepyfile(
        f"""
        def test_guest_sees_the_model(guest):
            assert "1b36:00ee" in guest.ssh.run("lspci -n").check().stdout

        def test_paths_agree(crossval):
            result = crossval(workload="fio-pattern")
            assert result.verdict is not None and result.verdict.equivalent

        def test_perturbed(crossval):
            # The model flips a byte of what it returns for one verify read, behind the
            # window only; fio notices on that path, the diff says at which command.
            crossval(workload="fio-pattern", path_options={{"window": ["{PERTURB}"]}})
        """
    )
    result = pytester.runpytest_subprocess(
        f"--xvpci-out={pytester.path / 'out'}", "-p", "no:cacheprovider", "-rf"
    )
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "FAILED test_guest_and_crossval_fixtures.py::test_perturbed" in out
    assert "workload fio-pattern failed on the window path" in out
    assert "the paths diverge" in out and "DIVERGED (transactions)" in out
    assert "first divergence [data] in B" in out and "reports: " in out

    # The first divergence is the perturbed command: the 2100th I/O command on the
    # window path, the same read (LBA, length) as the direct path's 2100th.
    [run] = (pytester.path / "out").glob("*test_perturbed")
    report = json.loads((run / "report" / "diff.json").read_text())["transaction"]
    first = report["divergences"][0]
    assert (first["kind"], first["side"]) == ("data", "B")
    io_b = _io_commands(run / "window" / "nvme.jsonl")
    io_a = _io_commands(run / "direct" / "nvme.jsonl")
    perturbed = io_b[PERTURBED_COMMAND - 1]
    assert perturbed.op == "read" and first["seqs_b"] == list(perturbed.seqs)
    assert first["transaction_b"]["read"] == [[perturbed.read[0].lba, perturbed.read[0].blocks]]
    twin = io_a[PERTURBED_COMMAND - 1]
    assert twin.op == "read" and _blocks(twin) == _blocks(perturbed)
    assert list((run / "report").glob("diff.html"))


PERTURBED_COMMAND = 2100  # one of fio-pattern's verify reads
PERTURB = f"perturb=read_byte@{PERTURBED_COMMAND}"


def _blocks(txn) -> list[tuple[int, int]]:
    return [(extent.lba, extent.blocks) for extent in txn.read]


def _io_commands(log: Path) -> list:
    """The I/O (not admin) commands of an NVMe log, decoded, in submission order."""
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    txns = DECODERS[header["model"]](header, (json.loads(line) for line in lines[1:-1]))
    return sorted((t for t in txns if t.queue != 0), key=lambda t: t.seqs[0])
