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
    # payloads): a 64 KiB block from a linear congruential generator seeded by
    # $2, repeated $3 times. One awk process: spawning per line is slow on TCG.
    # The seed comes from the salt's SHA-256 (busybox has no cksum).
    out=$1 salt=$2 blocks=$3
    seed=$((0x$(echo "$salt" | sha256sum | cut -c1-7)))
    awk -v seed="$seed" 'BEGIN {
        x = seed % 2147483648
        for (line = 0; line < 1024; line++) {
            s = ""
            for (word = 0; word < 8; word++) {
                x = (x * 1103515245 + 12345) % 2147483648
                s = s sprintf("%08x", x)
            }
            print substr(s, 1, 63)
        }
    }' > /tmp/pattern.$$
    : > "$out"
    i=0
    while [ $i -lt "$blocks" ]; do
        cat /tmp/pattern.$$ >> "$out"
        i=$((i + 1))
    done
    rm -f /tmp/pattern.$$
}
