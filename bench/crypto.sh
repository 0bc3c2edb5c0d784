#!/bin/bash
# SPDX-License-Identifier: MIT
#
# crypto.sh - I/O on a LUKS-encrypted qcow2 image against the same image
# unencrypted, under topcow and under qemu-io, side by side.
#
# Usage: bench/crypto.sh [path/to/topcow]
#
# Makes two fully allocated qcow2 images of BENCH_SIZE_MIB (default 1024):
# plain, and LUKS with qemu-img's defaults (aes-256-xts-plain64; PBKDF2
# iter-time 10 ms so that unlocking does not weigh in).  Then times with
# hyperfine, in one run, alternating round by round:
#   io -c 'read 0 SIZE'                and qemu-io -c 'read 0 SIZE'
#   io -c 'write -P 0x5a 0 SIZE'       and qemu-io -c 'write -P 0x5a 0 SIZE'
# on each image (overwrites in place: allocation is not measured), and
# prints the medians, each tool's encrypted/plain throughput ratio, and
# topcow's ratio to qemu-io.  The written data is verified with qemu-io.
#
# Environment: BENCH_RUNS (rounds, default 5), BENCH_SIZE_MIB (default 1024),
# BENCH_DIR (default /dev/shm: in memory, so the numbers are the tools').
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=${1:-$here/../build/tools/topcow}
TOPCOW=$(realpath "$TOPCOW")
RUNS=${BENCH_RUNS:-5}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
SIZE=$((SIZE_MIB * 1024 * 1024))

. "$here/lib.sh"
bench_check "$TOPCOW" qemu-img qemu-io hyperfine awk
dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/topcow-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

printf 'topcow-bench-passphrase' >pass
OBJ="--object secret,id=s0,file=$dir/pass"
LUKS="--image-opts driver=qcow2,file.filename=$dir/luks.qcow2,encrypt.key-secret=s0"
PLAIN="-f qcow2 $dir/plain.qcow2"

echo "== making $SIZE_MIB MiB plain and LUKS images in $dir"
qemu-img create -q -f qcow2 plain.qcow2 "$SIZE"
for i in 1 2 3 4 5 6 7 8 9 10; do # qemu-img's PBKDF2 timing sometimes fails
    qemu-img create -q -f qcow2 $OBJ -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 \
        luks.qcow2 "$SIZE" 2>/dev/null && break
done
qemu-io $PLAIN -c "write -P 0x11 0 $SIZE" >/dev/null
qemu-io $OBJ $LUKS -c "write -P 0x11 0 $SIZE" >/dev/null

# $1 label, $2 qemu-io command, $3 image arguments.
bench_one() {
    local label=$1 cmd=$2 img=$3
    local t="$TOPCOW io $OBJ $img -c '$cmd'" q="qemu-io $OBJ $img -c '$cmd'"
    echo "== $label: $t"
    run_rounds "$label" "$t" "$q"
}

bench_one read-plain "read 0 $SIZE" "$PLAIN"
bench_one read-luks "read 0 $SIZE" "$LUKS"
bench_one write-plain "write -P 0x5a 0 $SIZE" "$PLAIN"
bench_one write-luks "write -P 0x5a 0 $SIZE" "$LUKS"
qemu-io $OBJ $LUKS -c "read -P 0x5a 0 $SIZE" >/dev/null ||
    { echo "crypto.sh: the LUKS image does not read back" >&2; exit 1; }
qemu-io $PLAIN -c "read -P 0x5a 0 $SIZE" >/dev/null ||
    { echo "crypto.sh: the plain image does not read back" >&2; exit 1; }

echo
echo "== medians over $RUNS rounds, seconds (ratio = qemu-io / topcow; > 1: topcow is faster)"
for label in read-plain read-luks write-plain write-luks; do
    report "$label"
done
echo
echo "== encrypted throughput as a fraction of plain (plain time / encrypted time)"
for op in read write; do
    tp=$(median topcow wall "$op-plain.runs") te=$(median topcow wall "$op-luks.runs")
    qp=$(median qemu-img wall "$op-plain.runs") qe=$(median qemu-img wall "$op-luks.runs")
    awk -v op="$op" -v tp="$tp" -v te="$te" -v qp="$qp" -v qe="$qe" -v mib="$SIZE_MIB" 'BEGIN {
        printf "%-6s topcow %.2fx (%.0f vs %.0f MiB/s)   qemu-io %.2fx (%.0f vs %.0f MiB/s)\n",
            op, tp / te, mib / te, mib / tp, qp / qe, mib / qe, mib / qp }'
done
