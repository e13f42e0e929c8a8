# fs-verify: ext4 on the model's namespace, random files, drop caches, compare, fsck.
set -e
ns=$(nvme_namespace)
ctrl=${ns%n1}
echo "namespace $ns"
nvme id-ctrl "$ctrl" | grep -E '^(vid|mn|sn) ' || fail "nvme id-ctrl failed"
# Fixed UUID, hash seed and time keep mkfs's own output identical on both paths.
E2FSPROGS_FAKE_TIME=1767225600 mkfs.ext4 -q -F -U 7b2a1c4e-0d5f-4e8a-9c3b-2f6d8e1a0b5c \
    -E hash_seed=3c9d2e1f-6a4b-4c8d-8e7f-1a2b3c4d5e6f "$ns" || fail "mkfs.ext4 failed"
mkdir -p /mnt/verify
mount -t ext4 "$ns" /mnt/verify || fail "mount failed"
for i in 1 2 3 4 5 6; do
    pattern_file /mnt/verify/file$i "file$i" $((i * 6))
done
mkdir -p /mnt/verify/dir/sub
pattern_file /mnt/verify/dir/sub/big big 64
(cd /mnt/verify && find . -type f | sort | xargs sha256sum) > /tmp/sums
sync
umount /mnt/verify
echo 3 > /proc/sys/vm/drop_caches
mount -t ext4 "$ns" /mnt/verify || fail "remount failed"
(cd /mnt/verify && sha256sum -c /tmp/sums) || fail "checksums differ after reading back"
umount /mnt/verify
e2fsck -f -n "$ns" || fail "e2fsck found problems"
echo "fs-verify: $(wc -l < /tmp/sums) files verified"
