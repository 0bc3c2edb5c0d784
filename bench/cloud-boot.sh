#!/bin/bash
# SPDX-License-Identifier: MIT
# Boot the test guest from an s3:// image three ways and print the median
# of BENCH_RUNS runs of each (tests/cloud/lazy-boot.sh does one run: a Ceph
# RGW on loopback, the guest of tests/interop/guest-boot.sh):
#   served from the remote, cold cache   topcow serve s3://..., empty cache
#   served from the remote, warm cache   the same again, the cache kept
#   pull, then boot                      topcow pull, then serve the file
# A boot's time runs from starting the server to its exit after the guest
# powered off (a serve of the remote pushes what the guest wrote on exit).
#   bench/cloud-boot.sh [BUILD]          (BENCH_RUNS, default 3)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
. "$src/bench/lib.sh"
bench_check "$build/tools/topcow" qemu-system-x86_64 radosgw
runs=${BENCH_RUNS:-3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq "$runs"); do
    echo "run $i of $runs" >&2
    TOPCOW=$build/tools/topcow TOPCOW_SRCDIR=$src bash "$src/tests/cloud/lazy-boot.sh" >>"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; exit 1; }
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
cold=$(sed -n 's/^boot from the remote, cold cache: \([0-9]*\) ms.*/\1/p' "$log" | median)
warm=$(sed -n 's/^boot from the remote, warm cache: \([0-9]*\) ms.*/\1/p' "$log" | median)
pull=$(sed -n 's/^pull: \([0-9]*\) ms.*/\1/p' "$log" | median)
boot=$(sed -n 's/^boot after the pull: \([0-9]*\) ms.*/\1/p' "$log" | median)
awk -v runs="$runs" -v cold="$cold" -v warm="$warm" -v pull="$pull" -v boot="$boot" 'BEGIN {
    printf "guest boot from an s3:// image on a local Ceph RGW, median of %d runs:\n", runs
    printf "  served from the remote, cold cache  %6.1f s\n", cold / 1000
    printf "  served from the remote, warm cache  %6.1f s\n", warm / 1000
    printf "  pull, then boot                     %6.1f s  (pull %.1f s + boot %.1f s)\n", (pull + boot) / 1000, pull / 1000, boot / 1000
}'
