"""The coverage-guided fuzz target: its regressions replay, and a fixed budget runs in CI.

Every input in ``fuzz/regressions/`` is replayed through the target and checked for
the behaviour it is about (:data:`EXPECTED`, by file name): the replies the server
sent, each as (msg_id, command, size, flags, errno) at the specification's offsets.

``XVPCI_FUZZ_SECONDS`` sets the CI budget (default 60 s, some tens of thousands
of inputs here); ``python -m fuzz`` runs longer on demand (see ``fuzz/__main__.py``).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.dispatch import MAX_DATA_XFER, Harness, seed_inputs
from vfio_bridge.dispatch import Dispatcher

REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz" / "regressions"
ROOT = REGRESSIONS.parents[1]


REPLY, ERROR = 0x1, 0x20
VERSION, REGION_READ, REGION_WRITE = 1, 9, 10
CONFIG = 7  # VFIO_PCI_CONFIG_REGION_INDEX
EDU_IDS = bytes.fromhex("3412e811")  # vendor 0x1234, device 0x11e8, at config offset 0


def _header(reply: bytes) -> tuple[int, int, int, int, int]:
    return struct.unpack_from("<HHIII", reply)


def _refused(msg_id: int, command: int, err: int) -> tuple[int, int, int, int, int]:
    return (msg_id, command, 16, REPLY | ERROR, err)


def _no_reply_to_failed_no_reply_requests(harness: Harness) -> None:
    # ids 3-5 fail (absent BAR1, unknown command, past config space), all with NO_REPLY;
    # id 6 reads the vendor and device ids and is the only reply after VERSION's.
    replies = harness.replies
    assert [_header(r)[0] for r in replies] == [0, 6]
    assert _header(replies[1]) == (6, REGION_READ, 16 + 16 + 4, REPLY, 0)
    assert replies[1][32:36] == EDU_IDS


def _einval_for_out_of_range_access(harness: Harness) -> None:
    # config read at 4096, an 8-byte write across BAR0's end, absent BAR1, region 12
    replies = harness.replies
    assert [_header(r) for r in replies[1:]] == [
        _refused(3, REGION_READ, errno.EINVAL),
        _refused(4, REGION_WRITE, errno.EINVAL),
        _refused(5, REGION_READ, errno.EINVAL),
        _refused(6, REGION_READ, errno.EINVAL),
    ]


def _einval_for_migration_commands(harness: Harness) -> None:
    # DIRTY_PAGES, DEVICE_FEATURE, MIG_DATA_READ, MIG_DATA_WRITE: no migration here
    replies = harness.replies
    assert [_header(r) for r in replies[1:]] == [
        _refused(msg_id, command, errno.EINVAL)
        for msg_id, command in ((3, 14), (4, 16), (5, 17), (6, 18))
    ]


def _own_max_xfer_after_a_1k_offer(harness: Harness) -> None:
    # id 3: VERSION offering 1 KiB gets ours back; id 4: a 2 KiB config read is served
    replies = harness.replies
    assert _header(replies[1])[:2] == (3, VERSION)
    caps = json.loads(replies[1][20:].rstrip(b"\0"))["capabilities"]
    assert caps["max_data_xfer_size"] == MAX_DATA_XFER != 1024
    assert _header(replies[2]) == (4, REGION_READ, 16 + 16 + 2048, REPLY, 0)
    assert replies[2][32:36] == EDU_IDS


def _e2big_for_read_over_our_max_xfer(harness: Harness) -> None:
    # id 3: a read of exactly our limit is served; id 4: one byte more is E2BIG
    replies = harness.replies
    assert [_header(r) for r in replies[1:]] == [
        (3, REGION_READ, 16 + 16 + MAX_DATA_XFER, REPLY, 0),
        _refused(4, REGION_READ, errno.E2BIG),
    ]


def _invalid_field_for_a_log_page_over_mdts(harness: Harness) -> None:
    # Get Log Page asking for 2**28 dwords (1 GiB), over MDTS: refused (QEMU's
    # nvme_get_log), where the model padded the page to it and CI's fuzzer ran out of
    # memory. Its completion, the first of the admin queue in shared memory:
    completion = os.pread(harness.memfd, 16, 0x1000)
    status = int.from_bytes(completion[14:16], "little") >> 1
    assert completion[12:14] == (1).to_bytes(2, "little")  # command id 1
    assert status == 0x2  # Invalid Field in Command


#: What each file in fuzz/regressions/ must do; a new file needs an entry here.
EXPECTED = {
    "no-reply-to-failed-no-reply-requests.bin": _no_reply_to_failed_no_reply_requests,
    "einval-for-out-of-range-access.bin": _einval_for_out_of_range_access,
    "einval-for-migration-commands.bin": _einval_for_migration_commands,
    "own-max-xfer-advertised-2k-read-served-after-1k-offer.bin": _own_max_xfer_after_a_1k_offer,
    "e2big-for-read-over-our-max-xfer.bin": _e2big_for_read_over_our_max_xfer,
    "invalid-field-for-a-log-page-over-mdts.bin": _invalid_field_for_a_log_page_over_mdts,
}
REGRESSION_FILES = sorted(path.name for path in REGRESSIONS.iterdir() if path.name != ".keep")


@pytest.mark.parametrize("name", REGRESSION_FILES)
def test_regression_input_behaves_as_expected(name: str) -> None:
    assert name in EXPECTED, f"fuzz/regressions/{name} has no expected behaviour in EXPECTED"
    harness = Harness()
    harness.run((REGRESSIONS / name).read_bytes())
    assert _header(harness.replies[0])[:2] == (0, VERSION)  # the target's own VERSION
    EXPECTED[name](harness)


def test_every_expectation_has_its_input() -> None:
    assert sorted(EXPECTED) == REGRESSION_FILES


def _cases() -> list[tuple[str, bytes]]:
    cases = sorted(seed_inputs().items())
    cases += [(path.name, path.read_bytes()) for path in sorted(REGRESSIONS.glob("*"))]
    return cases


CASES = _cases()


@pytest.mark.parametrize(("name", "data"), CASES, ids=[name for name, _ in CASES])
def test_seed_and_regression_inputs_run_clean(name: str, data: bytes) -> None:
    harness = Harness()
    harness.run(data)
    harness.run(data)  # and again: no state leaks from one input into the next


def test_a_snapshot_model_behaves_as_a_freshly_built_one() -> None:
    snapshot, built = Harness(), Harness(snapshot=False)
    for data in seed_inputs().values():
        snapshot.run(data)
        built.run(data)
        assert snapshot.replies == built.replies and len(snapshot.replies) > 3
        assert os.pread(snapshot.memfd, 1 << 16, 0) == os.pread(built.memfd, 1 << 16, 0)


def test_an_input_behaves_the_same_whatever_ran_before() -> None:
    """libFuzzer's rule: the I/O-queue seed leaves queues and data in the shared
    memory; the admin seed run after it must not see them."""
    seeds = seed_inputs()
    alone = Harness()
    alone.run(seeds["nvme-admin"])
    after = Harness()
    after.run(seeds["nvme-io-queues"])
    after.run(seeds["nvme-admin"])
    assert after.replies == alone.replies
    assert os.pread(after.memfd, 1 << 16, 0) == os.pread(alone.memfd, 1 << 16, 0)


def test_seeds_reach_the_nvme_command_paths() -> None:
    """The seeds are only useful if they get past bring-up; check the completions."""
    harness = Harness()
    harness.run(seed_inputs()["nvme-admin"])
    completions = os.pread(harness.memfd, 32, 0x1000)
    identify_status = int.from_bytes(completions[14:16], "little") >> 1
    bogus_cq_status = int.from_bytes(completions[30:32], "little") >> 1
    assert identify_status == 0
    assert bogus_cq_status == 0x102  # Invalid Queue Size, a defined device error


@pytest.mark.parametrize(("setup", "hot"), [(1, 2), (5, 1)], ids=["one-per-receive", "burst"])
def test_the_target_reaches_the_servers_region_access_hot_path(
    monkeypatch: pytest.MonkeyPatch, setup: int, hot: int
) -> None:
    """The target drives the session loop through its real channel, so region accesses
    are fuzzed on the hot path too: two config reads, each alone in its receive (both
    hot), or together in one (the first hot, the second framed into the backlog).
    (Setup bit 0 maps shared memory, a message with a descriptor, which arrives on
    its own: the reads' burst does not begin with VERSION.)"""
    taken = []
    region_access = Dispatcher.region_access

    def counted(self: Dispatcher, *access: object) -> object:
        taken.append(access)
        return region_access(self, *access)

    monkeypatch.setattr(Dispatcher, "region_access", counted)
    read = struct.pack("<BBH", REGION_READ, 0, 16) + struct.pack("<QII", 0, CONFIG, 4)
    harness = Harness()
    harness.run(bytes([0, setup]) + read + read)  # model 0: edu
    assert len(taken) == hot
    assert [_header(r) for r in harness.replies[2:]] == [  # after VERSION's and DMA_MAP's
        (msg_id, REGION_READ, 16 + 16 + 4, REPLY, 0) for msg_id in (3, 4)
    ]
    assert [r[32:36] for r in harness.replies[2:]] == [EDU_IDS, EDU_IDS]


def test_fuzz_budget(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    seconds = int(os.environ.get("XVPCI_FUZZ_SECONDS", "60"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in CASES:
        (corpus / name).write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz", f"-max_total_time={seconds}", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300, check=False,
    )  # fmt: skip
    # libFuzzer names an artifact by what went wrong: crash-, leak-, oom- (over the
    # 2 GiB default of -rss_limit_mb), timeout-.
    crashes = [path for path in sorted(tmp_path.iterdir()) if path.is_file()]
    found = "\n".join(
        f"{path.name}: {base64.b64encode(path.read_bytes()).decode()}" for path in crashes
    )
    assert proc.returncode == 0 and not crashes, (
        f"the fuzzer found a crash; add it to fuzz/regressions/:\n{found}\n{proc.stderr[-4000:]}"
    )
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done and int(done.group(1)) > len(CASES), proc.stderr[-2000:]  # it fuzzed
    print(f"fuzzed {done.group(1)} inputs, corpus {len(list(corpus.iterdir()))} files")
