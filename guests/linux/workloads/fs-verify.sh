# fs-verify: ext4 on the model's namespace, files, drop caches, compare, fsck.
#
# The guest writes the same bytes on every boot and path; only the order and
# batching of the writes (the page cache's business) differ. What made them
# differ, found by comparing the per-LBA content two boots wrote:
# - timestamps: the superblock's mount and write times, every inode's times (and
#   with 256-byte inodes their nanoseconds). mkfs takes a fixed time from
#   E2FSPROGS_FAKE_TIME; the guest clock is set to the same instant before each
#   step that stamps something (`pin_clock`), 128-byte inodes keep whole seconds
#   only, and noatime keeps reads from stamping;
# - inode generation numbers, random per created inode: set with chattr -v, which
#   ext4 refuses with metadata_csum (its checksums are seeded by them);
# - the journal: its commit blocks carry the commit time in nanoseconds and its
#   transaction count depends on timing, so the filesystem has no journal;
# - timed writeback: periodic flushes write an inode before its generation and
#   times are pinned, and catch mkfs's buffered writes half done, so the flusher
#   waits an hour and the writes go out at mkfs's fsyncs and at `sync`. (Not 0:
#   with 0 the kernel wakes the flusher as soon as anything is dirtied);
# - sync(2) itself: its flusher thread races the caller, so an inode table block
#   went out once more, half updated, on one boot and not the other (and the
#   superblock's lifetime-kbytes-written counter differed with it). Every file
#   and directory is fsynced first, one after the other, in find's order;
# - the filesystem UUID and directory hash seed (mkfs picks them at random), and
#   the lazy inode table initialisation thread (timed): fixed and off.
set -e
ns=$(nvme_namespace)
ctrl=${ns%n1}
echo "namespace $ns"
nvme id-ctrl "$ctrl" | grep -E '^(vid|mn|sn) ' || fail "nvme id-ctrl failed"

epoch=1767225600  # 2026-01-01T00:00:00Z
pin_clock() { date -u -s "@$epoch" >/dev/null || fail "cannot set the guest clock"; }
# Setting the clock once before a step is not enough on a loaded host: a write that
# outlasts the second changes the file's times once more, and ext4 counts every
# such change in the inode's i_version (it did, once: an inode table block differed
# by one i_version). So a helper holds the clock at the epoch, resetting it five
# times a second, for as long as the filesystem is mounted; each file is written
# by one write(2) right after the clock is set; the stamps are checked afterwards.
hold_clock() {
    # Its output goes nowhere: it must not hold the SSH session's stdout open.
    (while :; do date -u -s "@$epoch"; sleep 0.2; done) </dev/null >/dev/null 2>&1 &
    clock_holder=$!
}
release_clock() {
    [ -n "${clock_holder:-}" ] && kill "$clock_holder" 2>/dev/null
    clock_holder=
}
trap release_clock EXIT
pin_inodes() {
    # Generation and times of every inode; a change time off the epoch means this boot
    # wrote other bytes (retrying would not help: it would count in i_version).
    pin_clock
    find /mnt/verify | xargs chattr -v 1 || fail "chattr -v failed"
    find /mnt/verify | xargs touch -d "2026-01-01 00:00:00" || fail "touch failed"
    off=$(find /mnt/verify | xargs stat -c '%n %Z' | grep -v " $epoch\$" || true)
    [ -z "$off" ] || echo "fs-verify: warning: the clock slipped, this boot's bytes differ: $off"
}
copy_file() {
    pin_clock
    dd if="$1" of="$2" bs=8M 2>/dev/null || fail "writing $2 failed"
}

echo 360000 > /proc/sys/vm/dirty_writeback_centisecs  # not 0: 0 wakes the flusher at once
echo 360000 > /proc/sys/vm/dirty_expire_centisecs

E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -I 128 -O ^has_journal,^metadata_csum \
    -U 7b2a1c4e-0d5f-4e8a-9c3b-2f6d8e1a0b5c \
    -E hash_seed=3c9d2e1f-6a4b-4c8d-8e7f-1a2b3c4d5e6f,lazy_itable_init=0 \
    "$ns" || fail "mkfs.ext4 failed"
mkdir -p /mnt/verify /tmp/files
for i in 1 2 3 4 5 6; do
    pattern_file /tmp/files/file$i "file$i" $((i * 6))
done
pattern_file /tmp/files/big big 64

hold_clock
pin_clock
mount -t ext4 -o noatime,noinit_itable "$ns" /mnt/verify || fail "mount failed"
mkdir -p /mnt/verify/dir/sub
for i in 1 2 3 4 5 6; do
    copy_file /tmp/files/file$i /mnt/verify/file$i
done
copy_file /tmp/files/big /mnt/verify/dir/sub/big
rm -rf /tmp/files
pin_inodes
(cd /mnt/verify && find . -type f | sort | xargs sha256sum) > /tmp/sums
pin_clock
find /mnt/verify -depth | xargs sync || fail "fsync failed"
sync
pin_clock
umount /mnt/verify
echo 3 > /proc/sys/vm/drop_caches
pin_clock
mount -t ext4 -o noatime "$ns" /mnt/verify || fail "remount failed"
(cd /mnt/verify && sha256sum -c /tmp/sums) || fail "checksums differ after reading back"
pin_clock
umount /mnt/verify
release_clock
e2fsck -f -n "$ns" || fail "e2fsck found problems"
echo "fs-verify: $(wc -l < /tmp/sums) files verified"
