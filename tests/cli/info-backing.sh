#!/bin/bash
# `topcow info` on overlays matches qemu-img info: the backing file as
# stored, its path resolved against the overlay's directory ("actual path",
# "full-backing-filename"), its format; the backing file is not opened, so a
# missing one does not matter.  --backing-chain describes every layer, top
# first (JSON: an array), and fails without output when a layer is missing.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

mkdir -p sub/deeper
qemu-img create -q -f raw sub/base.raw 6M
qemu-img create -q -f qcow2 -b base.raw -F raw sub/mid.qcow2 6M
qemu-img create -q -f qcow2 -o extended_l2=on -b sub/mid.qcow2 -F qcow2 top.qcow2 8M
qemu-img create -q -f qcow2 -o compat=0.10 -b ../mid.qcow2 -F qcow2 sub/deeper/v2.qcow2
qemu-img create -q -f qcow2 -b ./top.qcow2 -F qcow2 dot.qcow2
qemu-img create -q -f qcow2 -b "$SCRATCH/top.qcow2" -F qcow2 abs.qcow2
qemu-img create -q -f qcow2 -b gone.qcow2 -F qcow2 -u missing.qcow2 1M
qemu-img create -q -f qcow2 -b $'we"ird\\\xc3\xa9\xff' -F qcow2 -u escape.qcow2 1M
qio top.qcow2 "write -P 1 0 64k"

for o in human json; do
    for f in sub/mid.qcow2 top.qcow2 sub/deeper/v2.qcow2 dot.qcow2 abs.qcow2 sub/base.raw; do
        compare info --output=$o "$f"
        compare info --output=$o --backing-chain "$f"
    done
    compare info --output=$o missing.qcow2
    compare info --output=$o escape.qcow2
done
compare_failure info --backing-chain missing.qcow2
compare_failure info --backing-chain --output=json missing.qcow2
echo "ok: $COMPARED comparisons"
