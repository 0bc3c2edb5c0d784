#!/bin/bash
# SPDX-License-Identifier: MIT
#
# lifecycle.sh - image lifecycle operations, topcow against qemu-img, side by side.
#
# Usage: bench/lifecycle.sh [path/to/topcow]
#
# Makes a 2 GiB fully allocated qcow2 image reproducibly: every 64 KiB chunk
# is written once by qemu-io, in an order and with a byte pattern drawn from
# a fixed-seed stream, so the clusters lie on disk in random guest order
# (fragmented).  Then times with hyperfine, in one run, alternating the two
# tools round by round:
#   (a) snapshot create, apply and delete on that image; before each run a
#       preparation done by qemu-img for both tools brings the image back to
#       the same state (no snapshot / a snapshot and 25% of the disk
#       rewritten since / a snapshot), so every round starts alike;
#   (b) check of that image, and of a second one made the same way with
#       4 KiB clusters, where L2 tables and data clusters interleave;
#   (c) commit of an overlay with 25% of its clusters rewritten into a copy
#       of the image (skipped while `topcow commit --help` fails: the code is
#       ready for a qemu-img compatible `topcow commit`).
# Results are verified: qemu-img check after the operations, the guest
# content (every chunk's pattern, read back by qemu-io), the check outputs of
# the two tools against each other and the image unchanged by them.  Medians
# and their ratio (qemu-img / topcow) are printed.
#
# Environment: BENCH_RUNS (rounds, default 7), BENCH_SIZE_MIB (default 2048),
# BENCH_DIR (parent of the scratch directory, default /dev/shm).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOPCOW=${1:-$here/../build/tools/topcow}
TOPCOW=$(realpath "$TOPCOW")
RUNS=${BENCH_RUNS:-7}
SIZE_MIB=${BENCH_SIZE_MIB:-2048}
CHUNK=65536
NCHUNKS=$((SIZE_MIB * 1024 * 1024 / CHUNK))
REWRITE_MIB=$((SIZE_MIB / 4))

. "$here/lib.sh"
bench_check "$TOPCOW" qemu-img qemu-io hyperfine openssl md5sum awk sort

dir=$(mktemp -d "${BENCH_DIR:-/dev/shm}/topcow-bench-lifecycle.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

die() {
    echo "lifecycle.sh: $*" >&2
    exit 1
}

# A deterministic byte stream: AES-128-CTR with a fixed key over zeros.
# $1 = IV (hex), $2 = length in bytes.
stream() {
    { openssl enc -aes-128-ctr -nosalt -K 746f70636f772d62656e63682d6b6579 -iv "$1" \
        -in /dev/zero 2>/dev/null || true; } | head -c "$2"
}

# A write list: "key chunk pattern" lines, one per 64 KiB chunk, sorted by
# the seeded random key (ties by chunk number), so their order is a
# reproducible random permutation.  Patterns are 1..255 (never zero, so
# nothing reads as a hole).  $1 = IV, $2 = output file.
gen_order() {
    stream "$1" $((4 * NCHUNKS)) | od -An -v -tu4 -w4 |
        awk '{ printf "%d %d %d\n", $1, NR - 1, $1 % 255 + 1 }' | sort -k1,1n -k2,2n >"$2"
}

# Write the chunks of write lists $2... into image $1 with qemu-io, in
# list order (one qemu-io process reading commands from stdin).
write_chunks() {
    local img=$1
    shift
    awk -v c=$CHUNK '{ printf "write -P %d %d %d\n", $3, $2 * c, c }' "$@" |
        qemu-io -f qcow2 "$img" >qemu-io.out || { tail -3 qemu-io.out >&2; die "writing $img"; }
}

# Image $1 must read as the write lists $2... say (a later list wins for a
# chunk both name).
verify_content() {
    local img=$1
    shift
    awk -v c=$CHUNK -v n=$NCHUNKS '{ p[$2] = $3 }
        END { for (i = 0; i < n; i++) if (i in p) printf "read -P %d %d %d\n", p[i], i * c, c }' \
        "$@" | qemu-io -r -f qcow2 "$img" >qemu-io.out ||
        { grep -m 3 -i fail qemu-io.out >&2; die "$img does not read as written"; }
}

# qemu-img check must find no errors and no leaks in image $1.
# Its report stays in $check_out.
check_clean() {
    check_out=$(qemu-img check "$1" 2>&1) ||
        { echo "$check_out" >&2; die "qemu-img check $1 failed"; }
    case "$check_out" in *leaked*) echo "$check_out" >&2; die "qemu-img check $1: leaks" ;; esac
}

# Time commands $3 (topcow) and $4 (qemu-img) for $RUNS rounds (plus a
# warm-up round), both in each round, with shell command $2 ("": none) run
# before each run.  The commands run without a shell (hyperfine -N), so
# runs of a few milliseconds are not blurred by subtracting a shell's start.
# The rows go to $1.runs; $1 joins the summary.
labels=()
run_rounds() {
    local label=$1 prep=$2 t=$3 q=$4 round
    local -a prep_args=()
    if [ -n "$prep" ]; then
        printf '%s\n' "$prep" >"prep-$label.sh"
        prep_args=(--prepare "sh prep-$label.sh")
    fi
    echo
    echo "== $label: $RUNS rounds of"
    echo "   $t"
    echo "   $q"
    [ -z "$prep" ] || echo "   each run prepared by: $prep"
    : >"$label.runs"
    for round in $(seq 0 "$RUNS"); do
        hyperfine -N --style none --runs 1 "${prep_args[@]}" --export-csv round.csv \
            -n topcow "$t" -n qemu-img "$q" >/dev/null 2>hyperfine.err ||
            { cat hyperfine.err >&2; die "$label: a run failed"; }
        # Round 0 warms up.
        [ "$round" = 0 ] || sed 1d round.csv >>"$label.runs"
    done
    labels+=("$label")
}

# ---- the images ------------------------------------------------------------

echo "== generating a $SIZE_MIB MiB fragmented qcow2 image in $dir"
gen_order 00000000000000000000000000000002 img.order
qemu-img create -q -f qcow2 img.qcow2 "${SIZE_MIB}M"
write_chunks img.qcow2 img.order
verify_content img.qcow2 img.order
check_clean img.qcow2
echo "$check_out" | sed -n 's/^/   /; /allocated/p'
du -h img.qcow2 | sed 's/^/   on disk  /'

# ---- (b) check ---------------------------------------------------------------

# $1 label, $2 image: both tools check it; same verdict and report, and the
# image is left untouched.
bench_check() {
    local label=$1 img=$2 sum
    sum=$(md5sum <"$img")
    run_rounds "$label" "" "$TOPCOW check $img" "qemu-img check $img"
    local t q
    t=$("$TOPCOW" check "$img" 2>&1) || { echo "$t" >&2; die "$label: topcow check failed"; }
    q=$(qemu-img check "$img" 2>&1) || die "$label: qemu-img check failed"
    [ "$t" = "$q" ] || { diff <(echo "$q") <(echo "$t") >&2 || true
        die "$label: topcow and qemu-img report differently"; }
    [ "$(md5sum <"$img")" = "$sum" ] || die "$label: check changed $img"
}

bench_check check img.qcow2

echo
echo "== generating the same content with 4 KiB clusters"
qemu-img create -q -f qcow2 -o cluster_size=4096 img4k.qcow2 "${SIZE_MIB}M"
write_chunks img4k.qcow2 img.order
verify_content img4k.qcow2 img.order
check_clean img4k.qcow2
echo "$check_out" | sed -n 's/^/   /; /allocated/p'
bench_check check-4k img4k.qcow2
rm -f img4k.qcow2

# ---- (c) commit ------------------------------------------------------------
# The overlay over base.qcow2 (a copy of img.qcow2) has a quarter of the
# chunks, picked in seeded random order, rewritten with other patterns.
# Every run starts from copies of both pristine files; qemu-img commit
# syntax (commit [-f FMT] [-t CACHE] [-b BASE] [-d] [-p] [-q] FILE), default
# options for both tools.
bench_commit() {
    if ! "$TOPCOW" commit --help >/dev/null 2>&1; then
        echo
        echo "== commit: skipped: '$TOPCOW commit --help' fails (no commit command yet)"
        return 0
    fi
    echo
    echo "== generating an overlay with $REWRITE_MIB MiB of rewritten 64 KiB chunks"
    gen_order 00000000000000000000000000000003 all.order
    head -n $((NCHUNKS / 4)) all.order >overlay.order
    cp img.qcow2 base.qcow2
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.pristine
    write_chunks overlay.pristine overlay.order
    cp overlay.pristine overlay.qcow2
    verify_content overlay.qcow2 img.order overlay.order
    check_clean overlay.qcow2
    local prep="cp img.qcow2 base.qcow2 && cp overlay.pristine overlay.qcow2"
    run_rounds commit "$prep" "$TOPCOW commit overlay.qcow2" "qemu-img commit overlay.qcow2"
    local tool
    for tool in "$TOPCOW" qemu-img; do
        sh -c "$prep"
        "$tool" commit -q overlay.qcow2 || die "commit by $tool failed"
        check_clean base.qcow2
        check_clean overlay.qcow2
        verify_content base.qcow2 img.order overlay.order
        verify_content overlay.qcow2 img.order overlay.order
    done
    rm -f base.qcow2 overlay.qcow2 overlay.pristine
}

bench_commit

# ---- (a) snapshot create, apply, delete --------------------------------------
# Preparations use qemu-img for both tools; checks after each block.

sn_count() { qemu-img snapshot -l img.qcow2 | tail -n +3 | wc -l; }

# create: each run starts with no snapshot.
prep="qemu-img snapshot -d bench img.qcow2 >/dev/null 2>&1 || true"
run_rounds snapshot-create "$prep" "$TOPCOW snapshot -c bench img.qcow2" \
    "qemu-img snapshot -c bench img.qcow2"
for tool in "$TOPCOW" qemu-img; do
    sh -c "$prep"
    "$tool" snapshot -c bench img.qcow2
    check_clean img.qcow2
    [ "$(sn_count)" = 1 ] || die "snapshot create by $tool: $(sn_count) snapshots"
    # The snapshot holds the content: overwrite, go back with qemu-img.
    qemu-io -f qcow2 -c "write -P 238 0 ${REWRITE_MIB}M" img.qcow2 >/dev/null
    qemu-img snapshot -a bench img.qcow2
    verify_content img.qcow2 img.order
done

# apply: each run starts with a snapshot and a quarter of the disk
# rewritten since it was taken.
qemu-img snapshot -d bench img.qcow2
qemu-img snapshot -c bench img.qcow2
prep="qemu-io -f qcow2 -c 'write -P 238 0 ${REWRITE_MIB}M' img.qcow2 >/dev/null"
run_rounds snapshot-apply "$prep" "$TOPCOW snapshot -a bench img.qcow2" \
    "qemu-img snapshot -a bench img.qcow2"
for tool in "$TOPCOW" qemu-img; do
    sh -c "$prep"
    "$tool" snapshot -a bench img.qcow2
    check_clean img.qcow2
    verify_content img.qcow2 img.order
done

# delete: each run starts with a snapshot of the current disk.
qemu-img snapshot -d bench img.qcow2
prep="qemu-img snapshot -c bench img.qcow2"
run_rounds snapshot-delete "$prep" "$TOPCOW snapshot -d bench img.qcow2" \
    "qemu-img snapshot -d bench img.qcow2"
for tool in "$TOPCOW" qemu-img; do
    sh -c "$prep"
    "$tool" snapshot -d bench img.qcow2
    check_clean img.qcow2
    [ "$(sn_count)" = 0 ] || die "snapshot delete by $tool left a snapshot"
    verify_content img.qcow2 img.order
done

# ---- summary -----------------------------------------------------------------

# Median over the rounds of the wall time ($2 = wall) or of user + system
# time ($2 = cpu) of command $1, from hyperfine CSV lines in $3.
median() {
    awk -F, -v cmd="$1" -v col="$2" '$1 == cmd { print (col == "cpu") ? $5 + $6 : $4 }' "$3" |
        sort -g | awk '{ v[NR] = $1 }
            END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'
}

echo
echo "== medians over $RUNS rounds, seconds (ratio = qemu-img / topcow; > 1: topcow is faster)"
for label in "${labels[@]}"; do
    tw=$(median topcow wall "$label.runs") qw=$(median qemu-img wall "$label.runs")
    tc=$(median topcow cpu "$label.runs") qc=$(median qemu-img cpu "$label.runs")
    awk -v l="$label" -v tw="$tw" -v qw="$qw" -v tc="$tc" -v qc="$qc" 'BEGIN {
        printf "%-16s wall: topcow %7.4f  qemu-img %7.4f  ratio %5.2fx", l, tw, qw, qw / tw
        printf "   cpu: topcow %7.4f  qemu-img %7.4f  ratio %5.2fx\n", tc, qc,
            (tc > 0 ? qc / tc : 0) }'
done
echo
echo "== every round, wall seconds (topcow / qemu-img)"
for label in "${labels[@]}"; do
    printf '%-16s' "$label"
    awk -F, '$1 == "topcow" { t[++n] = $4 } $1 == "qemu-img" { q[++m] = $4 }
             END { for (i = 1; i <= n; i++) printf " %.4f/%.4f", t[i], q[i]; print "" }' \
        "$label.runs"
done
