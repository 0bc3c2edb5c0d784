#!/bin/bash
# Internal snapshots between topcow and QEMU, both ways:
# - topcow: write, snapshot, overwrite, snapshot, ... six levels with deletes
#   in the middle; each remaining snapshot read by qemu-img convert -l equals
#   what was written before it was taken; qemu-img snapshot -l and info list
#   exactly what topcow lists; qemu-img check stays clean after each step;
# - snapshots QEMU made are applied and deleted by topcow, and snapshots
#   topcow made are applied and deleted by qemu-img, with the content each
#   tool reads afterwards equal and the image clean.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

clean() {
    qemu_check_clean "$1"
    case "$out" in *"No errors"*) ;; *) fail "$2: $out" ;; esac
    case "$out" in *leaked*) fail "$2: leaks: $out" ;; esac
}

"$TOPCOW" create -q -f qcow2 t.qcow2 16M
for level in 1 2 3 4 5 6; do
    ok "$TOPCOW" io -c "write -P $level $((level * 1000000)) 3M" -c "write -z $((level * 64))k 64k" \
        -c "discard $((level * 2))M 128k" t.qcow2
    qemu-img convert -O raw t.qcow2 expect-$level.raw
    ok "$TOPCOW" snapshot -c "level $level" t.qcow2
    clean t.qcow2 "after snapshot $level"
    [ $level = 3 ] && { ok "$TOPCOW" snapshot -d "level 2" t.qcow2; clean t.qcow2 "delete"; }
    [ $level = 5 ] && { ok "$TOPCOW" snapshot -d 1 t.qcow2; clean t.qcow2 "delete by id"; }
done
ok "$TOPCOW" io -c "write -P 0x77 0 16M" t.qcow2
for level in 3 4 5 6; do
    qemu-img convert -l "snapshot.name=level $level" -O raw t.qcow2 got.raw
    cmp -s got.raw expect-$level.raw || fail "snapshot 'level $level' does not read as taken"
done
diff <("$TOPCOW" snapshot -l t.qcow2) <(qemu-img snapshot -l t.qcow2) ||
    fail "snapshot lists differ"
diff <("$TOPCOW" info --output=json t.qcow2 | grep -v actual-size) \
    <(qemu-img info --output=json t.qcow2 | grep -v actual-size) || fail "info differs"

# topcow applies and deletes what QEMU made.
qemu-img create -q -f qcow2 q.qcow2 8M
qemu-io -c "write -P 1 0 2M" -c "write -c -P 5 6M 64k" q.qcow2 >/dev/null
qemu-img snapshot -c a q.qcow2
qemu-img convert -O raw q.qcow2 a.raw
qemu-io -c "write -P 2 1M 2M" -c "write -z 0 64k" q.qcow2 >/dev/null
qemu-img snapshot -c b q.qcow2
qemu-io -c "write -P 3 0 4M" q.qcow2 >/dev/null
ok "$TOPCOW" snapshot -a a q.qcow2
clean q.qcow2 "topcow applied a QEMU snapshot"
qemu-img convert -O raw q.qcow2 now.raw
cmp -s now.raw a.raw || fail "apply of QEMU's snapshot 'a' does not restore it"
ok "$TOPCOW" snapshot -d b q.qcow2
clean q.qcow2 "topcow deleted a QEMU snapshot"
ok "$TOPCOW" snapshot -d a q.qcow2
clean q.qcow2 "topcow deleted the last QEMU snapshot"
[ -z "$(qemu-img snapshot -l q.qcow2)" ] || fail "snapshots left behind"

# qemu-img applies and deletes what topcow made.
"$TOPCOW" create -q -f qcow2 r.qcow2 8M
ok "$TOPCOW" io -c "write -P 9 0 3M" r.qcow2
ok "$TOPCOW" snapshot -c mine r.qcow2
qemu-img convert -O raw r.qcow2 mine.raw
ok "$TOPCOW" io -c "write -P 8 1M 3M" r.qcow2
qemu-img snapshot -a mine r.qcow2
clean r.qcow2 "qemu-img applied a topcow snapshot"
"$TOPCOW" convert -O raw r.qcow2 now.raw
cmp -s now.raw mine.raw || fail "QEMU's apply of topcow's snapshot reads differently in topcow"
qemu-img snapshot -d mine r.qcow2
clean r.qcow2 "qemu-img deleted a topcow snapshot"
echo ok
