#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow dd makes the same output as qemu-img dd: same virtual size, same
# contents (qemu-img compare), the same file size for raw output and the
# same allocation for qcow2 output (qemu-img check), the same messages and
# exit status for bad operands, and qemu-img's quirks (count= cuts the
# input before skip= is taken off; a skip past the end warns, creates an
# empty image and succeeds).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# Inputs: an odd-sized raw file, a sparse raw file, a qcow2 image with data,
# zeros and holes on top of a backing file, and a compressed qcow2 image.
head -c 1000000 /dev/urandom >odd.raw
truncate -s 3M sparse.raw
head -c 5000 /dev/urandom | dd of=sparse.raw bs=1 seek=1000000 conv=notrunc status=none
ok qemu-img create -q -f qcow2 -o cluster_size=4k base.qcow2 2M
ok qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 1536k 4k' base.qcow2
ok qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 3M
ok qemu-io -f qcow2 -c 'write -z 64k 64k' -c 'write -P 3 2M 100k' -c 'write -P 4 2999k 1k' \
    top.qcow2
ok qemu-img create -q -f qcow2 comp.qcow2 1M
ok qemu-io -f qcow2 -c 'write -c -P 5 0 256k' -c 'write -c -P 6 512k 64k' comp.qcow2

n=0
# Run both with the same arguments (output q.out / t.out) and compare.
same() {
    local ofmt=raw qrc=0 trc=0 a prev=""
    for a in "$@"; do [ "$prev" != -O ] || ofmt=$a; prev=$a; done
    rm -f q.out t.out
    qemu-img dd "$@" of=q.out 2>qemu.err || qrc=$?
    "$TOPCOW" dd "$@" of=t.out 2>topcow.err || trc=$?
    [ "$qrc" = "$trc" ] || fail "exit status $trc, qemu-img $qrc: dd $*: $(cat topcow.err)"
    [ "$(sed 's/^qemu-img: /topcow: /' qemu.err)" = "$(cat topcow.err)" ] ||
        fail "dd $*: stderr '$(cat topcow.err)' vs qemu-img '$(cat qemu.err)'"
    if [ ! -e q.out ]; then
        [ ! -e t.out ] || fail "dd $*: output created, qemu-img created none"
        n=$((n + 1))
        return
    fi
    local qs ts
    qs=$(qemu-img info -f "$ofmt" --output=json q.out | grep '"virtual-size"')
    ts=$(qemu-img info -f "$ofmt" --output=json t.out | grep '"virtual-size"')
    [ "$qs" = "$ts" ] || fail "dd $*: $ts, qemu-img $qs"
    out=$(qemu-img compare -f "$ofmt" -F "$ofmt" q.out t.out 2>&1) ||
        fail "dd $*: contents differ: $out"
    if [ "$ofmt" = raw ]; then
        [ "$(stat -c %s q.out)" = "$(stat -c %s t.out)" ] ||
            fail "dd $*: file size $(stat -c %s t.out), qemu-img $(stat -c %s q.out)"
    else
        qemu_check_clean t.out
        # Same clusters allocated and the same end of the refcounted area
        # (qemu-img pads the file to whole clusters, topcow need not).
        local qc tc
        qc=$(qemu-img check --output=json q.out | grep -E '"(allocated-clusters|image-end-offset)"')
        tc=$(qemu-img check --output=json t.out | grep -E '"(allocated-clusters|image-end-offset)"')
        [ "$qc" = "$tc" ] || fail "dd $*: allocation $tc, qemu-img $qc"
    fi
    n=$((n + 1))
}

all_ops=("" "bs=4k" "bs=1000" "bs=1k count=10" "bs=4k skip=3 count=10" "bs=512 skip=1"
    "bs=1000 count=3 skip=1" "bs=64k skip=3" "bs=1M" "bs=1.5k skip=7" "count=0"
    "bs=1k count=10 skip=10" "bs=1k count=10 skip=20" "skip=99999999"
    "bs=4M skip=9999999999" "count=99999999999999999" "count=0x10" "bs=64M")
few_ops=("bs=64k" "bs=4k skip=3 count=100" "bs=1000 skip=999" "bs=1M skip=1")
for in in odd.raw top.qcow2; do
    for ofmt in raw qcow2; do
        for ops in "${all_ops[@]}"; do
            # shellcheck disable=SC2086
            same -O $ofmt $ops if=$in
        done
    done
done
for in in sparse.raw comp.qcow2; do
    for ofmt in raw qcow2; do
        for ops in "${few_ops[@]}"; do
            # shellcheck disable=SC2086
            same -O $ofmt $ops if=$in
        done
    done
done
same -f qcow2 if=top.qcow2 bs=64k count=20 skip=2
same -U -O qcow2 if=comp.qcow2
same if=odd.raw bs=1k bs=2k
same if=odd.raw if=sparse.raw
same bs=4k skip=1 if=top.qcow2 -O qcow2

# Operand errors: same message, status 1, no output.
for ops in "" "bs=4k" "bs=0" "bs=3G" "bs=abc" "bs=" "bs=1.5" "count=abc" "count=1.5" \
    "count=9E" "count=16E" "skip=-1" "skip=9E" "foo=bar" "junk" "IF=odd.raw" "=3"; do
    # shellcheck disable=SC2086
    same if=odd.raw $ops
done
must_fail "$TOPCOW" dd bs=4k count=1
case $ERR in "topcow: Must specify both input and output files") ;; *) fail "no if/of: $ERR" ;; esac
# The input missing or in the wrong format; the output not creatable.
for args in "if=nonexistent.img of=x.out" "-f qcow2 if=odd.raw of=x.out" \
    "-f foo if=odd.raw of=x.out"; do
    # shellcheck disable=SC2086
    must_fail "$TOPCOW" dd $args
    case $ERR in "topcow: Could not open '"*"': "*) ;; *) fail "dd $args: $ERR" ;; esac
    [ ! -e x.out ] || fail "dd $args: output created"
done
must_fail "$TOPCOW" dd if=odd.raw of=/nonexistent/x.out
case $ERR in "topcow: /nonexistent/x.out: error while creating output image: "*) ;;
*) fail "uncreatable output: $ERR" ;; esac
must_fail "$TOPCOW" dd -O qed if=odd.raw of=x.out
case $ERR in *"Unknown file format 'qed'"*) ;; *) fail "-O qed: $ERR" ;; esac
[ ! -e x.out ] || fail "-O qed: output created"
# Other formats topcow writes are outputs too, read back by qemu-img.
for fmt in vdi vmdk vpc vhdx; do
    ok "$TOPCOW" dd -O $fmt bs=64k if=odd.raw of=x.$fmt
    qemu-img convert -f $fmt -O raw x.$fmt x.back
    truncate -s "$(stat -c %s odd.raw)" x.back # formats round the size up
    cmp odd.raw x.back || fail "dd -O $fmt: qemu-img reads other bytes"
    rm -f x.$fmt x.back
done
must_fail "$TOPCOW" dd -p if=odd.raw of=x.out
must_fail "$TOPCOW" dd -o size=5 if=odd.raw of=x.out
# An existing output is replaced.
head -c 5M /dev/urandom >x.out
ok "$TOPCOW" dd if=odd.raw of=x.out bs=1k count=1
[ "$(stat -c %s x.out)" = 1024 ] || fail "existing output not replaced: $(stat -c %s x.out)"

echo "dd: $n comparisons with qemu-img"
