# Shared by the workloads: find the model's NVMe namespace, fail loudly.
fail() { echo "FAIL: $*"; exit 1; }

nvme_namespace() {
    # The first namespace of the first NVMe controller, waiting for the driver to bind.
    for _ in $(seq 1 100); do
        for ns in /dev/nvme*n1; do
            [ -b "$ns" ] && { echo "$ns"; return 0; }
        done
        sleep 0.2
    done
    fail "no NVMe namespace appeared (is the nvme driver bound? $(lspci -nnk 2>&1 | tail -3))"
}

pattern_file() {
    # Deterministic bytes (same on every run and path, so the diff can compare
    # payloads): a 64 KiB block from a sha256 chain salted with $2, repeated.
    out=$1 salt=$2 blocks=$3
    i=0
    while [ $i -lt 1024 ]; do
        echo "$salt-$i" | sha256sum | cut -c1-63
        i=$((i + 1))
    done > /tmp/pattern.$$
    : > "$out"
    i=0
    while [ $i -lt "$blocks" ]; do
        cat /tmp/pattern.$$ >> "$out"
        i=$((i + 1))
    done
    rm -f /tmp/pattern.$$
}
