#!/bin/bash
# SPDX-License-Identifier: MIT
#
# top-overhead.sh - what publishing statistics for `topcow top` costs, in
# instructions: the same 20,000 4 KiB random writes and 20,000 random reads
# (qemu-io commands fed to `topcow io` on a qcow2 file in memory) run under
# valgrind's callgrind with statistics published (the default) and with
# TOPCOW_STATS=off, and the total instruction counts are compared.
# Instruction counts do not depend on the machine's load, so one run of
# each is enough, where IOPS on this shared machine swing by 10% or more
# between runs (for those, run BENCH_STATS_OFF=1 bench/nbd.sh).  What
# instructions cannot show: atomic additions on cache lines that several
# CPUs write cost more than their count; the nbd.sh comparison includes that.
#
# Usage: bench/top-overhead.sh [path/to/topcow]
# Environment: BENCH_DIR (default /dev/shm), BENCH_OPS (default 20000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=$(realpath "${1:-$here/../build/tools/topcow}")
OPS=${BENCH_OPS:-20000}
. "$here/lib.sh"
bench_check "$TOPCOW" valgrind qemu-img /usr/bin/python3
dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/topcow-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

# The same pseudo-random offsets for both runs.
/usr/bin/python3 - "$OPS" >cmds <<'PY'
import random, sys
n = int(sys.argv[1])
rng = random.Random(42)
offs = [rng.randrange(0, 256 * 256) * 4096 for _ in range(n)]   # 256 MiB region
for o in offs:
    print(f"write -q -P 0x5a {o} 4k")
for o in offs[::-1]:
    print(f"read -q {o} 4k")
PY

run() { # $1: label, rest: environment
    local label=$1
    shift
    qemu-img create -q -f qcow2 "img-$label.qcow2" 1G
    env "$@" TOPCOW_STATS_DIR="$dir/stats" valgrind --tool=callgrind \
        --callgrind-out-file="cg-$label.out" "$TOPCOW" io "img-$label.qcow2" <cmds \
        >/dev/null 2>"vg-$label.log"
    sed -n 's/^summary: *//p' "cg-$label.out"
}

echo "== $OPS x 4 KiB random writes, then $OPS reads, through topcow io, under callgrind"
on=$(run on TOPCOW_STATS=on)
off=$(run off TOPCOW_STATS=off)
awk -v on="$on" -v off="$off" -v n=$((2 * OPS)) 'BEGIN {
    printf "instructions, statistics published: %d (%.0f per request)\n", on, on / n
    printf "instructions, TOPCOW_STATS=off:      %d (%.0f per request)\n", off, off / n
    printf "published / off: %.4fx (%+.2f%%), %+.0f instructions per request\n",
           on / off, (on / off - 1) * 100, (on - off) / n }'
