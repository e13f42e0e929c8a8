#!/usr/bin/env bash
# Set up everything xvpci needs on a fresh Debian machine, as root or with sudo:
# Debian packages, a virtualenv holding the project, QEMU 11 and the Linux
# guest image in the cache. Under sudo the virtualenv and the cache belong to
# the user who ran sudo, so their `.venv/bin/xvpci` finds everything after.
# Prints its own progress lines; apt's and pip's output goes to a log that is
# shown only if they fail. Idempotent: a second run only checks, so it is fast.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp -t xvpci-setup.XXXXXX.log)
trap 'rm -f "$log"' EXIT
quietly() {  # run "$@" with its output in the log; on failure show the log's end
    if ! "$@" >>"$log" 2>&1; then
        echo "ci/setup.sh: failed: $*" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

owner=""
if [[ $(id -u) == 0 && -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
    owner=$SUDO_USER
    owner_home=$(getent passwd "$owner" | cut -d: -f6)
    export XVPCI_CACHE=${XVPCI_CACHE:-$owner_home/.cache/xvpci}
fi

# The virtualenv's interpreter: $XVPCI_PYTHON, else Debian's own python3 (built with
# profile-guided and link-time optimisation, and statically linked: the server's
# CPU per MMIO in bench.mmio_ab is about 17 % lower under it than under a default
# pyenv build, whose python3 may come first on PATH), else python3 on PATH.
python=${XVPCI_PYTHON:-}
if [[ -z $python ]]; then
    python=python3
    [[ -x /usr/bin/python3 ]] && python=/usr/bin/python3
fi

missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v chromium >/dev/null || missing+=(chromium)  # renders the HTML report in a test
"$python" -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
# `xvpci kext check` compiles the macOS kext with clang and reads symbols with llvm-nm;
# it tries ld64.lld for the bundle (Debian names them clang-14, llvm-nm-14, ld64.lld-14)
compgen -c clang | grep -x 'clang\(-[0-9]*\)\?' >/dev/null || missing+=(clang)
compgen -c llvm-nm | grep -x 'llvm-nm\(-[0-9]*\)\?' >/dev/null || missing+=(llvm)
compgen -c ld64.lld | grep -x 'ld64.lld\(-[0-9]*\)\?' >/dev/null || missing+=(lld)
# `xvpci kext testbed` builds the kext's Linux test bed: g++ with static libstdc++/libc, make
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
# `python -m bench.mmio` builds libvfio-user (meson finds json-c and cmocka by pkg-config)
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists json-c 2>/dev/null || missing+=(libjson-c-dev)
pkg-config --exists cmocka 2>/dev/null || missing+=(libcmocka-dev)
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "ci/setup.sh: installing ${missing[*]} needs root: run \`sudo bash ci/setup.sh\`" \
            "(or \`bash ci/setup.sh\` as root)" >&2
        exit 2
    fi
    echo "[setup] installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update -q
    quietly apt-get install -y -q "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "[setup] creating .venv with $python" >&2
    quietly "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import vfio_bridge, harness.assets.guests, harness.assets.kext, pytest, xdist, hypothesis, atheris, build, qemu.qmp, paramiko, xxhash, orjson" 2>/dev/null ||
    [[ ! -x .venv/bin/meson || ! -x .venv/bin/ninja ]]; then
    echo "[setup] installing the project and its test and bench dependencies into .venv" >&2
    quietly .venv/bin/pip install --upgrade pip
    quietly .venv/bin/pip install -e '.[test,bench]'
fi

.venv/bin/xvpci provision
.venv/bin/xvpci guest build linux >/dev/null

if [[ -n $owner ]]; then
    echo "[setup] handing .venv and ${XVPCI_CACHE} to $owner" >&2
    chown -R "$owner:" .venv "$XVPCI_CACHE"
    chown "$owner:" "$owner_home/.cache" 2>/dev/null || true  # if setup created it
    chown -R "$owner:" ./*.egg-info 2>/dev/null || true      # if the install left one
fi
