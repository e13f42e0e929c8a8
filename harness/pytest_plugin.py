"""The xvpci pytest plugin: ``pytest --guest=linux|macos --model M --xvpci-out DIR``.

Fixtures for a user's own tests:

- ``qemu``: the provisioned QEMU 11 (provisioned once per machine, under a lock);
- ``vfio_device``: the chosen model served on a vfio-user socket;
- ``guest``: a booted guest with the model attached directly, reachable over SSH;
- ``crossval``: ``crossval(workload=...)`` runs the workload along both paths
  and returns the run; a divergence fails the test with the first divergence
  and the report paths (also when the workload itself failed on a path: what
  the device did differently is what a failing model's author needs).
  ``path_options={"window": ["perturb=read_byte@2100"]}`` gives the model extra
  options on one path only: a model made wrong on purpose on one path shows
  that the cross-validation catches it.

Reports and logs go to ``<xvpci-out>/<test name>/``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .errors import HarnessError

MACOS_NO_KVM = "macOS guest configured, but KVM does not work on this host (the probe guest hung)"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xvpci", "cross-validation of PCI device models")
    group.addoption(
        "--guest", default="linux", choices=["linux", "macos"], help="guest OS (default linux)"
    )
    group.addoption(
        "--model", default="nvme", help="device model for the xvpci fixtures (default nvme)"
    )
    group.addoption(
        "--xvpci-out", default="xvpci-out", help="directory for per-test logs and reports"
    )
    group.addoption(
        "--xvpci-accel", default="tcg", choices=["tcg", "kvm", "auto"], help="accelerator"
    )


def _require_guest(config: pytest.Config) -> str:
    guest = config.getoption("--guest")
    if guest == "macos":
        from .macos import MacosConfig, preflight

        macos_config = MacosConfig.load()
        missing = macos_config.missing()
        if missing:
            pytest.skip(missing)
        from .accel import choose_accel
        from .linux_image import build, find_image
        from .qemu_install import find_qemu

        qemu = find_qemu()
        try:
            preflight(macos_config, qemu)
        except HarnessError as exc:
            pytest.skip(str(exc))
        if choose_accel("auto", qemu, find_image() or build()) != "kvm":
            pytest.skip(MACOS_NO_KVM)
    return guest


@pytest.fixture(scope="session")
def qemu():
    """The provisioned QEMU 11 (provisioned under the machine-wide lock if missing)."""
    from .qemu_install import find_qemu, provision

    try:
        install = find_qemu()
    except HarnessError:
        install = provision()
    install.check()
    return install


@pytest.fixture(scope="session")
def linux_image(qemu):
    """The cached Linux guest image, built once per machine if missing."""
    from .linux_image import build, find_image

    return find_image() or build()


@pytest.fixture
def xvpci_out(request: pytest.FixtureRequest) -> Path:
    """This test's output directory."""
    base = Path(request.config.getoption("--xvpci-out"))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-120:]
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@pytest.fixture
def vfio_device(request: pytest.FixtureRequest, xvpci_out: Path) -> Iterator[object]:
    """The ``--model`` served on a vfio-user socket (a ServedModel; stopped afterwards)."""
    from .served import ServedModel

    with tempfile.TemporaryDirectory(prefix="xvpci-") as sockdir:
        model = request.config.getoption("--model")
        served = ServedModel(model, Path(sockdir), xvpci_out / f"{model}.jsonl")
        try:
            yield served
        finally:
            served.stop()


@pytest.fixture
def guest(request: pytest.FixtureRequest, qemu, linux_image, xvpci_out: Path) -> Iterator[object]:
    """A booted guest with the model attached directly; ``guest.ssh.run(...)`` inside."""
    guest_os = _require_guest(request.config)
    from .accel import choose_accel
    from .guest import LinuxGuest, ModelAttachment

    model = request.config.getoption("--model")
    if guest_os == "macos":
        from .macos import MacosConfig
        from .macos_guest import MacosGuest

        with MacosGuest(qemu, MacosConfig.load(), xvpci_out, [ModelAttachment(model)]) as booted:
            yield booted
        return
    accel = choose_accel(request.config.getoption("--xvpci-accel"), qemu, linux_image)
    with LinuxGuest(qemu, linux_image, xvpci_out, [ModelAttachment(model)], accel=accel) as booted:
        yield booted


@pytest.fixture
def crossval(
    request: pytest.FixtureRequest, qemu, linux_image, xvpci_out: Path
) -> Callable[..., object]:
    """``crossval(workload="fio-pattern", model=None, options=(), level="transaction",
    path_options=None)``: both paths, diffed; ``level`` says whose verdict counts (``raw``:
    the events); ``path_options`` maps a path ("direct" or "window") to model options
    added on that path only."""
    guest_os = _require_guest(request.config)
    from .progress import Progress
    from .run import run, run_macos

    def cross_validate(
        workload: str = "fio-pattern",
        model: str | None = None,
        options: tuple = (),
        level: str = "transaction",
        path_options: Mapping[str, Sequence[str]] | None = None,
    ):
        chosen = model or request.config.getoption("--model")
        paths = ["direct", "window"]
        if guest_os == "macos":  # the macOS workload is raw-device verification
            progress = Progress("run", quiet=True)
            result = run_macos(chosen, paths, xvpci_out, list(options), progress, path_options)
        else:
            result = run(
                chosen, paths, workload, xvpci_out, list(options),
                accel=request.config.getoption("--xvpci-accel"), level=level,
                path_options=path_options,
            )  # fmt: skip
        problems = []
        failed = [r for r in result.results if not r.passed]
        if failed:
            tail = "\n".join(failed[0].output.strip().splitlines()[-10:])
            problems.append(f"workload {workload} failed on the {failed[0].path} path:\n{tail}")
        if result.verdict is not None and not result.verdict.equivalent:
            problems.append(f"the paths diverge:\n{result.verdict.text}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
        return result

    return cross_validate
