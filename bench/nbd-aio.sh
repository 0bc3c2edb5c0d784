#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nbd-aio.sh - what --aio=io_uring buys topcow serve, next to qemu-nbd.
#
# Usage: bench/nbd-aio.sh [path/to/topcow]
#
# A qcow2 image whose 64 KiB clusters were written in a shuffled order, so
# that guest-contiguous data lies scattered in the file (an image that grew
# under a guest looks like this), read with O_DIRECT (--cache=none: the
# device, not the page cache) by fio's nbd engine, one connection, queue
# depth 1 - the reads a guest's boot or a backup issue one after another:
#   1M sequential read    one request maps to 16 places in the file
#   4k random read        one place per request (io_uring cannot help)
# Servers, each started fresh for every run, rounds rotating their order:
#   topcow serve -r --cache=none --aio=threads   (one pread after another)
#   topcow serve -r --cache=none --aio=io_uring  (one request's reads at once)
#   qemu-nbd     -r --cache=none --aio=io_uring
# Printed: medians over the rounds (MB/s) and the ratios of topcow io_uring
# to topcow threads and to qemu-nbd.
#
# Environment: BENCH_RUNS (rounds, default 5), BENCH_RUNTIME (seconds per
# run, default 4), BENCH_SIZE_MIB (default 1024), BENCH_DIR (default
# /var/tmp: O_DIRECT needs a real filesystem, not tmpfs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=$(realpath "${1:-$here/../build/tools/topcow}")
RUNS=${BENCH_RUNS:-5}
RUNTIME=${BENCH_RUNTIME:-4}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
. "$here/lib.sh"
bench_check "$TOPCOW" fio qemu-nbd qemu-img qemu-io shuf /usr/bin/python3

dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/topcow-bench-aio.XXXXXX")
pid=
trap '[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
cp "$TOPCOW" ./topcow
sock=$dir/nbd.sock

echo "== writing a $SIZE_MIB MiB qcow2 image, clusters in shuffled order, in $dir"
qemu-img create -q -f qcow2 image.qcow2 "${SIZE_MIB}M"
seq 0 $((SIZE_MIB * 16 - 1)) | shuf --random-source=<(yes) |
    awk '{ printf "write -P %d %d 64k\n", $1 % 251, $1 * 65536 }' |
    qemu-io -f qcow2 image.qcow2 >/dev/null

# mbps SERVER RW BS: one fio run against a fresh SERVER; prints MB/s.
mbps() {
    rm -f "$sock"
    case $1 in
    threads | io_uring)
        ./topcow serve -r -f qcow2 -k "$sock" -t --cache=none --aio="$1" image.qcow2 &
        ;;
    qemu-nbd)
        qemu-nbd -r -f qcow2 -k "$sock" -t --cache=none --aio=io_uring image.qcow2 &
        ;;
    esac
    pid=$!
    for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.025; done
    fio --name=aio --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$2" --bs="$3" \
        --iodepth=1 --norandommap --time_based --runtime="$RUNTIME" --ramp_time=1 \
        --output-format=json --output=fio.json >fio.log 2>&1 ||
        { cat fio.log >&2; exit 1; }
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    /usr/bin/python3 -c 'import json, sys
print("%.1f" % (json.load(open(sys.argv[1]))["jobs"][0]["read"]["bw_bytes"] / 1e6))' fio.json
}

servers=(threads io_uring qemu-nbd)
configs=("read 1M" "randread 4k")
for round in $(seq "$RUNS"); do
    for c in "${configs[@]}"; do
        # Rotate the servers' order from round to round.
        for i in 0 1 2; do
            s=${servers[$(((i + round) % 3))]}
            v=$(mbps "$s" $c)
            echo "$c $s $v" >>results
            printf 'round %d/%d  %-12s %-9s %8s MB/s\n' "$round" "$RUNS" "$c" "$s" "$v"
        done
    done
done

med() { awk -v c="$1" -v s="$2" '$1" "$2 == c && $3 == s { print $4 }' results |
        sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "== medians over $RUNS rounds, MB/s (O_DIRECT, 1 connection, queue depth 1)"
printf '%-12s %10s %10s %10s %18s %18s\n' config threads io_uring qemu-nbd \
    "io_uring/threads" "io_uring/qemu-nbd"
for c in "${configs[@]}"; do
    t=$(med "$c" threads) u=$(med "$c" io_uring) q=$(med "$c" qemu-nbd)
    awk -v c="$c" -v t="$t" -v u="$u" -v q="$q" \
        'BEGIN { printf "%-12s %10s %10s %10s %17.2fx %17.2fx\n", c, t, u, q, u / t, u / q }'
done
