#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole suite on
# two workers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
status=0
.venv/bin/python -m pytest -n 2 "$@" || status=$?
if [[ $status == 5 ]]; then
    echo "ci/test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
