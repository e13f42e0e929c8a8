# fs-verify: ext4 on the model's namespace, random files, drop caches, compare, fsck.
set -e
ns=$(nvme_namespace)
ctrl=${ns%n1}
echo "namespace $ns"
nvme id-ctrl "$ctrl" | grep -E '^(vid|mn|sn) ' || fail "nvme id-ctrl failed"
mkfs.ext4 -q -F "$ns" || fail "mkfs.ext4 failed"
mkdir -p /mnt/verify
mount -t ext4 "$ns" /mnt/verify || fail "mount failed"
for i in 1 2 3 4 5 6; do
    dd if=/dev/urandom of=/mnt/verify/file$i bs=4k count=$((i * 97)) 2>/dev/null
done
mkdir -p /mnt/verify/dir/sub
dd if=/dev/urandom of=/mnt/verify/dir/sub/big bs=64k count=64 2>/dev/null
(cd /mnt/verify && find . -type f | sort | xargs sha256sum) > /tmp/sums
sync
umount /mnt/verify
echo 3 > /proc/sys/vm/drop_caches
mount -t ext4 "$ns" /mnt/verify || fail "remount failed"
(cd /mnt/verify && sha256sum -c /tmp/sums) || fail "checksums differ after reading back"
umount /mnt/verify
e2fsck -f -n "$ns" || fail "e2fsck found problems"
echo "fs-verify: $(wc -l < /tmp/sums) files verified"
