# fio-verify: random writes with crc32c verification at several queue depths.
set -e
ns=$(nvme_namespace)
for depth in 1 4 16; do
    fio --name=verify-qd$depth --filename="$ns" --rw=randwrite --bs=4k --size=16M \
        --ioengine=libaio --direct=1 --iodepth=$depth --verify=crc32c --do_verify=1 \
        --verify_fatal=1 --output-format=terse --terse-version=3 >/tmp/fio-$depth.out 2>&1 \
        || { cat /tmp/fio-$depth.out; fail "fio verify failed at iodepth $depth"; }
    echo "fio-verify: iodepth $depth ok"
done
