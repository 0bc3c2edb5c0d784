#!/bin/bash
# check -r leaks|all against qemu-img check -r on identical copies of
# damaged images: leaked clusters (refcount too high, also past the data),
# refcounts too low, a referenced cluster with refcount 0 (rebuild), wrong
# COPIED flags, and a lazy-refcounts image QEMU left dirty.  Output and exit
# status must be qemu-img's; afterwards qemu-img check is clean (when
# qemu-img's repair made it clean) and the guest content is unchanged.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io python3
POKE="$TOPCOW_SRCDIR/tests/cli/qcow2-poke.py"
cd "$SCRATCH"

fresh() {
    rm -f "$1"
    qemu-img create -q -f qcow2 "$1" 4M
    qemu-io -c "write -P 1 0 256k" -c "write -P 2 1M 64k" -c "write -z 2M 64k" "$1" >/dev/null
}
poke() { python3 "$POKE" "$@"; }

fresh leak.qcow2;     poke refcount leak.qcow2 5 3
fresh leak2.qcow2;    poke refcount leak2.qcow2 6 2; poke refcount leak2.qcow2 8 5
fresh low.qcow2;      poke refcount low.qcow2 5 2; poke l2 low.qcow2 0 0x8000000000050000
fresh zero.qcow2;     poke refcount zero.qcow2 7 0
fresh copied.qcow2;   poke l2 copied.qcow2 2 0x0000000000070000
qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 4M
qemu-io -c "write -P 3 0 1M" -c "write -P 4 3M 64k" -c abort dirty.qcow2 >/dev/null 2>&1 || true

n=0
for img in leak leak2 low zero copied dirty; do
    qemu-img convert -U -O raw $img.qcow2 $img.content
    for mode in leaks all; do
        cp $img.qcow2 t.qcow2
        cp $img.qcow2 q.qcow2
        trc=0; qrc=0
        "$TOPCOW" check -r $mode t.qcow2 >t.out 2>&1 || trc=$?
        qemu-img check -r $mode q.qcow2 >q.out 2>&1 || qrc=$?
        sed -i 's/^qemu-img: /topcow: /' q.out
        diff -u q.out t.out >&2 || fail "$img -r $mode: output differs from qemu-img"
        [ $trc = $qrc ] || fail "$img -r $mode: exit $trc, qemu-img $qrc"
        if qemu-img check q.qcow2 >/dev/null 2>&1; then
            qemu_check_clean t.qcow2
        fi
        qemu-img convert -O raw t.qcow2 t.content
        cmp -s t.content $img.content || fail "$img -r $mode: guest content changed"
        n=$((n + 1))
    done
done
echo "ok: $n repairs match qemu-img"
