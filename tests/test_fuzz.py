"""The coverage-guided fuzz target: its regressions replay, and a fixed budget runs in CI.

``XVPCI_FUZZ_SECONDS`` sets the CI budget (default 60 s, some tens of thousands
of inputs here); ``python -m fuzz`` runs longer on demand (see ``fuzz/__main__.py``).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.dispatch import Harness, seed_inputs

REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz" / "regressions"
ROOT = REGRESSIONS.parents[1]


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
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("leak-*"))
    found = "\n".join(
        f"{path.name}: {base64.b64encode(path.read_bytes()).decode()}" for path in crashes
    )
    assert proc.returncode == 0 and not crashes, (
        f"the fuzzer found a crash; add it to fuzz/regressions/:\n{found}\n{proc.stderr[-4000:]}"
    )
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done and int(done.group(1)) > len(CASES), proc.stderr[-2000:]  # it fuzzed
    print(f"fuzzed {done.group(1)} inputs, corpus {len(list(corpus.iterdir()))} files")
