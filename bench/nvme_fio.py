"""NVMe in the Linux guest: our model over vfio-user vs QEMU's built-in ``-device nvme``.

Same guest image, same accelerator, same fio jobs, both measured in this run.
Usage: python -m bench.nvme_fio [--seconds N] [--size-mib N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness.guest import LinuxGuest, ModelAttachment
from harness.linux_image import build
from harness.qemu_install import find_qemu

from .common import print_table, save

JOBS = {
    "randread 4k qd16": "--rw=randread --bs=4k --iodepth=16",
    "randwrite 4k qd16": "--rw=randwrite --bs=4k --iodepth=16",
    "seqread 128k qd4": "--rw=read --bs=128k --iodepth=4",
}


def run_jobs(guest: LinuxGuest, device: str, seconds: int) -> dict[str, dict[str, float]]:
    results = {}
    for name, args in JOBS.items():
        command = (
            f"fio --name=bench --filename={device} {args} --ioengine=libaio --direct=1 "
            f"--time_based --runtime={seconds} --ramp_time=1 --output-format=json"
        )
        out = guest.ssh.run(command, timeout=seconds + 120).check().stdout
        job = json.loads(out[out.index("{") :])["jobs"][0]
        side = job["read"] if "read" in args else job["write"]
        results[name] = {"iops": side["iops"], "mib_s": side["bw"] / 1024}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    qemu, image = find_qemu(), build()
    with tempfile.TemporaryDirectory(prefix="xvpci-bench-") as tmp:
        work = Path(tmp)
        model = [ModelAttachment("nvme", [f"size={args.size_mib}m"])]
        with LinuxGuest(qemu, image, work / "model", model) as guest:
            ours = run_jobs(guest, "/dev/nvme0n1", args.seconds)
        disk = work / "builtin.img"
        with open(disk, "wb") as handle:
            handle.truncate(args.size_mib << 20)
        builtin_args = [
            "-drive", f"file={disk},if=none,id=nvm,format=raw,cache=none,aio=threads",
            "-device", "nvme,drive=nvm,serial=builtin",
        ]  # fmt: skip
        with LinuxGuest(qemu, image, work / "builtin", extra_args=builtin_args) as guest:
            builtin = run_jobs(guest, "/dev/nvme0n1", args.seconds)
    rows = []
    for name in JOBS:
        ratio = ours[name]["iops"] / builtin[name]["iops"]
        rows.append(
            [
                name,
                ours[name]["iops"],
                builtin[name]["iops"],
                ratio,
                ours[name]["mib_s"],
                builtin[name]["mib_s"],
            ]
        )
    print_table(
        f"fio in the Linux guest (TCG), {args.seconds} s per job",
        ["job", "model IOPS", "built-in IOPS", "ratio", "model MiB/s", "built-in MiB/s"],
        rows,
    )
    print(f"\nresult: {save('nvme_fio', {'model': ours, 'builtin': builtin})}")


if __name__ == "__main__":
    main()
