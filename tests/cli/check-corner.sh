#!/bin/bash
# `topcow check` agrees with qemu-img check on the less common findings:
# fragmentation counted per L2 table, an unaligned data cluster (reported,
# still counted), references past the end of the file (reported, not
# counted), and broken extended-L2 subcluster bitmaps.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io python3
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

both() {
    compare check "$1"
    compare check --output=json "$1"
}

# Fragmentation: data spread over several L2 tables, allocated out of order.
qemu-img create -q -f qcow2 -o cluster_size=4k frag.qcow2 8M
qio frag.qcow2 "write -P 1 2M 8k" "write -P 3 0 8k" "write -P 4 6M 4k"
both frag.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 frag512.qcow2 8M
qio frag512.qcow2 "write -P 1 0 100k" "write -P 2 3M 1M" "write -P 3 64k 4k"
both frag512.qcow2

# Cluster layout as in check-damaged.sh: guest clusters 0-2 at host 5-7.
fresh() {
    rm -f "$1"
    qemu-img create -q -f qcow2 "$@" 4M
    qio "$1" "write -P 1 0 192k" "write -c -P 2 1M 64k"
}
fresh unaligned.qcow2
poke l2 unaligned.qcow2 1 0x8000000000060200
both unaligned.qcow2
fresh far.qcow2
poke l2 far.qcow2 1 0x8000000010000000
both far.qcow2
fresh eof.qcow2
truncate -s $((9 * 65536)) eof.qcow2
poke l2 eof.qcow2 1 0x8000000000090000
both eof.qcow2

fresh overlap.qcow2 -o extended_l2=on
poke bitmap overlap.qcow2 0 0x00000001ffffffff
both overlap.qcow2
fresh compressed-bitmap.qcow2 -o extended_l2=on
poke bitmap compressed-bitmap.qcow2 16 1
both compressed-bitmap.qcow2
fresh unallocated-bitmap.qcow2 -o extended_l2=on
poke l2 unallocated-bitmap.qcow2 5 0
poke bitmap unallocated-bitmap.qcow2 5 1
both unallocated-bitmap.qcow2
echo "ok: $COMPARED comparisons"
