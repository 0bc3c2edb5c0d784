#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nbd.sh - topcow serve against qemu-nbd, driven by fio's nbd engine.
#
# Usage: bench/nbd.sh [path/to/topcow]
#
# Writes a fully allocated qcow2 image of reproducible data (AES-CTR bytes,
# converted by qemu-img, so every cluster is allocated and in guest order)
# and keeps the same data as a raw file.  Three servers export them over a
# Unix socket with the same options, those that make qemu-nbd fastest:
#   topcow serve -f qcow2 -k SOCK -t -e 4 --cache=writeback --aio=io_uring  image.qcow2
#   qemu-nbd     -f qcow2 -k SOCK -t -e 4 --cache=writeback --aio=io_uring  image.qcow2
#   topcow serve -f raw   -k SOCK -t -e 4 --cache=writeback --aio=io_uring  image.raw
# (qemu-nbd falls back to --aio=threads where it refuses io_uring; the
# output says so.  topcow accepts --aio and runs requests on its workers
# in every mode.)  fio's nbd engine then drives each of them, one fio job
# per NBD connection, through this matrix:
#   4k random read and write   iodepth 1 and 32     1 and 4 connections
#   1M sequential read, write  iodepth 8            1 and 4 connections
#                              (with 4, each connection streams a quarter)
#   4k random read and write   iodepth 8            4 connections
#                              (a multi-queue guest; the targets' row)
# Every fio run is time based (BENCH_RAMP s of ramp, then BENCH_RUNTIME s
# measured) against a server started fresh for it and stopped (SIGTERM,
# clean shutdown) after it.  Rounds go over the whole matrix and, within a
# configuration, rotate the order of the three servers, so that load
# drifting over the run hits all alike.  Printed: the medians over the
# rounds of IOPS (4k) or MB/s (1M) and the ratios topcow / qemu-nbd and
# topcow qcow2 / topcow raw (> 1: topcow, or qcow2, is faster), the servers'
# CPU use, and whether the targets are met (printed, never enforced):
#   4 connections x iodepth 8, 4k random read and 4k random write:
#       topcow >= 1.5x qemu-nbd
#   topcow on qcow2 >= 0.9x topcow on raw
# Queue depth 1 on one connection mostly measures how fast an idle CPU
# wakes up (slow in VMs); those rows jump when other work keeps the CPUs
# busy, so look at them with the machine's load in mind.
# Finally qemu-img check verifies the qcow2 image all servers wrote to.
# A fio run that fails (the connection drops, the server dies) is reported
# with the server's state and messages and tried once more with a fresh
# server; if that fails too, the run is left out of the medians, listed at
# the end, and the script exits with status 1.
#
# Environment: BENCH_RUNS (rounds, default 3), BENCH_RUNTIME (measured
# seconds of each fio run, default 3), BENCH_RAMP (seconds of ramp before
# it, default 1), BENCH_SIZE_MIB (image size, default 1024), BENCH_DIR
# (parent of the scratch directory, default /dev/shm: the images stay in
# memory, so the numbers are the servers' and not the disk's),
# BENCH_TOPCOW_ARGS (extra options for topcow serve, e.g. --workers=8),
# BENCH_ONLY (a regex over the configuration labels, e.g. 'qd8-c4'),
# BENCH_STATS_OFF=1 (a fourth server: topcow serve with TOPCOW_STATS=off,
# so that the table also prints what publishing statistics for `topcow top`
# costs: topcow / topcow-nostats, 1.00x = nothing).
# The defaults take about 9.5 minutes: 14 configurations x 3 servers x
# BENCH_RUNS x (BENCH_RAMP + BENCH_RUNTIME + about 0.4 s).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=${1:-$here/../build/tools/topcow}
TOPCOW=$(realpath "$TOPCOW")
RUNS=${BENCH_RUNS:-3}
RUNTIME=${BENCH_RUNTIME:-3}
RAMP=${BENCH_RAMP:-1}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
TOPCOW_ARGS=${BENCH_TOPCOW_ARGS:-}
AIO=io_uring
SHARED=4

. "$here/lib.sh"
bench_check "$TOPCOW" fio qemu-nbd qemu-img openssl awk sort
fio --enghelp=nbd >/dev/null 2>&1 ||
    { echo "nbd.sh: this fio has no nbd ioengine" >&2; exit 1; }
if command -v jq >/dev/null; then
    json=jq
elif [ -x /usr/bin/python3 ]; then
    json=python3
else
    echo "nbd.sh: jq or /usr/bin/python3 is required" >&2
    exit 1
fi

dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/topcow-bench.XXXXXX")
srv_pid=
cleanup() {
    [ -z "$srv_pid" ] || { kill -KILL "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; }
    rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
# The servers are started anew for every run: a copy of the binary keeps a
# rebuild during the benchmark out of the numbers.
cp "$TOPCOW" ./topcow
sock=$dir/nbd.sock
clk_tck=$(getconf CLK_TCK)
start=$SECONDS

# ---- servers ----------------------------------------------------------------

# Start server $1 (topcow, qemu-nbd or topcow-raw) and wait for its socket;
# sets srv_pid.  Returns 1 (with the server's messages in server.log) if it
# exits instead.
start_server() {
    local i
    rm -f "$sock"
    case $1 in
    topcow)
        # shellcheck disable=SC2086
        ./topcow serve -f qcow2 -k "$sock" -t -e "$SHARED" --cache=writeback --aio="$AIO" \
            $TOPCOW_ARGS image.qcow2 2>server.log &
        ;;
    qemu-nbd)
        qemu-nbd -f qcow2 -k "$sock" -t -e "$SHARED" --cache=writeback --aio="$qemu_aio" \
            image.qcow2 2>server.log &
        ;;
    topcow-nostats)
        # shellcheck disable=SC2086
        TOPCOW_STATS=off ./topcow serve -f qcow2 -k "$sock" -t -e "$SHARED" --cache=writeback \
            --aio="$AIO" $TOPCOW_ARGS image.qcow2 2>server.log &
        ;;
    topcow-raw)
        # shellcheck disable=SC2086
        ./topcow serve -f raw -k "$sock" -t -e "$SHARED" --cache=writeback --aio="$AIO" \
            $TOPCOW_ARGS image.raw 2>server.log &
        ;;
    esac
    srv_pid=$!
    for i in $(seq 400); do
        [ -S "$sock" ] && return 0
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.025
    done
    kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=
    return 1
}

# CPU time (user + system, all threads) of the running server, in ticks.
server_ticks() {
    sed 's/.*) //' "/proc/$srv_pid/stat" | awk '{ print $12 + $13 }'
}

# SIGTERM the server and wait for its clean shutdown (SIGKILL after 10 s);
# sets srv_status to its exit status.
stop_server() {
    local i
    kill -TERM "$srv_pid" 2>/dev/null || true
    for i in $(seq 400); do
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.025
    done
    if kill -0 "$srv_pid" 2>/dev/null; then
        echo "nbd.sh: the server did not stop within 10 s of SIGTERM; killed" >&2
        kill -KILL "$srv_pid" 2>/dev/null || true
    fi
    srv_status=0
    wait "$srv_pid" 2>/dev/null || srv_status=$?
    srv_pid=
}

# ---- fio ----------------------------------------------------------------------

# One fio run against the server on $sock: $1 rw, $2 bs, $3 iodepth,
# $4 connections.  Prints IOPS and MB/s.
run_fio() {
    local rw=$1 bs=$2 qd=$3 jobs=$4 size=$((SIZE_MIB * 1024 * 1024))
    local extra=(--norandommap)
    case $rw in
    read | write)
        # Each connection streams through its own part of the disk.
        size=$((size / jobs))
        extra=(--offset_increment="$size")
        ;;
    esac
    if ! fio --name=nbd --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$jobs" --size="$size" "${extra[@]}" \
        --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --group_reporting \
        --output-format=json --output=fio.json >fio.log 2>&1; then
        sort fio.log | uniq -c | sed 's/^/   fio: /' >&2
        return 1
    fi
    if [ "$json" = jq ]; then
        jq -r '.jobs[0] | "\(.error) \(.read.iops + .write.iops) \((.read.bw_bytes + .write.bw_bytes) / 1e6)"' fio.json
    else
        /usr/bin/python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(j["error"], j["read"]["iops"] + j["write"]["iops"],
      (j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 1e6)' fio.json
    fi | awk '$1 != 0 { print "nbd.sh: fio reports error " $1 > "/dev/stderr"; exit 1 }
              { print $2, $3 }'
}

# ---- the images -------------------------------------------------------------

echo "== writing a $SIZE_MIB MiB image (raw and fully allocated qcow2) in $dir"
stream 6e62642d62656e63682d696d61676521 $((SIZE_MIB * 1024 * 1024)) >image.raw
qemu-img convert -f raw -O qcow2 image.raw image.qcow2
qemu-img check image.qcow2 | grep allocated | sed 's/^/   /'
du -h image.raw image.qcow2 | sed 's/^/   on disk  /'

# Does qemu-nbd take --aio=io_uring here?
qemu_aio=$AIO
if ! start_server qemu-nbd; then
    echo "   qemu-nbd refuses --aio=$AIO ($(head -n1 server.log)); it runs with --aio=threads"
    qemu_aio=threads
    start_server qemu-nbd || { cat server.log >&2; exit 1; }
fi
stop_server
echo "   qemu-nbd --aio=$qemu_aio --cache=writeback -e $SHARED; topcow serve --aio=$AIO --cache=writeback -e $SHARED${TOPCOW_ARGS:+ $TOPCOW_ARGS}"

# ---- the matrix ---------------------------------------------------------------

# rw bs iodepth connections; the last two rows are the targets'.
configs=(
    "randread 4k 1 1" "randread 4k 1 4" "randread 4k 32 1" "randread 4k 32 4"
    "randwrite 4k 1 1" "randwrite 4k 1 4" "randwrite 4k 32 1" "randwrite 4k 32 4"
    "read 1M 8 1" "read 1M 8 4" "write 1M 8 1" "write 1M 8 4"
    "randread 4k 8 4" "randwrite 4k 8 4"
)
label() { echo "$1-$2-qd$3-c$4"; }
# BENCH_ONLY: an extended regex; only configurations whose label matches
# (e.g. 'qd8-c4' for the targets' row).
if [ -n "${BENCH_ONLY:-}" ]; then
    sel=()
    for c in "${configs[@]}"; do
        # shellcheck disable=SC2086 # the label's four words
        label $c | grep -Eq -- "$BENCH_ONLY" && sel+=("$c")
    done
    [ ${#sel[@]} -gt 0 ] || { echo "nbd.sh: BENCH_ONLY='$BENCH_ONLY' matches nothing" >&2; exit 1; }
    configs=("${sel[@]}")
fi
servers=(topcow qemu-nbd topcow-raw)
[ "${BENCH_STATS_OFF:-0}" = 1 ] && servers+=(topcow-nostats)
nserv=${#servers[@]}

est=$(awk -v n=${#configs[@]} -v r="$RUNS" -v t="$RUNTIME" -v p="$RAMP" -v s="$nserv" \
    'BEGIN { printf "%d", n * s * r * (t + p + 0.4) }')
echo
echo "== ${#configs[@]} configurations x $nserv servers x $RUNS rounds of ${RAMP}+${RUNTIME} s" \
    "(about $((est / 60))m $((est % 60))s)"
echo "   per run: IOPS (4k) or MB/s (1M), ${servers[*]}"

# One run: server $1 on label $2's configuration ($3.. = rw bs iodepth
# connections) in round $round; appends "label server round value cpu%" to
# results.  If fio fails, says why and returns 1.
measure() {
    local s=$1 l=$2 out iops mbs t0 t1 c0 c1 v cpu alive
    shift 2
    start_server "$s" || { echo "nbd.sh: $s did not start:" >&2; cat server.log >&2; exit 1; }
    t0=$(date +%s.%N) c0=$(server_ticks)
    if ! out=$(run_fio "$@"); then
        alive=yes
        kill -0 "$srv_pid" 2>/dev/null || alive=no
        stop_server
        echo "nbd.sh: fio against $s failed: $l, round $round" \
            "(server alive after fio: $alive, exit status $srv_status)" >&2
        sed 's/^/   server: /' server.log >&2
        return 1
    fi
    read -r iops mbs <<<"$out"
    c1=$(server_ticks) t1=$(date +%s.%N)
    stop_server
    [ "$2" = 4k ] && v=$iops || v=$mbs
    cpu=$(awk -v a="$c0" -v b="$c1" -v t="$clk_tck" -v w0="$t0" -v w1="$t1" \
        'BEGIN { printf "%.0f", (b - a) / t / (w1 - w0) * 100 }')
    echo "$l $s $round $v $cpu" >>results
}

# results: label server round value cpu%; failures: the runs where fio
# failed twice (a failed run is tried once more, with a fresh server)
: >results
: >failures
for round in $(seq "$RUNS"); do
    i=0
    for c in "${configs[@]}"; do
        # shellcheck disable=SC2086
        set -- $c
        l=$(label "$@")
        line=$(printf 'round %d/%d  %-22s' "$round" "$RUNS" "$l")
        for k in $(seq 0 $((nserv - 1))); do
            s=${servers[$(((k + i + round) % nserv))]}
            measure "$s" "$l" "$@" || measure "$s" "$l" "$@" || echo "$l $s round $round" >>failures
        done
        line+=$(awk -v l="$l" -v r="$round" -v names="${servers[*]}" '$1 == l && $3 == r { v[$2] = $4 }
            END { n = split(names, s, " ")
                  for (k = 1; k <= n; k++)
                      if (s[k] in v) printf " %10.0f", v[s[k]]; else printf " %10s", "failed" }' results)
        echo "$line"
        i=$((i + 1))
    done
done

# Median of column $3 (4 = value, 5 = cpu%) for label $1, server $2.
med() { awk -v l="$1" -v s="$2" -v c="$3" '$1 == l && $2 == s { print $c }' results | median_of; }

echo
echo "== medians over $RUNS rounds: IOPS (4k) or MB/s (1M); ratios > 1: topcow (qcow2) is faster"
printf '%-22s %10s %10s %10s  %15s %10s   %s\n' config topcow qemu-nbd topcow-raw \
    topcow/qemu-nbd qcow2/raw "server CPU % (topcow qemu-nbd raw)"
: >medians
for c in "${configs[@]}"; do
    # shellcheck disable=SC2086
    set -- $c
    l=$(label "$@")
    [ "$l" != "randread-4k-qd8-c4" ] || echo "-- targets' row: 4 connections x iodepth 8"
    t=$(med "$l" topcow 4) q=$(med "$l" qemu-nbd 4) r=$(med "$l" topcow-raw 4)
    tc=$(med "$l" topcow 5) qc=$(med "$l" qemu-nbd 5) rc=$(med "$l" topcow-raw 5)
    echo "$l $t $q $r" >>medians
    # A median of 0: every run of that server failed.
    awk -v l="$l" -v t="$t" -v q="$q" -v r="$r" -v tc="$tc" -v qc="$qc" -v rc="$rc" '
        function v(x, w) { return x > 0 ? sprintf("%" w ".0f", x) : sprintf("%" w "s", "-") }
        function ratio(a, b, w) {
            return a > 0 && b > 0 ? sprintf("%" w ".2fx", a / b) : sprintf("%" w + 1 "s", "-") }
        BEGIN {
            printf "%-22s %s %s %s  %s %s   %s %s %s\n", l, v(t, 10), v(q, 10), v(r, 10),
                ratio(t, q, 14), ratio(t, r, 9), v(tc, 4), v(qc, 4), v(rc, 4) }'
done

if [ "$nserv" = 4 ]; then
    echo
    echo "== statistics for topcow top: topcow (publishing) / topcow-nostats (TOPCOW_STATS=off)"
    echo "   medians, and the median of each round's own ratio (the two ran back to back)"
    for c in "${configs[@]}"; do
        # shellcheck disable=SC2086
        set -- $c
        l=$(label "$@")
        pr=$(awk -v l="$l" '$1 == l && $2 == "topcow" { t[$3] = $4 }
                           $1 == l && $2 == "topcow-nostats" { o[$3] = $4 }
                           END { for (r in t) if (o[r] > 0) print t[r] / o[r] }' results | median_of)
        awk -v l="$l" -v t="$(med "$l" topcow 4)" -v o="$(med "$l" topcow-nostats 4)" -v pr="$pr" 'BEGIN {
            if (t > 0 && o > 0)
                printf "%-22s %10.0f %10.0f  %6.3fx   per round %6.3fx (%+.1f%%)\n", l, t, o, t / o,
                       pr, (pr - 1) * 100
            else
                printf "%-22s failed\n", l }'
    done
fi

echo
echo "== targets (printed, not enforced)"
awk '
    function verdict(x, want) { return x >= want ? "met" : "NOT met" }
    { t[$1] = $2; q[$1] = $3; r[$1] = $4
      if ($4 > 0 && (low == "" || $2 / $4 < low)) { low = $2 / $4; lowl = $1 } }
    END {
        split("randread randwrite", rw, " ")
        for (i = 1; i <= 2; i++) {
            l = rw[i] "-4k-qd8-c4"
            x = q[l] > 0 ? t[l] / q[l] : 0
            printf "%-10s 4k, 4 connections x iodepth 8: topcow / qemu-nbd %.2fx (target >= 1.5x): %s\n",
                rw[i], x, verdict(x, 1.5)
        }
        for (i = 1; i <= 2; i++) {
            l = rw[i] "-4k-qd8-c4"
            x = r[l] > 0 ? t[l] / r[l] : 0
            printf "%-10s 4k, 4 connections x iodepth 8: topcow qcow2 / raw %.2fx (target >= 0.9x): %s\n",
                rw[i], x, verdict(x, 0.9)
        }
        printf "lowest qcow2 / raw over all rows: %.2fx (%s) (target >= 0.9x): %s\n",
            low, lowl, verdict(low, 0.9)
    }' medians

echo
qemu-img check -q image.qcow2 || { echo "nbd.sh: qemu-img check failed on the image" >&2; exit 1; }
echo "qemu-img check: the qcow2 image is clean after all the writes"
echo "total time: $(((SECONDS - start) / 60))m $(((SECONDS - start) % 60))s"
if [ -s failures ]; then
    echo
    echo "== fio failed twice in $(wc -l <failures) runs (left out of the medians):"
    sed 's/^/   /' failures
    exit 1
fi
