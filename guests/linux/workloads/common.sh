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
