#!/bin/bash
# SPDX-License-Identifier: MIT
# `topcow create` prints qemu-img's "Formatting ..." line for raw and qcow2,
# sizes as given (qemu-img rounds the image to sectors, not the line).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img
cd "$SCRATCH"
while IFS='|' read -r fmt opts size; do
    rm -f q.img t.img
    q=$(qemu-img create -f "$fmt" ${opts:+-o "$opts"} q.img "$size" | sed 's/q\.img/X/')
    t=$("$TOPCOW" create -f "$fmt" ${opts:+-o "$opts"} t.img "$size" | sed 's/t\.img/X/')
    [ "$q" = "$t" ] || fail "-f $fmt -o '$opts' $size: qemu-img '$q', topcow '$t'"
done <<'EOF_CASES'
raw||1
raw||100000
raw|preallocation=falloc|3000
qcow2||1000
qcow2||64M
qcow2|cluster_size=4k,compat=0.10|1M
qcow2|lazy_refcounts=on,refcount_bits=1,preallocation=metadata|2M
qcow2|extended_l2=on,compression_type=zstd|513
EOF_CASES
echo "create-formatting: ok"
