#!/usr/bin/env bash
# Mutation testing with mutmut (results and how to read them: tests/MUTATION.md).
#
#   bash ci/mutation.sh GROUP [mutmut run arguments]
#
# copies the tree (tracked and untracked files, not ignored ones) into
# $XVPCI_MUTATION_DIR/GROUP (default /tmp/xvpci-mutation/GROUP), adds the
# [tool.mutmut] table for GROUP to the copy's pyproject.toml (this checkout's stays
# free of it, so an ordinary pytest run is unaffected) and runs `mutmut run` there
# under nice, two workers (PYTHON names the interpreter with mutmut; default .venv's). Results stay in that directory: `mutmut results` and
# `mutmut show NAME` there. A second run reuses them and tries only new mutants
# (name mutants, or a glob, to run them again: "harness.difflog.rules*").
set -euo pipefail -f  # -f: the module patterns are for mutmut, not the shell
root="$(cd "$(dirname "$0")/.." && pwd)"
group="${1:-}"
shift || true

# Each group: the modules mutated, then the tests that hold them, quick ones first.
# mutmut runs the tests that cover the mutated function, all of them for a survivor:
# a slow test in the selection makes every survivor (and every equivalent mutant)
# cost minutes, so the groups whose modules have unit tests use only those.
diff_tests="tests/test_aligner.py tests/test_diff.py tests/test_diff_rules.py tests/test_diff_fast.py tests/test_diff_placement.py tests/test_logformat.py"
slow_phases='"--deselect", "tests/test_phases.py::test_seabios_direct_log_against_a_qboot_one"'
case "$group" in
    protocol)
        modules="vfio_bridge/protocol/"
        tests="tests/test_protocol.py tests/test_protocol_edges.py tests/test_wire_capture.py tests/test_conformance.py"
        source="vfio_bridge/"
        ;;
    regions)
        # the region-access plans and the register file they call (both in-process)
        modules="vfio_bridge/regions.py vfio_bridge/device/registers.py"
        tests="tests/test_registers.py tests/test_dispatch.py tests/test_config_space.py tests/test_server.py tests/test_nvme.py tests/test_window.py tests/test_hostile.py tests/test_hostile_models.py"
        source="vfio_bridge/"
        ;;
    rules)
        modules="harness/difflog/rules.py"
        tests="tests/test_rules_file.py $diff_tests tests/test_phases.py tests/test_transactions.py"
        ;;
    normalize)
        modules="harness/difflog/normalize.py harness/difflog/profile.py"
        tests="tests/test_normalize.py tests/test_logformat.py"
        ;;
    correspondence)
        # the pairing of addresses: its unit tests, then the pairs it decides
        modules="harness/difflog/correspondence.py"
        tests="tests/test_normalize.py tests/test_diff_fast.py tests/test_diff.py"
        ;;
    phases)
        modules="harness/difflog/phases.py"
        tests="tests/test_phases.py"
        ;;
    transactions)
        modules="harness/difflog/transactions.py"
        tests="tests/test_txn_diff.py tests/test_transactions.py"
        # the tests on generated transactions; those on recorded logs take seconds each
        # (XVPCI_MUTATION_SLOW=1 adds them: run the mutants they alone reach by name)
        slow='not cli_level and not html_marks and not read_returning and not command_completing and not fio_direct and not interrupt_not_raised and not write_storing and not admin_commands and not recorded_fio and not fs_verify and not state_register and not bad_transaction_rules'
        [ -n "${XVPCI_MUTATION_SLOW:-}" ] || extra=", \"-k\", \"$slow\""
        ;;
    reports)
        modules="harness/difflog/reports.py"
        tests="tests/test_reports.py tests/test_diff.py tests/test_reference_reports.py"
        ;;
    engine)
        modules="harness/difflog/engine.py"
        # the fast lane's tests early (a mutant they kill costs only them); test_diff_cutter:
        # the lane's comparison of blocks the cutter cut
        tests="tests/test_aligner.py tests/test_diff_fast.py tests/test_diff_cutter.py tests/test_diff_placement.py tests/test_diff.py tests/test_diff_rules.py tests/test_logformat.py tests/test_phases.py tests/test_diff_golden.py"
        ;;
    cutter)
        # test_cutter calls its functions in-process; test_diff_cutter cannot be in the
        # selection: it runs cutter.py as a script under `python -I -S`, where the mutated
        # file's import of mutmut fails (and a mutant would never be reached there anyway)
        modules="harness/difflog/cutter.py"
        tests="tests/test_cutter.py"
        ;;
    reader)
        modules="harness/difflog/reader.py"
        tests="tests/test_reader.py tests/test_logformat.py tests/test_diff_cutter.py"
        ;;
    *)
        echo "usage: bash ci/mutation.sh protocol|regions|rules|normalize|correspondence|phases|transactions|reports|engine|reader|cutter [mutmut run args]" >&2
        exit 2
        ;;
esac
source="${source:-harness/}"

work="${XVPCI_MUTATION_DIR:-/tmp/xvpci-mutation}/$group"
mkdir -p "$work"
(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | (cd "$work" && tar xf -)
cp "$root/pyproject.toml" "$work/pyproject.toml"
quoted() { for item in "$@"; do printf '"%s", ' "$item"; done; }
# shellcheck disable=SC2086  # the lists are words on purpose
cat >> "$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["$source"]
only_mutate = [$(quoted $(for m in $modules; do case $m in */) echo "$m*" ;; *) echo "$m" ;; esac; done))]
pytest_add_cli_args_test_selection = [$(quoted $tests)]
also_copy = ["tests/", "harness/", "vfio_bridge/", "fuzz/", "bench/", "guests/", "kext/", "setup.py"]
pytest_add_cli_args = ["-p", "no:xdist", "-p", "no:cacheprovider", "-x", "-q", $slow_phases${extra:-}]
# A mutant that loops for ever is stopped after 6x its tests' CPU time, not mutmut's 30x
# (a quarter of an hour for the engine's tests, twice for each such mutant).
timeout_multiplier = 3.0
EOF
# mutmut hands pytest a mutant's tests in no particular order; run them in the group's
# order (quick unit tests first), so that a mutant they kill costs only them.
cat >> "$work/tests/conftest.py" <<EOF


MUTATION_TEST_ORDER = [$(quoted $tests)]


def pytest_collection_modifyitems(items):  # added by ci/mutation.sh, scratch copy only
    def rank(item):
        path = item.nodeid.split("::")[0]
        order = MUTATION_TEST_ORDER
        return order.index(path) if path in order else len(order)

    items.sort(key=rank)
EOF
echo "mutation testing $group in $work"
cd "$work"
exec nice -n 19 "${PYTHON:-$root/.venv/bin/python}" -m mutmut run --max-children 2 "$@"
