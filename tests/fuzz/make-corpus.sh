#!/bin/bash
# SPDX-License-Identifier: MIT
# Generate the seed corpus of the qcow2 fuzz targets into OUTDIR: small
# valid images made by topcow and by QEMU's tools, covering every structure
# the parser reads - v2/v3 headers, 512 B / 4 KiB / 16 KiB / 64 KiB clusters,
# refcount widths 1/16/64, extended L2, zlib and zstd compressed clusters,
# zero clusters, backing-file names, external data files, internal
# snapshots, persistent bitmaps, metadata preallocation, and lazy-refcounts
# images left dirty by a crash.  Small clusters and virtual sizes keep each
# image a few KiB so that fuzzing runs fast.  Generated corpora are never
# committed.
#
# usage: make-corpus.sh OUTDIR
# Environment: TOPCOW (the topcow binary; default: topcow on PATH).
# Exit codes: 0 done, 1 a tool failed, 77 qemu-img/qemu-io not installed.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
TOPCOW=${TOPCOW:-topcow}
for p in qemu-img qemu-io "$TOPCOW"; do
    command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p not installed" >&2; exit 77; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/topcow-corpus.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
ulimit -c 0 # qemu-io's abort must not leave core files

# The external data file name the fuzz targets provide in their sandbox
# (FUZZ_DATA_FILE_NAME in fuzz-common.h).
DATA=fuzz-data.raw

count=0
run() {
    "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; echo "FAIL: $*" >&2; exit 1; }
}
tc() { run "$TOPCOW" "$@"; }
qi() { run qemu-img "$@"; }
qio() { run qemu-io -f qcow2 "$@"; }
# Keep t.qcow2 as seed NAME, and start the next one from scratch.
emit() {
    cp t.qcow2 "$OUT/seed-$(printf %02d $count)-$1"
    count=$((count + 1))
    rm -f t.qcow2 base.qcow2 "$DATA"
}

# Mixed, compressible but not trivial, guest data for compressed images.
seq 1 40000 | head -c 65536 >mixed.raw

# ---- made by topcow: every cluster size and both versions ------------------
for compat in 0.10 1.1; do
    for cs in 512 4096; do
        tc create -q -f qcow2 -o "compat=$compat,cluster_size=$cs" t.qcow2 1M
        tc io -c 'write -P 0xaa 0 3k' -c 'write -P 0xbb 512k 1k' -c 'write -z 256k 4k' \
            -c 'write -P 0xcc 1020k 4k' -c 'discard 512k 1k' t.qcow2
        emit "topcow-v${compat%%.*}-c$cs"
    done
done
tc create -q -f qcow2 -o cluster_size=65536 t.qcow2 1M
tc io -c 'write -P 0xdd 4k 1k' t.qcow2
emit topcow-c65536
tc create -q -f qcow2 -o cluster_size=512,refcount_bits=1 t.qcow2 64k
tc io -c 'write -P 1 0 2k' -c 'write -P 2 32k 512' t.qcow2
emit topcow-rb1
tc create -q -f qcow2 -o cluster_size=512,refcount_bits=64 t.qcow2 4M
tc io -c 'write -P 3 0 512' -c 'write -P 4 1M 1k' -c 'write -P 5 3M 512' -c 'write -z 2M 4k' \
    t.qcow2
emit topcow-rb64-sparse
tc create -q -f qcow2 -o cluster_size=32k,extended_l2=on t.qcow2 1M
tc io -c 'write -P 6 0 1k' -c 'write -z 4k 1k' -c 'write -P 7 40k 8k' -c 'write -z 64k 64k' \
    t.qcow2
emit topcow-extl2
tc create -q -f qcow2 -o cluster_size=4096,lazy_refcounts=on t.qcow2 256k
tc io -c 'write -P 8 0 8k' t.qcow2
emit topcow-lazy
tc create -q -f qcow2 -o "cluster_size=4096,data_file=$DATA" t.qcow2 256k
tc io -c 'write -P 9 0 8k' -c 'write -z 64k 4k' t.qcow2
emit topcow-datafile
tc create -q -f qcow2 -o cluster_size=512 base.qcow2 64k
tc create -q -f qcow2 -b base.qcow2 -F qcow2 -o cluster_size=512 t.qcow2
tc io -c 'write -P 10 1k 1k' t.qcow2
emit topcow-backing
tc create -q -f qcow2 -u -b ../some/dir/base.img -F raw -o cluster_size=4096 t.qcow2 128k
emit topcow-backing-raw-name

# ---- made by QEMU ------------------------------------------------------------
qi create -f qcow2 -o cluster_size=4096,refcount_bits=64 t.qcow2 512k
qio -c 'write -P 0x11 0 6k' -c 'write -P 0x12 100k 512' -c 'write -z -u 0 4k' t.qcow2
emit qemu-rb64
qi create -f qcow2 -o cluster_size=512,refcount_bits=1 t.qcow2 128k
qio -c 'write -P 0x13 0 1k' -c 'write -z 4k 1k' -c 'write -P 0x14 64k 3k' t.qcow2
emit qemu-rb1
qi create -f qcow2 -o cluster_size=16k,extended_l2=on t.qcow2 1M
qio -c 'write -P 0x15 0 512' -c 'write -z 16k 2k' -c 'write -P 0x16 40k 8k' \
    -c 'write -z -u 128k 64k' -c 'discard 40k 2k' t.qcow2
emit qemu-extl2-c16k
for ct in zlib zstd; do
    for cs in 512 4096; do
        qi convert -c -f raw -O qcow2 -o "cluster_size=$cs,compression_type=$ct" mixed.raw \
            t.qcow2
        qio -c 'write -P 0x17 1k 1k' t.qcow2 # copy-on-write of a compressed cluster
        emit "qemu-compressed-$ct-c$cs"
    done
done
qi create -f qcow2 -o cluster_size=4096,compat=0.10 t.qcow2 128k
qio -c 'write -c -P 0x18 0 4k' -c 'write -c -P 0x19 8k 4k' t.qcow2
emit qemu-compressed-v2
# topcow's packing: streams sharing host clusters, rewritten ones freed.
tc create -q -f qcow2 -o cluster_size=4096,compression_type=zstd t.qcow2 256k
tc io -c 'write -c -s mixed.raw 0 64k' -c 'write -c -P 0x1a 8k 8k' -c 'write -P 0x1b 20k 1k' t.qcow2
emit topcow-compressed-zstd
qi convert -c -f raw -O qcow2 -o cluster_size=16k,extended_l2=on mixed.raw t.qcow2
emit qemu-compressed-extl2
qi create -f qcow2 -o cluster_size=4096 base.qcow2 64k
qio -c 'write -P 0x1a 0 64k' base.qcow2
qi create -f qcow2 -b base.qcow2 -F qcow2 -o cluster_size=4096 t.qcow2
qio -c 'write -P 0x1b 4k 1k' -c 'write -z 16k 4k' -c 'discard 32k 4k' t.qcow2
emit qemu-backing
qi create -f qcow2 -o cluster_size=512,compat=0.10 base.qcow2 64k
qi create -f qcow2 -b base.qcow2 -F qcow2 -o cluster_size=512,compat=0.10 t.qcow2
qio -c 'write -P 0x1c 0 1k' t.qcow2
emit qemu-backing-v2
for raw in off on; do
    qi create -f qcow2 -o "cluster_size=4096,data_file=$DATA,data_file_raw=$raw" t.qcow2 128k
    qio -c 'write -P 0x1d 0 5k' -c 'write -z 64k 8k' t.qcow2
    emit "qemu-datafile-raw-$raw"
done
for compat in 0.10 1.1; do
    qi create -f qcow2 -o "cluster_size=512,compat=$compat" t.qcow2 64k
    qio -c 'write -P 0x1e 0 2k' t.qcow2
    qi snapshot -c snap1 t.qcow2
    qio -c 'write -P 0x1f 1k 2k' -c 'write -P 0x20 32k 512' t.qcow2
    qi snapshot -c second-snapshot t.qcow2
    qio -c 'discard 0 512' t.qcow2
    emit "qemu-snapshots-v${compat%%.*}"
done
qi create -f qcow2 -o cluster_size=4096 t.qcow2 1M
qio -c 'write -P 0x21 0 8k' t.qcow2
qi snapshot -c s1 t.qcow2
qi snapshot -d s1 t.qcow2
qi snapshot -c s2 t.qcow2
emit qemu-snapshot-deleted
qi create -f qcow2 -o cluster_size=4096 t.qcow2 1M
qi bitmap --add t.qcow2 b0
qio -c 'write -P 0x22 0 8k' -c 'write -P 0x23 512k 4k' t.qcow2
qi bitmap --add -g 8k t.qcow2 b1
qi bitmap --disable t.qcow2 b1
emit qemu-bitmaps
qi create -f qcow2 -o cluster_size=512 t.qcow2 64k
qi bitmap --add -g 512 t.qcow2 bm
qio -c 'write -P 0x24 0 1k' t.qcow2
qi snapshot -c s t.qcow2
emit qemu-bitmap-snapshot
qi create -f qcow2 -o cluster_size=4096,preallocation=metadata t.qcow2 64k
emit qemu-prealloc-metadata
qi create -f qcow2 -o cluster_size=512,preallocation=metadata,compat=0.10 t.qcow2 16k
emit qemu-prealloc-metadata-v2
for cs in 512 4096; do
    qi create -f qcow2 -o "cluster_size=$cs,lazy_refcounts=on" t.qcow2 1M
    # abort(3) leaves the dirty bit set and the refcounts behind; the inner
    # shell keeps bash's "Aborted" notice off the output.
    bash -c '"$@"; exit $?' _ qemu-io -f qcow2 -c 'write -P 0x25 0 8k' \
        -c 'write -P 0x26 512k 1k' -c abort t.qcow2 >/dev/null 2>&1 || true
    emit "qemu-lazy-dirty-c$cs"
done
qi create -f qcow2 -o cluster_size=512 t.qcow2 8M
qio -c 'write -P 0x27 0 512' -c 'write -P 0x28 2M 512' -c 'write -P 0x29 6M 1k' \
    -c 'write -P 0x2a 8191k 1k' t.qcow2
emit qemu-many-l2
qi create -f qcow2 -o cluster_size=65536 t.qcow2 1M
qio -c 'write -P 0x2b 0 1k' t.qcow2
emit qemu-c64k

echo "make-corpus: $count seed images in $OUT" >&2
