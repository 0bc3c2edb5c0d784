# SPDX-License-Identifier: MIT
# Helpers shared by the bench/ scripts.  Source after `set -euo pipefail`.

# Exit with a message unless $1 (the topcow binary) is executable and every
# further program is installed.
bench_check() {
    local me p
    me=$(basename "$0")
    [ -x "$1" ] || { echo "$me: $1 is not executable" >&2; exit 1; }
    shift
    for p in "$@"; do
        command -v "$p" >/dev/null || { echo "$me: $p is required" >&2; exit 1; }
    done
}

# A deterministic byte stream: AES-128-CTR with a fixed key over zeros.
# $1 = IV (hex), $2 = length in bytes.
# (The producers die of SIGPIPE when head has enough; that is not an error.)
stream() {
    { openssl enc -aes-128-ctr -nosalt -K 746f70636f772d62656e63682d6b6579 -iv "$1" \
        -in /dev/zero 2>/dev/null || true; } | head -c "$2"
}

# Write a reproducible raw image of $2 MiB to $1 (fixed seed): regions of
# 4 KiB multiples (4 KiB .. 16 MiB, so many are not cluster aligned) whose
# kind and size come from the seeded stream.  Profile $3:
#   mixed         random 4/8, text 2/8, written zeros 1/8, holes 1/8
#   compressible  hex digits of random bytes (compress to about 45%) 4/8,
#                 text 2/8, written zeros 1/8, holes 1/8 - closer to an OS
#                 disk, whose data compresses but not to nothing
gen_image() {
    local out=$1 total=$(($2 * 1024 * 1024)) profile=${3:-mixed} off=0 i=0 size kind r
    local text="topcow bench: the quick brown fox jumps over the lazy dog 0123456789\n"
    : >"$out"
    # Each layout record: 4 bytes; enough for any plausible region count.
    stream 00000000000000000000000000000001 $((4 * 8192)) | od -An -v -tu4 -w4 >"$out.layout"
    while [ "$off" -lt "$total" ] && read -r r; do
        kind=$((r % 8))
        size=$(((r / 8 % 4096 + 1) * 4096))
        [ $((off + size)) -le "$total" ] || size=$((total - off))
        case $profile/$kind in
        mixed/[0-3]) stream "$(printf '%032x' $((i + 16)))" "$size" ;;
        compressible/[0-3])
            { stream "$(printf '%032x' $((i + 16)))" $((size / 2 + 1)) | xxd -p -c 32 ||
                true; } | head -c "$size" ;;
        */4 | */5) { yes "$(printf "$text")" || true; } | head -c "$size" ;;
        */6) head -c "$size" /dev/zero ;;
        */7) true ;;
        esac | dd of="$out" bs=1M seek="$off" oflag=seek_bytes iflag=fullblock \
            conv=notrunc status=none
        off=$((off + size))
        i=$((i + 1))
    done <"$out.layout"
    rm -f "$out.layout"
    truncate -s "$total" "$out"
    echo "generated $i regions ($profile)"
}

# Time topcow command $2 and qemu-img command $3 with hyperfine, one run
# each per round, alternating, RUNS rounds after a warm-up round; $4 (may be
# empty) runs before each.  The rounds' CSV lines go to $1.runs.
run_rounds() {
    local label=$1 t=$2 q=$3 prep=${4:-} round
    local prep_args=()
    [ -z "$prep" ] || prep_args=(--prepare "$prep")
    : >"$label.runs"
    for round in $(seq 0 "$RUNS"); do
        hyperfine --style none --runs 1 "${prep_args[@]}" --export-csv round.csv \
            -n topcow "$t" -n qemu-img "$q" >/dev/null
        [ "$round" = 0 ] || sed 1d round.csv >>"$label.runs" # round 0 warms up
    done
}

# Median of the numbers on standard input, one a line.
median_of() {
    sort -g | awk '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'
}

# Median over the rounds of the wall time ($2 = wall) or of user + system
# time ($2 = cpu) of command $1, from hyperfine CSV lines in $3.
median() {
    awk -F, -v cmd="$1" -v col="$2" '$1 == cmd { print (col == "cpu") ? $5 + $6 : $4 }' "$3" |
        median_of
}

# Print one result line for label $1 from its rounds file $1.runs.
report() {
    local label=$1
    local tw qw tc qc
    tw=$(median topcow wall "$label.runs") qw=$(median qemu-img wall "$label.runs")
    tc=$(median topcow cpu "$label.runs") qc=$(median qemu-img cpu "$label.runs")
    awk -v l="$label" -v tw="$tw" -v qw="$qw" -v tc="$tc" -v qc="$qc" 'BEGIN {
        printf "%-22s wall: topcow %6.3f  qemu-img %6.3f  ratio %.2fx", l, tw, qw, qw / tw
        printf "   cpu: topcow %6.3f  qemu-img %6.3f  ratio %.2fx\n", tc, qc, qc / tc }'
}
