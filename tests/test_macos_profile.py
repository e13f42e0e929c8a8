"""The macOS guest profile: host checks, and the command line checked against the
installed QEMU with the real model servers attached (no macOS image needed)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import paramiko
import pytest

from harness.errors import HarnessError
from harness.guest import FIRST_MODEL_SLOT, ModelAttachment, model_addresses
from harness.machine import GuestBootError, Machine
from harness.macos import (
    ENV,
    IGNORE_MSRS,
    OVMF_CODE,
    OVMF_VARS,
    MacosConfig,
    ignore_msrs_problem,
    ovmf_pair,
)
from harness.macos_guest import MacosGuest
from harness.qemu_install import QemuInstall

# Sizes from edk2 OvmfPkg/Include/Fdf/OvmfPkgDefines.fdf.inc (CODE_SIZE, VARS_SIZE).
CODE_1M, CODE_2M, CODE_4M = 0x0E0000, 0x1E0000, 0x37C000
VARS_SMALL, VARS_4M = 0x20000, 0x84000
NO_QEMU = QemuInstall(Path("/nonexistent/bin/qemu-system-x86_64"))  # as with XVPCI_QEMU


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in [*ENV.values(), "XVPCI_MACOS_CONFIG"]:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.fixture
def msrs_ignored(tmp_path: Path) -> Path:
    """A stand-in for /sys/module/kvm/parameters/ignore_msrs that says Y."""
    path = tmp_path / "ignore_msrs"
    path.write_text("Y\n")
    return path


def _sized(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def _configure(env: pytest.MonkeyPatch, tmp_path: Path, qemu: QemuInstall | None = None) -> None:
    """Every required setting, with real qcow2 images when ``qemu`` is given."""
    images = {}
    for name in ("macos", "opencore"):
        images[name] = tmp_path / f"{name}.qcow2"
        if qemu is None:
            images[name].write_bytes(b"")
        else:
            subprocess.run(
                qemu.img_argv("create", "-q", "-f", "qcow2", str(images[name]), "64M"), check=True
            )
    key = tmp_path / "key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(key))
    host = paramiko.ECDSAKey.generate()
    host_key = f"{host.get_name()} {host.get_base64()}"
    for variable, value in {
        "XVPCI_MACOS_IMAGE": images["macos"], "XVPCI_OPENCORE_IMAGE": images["opencore"],
        "XVPCI_MACOS_OSK": "not-the-real-key", "XVPCI_MACOS_USER": "admin",
        "XVPCI_MACOS_SSH_KEY": key, "XVPCI_MACOS_HOST_KEY": host_key,
    }.items():  # fmt: skip
        env.setenv(variable, str(value))


def _one_line(exc: pytest.ExceptionInfo[HarnessError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_missing_pieces_are_named_in_one_line(clean_env, tmp_path: Path) -> None:
    assert "set XVPCI_MACOS_IMAGE, XVPCI_OPENCORE_IMAGE" in MacosConfig.load().missing()
    config = tmp_path / "macos.toml"
    config.write_text(
        'macos_image = "/nope/macos.qcow2"\nopencore_image = "/nope/oc.qcow2"\nsmc_osk = "x"\n'
        'ssh_user = "admin"\nssh_key = "/nope/key"\nhost_key = "ssh-ed25519 AAAA"\n'
    )
    clean_env.setenv("XVPCI_MACOS_CONFIG", str(config))
    assert (
        MacosConfig.load().missing()
        == "macOS guest: XVPCI_MACOS_IMAGE=/nope/macos.qcow2 is not a file"
    )


def test_ssh_timeout_is_configurable(clean_env, tmp_path: Path) -> None:
    _configure(clean_env, tmp_path)
    assert MacosConfig.load().ssh_timeout == 900
    clean_env.setenv("XVPCI_MACOS_SSH_TIMEOUT", "1800")
    assert MacosConfig.load().ssh_timeout == 1800
    clean_env.setenv("XVPCI_MACOS_HOST_KEY", "ssh-ed25519")
    assert MacosConfig.load().missing() == (
        "macOS guest: XVPCI_MACOS_HOST_KEY: host key 'ssh-ed25519' is not of the form 'TYPE BASE64'"
    )
    clean_env.setenv("XVPCI_MACOS_HOST_KEY", "ssh-ed25519 AAAA")
    assert (
        MacosConfig.load()
        .missing()
        .startswith(
            "macOS guest: XVPCI_MACOS_HOST_KEY: host key ssh-ed25519 AAAA... does not decode"
        )
    )
    clean_env.setenv("XVPCI_MACOS_HOST_KEY", "ssh-dss AAAA")
    assert "unsupported host key type ssh-dss" in MacosConfig.load().missing()
    _configure(clean_env, tmp_path)
    clean_env.setenv("XVPCI_MACOS_SSH_TIMEOUT", "soon")
    assert MacosConfig.load().missing() == (
        "macOS guest: XVPCI_MACOS_SSH_TIMEOUT=soon is not a positive number of seconds"
    )


def test_ignore_msrs_is_checked_and_the_fix_named(clean_env, tmp_path: Path) -> None:
    path = tmp_path / "ignore_msrs"
    path.write_text("Y\n")
    assert ignore_msrs_problem(path) is None
    path.write_text("N\n")
    problem = ignore_msrs_problem(path)
    assert problem == (
        f"macOS guest needs kvm.ignore_msrs=1 ({path} is N): echo 1 | sudo tee {IGNORE_MSRS} "
        "(to keep it: `options kvm ignore_msrs=1` in /etc/modprobe.d/kvm.conf)"
    )
    absent = ignore_msrs_problem(tmp_path / "no-kvm")
    assert absent is not None and "\n" not in absent
    assert "is the kvm module loaded?" in absent and f"sudo tee {IGNORE_MSRS}" in absent
    # The guest refuses before starting anything (no workdir is even made).
    _configure(clean_env, tmp_path)
    _sized(tmp_path / "fw" / "CODE.fd", CODE_4M)
    _sized(tmp_path / "fw" / "VARS.fd", VARS_4M)
    clean_env.setenv("XVPCI_OVMF_CODE", str(tmp_path / "fw" / "CODE.fd"))
    clean_env.setenv("XVPCI_OVMF_VARS", str(tmp_path / "fw" / "VARS.fd"))
    with pytest.raises(HarnessError) as exc:
        MacosGuest(NO_QEMU, MacosConfig.load(), tmp_path / "work", ignore_msrs=path)
    assert _one_line(exc) == problem
    assert not (tmp_path / "work").exists()
    path.write_text("Y\n")
    guest = MacosGuest(NO_QEMU, MacosConfig.load(), tmp_path / "work", ignore_msrs=path)
    assert guest.ovmf.code == tmp_path / "fw" / "CODE.fd"


@pytest.mark.parametrize(
    ("code", "vars_"),
    [(CODE_4M, VARS_4M), (CODE_2M, VARS_SMALL), (CODE_1M, VARS_SMALL)],
    ids=["debian-4M", "osx-kvm-2M", "1M"],
)
def test_ovmf_pairs_of_one_build_are_accepted(clean_env, tmp_path: Path, code, vars_) -> None:
    clean_env.setenv("XVPCI_OVMF_CODE", str(_sized(tmp_path / "OVMF_CODE.fd", code)))
    clean_env.setenv("XVPCI_OVMF_VARS", str(_sized(tmp_path / "OVMF_VARS.fd", vars_)))
    pair = ovmf_pair(MacosConfig.load(), NO_QEMU)
    assert (pair.code, pair.vars) == (tmp_path / "OVMF_CODE.fd", tmp_path / "OVMF_VARS.fd")


@pytest.mark.parametrize(
    ("code", "vars_", "expected"),
    [
        (
            CODE_2M,
            VARS_4M,
            "is a 2 MiB build and needs 0x20000-byte VARS, but VARS {vars} has 0x84000 bytes "
            "(the size of a 4 MiB build's VARS): use the VARS file shipped with that CODE",
        ),
        (
            CODE_4M,
            VARS_SMALL,
            "is a 4 MiB build and needs 0x84000-byte VARS, but VARS {vars} has 0x20000 bytes "
            "(the size of a 1 MiB or 2 MiB build's VARS)",
        ),
        (CODE_4M, 0x1000, "has 0x1000 bytes (no known VARS size)"),
        # The unified OVMF.fd (CODE and VARS in one image) is not a CODE image.
        (0x400000, VARS_4M, "has 0x400000 bytes, not the size of a raw OVMF CODE image"),
    ],
    ids=["2M-code-4M-vars", "4M-code-128K-vars", "odd-vars", "unified-image"],
)
def test_ovmf_files_that_are_no_pair_are_refused_in_one_line(
    clean_env, tmp_path: Path, code, vars_, expected
) -> None:
    code_path = _sized(tmp_path / "OVMF_CODE.fd", code)
    vars_path = _sized(tmp_path / "OVMF_VARS.fd", vars_)
    toml = tmp_path / "macos.toml"  # the config file's keys, this time
    toml.write_text(f'ovmf_code = "{code_path}"\novmf_vars = "{vars_path}"\n')
    clean_env.setenv("XVPCI_MACOS_CONFIG", str(toml))
    with pytest.raises(HarnessError) as exc:
        ovmf_pair(MacosConfig.load(), NO_QEMU)
    assert expected.format(vars=vars_path) in _one_line(exc)


def test_ovmf_must_be_named_in_pairs(clean_env, tmp_path: Path) -> None:
    clean_env.setenv("XVPCI_OVMF_CODE", str(_sized(tmp_path / "OVMF_CODE.fd", CODE_2M)))
    with pytest.raises(HarnessError) as exc:
        ovmf_pair(MacosConfig.load(), NO_QEMU)
    assert _one_line(exc) == (
        "macOS guest: XVPCI_OVMF_CODE is set but XVPCI_OVMF_VARS is not; name both OVMF files "
        "(a CODE and the VARS of the same build) or neither"
    )
    clean_env.setenv("XVPCI_OVMF_VARS", str(tmp_path / "absent.fd"))
    with pytest.raises(HarnessError) as exc:
        ovmf_pair(MacosConfig.load(), NO_QEMU)
    assert _one_line(exc) == f"macOS guest: OVMF VARS {tmp_path / 'absent.fd'} is not a file"


def test_ovmf_lookup_without_a_named_pair(clean_env, tmp_path: Path) -> None:
    # XVPCI_QEMU with nothing under its prefix: say how to name a pair.
    binary = tmp_path / "prefix" / "bin" / "qemu-system-x86_64"
    with pytest.raises(HarnessError) as exc:
        ovmf_pair(MacosConfig.load(), QemuInstall(binary))
    assert "set XVPCI_OVMF_CODE and XVPCI_OVMF_VARS" in _one_line(exc)
    assert f"XVPCI_QEMU={binary}" in str(exc.value)
    # ... and the pair under its prefix when there is one (Debian's /usr/share/OVMF).
    _sized(tmp_path / "prefix" / OVMF_CODE, CODE_4M)
    _sized(tmp_path / "prefix" / OVMF_VARS, VARS_4M)
    pair = ovmf_pair(MacosConfig.load(), QemuInstall(binary))
    assert pair.code == tmp_path / "prefix" / OVMF_CODE
    # A provisioned root's own pair; a named pair wins over it.
    root = tmp_path / "root"
    _sized(root / "usr" / OVMF_CODE, CODE_4M)
    _sized(root / "usr" / OVMF_VARS, VARS_4M)
    rooted = QemuInstall(root / "usr/bin/qemu-system-x86_64", root)
    assert ovmf_pair(MacosConfig.load(), rooted).vars == root / "usr" / OVMF_VARS
    clean_env.setenv("XVPCI_OVMF_CODE", str(_sized(tmp_path / "osx-kvm" / "CODE.fd", CODE_2M)))
    clean_env.setenv("XVPCI_OVMF_VARS", str(_sized(tmp_path / "osx-kvm" / "VARS.fd", VARS_SMALL)))
    assert ovmf_pair(MacosConfig.load(), rooted).code == tmp_path / "osx-kvm" / "CODE.fd"


def test_models_get_pinned_slots_in_order() -> None:
    models = [
        ModelAttachment("nvme"),
        ModelAttachment("edu", pci_addr="0x11"),
        ModelAttachment("x"),
    ]
    assert model_addresses(models) == ["0x10", "0x11", "0x12"]
    assert model_addresses([ModelAttachment("a"), ModelAttachment("b")]) == ["0x10", "0x11"]
    with pytest.raises(HarnessError, match="more models than free slots"):
        model_addresses([ModelAttachment(str(n)) for n in range(16)])


@pytest.mark.qemu
def test_command_line_has_display_cpu_flag_and_pinned_models(
    qemu, clean_env, tmp_path: Path, msrs_ignored: Path
) -> None:
    """The project's own machine, with the real servers attached, started paused under
    TCG (-S, so nothing boots) and read back over QMP."""
    _configure(clean_env, tmp_path, qemu)
    models = [
        ModelAttachment("nvme", ["size=32m"], name="direct"),
        ModelAttachment("window", ["child=nvme"], path_label="window", name="window"),
    ]
    guest = MacosGuest(qemu, MacosConfig.load(), tmp_path, models, ignore_msrs=msrs_ignored)
    try:
        spec = guest.machine_spec(guest.serve_models())
        paused = dataclasses.replace(spec, accel="tcg", extra_args=[*spec.extra_args, "-S"])
        guest.machine = machine = Machine(qemu, paused, tmp_path, name="macos")
        argv = machine.argv()
        assert argv[argv.index("-display") + 1] == "none"
        cpu = argv[argv.index("-cpu") + 1].split(",")
        assert "vmware-cpuid-freq=on" in cpu and "+invtsc" in cpu
        machine.start()
        devices = [d for bus in machine.command("query-pci") for d in bus["devices"]]
        at = {(d["bus"], d["slot"], d["function"]): d for d in devices}
        ids = {(d["id"]["vendor"], d["id"]["device"]) for d in devices}
        assert (0x15AD, 0x0405) in ids  # vmware-svga: OpenCore's GOP
        assert (0x15AD, 0x07B0) in ids  # vmxnet3
        assert (0x8086, 0x2922) in ids  # ich9-ahci
        assert (0x1B36, 0x000D) in ids  # qemu-xhci
        direct, window = at[(0, FIRST_MODEL_SLOT, 0)], at[(0, FIRST_MODEL_SLOT + 1, 0)]
        assert (direct["id"]["vendor"], direct["id"]["device"]) == (0x1B36, 0x00EE)
        assert (window["id"]["vendor"], window["id"]["device"]) == (0x8086, 0xA77F)
        path = machine.command("query-cpus-fast")[0]["qom-path"]
        assert machine.command("qom-get", path=path, property="vmware-cpuid-freq") is True
    finally:
        guest.stop()


@pytest.mark.qemu
def test_ssh_timeout_message_says_to_check_auto_boot(
    qemu, clean_env, tmp_path: Path, msrs_ignored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real start(), with TCG instead of KVM: nothing answers SSH (the disks are empty)."""
    import harness.macos_guest

    _configure(clean_env, tmp_path, qemu)
    clean_env.setenv("XVPCI_MACOS_SSH_TIMEOUT", "2")
    options = {**harness.macos_guest.machine_options(), "accel": "tcg", "memory_mib": 512}
    monkeypatch.setattr(harness.macos_guest, "machine_options", lambda: options)
    guest = MacosGuest(qemu, MacosConfig.load(), tmp_path, ignore_msrs=msrs_ignored)
    assert guest.ssh_timeout == 2  # from the configuration
    with pytest.raises(GuestBootError) as exc, guest:
        pass
    text = _one_line(exc)
    assert text.startswith("macOS did not answer SSH within 2 s: check that the OpenCore image ")
    assert "ShowPicker=false" in text and "XVPCI_MACOS_SSH_TIMEOUT" in text
