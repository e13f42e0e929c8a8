"""The pytest plugin as a user's test suite sees it (pytester, real QEMU where needed)."""

from __future__ import annotations

import pytest


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
    # pytester gives the inner run its own HOME: point it at the cache this session uses.
    monkeypatch.setenv("XVPCI_CACHE", str(linux_image.directory.parents[1]))
    pytester.makepyfile(
        """
        def test_guest_sees_the_model(guest):
            assert "1b36:00ee" in guest.ssh.run("lspci -n").check().stdout

        def test_paths_diverge(crossval):
            # fs-verify writes the same blocks on both paths, batched differently:
            # equivalent as transactions, not as raw events.
            crossval(workload="fs-verify", level="raw")
        """
    )
    result = pytester.runpytest_subprocess(
        f"--xvpci-out={pytester.path / 'out'}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "the paths diverge" in out and "first divergence [" in out
    assert "reports: " in out and "report" in out
    assert list((pytester.path / "out").rglob("diff.html"))
