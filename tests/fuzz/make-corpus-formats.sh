#!/bin/bash
# SPDX-License-Identifier: MIT
# Generate the seed corpus of a foreign format's fuzz target (fuzz-FMT-open)
# into OUTDIR: small images of FMT made by qemu-img - every subformat it
# writes, with data, zeros and holes - plus the sample images of that format
# in the corpus of images other tools made, when it is found (TOPCOW_CORPUS
# or the corpus beside the source tree) and the image is small enough to
# fuzz.  Generated corpora are never committed.
#
# usage: make-corpus-formats.sh FMT OUTDIR     (FMT: vdi, vmdk, vpc, vhdx)
# Exit codes: 0 done, 1 a tool failed, 2 bad usage, 77 qemu-img/qemu-io missing.
set -eu

[ $# -eq 2 ] || { echo "usage: $0 FMT OUTDIR" >&2; exit 2; }
fmt=$1
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
for p in qemu-img qemu-io; do
    command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p not installed" >&2; exit 77; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/topcow-corpus-fmt.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# A small source (2 MiB; 1 MiB for VHDX, whose regions alone take 8 MiB):
# data in both halves, a zero run, holes.
size=2M
[ "$fmt" = vhdx ] && size=1M
qemu-img create -q -f raw src.raw "$size"
qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 512k 128k' \
    -c 'write -z 768k 64k' src.raw >/dev/null
[ "$fmt" = vhdx ] || qemu-io -f raw -c 'write -P 0x3c 1536k 4k' src.raw >/dev/null

seed() { # NAME OPTIONS: convert src.raw to OUT/NAME with -o OPTIONS
    qemu-img convert -q -f raw -O "$fmt" ${2:+-o "$2"} src.raw "$OUT/$1"
}
case $fmt in
vdi)
    seed dynamic.vdi ""
    seed static.vdi static=on
    qemu-img create -q -f vdi "$OUT/empty.vdi" 1M ;;
vmdk)
    seed sparse.vmdk ""
    seed zeroed-grain.vmdk zeroed_grain=on
    seed stream.vmdk subformat=streamOptimized
    seed v6.vmdk compat6=on
    # A descriptor with a flat extent; the extent's name is the one the
    # harness provides in its sandbox (fuzz-data.raw).
    cat > "$OUT/flat-descriptor.vmdk" <<'DESC'
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 128 FLAT "fuzz-data.raw" 0

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "0"
ddb.geometry.heads = "16"
ddb.geometry.sectors = "63"
ddb.adapterType = "ide"
DESC
    ;;
vpc)
    seed dynamic.vhd ""
    seed fixed.vhd subformat=fixed
    seed force-size.vhd force_size=on ;;
vhdx)
    seed dynamic.vhdx block_size=1M,log_size=1M
    seed fixed.vhdx subformat=fixed,block_size=1M,log_size=1M
    seed zero-blocks.vhdx block_size=1M,log_size=1M,block_state_zero=off ;;
*)
    echo "make-corpus-formats: unknown format '$fmt'" >&2
    exit 2 ;;
esac

# The sample images of this format (QEMU's iotests images), up to 4 MiB.
corpus=${TOPCOW_CORPUS:-${TOPCOW_SRCDIR:-$(dirname "$0")/../..}/../shared/corpus/qemu-sample-images}
if [ -d "$corpus" ]; then
    for f in "$corpus"/*.bz2; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .bz2)
        bzcat "$f" > "$WORK/sample" 2>/dev/null || continue
        [ "$(stat -c %s "$WORK/sample")" -le $((4 << 20)) ] || continue
        if [ "$(qemu-img info --output=json "$WORK/sample" 2>/dev/null |
                sed -n 's/.*"format": "\([a-z0-9]*\)".*/\1/p' | head -1)" = "$fmt" ] ||
           case "$name:$fmt" in afl5.img:vpc | afl9.vmdk:vmdk) true ;; *) false ;; esac; then
            cp "$WORK/sample" "$OUT/sample-$name"
        fi
    done
fi
echo "make-corpus-formats: $(ls "$OUT" | wc -l) $fmt seed images in $OUT" >&2
