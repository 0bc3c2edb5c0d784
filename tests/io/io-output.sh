#!/bin/bash
# topcow io prints what qemu-io prints for the data commands: the report and
# timing lines, -C and -q, pattern fills and verification (-P, -s, -l),
# hexdumps (-v) at aligned, unaligned and 64-bit offsets, readv/writev and
# the aio commands, on raw, qcow2 v2 and v3 and extended-L2 images.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/io/io-compare.sh"
require qemu-img qemu-io

cmds=(
    -c "write 0 64k" -c "write -P 0xaa 512 512" -c "read -P 0xaa 512 512"
    -c "read -P 0xab 512 512" -c "read -P 0xcd 0 512" -c "read -P 0xcd 1k 63k"
    -c "read -v 500 40" -c "read -v 0 3" -c "read -v 496 16" -c "read -v 510 33"
    -c "write -P 0x41 4096 16" -c "write -P 0x7e 4112 1" -c "write -P 0x20 4113 1"
    -c "write -P 0x7f 4114 1" -c "write -P 0x80 4115 1" -c "write -P 0x30 4116 1"
    -c "write -P 0x7a 4117 1" -c "read -v 4096 33" -c "read -v 4090 40"
    -c "read -C 0 4k" -c "write -C 8k 4k" -c "read -C -v 500 20" -c "read -C -q 0 1"
    -c "read -q 0 1" -c "write -q 12k 1" -c "read -q -v 0 16" -c "read -q -P 0xcd 0 512"
    -c "read -q -P 0xce 0 512" -c "read -v -P 0xce 1000 20"
    -c "write 1.5k 3" -c "write -P 077 100k 1" -c "write -P -0 101k 1"
    -c "write -P +5 102k 1" -c "write -P 0xff 103k 1" -c "read -v 100k 4k"
    -c "write -P 1 200000 100" -c "read -P 1 -s 10 -l 50 199990 100"
    -c "read -P 1 -s 10 199990 100" -c "read -P 1 -s 5 -l 10 199990 100"
    -c "read -P 1 -l 10 200000 100" -c "read -P 1 -s 0 -l 0 0 100"
    -c "read -P 1 -s 100 -l 0 0 100" -c "read -s 10 -P 1 200000 10"
    -c "read -P 1 -P 0xcd 0 8" -c "read -p 0 1" -c "write -p 13k 1" -c "read 0 1 -q"
    -c "read -- 0 1" -c "read 0 0" -c "write 0 0" -c "read 1M 0"
    -c "write -f 14k 512" -c "write -f -z 15k 1k"
    -c "writev -P 5 300000 10 20 30" -c "readv -P 5 300000 10 20 30"
    -c "readv -v -P 5 299995 10 15" -c "readv -C 300000 5 5" -c "writev -C 310000 1"
    -c "writev -q 311000 1" -c "readv -q -P 7 300000 10" -c "readv -q -v 300000 10"
    -c "writev -f 320k 512" -c "readv 0 0" -c "readv 0 1 0 1" -c "writev 0 0"
    -c "aio_write -P 3 400k 1 2" -c "aio_flush" -c "aio_read -v -P 3 400k 3" -c "aio_flush"
    -c "aio_read -P 4 400k 3" -c "aio_flush" -c "aio_read -C 400k 3" -c "aio_flush"
    -c "aio_read -q -v -P 9 400k 3" -c "aio_flush" -c "aio_write -q 401k 1" -c "aio_flush"
    -c "aio_write -f -C 402k 1" -c "aio_flush" -c "aio_write -z 403k 3" -c "aio_flush"
    -c "aio_read -i 0 1" -c "aio_write -i 0 1"
    -c "write -s src5 500k 13" -c "read -v 500k 16" -c "write -s src5 501k 5"
    -c "read -v 1M-1 1" -c "flush"
)

printf hello >"$SCRATCH/src5"
qemu-img create -q -f raw "$SCRATCH/img.raw" 2M
qemu-img create -q -f qcow2 -o compat=0.10 "$SCRATCH/v2.qcow2" 2M
qemu-img create -q -f qcow2 "$SCRATCH/v3.qcow2" 2M
qemu-img create -q -f qcow2 -o cluster_size=4k "$SCRATCH/c4k.qcow2" 2M
qemu-img create -q -f qcow2 -o extended_l2=on "$SCRATCH/xl2.qcow2" 2M
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k "$SCRATCH/xl2s.qcow2" 2M

# "1M-1" is not a number: it exercises the parse error inside the list.
IO_EXTRA=src5 IO_NAME=raw io_compare img.raw -f raw "${cmds[@]}"
for img in v2 v3 c4k xl2 xl2s; do
    IO_EXTRA=src5 IO_NAME=$img io_compare $img.qcow2 "${cmds[@]}"
    IO_EXTRA=src5 IO_NAME="$img -n" io_compare $img.qcow2 -n -f qcow2 "${cmds[@]}"
done

# Offsets beyond 4 GiB: 64-bit hexdump labels, TiB/PiB units.  (The image
# stays at 4 TiB: qemu-img compare walks the whole virtual size.)
qemu-img create -q -f qcow2 "$SCRATCH/big.qcow2" 4T
IO_NAME=big io_compare big.qcow2 \
    -c "write -P 0x41 5G 20" -c "read -v 5G 33" -c "read -v 1P 17" \
    -c "write -P 0x7a 3298534883300 24" -c "read -v 3298534883300 24" \
    -c "read -P 0x7a 3298534883300 24" -c "alloc 1P 1G" -c "alloc 5G" -c length \
    -c "write -C 1T 64k" -c "read -C 1T 64k" -c "alloc 1.5P" -c "alloc 7E 1"

# Write caching modes only change durability, never the output.
for mode in none writeback writethrough directsync unsafe; do
    IO_NAME="-t $mode" io_compare v3.qcow2 -t $mode \
        -c "write -P 9 0 100k" -c "write -f 1000 10" -c "read -P 9 64k 36k" -c flush
done
