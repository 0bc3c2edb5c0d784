#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow compare's failures and their exit codes, against qemu-img compare:
# 2 when an image cannot be opened (missing, wrong format, locked by a
# writer), 1 for bad usage; -q keeps errors on stderr.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

ok qemu-img create -f qcow2 a.qcow2 1M
head -c 4096 /dev/urandom >r.raw

# Exit status as qemu-img's; the message must name the culprit.
same_status() { # $1: text the message must contain; rest: arguments
    local want=$1 erc=0 trc=0 t
    shift
    qemu-img compare "$@" >/dev/null 2>&1 || erc=$?
    t=$("$TOPCOW" compare "$@" 2>&1) || trc=$?
    [ "$erc" = "$trc" ] || fail "compare $*: exit $trc, qemu-img $erc ($t)"
    case $t in *"$want"*) ;; *) fail "compare $*: '$t' lacks '$want'" ;; esac
}
same_status "Could not open 'nope'" a.qcow2 nope
same_status "Could not open 'nope'" nope a.qcow2
same_status "Could not open 'nope'" -q a.qcow2 nope
same_status "Could not open 'r.raw'" -F qcow2 a.qcow2 r.raw
same_status "Could not open 'r.raw'" -f qcow2 r.raw a.qcow2
same_status "Could not open 'a.qcow2'" -f foo a.qcow2 a.qcow2
same_status "Invalid source cache option: foo" -T foo a.qcow2 a.qcow2
same_status "Expecting two image file names" a.qcow2
same_status "Expecting two image file names" a.qcow2 a.qcow2 a.qcow2

# Big-endian u64 access to file $1 at byte $2.
get_be64() {
    echo $((16#$(od -A n -t x1 -j "$2" -N 8 "$1" | tr -d ' \n')))
}
put_be64() { # $3: the value
    local bytes=
    for shift in 56 48 40 32 24 16 8 0; do bytes+=$(printf '\\x%02x' $((($3 >> shift) & 255))); done
    printf "$bytes" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# The L2 table of a one-table image: through L1 (its offset: header byte 40).
l2_table() {
    local l1=$(($(get_be64 "$1" 40) & 0xfffffffffe00))
    echo $(($(get_be64 "$1" $l1) & 0xfffffffffe00))
}

# 3: block status fails (an L2 entry with an unaligned host offset).
ok qemu-img create -f qcow2 good.qcow2 1M
ok qemu-io -f qcow2 -c 'write -P 7 0 64k' good.qcow2
cp good.qcow2 bad-l2.qcow2
l2=$(l2_table bad-l2.qcow2)
put_be64 bad-l2.qcow2 $l2 $(($(get_be64 bad-l2.qcow2 $l2) + 0x200))
same_status "Sector allocation test failed for bad-l2.qcow2" good.qcow2 bad-l2.qcow2
same_status "Sector allocation test failed for bad-l2.qcow2" -q bad-l2.qcow2 good.qcow2

# 4: reading fails (a compressed cluster whose data is garbage).
ok qemu-img create -f qcow2 comp.qcow2 1M
ok qemu-io -f qcow2 -c 'write -c -P 7 0 64k' comp.qcow2
cp comp.qcow2 bad-comp.qcow2
l2=$(l2_table bad-comp.qcow2)
data=$(($(get_be64 bad-comp.qcow2 $l2) & ((1 << 54) - 1)))
head -c 256 /dev/zero | tr '\0' '\377' |
    dd of=bad-comp.qcow2 bs=1 seek=$data conv=notrunc status=none
same_status "Error while reading offset 0 of bad-comp.qcow2" comp.qcow2 bad-comp.qcow2

# -T none reads with O_DIRECT and still compares.
ok "$TOPCOW" compare -T none a.qcow2 a.qcow2

# An image open for writing elsewhere: refused (2) unless -U.
# The polling qemu-img info holds a shared lock while it runs, so a slow
# starting writer can fail to take its own ("Failed to get "write" lock",
# seen once under load): the writer is then started again, up to 5 times.
start_writer() {
    qemu-io -f qcow2 -c 'sleep 120000' a.qcow2 >writer.log 2>&1 &
    writer=$!
}
start_writer
starts=1
trap 'kill $writer 2>/dev/null || true; cleanup_scratch' EXIT
locked=no
for _ in $(seq 600); do
    qemu-img info a.qcow2 >/dev/null 2>&1 || { locked=yes; break; }
    if ! kill -0 $writer 2>/dev/null && [ $starts -lt 5 ]; then
        echo "qemu-io exited early ($(cat writer.log)); starting it again" >&2
        start_writer
        starts=$((starts + 1))
    fi
    sleep 0.1
done
[ $locked = yes ] || fail "qemu-io did not lock a.qcow2 within a minute: $(cat writer.log)"
rc=0
"$TOPCOW" compare a.qcow2 a.qcow2 >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "compare of a locked image: exit $rc"
ok "$TOPCOW" compare -U a.qcow2 a.qcow2
kill $writer
wait $writer || true
exit 0
