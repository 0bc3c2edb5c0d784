#!/bin/bash
# SPDX-License-Identifier: MIT
# Write the base images of the mutation test into OUTDIR: one small qcow2
# image per type, made by qemu-img/qemu-io (QEMU's layout) or by topcow, each
# with data, zeros and holes so that every metadata structure is in use.
# OUTDIR/types lists the type names; type NAME is OUTDIR/NAME.qcow2, with its
# backing file NAME-base.qcow2 or external data file NAME.data next to it
# (named relatively, so a copy of the directory works).  Images are small
# (1-4 MiB virtual, 4 KiB or 512 B clusters) so that reading one whole takes
# well under a millisecond.
#
# usage: make-images.sh OUTDIR
# Environment: TOPCOW (the topcow binary).
# Exit codes: 0 done, 1 a tool failed, 77 qemu-img/qemu-io not installed.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1"
cd "$1"
: "${TOPCOW:?TOPCOW must point at the topcow binary}"
for p in qemu-img qemu-io; do
    command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p not installed" >&2; exit 77; }
done
rm -f types

run() {
    "$@" >/dev/null 2>err.txt || { cat err.txt >&2; echo "FAIL: $*" >&2; exit 1; }
}
qi() { run qemu-img "$@"; }
qio() { run qemu-io -f qcow2 "$@"; }
tc() { run "$TOPCOW" "$@"; }
add() { echo "$1" >>types; }

# Compressible, not trivial, guest data for the compressed images.
seq 1 200000 | head -c 1048576 >mixed.raw

# Data, zeros, a discard and a far-away write: L2 tables in use and unused.
WL=(-c 'write -P 0x11 0 9k' -c 'write -P 0x12 300k 4k' -c 'write -z 64k 8k'
    -c 'write -P 0x13 1020k 4k' -c 'discard 300k 4k' -c 'write -P 0x14 3m 1k')

qi create -f qcow2 -o compat=0.10,cluster_size=4096 v2.qcow2 4M
qio "${WL[@]}" v2.qcow2
add v2

qi create -f qcow2 -o cluster_size=4096 v3.qcow2 4M
qio "${WL[@]}" v3.qcow2
add v3

tc create -q -f qcow2 -o cluster_size=4096 topcow-v3.qcow2 4M
tc io "${WL[@]}" topcow-v3.qcow2
add topcow-v3

qi create -f qcow2 -o cluster_size=16k,extended_l2=on extl2.qcow2 4M
qio "${WL[@]}" -c 'write -P 0x15 2m 1k' -c 'write -z -u 2052k 2k' extl2.qcow2
add extl2

qi create -f qcow2 -o cluster_size=4096 snapshots.qcow2 4M
qio -c 'write -P 0x21 0 12k' -c 'write -P 0x22 1m 4k' snapshots.qcow2
qi snapshot -c first snapshots.qcow2
qio -c 'write -P 0x23 4k 4k' -c 'write -P 0x24 2m 8k' snapshots.qcow2
qi snapshot -c second snapshots.qcow2
qio -c 'discard 0 4k' -c 'write -P 0x25 3m 4k' snapshots.qcow2
add snapshots

for ct in zlib zstd; do
    qi convert -c -f raw -O qcow2 -o "cluster_size=4096,compression_type=$ct" mixed.raw \
        "$ct.qcow2"
    qio -c 'write -P 0x31 6k 1k' -c 'write -z 512k 8k' "$ct.qcow2"
    add "$ct"
done

qi create -f qcow2 -o cluster_size=4096 backing-base.qcow2 4M
qio -c 'write -P 0x41 0 2m' backing-base.qcow2
qi create -f qcow2 -b backing-base.qcow2 -F qcow2 -o cluster_size=4096 backing.qcow2
qio -c 'write -P 0x42 4k 6k' -c 'write -z 64k 4k' -c 'discard 128k 8k' \
    -c 'write -P 0x43 3m 4k' backing.qcow2
add backing

qi create -f qcow2 -o cluster_size=4096 bitmaps.qcow2 4M
qi bitmap --add bitmaps.qcow2 b0
qio "${WL[@]}" bitmaps.qcow2
qi bitmap --add -g 16k bitmaps.qcow2 b1
qio -c 'write -P 0x51 2m 64k' bitmaps.qcow2
qi bitmap --disable bitmaps.qcow2 b1
add bitmaps

tc create -q -f qcow2 -o cluster_size=512 c512.qcow2 1M
tc io -c 'write -P 0x61 0 3k' -c 'write -z 8k 2k' -c 'write -P 0x62 512k 1k' \
    -c 'write -P 0x63 1020k 4k' -c 'discard 512k 512' c512.qcow2
add c512

qi create -f qcow2 -o cluster_size=512,refcount_bits=1 rb1.qcow2 1M
qio -c 'write -P 0x64 0 2k' -c 'write -z 4k 1k' -c 'write -P 0x65 600k 3k' rb1.qcow2
add rb1

qi create -f qcow2 -o cluster_size=4096,data_file=datafile.data datafile.qcow2 1M
qio -c 'write -P 0x71 0 9k' -c 'write -z 64k 8k' -c 'write -P 0x72 900k 4k' datafile.qcow2
add datafile

qi create -f qcow2 -o cluster_size=4096,lazy_refcounts=on lazy-dirty.qcow2 1M
# abort(3) leaves the dirty bit set and the refcounts behind.
bash -c '"$@"; exit $?' _ qemu-io -f qcow2 -c 'write -P 0x81 0 8k' -c 'write -P 0x82 512k 4k' \
    -c abort lazy-dirty.qcow2 >/dev/null 2>&1 || true
add lazy-dirty

rm -f mixed.raw err.txt
