#!/bin/bash
# A lazy-refcounts image QEMU left dirty (qemu-io "abort" simulates the
# crash: refcounts on disk lag behind the L2 tables) opens read-write in
# topcow, which rebuilds the refcounts; afterwards qemu-img check is clean,
# the dirty bit is gone and the guest data is intact.  A read-only open of
# the dirty image works without repairing it.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

for opts in "cluster_size=65536" "cluster_size=4096,refcount_bits=1" "extended_l2=on"; do
    rm -f d.qcow2
    qemu-img create -q -f qcow2 -o lazy_refcounts=on,$opts d.qcow2 16M
    qemu-io -c "write -P 0x61 0 1M" -c "write -P 0x62 5M 3M" -c "write -z 6M 64k" -c abort \
        d.qcow2 >/dev/null 2>&1 || true
    qemu-img info d.qcow2 | grep -q "cleanly shut down: no" || fail "$opts: image is not dirty"
    if qemu-img check d.qcow2 >check.out 2>&1; then fail "$opts: damaged image checks clean?"; fi

    # Read-only: no repair, data readable.
    ok "$TOPCOW" io -r -c "read -P 0x61 0 1M" d.qcow2
    qemu-img info d.qcow2 | grep -q "cleanly shut down: no" || fail "$opts: read-only open repaired"

    # Read-write: repaired.
    ok "$TOPCOW" io -c "read -P 0x62 5M 1M" -c "write -P 0x63 10M 64k" d.qcow2
    qemu_check_clean d.qcow2
    grep -q "No errors" <<<"$out" || fail "$opts: not clean after repair: $out"
    case "$out" in *leaked*) fail "$opts: leaks after repair: $out" ;; esac
    if qemu-img info d.qcow2 | grep -q "cleanly shut down: no"; then fail "$opts: still dirty"; fi
    qemu-io -r -c "read -P 0x61 0 1M" -c "read -P 0x62 5M 1M" -c "read -P 0 6M 64k" \
        -c "read -P 0x62 6356992 2031616" -c "read -P 0x63 10M 64k" d.qcow2 >read.out
    if grep -q "Pattern verification failed" read.out; then fail "$opts: data lost: $(cat read.out)"; fi
    echo "ok $opts"
done
