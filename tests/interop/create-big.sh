#!/bin/bash
# A 100 GiB qcow2 image is thin: under 1 MiB on disk, clean for qemu-img
# check, and 100 GiB for qemu-img info; also with the other cluster sizes.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img
cd "$SCRATCH"
ok "$TOPCOW" create -f qcow2 big.qcow2 100G
[ "$(stat -c %s big.qcow2)" -lt $((1 << 20)) ] || fail "100G image is $(stat -c %s big.qcow2) bytes"
[ "$(du -k big.qcow2 | cut -f1)" -lt 1024 ] || fail "100G image uses $(du -k big.qcow2) KiB"
qemu_check_clean big.qcow2
case "$out" in *"No errors"*) ;; *) fail "qemu-img check: $out" ;; esac
qemu-img info --output=json big.qcow2 | grep -q '"virtual-size": 107374182400,' ||
    fail "virtual size: $(qemu-img info big.qcow2)"
for cs in 512 4096 2M; do
    ok "$TOPCOW" create -f qcow2 -o cluster_size=$cs big-$cs.qcow2 100G
    qemu_check_clean big-$cs.qcow2
    qemu-img info --output=json big-$cs.qcow2 | grep -q '"virtual-size": 107374182400,' ||
        fail "cluster_size=$cs: wrong virtual size"
done
echo ok
