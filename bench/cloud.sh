#!/bin/bash
# SPDX-License-Identifier: MIT
#
# cloud.sh - topcow push and pull against s3cmd put and get of the whole
# file, on the same S3 server: a Ceph RGW on loopback (tests/cloud/rgw.sh,
# one OSD on memstore, so the server keeps everything in RAM).
#
# Usage: bench/cloud.sh [path/to/topcow]
#
# Makes a fully allocated qcow2 image of BENCH_SIZE_MIB MiB of incompressible
# guest data (AES-CTR bytes from a fixed key, bench/lib.sh), then, in each of
# BENCH_RUNS rounds, times side by side:
#   first push   topcow push IMG s3://BUCKET/rN/img, a new store each round,
#                so that every chunk goes up
#                s3cmd put IMG s3://BUCKET/plain/img
#   pull         topcow pull s3://BUCKET/rN/img DIR/img, DIR empty
#                s3cmd get s3://BUCKET/plain/img DIR/img, DIR empty
#   delta push   after 5% of the guest data was rewritten with new bytes, in
#                13 pieces spread over the disk:
#                topcow push IMG (only the chunks that changed go up)
#                s3cmd put IMG s3://BUCKET/plain/img (the whole file again)
# Within a pair the tool that goes first alternates round by round, so that
# load drifting over the run hits both alike.  Every pulled or fetched file
# is compared with the image, and at the end the last delta push's HEAD is
# pulled and compared.  Printed: each pair's medians, their ratio (s3cmd /
# topcow; > 1: topcow is faster) and the bytes each tool moved (topcow's
# --output=json; for s3cmd the file's size).  Both tools use their
# defaults: topcow 4 parallel transfers of 4 MiB chunks, s3cmd one stream
# (multipart in 15 MiB parts for put).
#
# Environment: BENCH_RUNS (rounds, default 5), BENCH_SIZE_MIB (guest data,
# default 1024), BENCH_DIR (parent of the scratch directory, default
# /dev/shm: the files stay in memory, so the numbers are the tools' and the
# server's, not the disk's), BENCH_TOPCOW_ARGS (extra options for topcow
# push and pull, e.g. -j 8).  The defaults take about 4 minutes here, and
# about 3 + 4 x BENCH_SIZE_MIB MiB of RAM at the peak (the server's copies
# and the files).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=${1:-$here/../build/tools/topcow}
TOPCOW=$(realpath "$TOPCOW")
RUNS=${BENCH_RUNS:-5}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
TOPCOW_ARGS=${BENCH_TOPCOW_ARGS:-}
RGW_SH=$here/../tests/cloud/rgw.sh

. "$here/lib.sh"
bench_check "$TOPCOW" qemu-img qemu-io s3cmd radosgw-admin openssl awk sort cmp

die() {
    echo "cloud.sh: $*" >&2
    exit 1
}

dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/topcow-bench-cloud.XXXXXX")
cleanup() {
    "$RGW_SH" stop "$dir/rgw" || true
    rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
start=$SECONDS

# ---- the server -----------------------------------------------------------

# Room for the store of one round (the image and its delta), s3cmd's object
# twice (the put over it leaves the old parts to the server's garbage
# collection) and some slack.
export RGW_MEMSTORE_BYTES=$(((SIZE_MIB * 5 + 1024) << 20))
rc=0
"$RGW_SH" start "$dir/rgw" $$ >rgw.env || rc=$?
[ $rc = 0 ] || die "the RGW fixture did not start (exit $rc; see above)"
# shellcheck disable=SC1091
. ./rgw.env
export CEPH_CONF=$dir/rgw/ceph.conf
B=$RGW_BUCKET
s3c() { s3cmd -c "$RGW_S3CFG" --no-progress "$@"; }
echo "== RGW at $AWS_ENDPOINT_URL ($(radosgw --version | awk '{print $3}')), s3cmd $(s3cmd --version | awk '{print $3}')"
# The first write creates the data pool: not part of any timing.
echo warm-up >warm
s3c put warm "s3://$B/warm" >/dev/null

# ---- the image ------------------------------------------------------------

size=$((SIZE_MIB << 20))
echo "== a $SIZE_MIB MiB qcow2 image of incompressible data in $dir"
stream 00000000000000000000000000000001 "$size" >base.raw
qemu-img convert -f raw -O qcow2 base.raw base.qcow2
rm base.raw
file_size=$(stat -c %s base.qcow2)
# The delta: 5% of the guest data in 13 pieces of 64 KiB multiples, one
# after every 13th of the disk (shifted a little each time, so that the
# pieces do not all start at the same place in a chunk).
piece=$((size / 20 / 13 / 65536 * 65536))
delta_mib=$(awk -v b=$((piece * 13)) 'BEGIN { printf "%.1f", b / 1048576 }')
apply_delta() { # ROUND
    local i args=()
    for i in $(seq 0 12); do
        stream "$(printf '%08x%08x%016x' "$1" "$i" 7)" "$piece" >"piece$i"
        args+=(-c "write -s piece$i $((i * size / 13 / 65536 * 65536 + i * 65536)) $piece")
    done
    qemu-io -f qcow2 "${args[@]}" img.qcow2 >/dev/null
    rm -f piece*
}

# ---- the rounds -----------------------------------------------------------

: >times.txt
# timed LABEL TOOL CMD...: run CMD, record its wall time in ms; its stdout in last.out.
timed() {
    local label=$1 tool=$2 t
    shift 2
    t=$(date +%s%N)
    "$@" >last.out 2>last.err || { cat last.err >&2; die "$label: $tool failed: $*"; }
    echo "$label $tool $((($(date +%s%N) - t) / 1000000))" >>times.txt
}
json_field() { sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p" last.out; }

# pair LABEL ROUND TOPCOW_CMD S3CMD_CMD: time both, the first alternating by
# round; topcow's bytes and chunks moved go to LABEL.bytes.  The commands
# are split into words (no quoting inside).
# shellcheck disable=SC2086
pair() {
    local label=$1 round=$2 t=$3 s=$4
    if [ $((round % 2)) = 1 ]; then
        timed "$label" topcow $t
        echo "$(json_field bytes-transferred) $(json_field chunks-transferred)" >>"$label.bytes"
        timed "$label" s3cmd $s
    else
        timed "$label" s3cmd $s
        timed "$label" topcow $t
        echo "$(json_field bytes-transferred) $(json_field chunks-transferred)" >>"$label.bytes"
    fi
}
last_ms() { awk -v l="$1" -v t="$2" '$1 == l && $2 == t { v = $3 } END { printf "%.2f", v / 1000 }' times.txt; }

T="$TOPCOW"
for round in $(seq 1 "$RUNS"); do
    cp base.qcow2 img.qcow2
    rm -f img.qcow2.topcow
    remote=s3://$B/r$round/img
    # shellcheck disable=SC2086
    pair first-push "$round" "$T push $TOPCOW_ARGS --output=json img.qcow2 $remote" \
        "s3c put img.qcow2 s3://$B/plain/img"
    rm -rf pulled fetched
    mkdir pulled fetched
    # shellcheck disable=SC2086
    pair pull "$round" "$T pull $TOPCOW_ARGS --output=json $remote pulled/img.qcow2" \
        "s3c get s3://$B/plain/img fetched/img.qcow2"
    cmp -s img.qcow2 pulled/img.qcow2 || die "round $round: topcow pulled other bytes"
    cmp -s img.qcow2 fetched/img.qcow2 || die "round $round: s3cmd fetched other bytes"
    rm -rf pulled fetched
    apply_delta "$round"
    # shellcheck disable=SC2086
    pair delta-push "$round" "$T push $TOPCOW_ARGS --output=json img.qcow2 $remote" \
        "s3c put img.qcow2 s3://$B/plain/img"
    echo "round $round: first push $(last_ms first-push topcow) s (s3cmd $(last_ms first-push s3cmd))," \
        "pull $(last_ms pull topcow) s (s3cmd $(last_ms pull s3cmd))," \
        "delta push $(last_ms delta-push topcow) s (s3cmd $(last_ms delta-push s3cmd))"
    if [ "$round" = "$RUNS" ]; then
        "$T" pull "$remote" check.qcow2 >/dev/null
        qemu-img compare -q img.qcow2 check.qcow2 || die "the delta push's HEAD pulls back different"
        rm -f check.qcow2 check.qcow2.topcow
    fi
    # Free the server's memory for the next round: the round's store, and
    # the parts of s3cmd's overwritten object.
    s3c del -r --force "s3://$B/r$round/" >/dev/null
    radosgw-admin gc process --include-all >/dev/null 2>&1 || true
done

# ---- the results ----------------------------------------------------------

med() { awk -v l="$1" -v t="$2" '$1 == l && $2 == t { print $3 / 1000 }' times.txt | median_of; }
echo
echo "== $RUNS rounds, a $SIZE_MIB MiB image ($file_size-byte qcow2 file), 5% rewritten ($delta_mib MiB in 13 pieces) for the delta"
echo "   medians in seconds; ratio = s3cmd / topcow (> 1: topcow is faster); MiB/s: of the whole file"
for label in first-push pull delta-push; do
    tw=$(med "$label" topcow) sw=$(med "$label" s3cmd)
    read -r tb tc < <(awk '{ print $1, $2 }' "$label.bytes" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
    awk -v l="$label" -v tw="$tw" -v sw="$sw" -v fs="$file_size" -v tb="$tb" -v tc="$tc" 'BEGIN {
        printf "%-11s topcow %7.2f s  s3cmd %7.2f s  ratio %5.2fx", l, tw, sw, sw / tw
        printf "   bytes: topcow %d (%d chunks), s3cmd %d", tb, tc, fs
        if (l != "delta-push")
            printf "   MiB/s: topcow %.1f, s3cmd %.1f", fs / 1048576 / tw, fs / 1048576 / sw
        printf "\n" }'
done
echo "(took $((SECONDS - start)) s)"
