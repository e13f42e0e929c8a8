# fio-pattern: deterministic raw-device I/O (fixed seed, queue depth 1, pattern
# verification without fio's time-stamped headers), so both paths must match.
set -e
ns=$(nvme_namespace)
fio --name=pattern --filename="$ns" --rw=randwrite --bs=4k --size=8M --randseed=1234 \
    --ioengine=psync --direct=1 --iodepth=1 --verify=pattern --verify_pattern=0x5a6b7c8d \
    --do_verify=1 --verify_fatal=1 --output-format=terse --terse-version=3 >/tmp/fio.out 2>&1 \
    || { cat /tmp/fio.out; fail "fio pattern verify failed"; }
fio --name=seq --filename="$ns" --rw=read --bs=128k --size=8M --ioengine=psync --direct=1 \
    --output-format=terse --terse-version=3 >/tmp/fio-read.out 2>&1 || fail "fio read failed"
echo "fio-pattern: ok"
