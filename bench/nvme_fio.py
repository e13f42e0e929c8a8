"""NVMe in the Linux guest: our model over vfio-user vs QEMU's built-in ``-device nvme``.

One guest holds both controllers, so the guest, the accelerator and the fio
jobs are the same. These machines are noisy (the built-in device alone varies
by a third between two 5 s runs), so each job runs on both devices back to
back in every round, which device goes first alternates, and the ratio is the
median of the per-round ratios.
Usage: python -m bench.nvme_fio [--seconds N] [--rounds N] [--size-mib N] [--job NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    "seqwrite 128k qd4": "--rw=write --bs=128k --iodepth=4",
}
MODEL_SERIAL = "XVPCI0001"
BUILTIN_SERIAL = "builtin"


def namespace_by_serial(guest: LinuxGuest, serial: str) -> str:
    """The guest's block device of the controller with ``serial``."""
    listing = (
        guest.ssh.run("for c in /sys/class/nvme/nvme*; do echo ${c##*/} $(cat $c/serial); done")
        .check()
        .stdout
    )
    for line in listing.splitlines():
        name, _, found = line.partition(" ")
        if found.strip() == serial:
            return f"/dev/{name}n1"
    raise SystemExit(f"no NVMe controller with serial {serial} in the guest:\n{listing}")


def run_job(guest: LinuxGuest, device: str, args: str, seconds: int) -> dict[str, float]:
    command = (
        f"fio --name=bench --filename={device} {args} --ioengine=libaio --direct=1 "
        f"--time_based --runtime={seconds} --ramp_time=1 --output-format=json"
    )
    out = guest.ssh.run(command, timeout=seconds + 120).check().stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["read"] if "read" in args else job["write"]
    return {"iops": side["iops"], "mib_s": side["bw"] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4, help="fio runtime per job and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument(
        "--job", action="append", choices=list(JOBS), help="run only these jobs (repeatable)"
    )
    args = parser.parse_args()
    jobs = {name: JOBS[name] for name in args.job or JOBS}
    qemu, image = find_qemu(), build()
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="xvpci-bench-") as tmp:
        work = Path(tmp)
        disk = work / "builtin.img"
        with open(disk, "wb") as handle:
            handle.truncate(args.size_mib << 20)
        builtin_args = [
            "-drive", f"file={disk},if=none,id=nvm,format=raw,cache=none,aio=threads",
            "-device", f"nvme,drive=nvm,serial={BUILTIN_SERIAL}",
        ]  # fmt: skip
        model = [ModelAttachment("nvme", [f"size={args.size_mib}m", f"serial={MODEL_SERIAL}"])]
        with LinuxGuest(qemu, image, work / "guest", model, extra_args=builtin_args) as guest:
            devices = [
                ("model", namespace_by_serial(guest, MODEL_SERIAL)),
                ("builtin", namespace_by_serial(guest, BUILTIN_SERIAL)),
            ]
            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}/{args.rounds}", flush=True)
                for name, job_args in jobs.items():
                    for side, device in devices if round_no % 2 else devices[::-1]:
                        runs.setdefault((side, name), []).append(
                            run_job(guest, device, job_args, args.seconds)
                        )
    median = {
        key: {m: statistics.median(r[m] for r in results) for m in ("iops", "mib_s")}
        for key, results in runs.items()
    }
    ratios = {
        name: [
            ours["iops"] / builtin["iops"]
            for ours, builtin in zip(runs[("model", name)], runs[("builtin", name)], strict=True)
        ]
        for name in jobs
    }
    rows = []
    for name in jobs:
        ours, builtin = median[("model", name)], median[("builtin", name)]
        rows.append([name, ours["iops"], builtin["iops"], statistics.median(ratios[name]),
                     f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}",
                     ours["mib_s"], builtin["mib_s"]])  # fmt: skip
    print_table(
        f"fio in one Linux guest (TCG), {args.rounds} rounds of {args.seconds} s per job and "
        "device; ratio = median of the per-round ratios",
        ["job", "model IOPS", "built-in IOPS", "ratio", "range", "model MiB/s", "built-in MiB/s"],
        rows,
    )
    result = {side: {name: median[(side, name)] for name in jobs} for side in ("model", "builtin")}
    result["ratio_iops"] = {name: statistics.median(ratios[name]) for name in jobs}
    result["ratio_iops_per_round"] = ratios
    print(f"\nresult: {save('nvme_fio', {'rounds': args.rounds, **result})}")


if __name__ == "__main__":
    main()
