#!/bin/bash
# `topcow map` through backing chains matches qemu-img map: each run is
# attributed to the layer that defines it (depth), unallocated runs to the
# deepest layer, runs past the end of a shorter backing file to the layer
# whose backing file ends there; raw backing files, v2 overlays (discard
# re-exposes the backing file), extended-L2 overlays with partly allocated
# clusters, zero clusters hiding backing data; the human table names the
# file that holds each range.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

mkdir sub
qemu-img create -q -f raw sub/base.raw 6M
qemu-io -f raw -c "write -P 1 0 1M" -c "write -P 2 4M 64k" sub/base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw sub/mid.qcow2 6M
qio sub/mid.qcow2 "write -P 3 512k 128k" "write -z 4M 64k" "write -c -P 4 5M 64k"
qemu-img create -q -f qcow2 -o extended_l2=on -b sub/mid.qcow2 -F qcow2 top.qcow2 8M
qio top.qcow2 "write -P 4 0 4k" "write -z 600k 4k" "write -P 5 7M 4k" "write -z 5M 64k"

qemu-img create -q -f qcow2 base.qcow2 4M
qio base.qcow2 "write -P 1 0 1M" "write -z 1M 64k" "write -c -P 2 2M 64k"
qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 v2.qcow2 8M
qio v2.qcow2 "write -P 5 512k 64k" "write -P 6 7M 64k" "write -P 7 128k 128k" "discard 128k 128k"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 v3.qcow2 3M
qio v3.qcow2 "write -P 5 512k 64k" "write -P 7 128k 128k" "discard 128k 128k" "write -z -u 2M 64k"

for f in sub/mid.qcow2 top.qcow2 v2.qcow2 v3.qcow2; do
    compare map "$f"
    compare map --output=json "$f"
    compare map --output=json --start-offset=4M "$f"
done
echo "ok: $COMPARED comparisons"
