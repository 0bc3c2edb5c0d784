#!/bin/bash
# alloc and map describe the top layer only, as qemu-io's do (zero clusters
# count as allocated; the backing file does not), with qemu-io's exact line
# formats; info and length print the same fields and units for raw images
# and qcow2 images of every flavour.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/io/io-compare.sh"
require qemu-img qemu-io
export IO_MAP_CHECK=1

queries=(
    -c "alloc 0" -c "alloc 0 4M" -c "alloc 512k 4M" -c "alloc 600k 100k" -c "alloc 512k"
    -c "alloc 3M 1M" -c "alloc 4M" -c "alloc 4M 0" -c "alloc 0 0" -c "alloc 5M" -c "alloc 3M 5M"
    -c "alloc 1 1" -c "alloc 513k 2" -c "alloc 1 1k" -c "alloc 7E 7E" -c "a 2M 1M" -c map
)

for opts in compat=0.10 compat=1.1 extended_l2=on cluster_size=4k extended_l2=on,cluster_size=16k \
    cluster_size=2M; do
    qemu-img create -q -f qcow2 -o "$opts" "$SCRATCH/base.qcow2" 4M
    qemu-io -c "write -P 1 0 1M" -c "write -P 2 2M 512k" -c "write -P 3 3584k 1k" \
        "$SCRATCH/base.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -o "$opts,backing_file=base.qcow2,backing_fmt=qcow2" \
        "$SCRATCH/top.qcow2" 4M
    IO_EXTRA=base.qcow2 IO_NAME="$opts overlay" io_compare top.qcow2 \
        "${queries[@]}" -c "write -P 3 512k 1M" -c "write -P 4 3000k 3k" -c "write -z 3M 64k" \
        -c "write -z -u 2M 64k" -c "write 5k 3k" -c "discard 2176k 64k" "${queries[@]}" \
        -c "read -P 1 0 5k" -c "read -P 0 2M 64k" -c "read -P 2 2240k 64k" -c "read -v 3584k 32"
    # The base itself, and the overlay opened with the base's own view.
    IO_NAME="$opts base" io_compare base.qcow2 -r "${queries[@]}"
done

# A backing file shorter than the overlay.
qemu-img create -q -f qcow2 "$SCRATCH/short.qcow2" 1M
qemu-io -c "write -P 7 0 1M" "$SCRATCH/short.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o backing_file=short.qcow2,backing_fmt=qcow2 "$SCRATCH/long.qcow2" 4M
IO_EXTRA=short.qcow2 IO_NAME="short backing" io_compare long.qcow2 \
    "${queries[@]}" -c "read -P 7 0 1M" -c "read -P 0 1M 3M" -c "write -P 8 1020k 8k" \
    -c "read -P 0 1M 4k" "${queries[@]}"

qemu-img create -q -f raw "$SCRATCH/img.raw" 4M
IO_NAME=raw io_compare img.raw -f raw "${queries[@]}" -c "write 1M 1" "${queries[@]}" \
    -c info -c length

# info / length on every flavour the library opens.
mkinfo() { # mkinfo NAME SIZE [-o OPTIONS]; data files land beside the image
    local name=$1 size=$2
    shift 2
    (cd "$SCRATCH" && qemu-img create -q -f qcow2 "$@" "$name.qcow2" "$size")
}
mkinfo v2 4M -o compat=0.10
mkinfo xl2 1G -o extended_l2=on,cluster_size=128k,lazy_refcounts=on,refcount_bits=8
mkinfo zstd 1M -o compression_type=zstd
mkinfo dataraw 1M -o data_file=raw.data,data_file_raw=on
mkinfo data 1M -o data_file=plain.data
mkinfo small 100k -o cluster_size=512
mkinfo big 100G -o cluster_size=2M
mkinfo rc1 10M -o refcount_bits=1
mkinfo rc64 10M -o refcount_bits=64
mkinfo odd 1000001
mkinfo empty 0
for name in v2 xl2 zstd dataraw data small big rc1 rc64 odd empty; do
    IO_NO_COMPARE=1 IO_EXTRA="raw.data plain.data" IO_NAME="info $name" io_compare $name.qcow2 \
        -c info -c i -c length -c l -c map -c "alloc 0 1G"
done
