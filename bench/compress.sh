#!/bin/bash
# SPDX-License-Identifier: MIT
#
# compress.sh - compressed convert, topcow against qemu-img, side by side.
#
# Usage: bench/compress.sh [path/to/topcow]
#
# Generates two reproducible raw images (bench/lib.sh): the mixed image of
# bench/convert.sh (half of it incompressible) and a compressible one (hex
# digits of random bytes instead of the random bytes, which compress to
# about 45% like much of an OS disk).  For each, times with hyperfine, in one
# run and alternating round by round,
#   topcow convert   -m 8 -W -c -O qcow2 -o compression_type=T  src out
#   qemu-img convert -m 8 -W -c -O qcow2 -o compression_type=T  src out
# for T = zlib and zstd, page cache warm.  Every output is verified (qemu-img
# check, qemu-img compare against the source) and the file sizes are
# printed; then the medians and their ratio.
#
# Environment: BENCH_RUNS (rounds, default 5), BENCH_SIZE_MIB (default 2048),
# BENCH_DIR (parent of the scratch directory, default /dev/shm: the outputs
# stay in memory, so the numbers are the tools' and not the disk's).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=${1:-$here/../build/tools/topcow}
TOPCOW=$(realpath "$TOPCOW")
RUNS=${BENCH_RUNS:-5}
SIZE_MIB=${BENCH_SIZE_MIB:-2048}

. "$here/lib.sh"
bench_check "$TOPCOW" qemu-img hyperfine openssl xxd dd awk

dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/topcow-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

# $1 label, $2 source, $3 compression type.
bench_one() {
    local label=$1 src=$2 ct=$3
    local opts="-m 8 -W -c -O qcow2 -o compression_type=$ct"
    local t="$TOPCOW convert $opts $src out-topcow.qcow2"
    local q="qemu-img convert $opts $src out-qemu.qcow2"
    local prep="cat $src >/dev/null; rm -f out-topcow.qcow2 out-qemu.qcow2"
    echo
    echo "== $label: $RUNS rounds of"
    echo "   $t"
    echo "   $q"
    run_rounds "$label" "$t" "$q" "$prep"
    rm -f out-topcow.qcow2 out-qemu.qcow2
    $t && $q
    qemu-img check -q out-topcow.qcow2 ||
        { echo "compress.sh: qemu-img check failed on topcow's output" >&2; exit 1; }
    qemu-img compare -q -f raw -F qcow2 "$src" out-topcow.qcow2 ||
        { echo "compress.sh: topcow's output differs from the source" >&2; exit 1; }
    local ts qs
    ts=$(stat -c %s out-topcow.qcow2) qs=$(stat -c %s out-qemu.qcow2)
    awk -v t="$ts" -v q="$qs" 'BEGIN {
        printf "   file size: topcow %d, qemu-img %d (topcow %+.1f%%)\n", t, q, (t - q) * 100 / q }' |
        tee "$label.size"
    rm -f out-topcow.qcow2 out-qemu.qcow2
}

labels=()
for profile in mixed compressible; do
    echo "== generating a $SIZE_MIB MiB $profile image in $dir"
    gen_image "$profile.raw" "$SIZE_MIB" "$profile"
    for ct in zlib zstd; do
        bench_one "$profile-$ct" "$profile.raw" "$ct"
        labels+=("$profile-$ct")
    done
    rm -f "$profile.raw"
done

echo
echo "== medians over $RUNS rounds, seconds (ratio = qemu-img / topcow; > 1: topcow is faster)"
for label in "${labels[@]}"; do
    report "$label"
done
echo
echo "== output file sizes"
for label in "${labels[@]}"; do
    printf '%-22s%s\n' "$label" "$(sed 's/^   file size://' "$label.size")"
done
