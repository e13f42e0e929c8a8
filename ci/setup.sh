#!/usr/bin/env bash
# Set up everything xvpci needs on a fresh Debian machine (run as root):
# Debian packages, a virtualenv holding the project, QEMU 11 and the Linux
# guest image in the cache.
# Idempotent: a second run only checks, so it is fast.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v chromium >/dev/null || missing+=(chromium)  # renders the HTML report in a test
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "ci/setup.sh: need root to install ${missing[*]}" >&2
        exit 2
    fi
    echo "[setup] installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "[setup] creating .venv" >&2
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import vfio_bridge, harness, pytest, xdist, hypothesis, atheris, qemu.qmp, paramiko, xxhash, orjson" 2>/dev/null; then
    echo "[setup] installing the project and its test dependencies into .venv" >&2
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[test]'
fi

.venv/bin/xvpci provision
.venv/bin/xvpci guest build linux >/dev/null
