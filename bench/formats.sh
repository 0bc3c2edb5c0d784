#!/bin/bash
# SPDX-License-Identifier: MIT
#
# formats.sh - converting from VDI, VMDK, VHD and VHDX: topcow convert
# against qemu-img convert, side by side.
#
# Usage: bench/formats.sh [path/to/topcow]
#
# Generates a mixed raw image reproducibly (bench/lib.sh gen_image: holes,
# written zeros, random bytes and text in regions of varied sizes), has
# qemu-img write it as each foreign format below, then times with
# hyperfine, in one run, `topcow convert` and `qemu-img convert` of each to
# qcow2 with the same options (-m 8 -W), page cache warm, the two tools
# alternating round by round.  Every output is verified (qemu-img compare
# against the source, qemu-img check) and the medians and their ratio are
# printed (> 1: topcow is faster).
#   vdi               qemu-img convert -O vdi
#   vmdk              -O vmdk (monolithicSparse)
#   vmdk-stream       -O vmdk -o subformat=streamOptimized (compressed grains)
#   vpc               -O vpc (dynamic)
#   vhdx              -O vhdx (dynamic)
#
# Environment: BENCH_RUNS (rounds, default 5), BENCH_SIZE_MIB (default
# 1024), BENCH_DIR (parent of the scratch directory, default $TMPDIR or
# /tmp), BENCH_ONLY (a regex over the labels above).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=$(realpath "${1:-$here/../build/tools/topcow}")
RUNS=${BENCH_RUNS:-5}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
ONLY=${BENCH_ONLY:-.}
. "$here/lib.sh"
bench_check "$TOPCOW" qemu-img hyperfine openssl dd awk
dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/topcow-bench-formats.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

echo "== generating a $SIZE_MIB MiB mixed image in $dir"
gen_image src.raw "$SIZE_MIB" mixed

labels=()
for spec in vdi:vdi: vmdk:vmdk: vmdk-stream:vmdk:subformat=streamOptimized vpc:vpc: vhdx:vhdx:; do
    IFS=: read -r label fmt opts <<<"$spec"
    [[ $label =~ $ONLY ]] || continue
    qemu-img convert -f raw -O "$fmt" ${opts:+-o "$opts"} src.raw "src.$label"
    printf '   %-12s %s on disk\n' "$label" "$(du -h "src.$label" | cut -f1)"
    t="$TOPCOW convert -f $fmt -O qcow2 -m 8 -W src.$label out-topcow.qcow2"
    q="qemu-img convert -f $fmt -O qcow2 -m 8 -W src.$label out-qemu.qcow2"
    echo
    echo "== $label: $RUNS rounds of"
    echo "   $t"
    echo "   $q"
    run_rounds "$label" "$t" "$q" "cat src.$label >/dev/null; rm -f out-*.qcow2; sync"
    rm -f out-*.qcow2
    $t && $q
    qemu-img compare -q -f raw -F qcow2 src.raw out-topcow.qcow2 ||
        { echo "formats.sh: topcow's conversion of $label differs from the source" >&2; exit 1; }
    qemu-img check -q out-topcow.qcow2 ||
        { echo "formats.sh: qemu-img check failed on topcow's output" >&2; exit 1; }
    rm -f out-*.qcow2 "src.$label"
    labels+=("$label")
done

echo
echo "== medians over $RUNS rounds, seconds (ratio = qemu-img / topcow; > 1: topcow is faster)"
for label in "${labels[@]}"; do
    report "$label"
done
