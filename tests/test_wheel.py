"""xvpci as another project installs it: the wheel in a fresh venv, run from an unrelated place.

One test, so the sdist, the wheel (built from that sdist, which checks the
sdist is complete) and the venv are made once and the guests boot once per
step: ``--version``, ``provision --check`` and ``guest build linux`` on the
provisioned cache (the image's hash covers its inputs, so a reused image shows
that the wheel carries the same guest files), ``run`` (both paths, the diff)
and a user's own test file with the README's ``crossval``, ``guest`` and
``vfio_device`` examples under ``pytest -n 2``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What the package leaves out (pyproject.toml's exclude-package-data): build outputs.
BUILD_DIRS = frozenset({"build", "__pycache__"})
BUILD_SUFFIXES = frozenset({".pyc", ".o", ".a", ".so", ".dylib"})


def readme_plugin_examples() -> str:
    """The README's pytest plugin examples, the test file a user starts from."""
    section = (REPO / "README.md").read_text().split("\n## pytest plugin\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run ``argv``; on a timeout end it by its pid (SIGINT first: xvpci stops its guests)."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"{' '.join(argv)} took over {timeout:.0f} s:\n{out[-3000:]}")
    return proc.returncode, out


def package_files(top: str) -> set[str]:
    """Files under the repository's ``top`` directory that the package must carry."""
    root = REPO / top
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file()
        and not BUILD_DIRS & set(path.relative_to(root).parts[:-1])
        and path.suffix not in BUILD_SUFFIXES
    }


@pytest.mark.qemu
def test_wheel_installed_in_a_fresh_venv_does_the_whole_job(
    tmp_path: Path, qemu, linux_image
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["XVPCI_CACHE"] = str(linux_image.directory.parents[1])  # reuse the provisioned cache
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

    dist = tmp_path / "dist"
    status, out = run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)],
        tmp_path, env, 300,
    )  # fmt: skip
    assert status == 0, out[-3000:]
    assert "BuildBackendWarning" not in out and "deprecated" not in out.lower(), out
    wheel = dist / f"xvpci-{version}-py3-none-any.whl"
    sdist = dist / f"xvpci-{version}.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    with tarfile.open(sdist) as archive:
        in_sdist = set(archive.getnames())
    for top, package in (("guests", "harness/assets/guests"), ("kext", "harness/assets/kext")):
        wanted = package_files(top)
        assert wanted and {f"{package}/{name}" for name in wanted} <= in_wheel
        assert {f"xvpci-{version}/{top}/{name}" for name in wanted} <= in_sdist
    assert not any("/build/" in name or name.endswith(".pyc") for name in in_wheel)

    venv = tmp_path / "venv"
    status, out = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env, 60)
    assert status == 0, out
    python = str(venv / "bin/python")  # this suite's pip installs into it: saves seeding a pip
    status, out = run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", str(wheel),
         "pytest-xdist"],
        tmp_path, env, 600,
    )  # fmt: skip
    assert status == 0, out[-3000:]

    user = tmp_path / "user-project"  # unrelated to the repository
    user.mkdir()
    xvpci = str(venv / "bin/xvpci")
    status, out = run([xvpci, "--version"], user, env, 60)
    assert (status, out.strip()) == (0, f"xvpci {version}")
    status, out = run([python, "-c", "import harness; print(harness.__file__)"], user, env, 60)
    assert out.strip().startswith(str(venv)), out
    status, out = run([xvpci, "provision", "--check"], user, env, 120)
    assert status == 0 and "(QEMU 11." in out, out
    status, out = run([xvpci, "guest", "build", "linux"], user, env, 600)
    assert status == 0 and str(linux_image.directory) in out and "up to date" in out, out

    status, out = run([xvpci, "run", "--out", "out"], user, env, 900)
    print(out)
    assert status == 0, out[-3000:]
    assert "direct: fio-pattern passed" in out and "window: fio-pattern passed" in out, out
    assert "EQUIVALENT" in out and (user / "out/report/diff.html").is_file(), out

    (user / "test_my_model.py").write_text(readme_plugin_examples())
    status, out = run(
        [python, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider",
         "--xvpci-out=out/pytest", "test_my_model.py"],
        user, env, 900,
    )  # fmt: skip
    print(out)
    assert status == 0 and "3 passed" in out, out[-3000:]


def test_version_is_pyprojects(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"xvpci {version}\n"


@pytest.mark.parametrize(
    ("argv", "command"),
    [(["provision"], "xvpci provision"), (["guest", "build", "linux"], "xvpci guest build linux")],
)
def test_steps_that_need_root_say_so_in_one_line_naming_the_command(
    argv: list[str], command: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    from harness.cli import main

    monkeypatch.setenv("XVPCI_CACHE", str(tmp_path))  # nothing provisioned or built there
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xvpci: error: "), err
    assert f"needs root (mmdebstrap builds Debian trees): run `{command}` as root" in err
