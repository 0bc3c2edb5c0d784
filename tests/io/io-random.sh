#!/bin/bash
# Reproducible random workloads (aligned and unaligned writes, writev, zero
# writes with and without -u, discards, pattern reads, alloc, map) give the
# same output and the same image as qemu-io, on raw, qcow2 v3, small
# clusters and extended L2, with and without a backing file, and with -n.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/io/io-compare.sh"
require qemu-img qemu-io

size=$((4 << 20))
qemu-img create -q -f raw "$SCRATCH/img.raw" $size
for seed in 11 12; do
    gen_cmds $seed 300 $size 4096
    IO_NAME="raw seed $seed" io_compare img.raw -f raw "${IO_CMDS[@]}"
done

for opts in compat=1.1 cluster_size=4k extended_l2=on cluster_size=512; do
    qemu-img create -q -f qcow2 -o "$opts" "$SCRATCH/base.qcow2" $size
    qemu-io -c "write -P 1 0 1M" -c "write -P 2 2M 512k" -c "write -P 3 3584k 1k" \
        "$SCRATCH/base.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -o "$opts,backing_file=base.qcow2,backing_fmt=qcow2" \
        "$SCRATCH/top.qcow2" $size
    cl=$(qemu-img info "$SCRATCH/base.qcow2" | sed -n 's/^cluster_size: //p')
    for seed in 1 2; do
        gen_cmds $seed 300 $size "$cl"
        IO_EXTRA=base.qcow2 IO_NAME="$opts overlay seed $seed" io_compare top.qcow2 \
            "${IO_CMDS[@]}"
    done
done

# Plain images: once per configuration whose behaviour matches QEMU's
# everywhere (see io-known-diffs.sh for the others).
qemu-img create -q -f qcow2 "$SCRATCH/plain.qcow2" $size
for seed in 21 22 23; do
    gen_cmds $seed 400 $size 65536
    IO_NAME="v3 plain seed $seed" io_compare plain.qcow2 "${IO_CMDS[@]}"
done
IO_NAME="v3 plain -n seed 23" io_compare plain.qcow2 -n "${IO_CMDS[@]}"
qemu-img create -q -f qcow2 -o cluster_size=4k "$SCRATCH/plain4k.qcow2" $size
gen_cmds 1 300 $size 4096
IO_NAME="4k plain" io_compare plain4k.qcow2 "${IO_CMDS[@]}"
