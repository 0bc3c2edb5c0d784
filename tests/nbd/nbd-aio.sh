#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow serve --aio=io_uring: a request whose clusters lie scattered in the
# image file is read as one io_uring batch, and the data is right; where the
# kernel refuses io_uring (a seccomp filter makes io_uring_setup fail with
# ENOSYS, as a kernel without it does) the same reads fall back to pread
# and are right too.  strace judges which path ran; nbdcopy reads, and the
# expected bytes come from qemu-img convert.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require qemu-img qemu-io nbdcopy strace /usr/bin/python3
# Every server here runs under strace, and LeakSanitizer cannot run under
# ptrace: in an ASan build, leaks are left to the other serve tests.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0

# 16 MiB, 64 KiB clusters written in a shuffled order, so guest-contiguous
# clusters sit apart in the file and one 1 MiB read maps to 16 extents.
img=$SCRATCH/scattered.qcow2
ok qemu-img create -q -f qcow2 "$img" 16M
args=()
for c in $(seq 0 255 | shuf --random-source=<(yes)); do
    args+=(-c "write -P $((c % 251 + 1)) $((c * 65536)) 64k")
done
ok qemu-io -f qcow2 "${args[@]}" "$img"
ok qemu-io -f qcow2 -c 'write -z 3M 192k' -c 'discard 5M 64k' "$img"
ok qemu-img convert -f qcow2 -O raw "$img" "$SCRATCH/expected.raw"
frag=$(qemu-img map --output=json "$img" |
       /usr/bin/python3 -c 'import json,sys; m=[e for e in json.load(sys.stdin) if e["data"] and "offset" in e]; print(sum(1 for a,b in zip(m,m[1:]) if a["offset"]+a["length"]!=b["offset"]))')
[ "$frag" -gt 100 ] || fail "the test image is not scattered enough ($frag breaks)"

# read_through NAME [serve options...]: serve the image read-only under
# strace, copy it out with nbdcopy (1 MiB requests), compare, and leave the
# counts of io_uring_setup calls, failed ones and io_uring_enter calls in
# $setups $refused $enters.
read_through() {
    local name=$1
    shift
    local trace=$SCRATCH/$name.strace
    SERVE_WRAP="${WRAP:-} strace -f -qq -o $trace -e trace=io_uring_setup,io_uring_enter" \
        serve_start "$name" -r -f qcow2 "$@" "$img"
    ok nbdcopy --request-size=1048576 --connections=1 "$(uri "$name")" "$SCRATCH/$name.raw"
    serve_stop "$name"
    cmp "$SCRATCH/expected.raw" "$SCRATCH/$name.raw" ||
        fail "$name: the data read over NBD differs from qemu-img's"
    setups=$(grep -c 'io_uring_setup(' "$trace" || true)
    # Two threads calling at once make strace split a call into an
    # "<unfinished ...>" line and a "<... io_uring_setup resumed>" line with
    # the result: a call counts where it starts, a refusal where it ends.
    refused=$(grep -c 'io_uring_setup.*= -1 ENOSYS' "$trace" || true)
    enters=$(grep -c 'io_uring_enter(' "$trace" || true)
    echo "$name: io_uring_setup $setups (refused $refused), io_uring_enter $enters"
}

read_through uring --aio=io_uring
[ "$setups" -ge 1 ] && [ "$refused" -eq 0 ] && [ "$enters" -ge 1 ] ||
    fail "--aio=io_uring did not read through io_uring"

read_through uring-direct --aio=io_uring --cache=none
[ "$enters" -ge 1 ] || fail "--aio=io_uring --cache=none did not read through io_uring"

read_through threads --aio=threads
[ "$setups" -eq 0 ] && [ "$enters" -eq 0 ] || fail "--aio=threads used io_uring"

WRAP="/usr/bin/python3 $TOPCOW_SRCDIR/tests/nbd/no-io-uring.py" read_through refused --aio=io_uring
[ "$refused" -ge 1 ] || fail "the seccomp filter did not refuse io_uring_setup"
[ "$refused" -eq "$setups" ] && [ "$enters" -eq 0 ] ||
    fail "io_uring refused by the kernel, yet io_uring_enter was called"
# Once refused, never asked again in this process.
[ "$setups" -eq 1 ] || fail "io_uring_setup was tried $setups times after a refusal"

echo "PASS"
