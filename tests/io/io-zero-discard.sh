#!/bin/bash
# write -z (with and without -u and -n), discard and -d ignore give the same
# output, the same contents and the same top-layer allocation (map, alloc)
# as qemu-io: whole and partial clusters, requests reaching the end of the
# image, zeros hiding a backing file, on raw, qcow2 v2/v3, small clusters
# and extended L2.  The images must pass qemu-img check.
# (Cases where the library still differs from QEMU live in io-known-diffs.sh.)
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/io/io-compare.sh"
require qemu-img qemu-io
export IO_MAP_CHECK=1

# Data everywhere first, so every L2 table exists and the backing file (if
# any) is hidden only where the commands below say so.
fill=(-c "write -P 1 0 4M")
zero=(
    -c "write -z 0 64k" -c "write -z -u 64k 64k" -c "write -z 130k 3k" -c "write -z -u 200k 3k"
    -c "write -z 256k 100k" -c "write -z -u 400k 100k" -c "write -z -f 512k 64k"
    -c "write -z -u -f 576k 64k" -c "write -z -n 640k 64k" -c "write -z -n -u 704k 64k"
    -c "write -z 4032k 64k" -c "read -P 0 0 768k" -c "read -P 1 768k 64k" -c map
    -c "alloc 0 4M" -c "alloc 130k 3k" -c "write -P 2 0 64k" -c "read -P 2 0 64k"
)
discard=(
    -c "discard 1M 64k" -c "discard 1100k 10k" -c "discard 1152k 100k" -c "discard -q 1280k 64k"
    -c "discard -C 1344k 128k" -c "discard 3968k 128k" -c "read -P 1 1100k 10k" -c map
    -c "alloc 1M 1M" -c "write -P 3 1M 4k" -c "read -P 3 1M 4k" -c "read -P 0 1028k 60k" -c map
)

mk() { # mk NAME OPTIONS [BACKING]: create $SCRATCH/NAME.qcow2
    local o=$2
    [ -z "${3:-}" ] || o="$o,backing_file=$3,backing_fmt=qcow2"
    qemu-img create -q -f qcow2 -o "$o" "$SCRATCH/$1.qcow2" 4M
}

for opts in compat=1.1 cluster_size=4k extended_l2=on extended_l2=on,cluster_size=16k \
    cluster_size=512; do
    mk base "$opts"
    qemu-io -c "write -P 5 0 4M" "$SCRATCH/base.qcow2" >/dev/null
    mk plain "$opts"
    mk top "$opts" base.qcow2
    IO_NAME="$opts plain" io_compare plain.qcow2 "${fill[@]}" "${zero[@]}" "${discard[@]}"
    IO_NAME="$opts -d ignore" io_compare plain.qcow2 -d ignore "${fill[@]}" "${zero[@]}" \
        "${discard[@]}"
    IO_EXTRA=base.qcow2 IO_NAME="$opts overlay" io_compare top.qcow2 \
        -c "write -P 1 0 2M" "${zero[@]}" "${discard[@]}" -c "read -P 5 2M 1M"
done

# Without a backing file a v2 image has only one way to read zeros: no
# cluster at all (write -z -u), or zeros written out.
mk v2 compat=0.10
IO_NAME="v2 plain" io_compare v2.qcow2 "${fill[@]}" \
    -c "write -z -u 0 64k" -c "write -z -u 100k 100k" -c "write -z 300k 10k" \
    -c "write -z -u 4032k 64k" \
    -c "read -P 0 0 64k" -c map -c "alloc 0 4M" "${discard[@]}"
# With one, zeros are written out; -n refuses.
mk v2base compat=0.10
qemu-io -c "write -P 5 0 4M" "$SCRATCH/v2base.qcow2" >/dev/null
mk v2top compat=0.10 v2base.qcow2
IO_EXTRA=v2base.qcow2 IO_NAME="v2 overlay" io_compare v2top.qcow2 "${zero[@]}" \
    -c "read -P 5 2M 1M"

qemu-img create -q -f raw "$SCRATCH/img.raw" 4M
IO_NAME=raw io_compare img.raw -f raw "${fill[@]}" "${zero[@]}" "${discard[@]}"
IO_NAME="raw -d ignore" io_compare img.raw -f raw -d ignore "${fill[@]}" "${zero[@]}" \
    "${discard[@]}"
