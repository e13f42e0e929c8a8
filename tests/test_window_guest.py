"""The window path in a real Linux guest: the stock vmd driver publishes the child."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest import LinuxGuest, ModelAttachment
from harness.run import run
from tests.conftest import has, read_log

pytestmark = pytest.mark.qemu


def _describe(guest: LinuxGuest) -> dict[str, tuple[str, ...]]:
    """Per NVMe function: ids, class and the BAR sizes the guest sees (from sysfs)."""
    script = r"""for d in /sys/bus/pci/devices/*; do
        [ "$(cat $d/vendor)" = 0x1b36 ] || continue
        bars=""
        i=0
        while read start end flags; do
            [ $i -lt 6 ] && [ "$end" != 0x0000000000000000 ] && bars="$bars $i:$((end - start + 1))"
            i=$((i + 1))
        done < $d/resource
        ids="$(cat $d/vendor) $(cat $d/device) $(cat $d/class) $(cat $d/revision)"
        echo "$(basename $d) $ids$bars"
    done"""
    lines = guest.ssh.run(script).check().stdout.strip().splitlines()
    return {line.split()[0]: tuple(line.split()[1:]) for line in lines}


def test_child_behind_the_window_looks_like_the_direct_device(
    linux_image, qemu, tmp_path: Path
) -> None:
    models = [
        ModelAttachment("nvme", ["size=32m"], name="direct"),
        ModelAttachment(
            "window",
            ["child=nvme", "child_options=size=32m;serial=XVPCI0002"],  # one serial = one subsystem
            path_label="window",
            name="window",
        ),
    ]
    with LinuxGuest(qemu, linux_image, tmp_path, models) as guest:
        seen = _describe(guest)
        direct = [v for bdf, v in seen.items() if not bdf.startswith("10000:")]
        behind = [v for bdf, v in seen.items() if bdf.startswith("10000:")]
        assert len(direct) == 1 and len(behind) == 1, seen
        assert direct[0] == behind[0]  # vendor, device, class, revision, BAR sizes
        assert direct[0][:3] == ("0x1b36", "0x00ee", "0x010802")
        drivers = (
            guest.ssh.run("ls /sys/bus/pci/drivers/vmd /sys/bus/pci/drivers/nvme").check().stdout
        )
        # Models sit at pinned slots in attachment order: direct 0x10, window 0x11.
        assert "10000:00:00.0" in drivers and "0000:00:10.0" in drivers
        assert "0000:00:11.0" in guest.ssh.run("ls /sys/bus/pci/drivers/vmd").check().stdout
    header, events, _ = read_log(tmp_path / "window.jsonl")
    assert (
        header["path"] == "window" and header["model"] == "nvme" and header["window"] == "8086:a77f"
    )
    assert any(e.get("stream") == "window" for e in events)
    assert any(
        has(e, kind="cfg_read", offset=0, value=0x00EE1B36) and "stream" not in e for e in events
    )


def test_fs_verify_on_both_paths(linux_image, tmp_path: Path) -> None:
    result = run("nvme", ["direct", "window"], "fs-verify", tmp_path, options=["size=64m"])
    assert [r.path for r in result.results] == ["direct", "window"]
    for path_result in result.results:
        output = (tmp_path / path_result.path / "fs-verify.out").read_text()
        assert path_result.passed, output
        assert "fs-verify: 7 files verified" in output
        assert path_result.log.exists()
    serial = (tmp_path / "window" / "linux.serial.log").read_text()
    assert "vmd 0000:00:10.0: Bound to PCI domain 10000" in serial  # the pinned slot
    assert "nvme nvme0: pci function 10000:00:00.0" in serial


def test_edu_through_the_window(linux_image, qemu, tmp_path: Path) -> None:
    models = [ModelAttachment("window", ["child=edu"], path_label="window", name="edu")]
    with LinuxGuest(qemu, linux_image, tmp_path, models) as guest:
        script = """d=/sys/bus/pci/devices/10000:00:00.0
            cat $d/vendor $d/device
            echo 1 > $d/enable
            bar=$(head -1 $d/resource | cut -d' ' -f1)
            devmem $bar 32
            devmem $((bar + 8)) 32 6
            devmem $((bar + 8)) 32
        """
        out = guest.ssh.run(script).check().stdout.split()
        assert out[:2] == ["0x1234", "0x11e8"]
        assert [int(v, 16) for v in out[2:]] == [0x010000ED, 720]
    _, events, _ = read_log(tmp_path / "edu.jsonl")
    assert any(has(e, kind="mmio_read", bar=0, offset=0, value=0x010000ED) for e in events)
    assert any(has(e, kind="mmio_read", bar=0, offset=8, value=720) for e in events)
