#!/bin/bash
# Images QEMU wrote read identically through topcow: compressed clusters
# (zlib and zstd, several cluster sizes, mixed with normal, zero and
# rewritten clusters), extended L2 with subcluster allocation over a backing
# file, v2 images, external data files.  The oracle is
# `qemu-img convert -O raw`; topcow's `convert -O raw` must give the same
# sha256.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

same_as_qemu() { # image label
    "$TOPCOW" convert -O raw "$1" t.raw || fail "$2: topcow convert failed"
    qemu-img convert -O raw "$1" q.raw
    [ "$(sha t.raw)" = "$(sha q.raw)" ] || fail "$2: topcow reads different data than QEMU"
    rm -f t.raw q.raw
    echo "ok $2"
}

# Source material: text, zeros, random bytes, a counting sequence.
{
    for i in $(seq 1 20000); do echo "line $i: some highly compressible guest text"; done
    head -c 3000000 /dev/zero
    head -c 4000000 /dev/urandom
    seq 1 500000
} >src.raw
truncate -s 32M src.raw

for ct in zlib zstd; do
    for cs in 4096 65536 2097152; do
        qemu-img convert -c -O qcow2 -o compression_type=$ct,cluster_size=$cs src.raw c.qcow2
        same_as_qemu c.qcow2 "compressed $ct cluster_size=$cs"
        # Mix in normal, zero and partially rewritten compressed clusters.
        qemu-io -c "write -P 0x11 1000 70000" -c "write -z 8M 1M" -c "discard 12M 2M" \
            -c "write -P 0x22 30M 4096" c.qcow2 >/dev/null
        same_as_qemu c.qcow2 "compressed $ct cluster_size=$cs, partly rewritten"
        rm -f c.qcow2
    done
done

# Compressed clusters written one by one by qemu-io (packed differently).
qemu-img create -q -f qcow2 -o compression_type=zstd w.qcow2 4M
qemu-io -c "write -c -P 0x33 0 64k" -c "write -c -P 0x44 64k 128k" -c "write -P 0x55 512k 64k" \
    w.qcow2 >/dev/null
same_as_qemu w.qcow2 "qemu-io compressed writes"

# Extended L2: subclusters allocated piecewise over a backing file.
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c "write -P 0xb0 0 8M" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k -b base.qcow2 -F qcow2 x.qcow2
qemu-io -c "write -P 1 4k 4k" -c "write -P 2 130k 10k" -c "write -z 300k 8k" -c "discard 512k 128k" \
    -c "write -z -u 1M 256k" -c "write -P 3 2M 1" x.qcow2 >/dev/null
same_as_qemu x.qcow2 "extended L2 over a backing file"

# v2 image over a raw backing file, with discards re-exposing the backing.
qemu-img convert -O raw base.qcow2 base.raw
qemu-img create -q -f qcow2 -o compat=0.10 -b base.raw -F raw v2.qcow2
qemu-io -c "write -P 7 0 1M" -c "discard 0 512k" -c "write -z 2M 64k" v2.qcow2 >/dev/null
same_as_qemu v2.qcow2 "v2 over raw backing"

# External data file.
qemu-img create -q -f qcow2 -o data_file=d.data d.qcow2 4M
qemu-io -c "write -P 9 0 1M" -c "write -z 128k 64k" d.qcow2 >/dev/null
same_as_qemu d.qcow2 "external data file"
