#!/bin/bash
# SPDX-License-Identifier: MIT
#
# convert.sh - topcow convert against qemu-img convert, side by side.
#
# Usage: bench/convert.sh [path/to/topcow]
#
# Generates a 2 GiB mixed raw image reproducibly (fixed seed: holes, written
# zeros, incompressible AES-CTR bytes and compressible text in regions of
# varied sizes), makes a qcow2 of it with qemu-img, then times with
# hyperfine, in one run, `topcow convert` and `qemu-img convert` with the
# same options (-m 8 -W) for raw->qcow2 and qcow2->raw, page cache warm,
# alternating the two tools round by round.
# Every output is verified (qemu-img compare against the source, qemu-img
# check for qcow2 outputs) and the medians and their ratio are printed.
#
# Environment: BENCH_RUNS (rounds, default 7), BENCH_SIZE_MIB (default 2048),
# BENCH_DIR (parent of the scratch directory, default $TMPDIR or /tmp),
# BENCH_PREFAULT_MIB (default 0): before each run, write and delete that many
# MiB in /dev/shm.  In VMs whose free memory goes back to the hypervisor
# (free page reporting, ballooning), the page cache the outputs need is
# otherwise faulted in from the host at random, which swamps the tools'
# differences; about 1.5 times the image size makes every run start warm.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=${1:-$here/../build/tools/topcow}
TOPCOW=$(realpath "$TOPCOW")
RUNS=${BENCH_RUNS:-7}
SIZE_MIB=${BENCH_SIZE_MIB:-2048}
PREFAULT_MIB=${BENCH_PREFAULT_MIB:-0}

. "$here/lib.sh"
bench_check "$TOPCOW" qemu-img hyperfine openssl dd awk

dir=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/topcow-bench.XXXXXX")
shm=/dev/shm/topcow-bench-prefault.$$
trap 'rm -rf "$dir" "$shm"' EXIT
cd "$dir"


echo "== generating a $SIZE_MIB MiB mixed image in $dir"
gen_image src.raw "$SIZE_MIB" mixed
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
du -h --apparent-size src.raw | sed 's/^/   apparent /'
du -h src.raw src.qcow2 | sed 's/^/   on disk  /'

# One direction: $1 label, $2 source, $3 source format, $4 output format.
# Hyperfine runs both commands once per round, BENCH_RUNS times, so that load
# drifting over the minutes a benchmark takes hits both alike; each run
# starts with the source in the page cache and no dirty pages around.
bench_dir() {
    local label=$1 src=$2 sfmt=$3 ofmt=$4
    local t="$TOPCOW convert -f $sfmt -O $ofmt -m 8 -W $src out-topcow.$ofmt"
    local q="qemu-img convert -f $sfmt -O $ofmt -m 8 -W $src out-qemu.$ofmt"
    # Deleting the last output comes last, just before the run: memory freed
    # long before is handed back to the hypervisor by free page reporting in
    # VMs, and faulting it in again would dominate the measurement.
    local prep="cat $src >/dev/null; rm -f out-topcow.$ofmt out-qemu.$ofmt; sync"
    if [ "$PREFAULT_MIB" -gt 0 ]; then
        prep="cat $src >/dev/null; dd if=/dev/zero of=$shm bs=1M count=$PREFAULT_MIB status=none"
        prep+="; rm -f $shm out-topcow.$ofmt out-qemu.$ofmt; sync"
    fi
    echo
    echo "== $label: $RUNS rounds of"
    echo "   $t"
    echo "   $q"
    run_rounds "$label" "$t" "$q" "$prep"
    # Verify the outputs of a final run of each.
    rm -f out-topcow.* out-qemu.*
    $t && $q
    qemu-img compare -q -f "$sfmt" -F "$ofmt" "$src" "out-topcow.$ofmt" ||
        { echo "convert.sh: topcow output differs from the source" >&2; exit 1; }
    qemu-img compare -q -f "$ofmt" -F "$ofmt" "out-qemu.$ofmt" "out-topcow.$ofmt" ||
        { echo "convert.sh: topcow and qemu-img outputs differ" >&2; exit 1; }
    if [ "$ofmt" = qcow2 ]; then
        qemu-img check -q out-topcow.qcow2 ||
            { echo "convert.sh: qemu-img check failed on topcow's output" >&2; exit 1; }
    fi
    du -h "out-topcow.$ofmt" "out-qemu.$ofmt" | sed 's/^/   on disk  /'
    rm -f out-topcow.* out-qemu.*
    sync
}

bench_dir raw-to-qcow2 src.raw raw qcow2
bench_dir qcow2-to-raw src.qcow2 qcow2 raw

echo
echo "== medians over $RUNS rounds, seconds (ratio = qemu-img / topcow; > 1: topcow is faster)"
for label in raw-to-qcow2 qcow2-to-raw; do
    report "$label"
done
echo
echo "== every round, wall seconds (topcow / qemu-img)"
for label in raw-to-qcow2 qcow2-to-raw; do
    printf '%-13s' "$label"
    awk -F, '$1 == "topcow" { t[++n] = $4 } $1 == "qemu-img" { q[++m] = $4 }
             END { for (i = 1; i <= n; i++) printf " %.2f/%.2f", t[i], q[i]; print "" }' \
        "$label.runs"
done
