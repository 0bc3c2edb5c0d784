#!/bin/bash
# A full disk in the middle of `topcow convert` never leaves a
# valid-looking image with wrong data: convert fails with one line naming
# the write, and removes the output it created (with -n, where the output is
# the user's, it says the output is incomplete).  The full disk is real
# (a 24 MiB tmpfs) where mounting is possible, and is also injected with
# strace (ENOSPC from the Nth write on) for raw and qcow2 outputs.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io strace
cd "$SCRATCH"

qemu-img create -q -f qcow2 src.qcow2 64M
qemu-io -c "write -P 0x5a 0 40M" -c "write -P 0x6b 50M 8M" src.qcow2 >/dev/null

# check_failed OUTPUT: the last convert failed as it must.
check_failed() {
    [ "$rc" = 1 ] || fail "convert to $1 with a full disk: exit status $rc"
    [ "$(wc -l <err)" = 1 ] || fail "not one line: $(cat err)"
    grep -q "No space left on device" err || fail "no ENOSPC message: $(cat err)"
    grep -q "removed the incomplete output '$1'" err || fail "output not removed: $(cat err)"
    [ ! -e "$1" ] || fail "the incomplete output $1 was left behind"
}

for fmt in qcow2 raw; do
    for n in 5 40; do
        rc=0
        strace -f -o /dev/null -e trace=pwrite64,pwritev \
            -e inject=pwrite64,pwritev:error=ENOSPC:when=$n+ \
            "$TOPCOW" convert -O $fmt src.qcow2 out.$fmt 2>err || rc=$?
        check_failed out.$fmt
    done
done

# -n: the output exists before and after; it is declared incomplete.
qemu-img create -q -f raw existing.raw 64M
rc=0
strace -f -o /dev/null -e trace=pwrite64,pwritev -e inject=pwrite64,pwritev:error=ENOSPC:when=10+ \
    "$TOPCOW" convert -n -O raw src.qcow2 existing.raw 2>err || rc=$?
[ "$rc" = 1 ] || fail "convert -n with a full disk: exit status $rc"
grep -q "(the output 'existing.raw' is incomplete)" err || fail "-n: $(cat err)"
[ -e existing.raw ] || fail "-n removed the user's output"

# A real full file system, where this machine lets us mount one.
mkdir small
if mount -t tmpfs -o size=24m tmpfs small 2>/dev/null; then
    trap 'umount "$SCRATCH/small" 2>/dev/null || true; cleanup_scratch' EXIT
    for fmt in qcow2 raw; do
        rc=0
        "$TOPCOW" convert -O $fmt src.qcow2 small/out.$fmt 2>err || rc=$?
        check_failed small/out.$fmt
    done
    # What fits still converts correctly on that file system.
    qemu-img create -q -f qcow2 little.qcow2 64M
    qemu-io -c "write -P 0x11 0 8M" little.qcow2 >/dev/null
    ok "$TOPCOW" convert -O qcow2 little.qcow2 small/fits.qcow2
    ok qemu-img compare little.qcow2 small/fits.qcow2
    umount small
    trap cleanup_scratch EXIT
    echo "ok: injected and real full disks"
else
    echo "ok: injected full disks (mounting a small tmpfs is not allowed here)"
fi
