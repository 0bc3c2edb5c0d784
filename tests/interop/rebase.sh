#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow rebase against qemu-img rebase.  Chains are built with qemu-img and
# qemu-io; each is copied twice, qemu-img rebases one copy and topcow the
# other with the same options.  Then the rebased image must pass qemu-img
# check, read like qemu's result and (safe mode) like itself before the
# rebase, name the same backing file and format, and allocate the same in
# its top layer.  Covers new backing files shorter and longer than the
# image, one from the old chain, raw ones, none (-b ""), -u, relative names
# across directories, several cluster layouts; and qemu-img's errors.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

HOLDER=
trap 'exec 3>&- 2>/dev/null; [ -z "$HOLDER" ] || kill $HOLDER 2>/dev/null; cleanup_scratch' EXIT

io() { ok qemu-io -f qcow2 "$@"; }

# Run "rebase ARGS" in copies q/ (qemu-img) and t/ (topcow) of src/.
both() {
    rm -rf q t
    cp -a src q
    cp -a src t
    (cd q && qemu-img rebase "$@") >q.out 2>&1 || { cat q.out >&2; fail "qemu-img rebase $*"; }
    (cd t && "$TOPCOW" rebase "$@") >t.out 2>&1 || { cat t.out >&2; fail "topcow rebase $*"; }
}

# Image $1 (relative to q/ and t/) after both(): clean, alike in content,
# backing file and top-layer allocation; with $2 = safe, it also reads as
# src/$1 did.
check_result() {
    qemu_check_clean "t/$1"
    out=$(qemu-img compare "q/$1" "t/$1" 2>&1) || { echo "$out" >&2; fail "$1: results differ"; }
    if [ "${2:-}" = safe ]; then
        out=$(qemu-img compare "src/$1" "t/$1" 2>&1) ||
            { echo "$out" >&2; fail "$1: the rebase changed what it reads"; }
    fi
    local qb tb
    qb=$(cd q && qemu-img info -U "$1" | grep '^backing file' || true)
    tb=$(cd t && qemu-img info -U "$1" | grep '^backing file' || true)
    [ "$qb" = "$tb" ] || fail "$1: backing files differ: '$qb' / '$tb'"
    qemu-io -r -f qcow2 -c map "q/$1" >q.map
    qemu-io -r -f qcow2 -c map "t/$1" >t.map
    cmp -s q.map t.map || { diff q.map t.map >&2; fail "$1: top layer allocation differs"; }
}

# ---- base 16M <- mid <- top 20M; new backing files of other sizes -------------
mkdir src
ok qemu-img create -f qcow2 src/base.qcow2 16M
io -c 'write -P 1 0 8M' -c 'write -P 7 12M 1M' src/base.qcow2
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 src/mid.qcow2
io -c 'write -P 2 1M 1M' -c 'write -z 3M 1M' -c 'discard 5M 128k' -c 'write -P 0 12M 64k' \
    -c 'write -P 9 14M 3000' src/mid.qcow2
ok qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 src/top.qcow2 20M
io -c 'write -P 3 1536k 64k' -c 'write -z 7M 64k' -c 'write -P 4 10M 100k' \
    -c 'write -P 5 17M 1M' -c 'write -P 6 6M 700' src/top.qcow2
# new: partly equal to the old chain (same pattern 1 at 0-1M, sector-sized
# differences), shorter than the image
ok qemu-img create -f qcow2 src/new.qcow2 12M
io -c 'write -P 1 0 8M' -c 'write -P 8 1500k 512' -c 'write -P 8 2M 1536' -c 'write -z 4M 1M' \
    -c 'write -P 2 1M 1M' src/new.qcow2
# longer than the image, data everywhere
ok qemu-img create -f qcow2 src/big.qcow2 24M
io -c 'write -P 10 0 24M' src/big.qcow2
ok qemu-img convert -O raw src/new.qcow2 src/new.raw

for args in "-b new.qcow2 -F qcow2" "-b big.qcow2 -F qcow2" "-b base.qcow2 -F qcow2" \
            "-b mid.qcow2 -F qcow2" "-b new.raw -F raw" "-b new.qcow2 -F raw" "-b ''" \
            "-p -b new.qcow2 -F qcow2" "-q -b big.qcow2 -F qcow2" "-U -b new.qcow2 -F qcow2" \
            "-t none -T none -b new.qcow2 -F qcow2" "-t unsafe -b '' -F qcow2" \
            "-t writethrough -b base.qcow2 -F qcow2"; do
    eval "both $args top.qcow2"
    check_result top.qcow2 safe
    case $args in
    -p*) grep -q '(100.00/100%)' t.out || fail "rebase -p shows no progress: $(cat t.out)" ;;
    *) [ ! -s t.out ] || fail "rebase $args printed: $(cat t.out)" ;;
    esac
done
# -b "" leaves a standalone image.
eval "both -b '' top.qcow2"
case $(qemu-img info t/top.qcow2) in *"backing file"*) fail "-b '' kept a backing file" ;; esac
# the middle layer onto a new file; the top then reads through it
both -b new.qcow2 -F qcow2 mid.qcow2
check_result mid.qcow2 safe
out=$(qemu-img compare src/top.qcow2 t/top.qcow2) || fail "top changed by rebasing mid: $out"

# Unsafe: only the header changes, whether the files exist or not.
for args in "-u -b new.qcow2 -F qcow2" "-u -b nothere.qcow2 -F qcow2" "-u -b ''" "-u" \
            "-u -b new.raw -F raw"; do
    eval "both $args top.qcow2"
    qb=$(cd q && qemu-img info -U top.qcow2 | grep '^backing file' || true)
    tb=$(cd t && qemu-img info -U top.qcow2 | grep '^backing file' || true)
    [ "$qb" = "$tb" ] || fail "rebase $args: backing files differ: '$qb' / '$tb'"
    # Only the header cluster changed, and exactly as qemu-img changes it.
    cmp -s <(tail -c +65537 src/top.qcow2) <(tail -c +65537 t/top.qcow2) ||
        fail "rebase $args changed more than the header"
    cmp -s q/top.qcow2 t/top.qcow2 || fail "rebase $args: the header differs from qemu-img's"
done

# ---- the old backing file is missing: safe mode fails, -u works -------------
rm src/mid.qcow2
sum=$(sha src/top.qcow2)
must_fail "$TOPCOW" rebase -b src/new.qcow2 -F qcow2 src/top.qcow2
case $ERR in *"Could not open 'src/top.qcow2'"*) ;; *) fail "missing old backing: $ERR" ;; esac
[ "$(sha src/top.qcow2)" = "$sum" ] || fail "a failed rebase changed the image"
both -u -b new.qcow2 -F qcow2 top.qcow2
check_result top.qcow2
rm -rf src

# ---- onto a layer of the old chain, past the end of a shorter layer between ---
# base 24M (data everywhere) <- mid 16M <- top 20M: top reads zeros at 16M
mkdir src
ok qemu-img create -f qcow2 src/base.qcow2 24M
io -c 'write -P 1 0 24M' src/base.qcow2
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 src/mid.qcow2 16M
io -c 'write -P 2 1M 1M' -c 'write -z 15M 1M' src/mid.qcow2
ok qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 src/top.qcow2 20M
io -c 'write -P 3 17M 64k' src/top.qcow2
both -b base.qcow2 -F qcow2 top.qcow2
check_result top.qcow2 safe
rm -rf src

# ---- an image without a backing file gets one --------------------------------
mkdir src
ok qemu-img create -f qcow2 src/lone.qcow2 8M
io -c 'write -P 3 1M 1M' -c 'write -z 5M 64k' src/lone.qcow2
ok qemu-img create -f qcow2 src/new.qcow2 8M
io -c 'write -P 4 0 8M' -c 'write -z 3M 1M' src/new.qcow2
both -b new.qcow2 -F qcow2 lone.qcow2
check_result lone.qcow2 safe
rm -rf src

# ---- relative names across directories ---------------------------------------
# d/sub/top.qcow2 -> ../base.qcow2, rebased from outside onto ../new.qcow2
mkdir -p src/d/sub src/e
ok qemu-img create -f qcow2 src/d/base.qcow2 8M
io -c 'write -P 1 0 8M' src/d/base.qcow2
ok qemu-img create -f qcow2 -b ../base.qcow2 -F qcow2 src/d/sub/top.qcow2
io -c 'write -P 2 1M 64k' src/d/sub/top.qcow2
ok qemu-img create -f qcow2 src/d/new.qcow2 8M
io -c 'write -P 1 0 4M' src/d/new.qcow2
ok qemu-img create -f qcow2 src/e/other.qcow2 8M
io -c 'write -P 5 2M 4M' src/e/other.qcow2
both -b ../new.qcow2 -F qcow2 d/sub/top.qcow2
check_result d/sub/top.qcow2 safe
grep -q '^backing file: \.\./new\.qcow2 ' <(cd t && qemu-img info d/sub/top.qcow2) ||
    fail "the backing file name is not stored as given"
both -b ../../e/other.qcow2 -F qcow2 d/sub/top.qcow2
check_result d/sub/top.qcow2 safe
# relative to the image, not to the working directory
cd t
must_fail "$TOPCOW" rebase -b d/new.qcow2 -F qcow2 d/sub/top.qcow2
case $ERR in "topcow: Could not open new backing file 'd/new.qcow2': "*) ;;
*) fail "relative name: $ERR" ;; esac
cd ..
rm -rf src

# ---- cluster layouts: compat=0.10, 4k, subclusters, 2M clusters ---------------
for opts in compat=0.10 cluster_size=4k extended_l2=on,cluster_size=128k cluster_size=2M; do
    mkdir src
    ok qemu-img create -f qcow2 src/base.qcow2 12M
    io -c 'write -P 1 0 12M' src/base.qcow2
    ok qemu-img create -f qcow2 -o "$opts" -b base.qcow2 -F qcow2 src/top.qcow2
    io -c 'write -P 2 1M 3M' -c 'write -P 3 9000 100' -c 'write -z 6M 64k' src/top.qcow2
    ok qemu-img create -f qcow2 src/new.qcow2 12M
    io -c 'write -P 1 0 2M' -c 'write -P 1 5M 1M' -c 'write -P 7 8M 4k' -c 'write -P 1 10M 2M' \
        src/new.qcow2
    both -b new.qcow2 -F qcow2 top.qcow2
    check_result top.qcow2 safe
    eval "both -b '' top.qcow2"
    check_result top.qcow2 safe
    rm -rf src
done

# ---- errors --------------------------------------------------------------------
# A read error in the old chain stops the rebase; the header is untouched.
# The old backing file has a compressed cluster whose data is garbage (its
# one L2 table is found through the L1 table, at byte 40 of the header).
be64() { echo $((16#$(od -A n -t x1 -j "$2" -N 8 "$1" | tr -d ' \n'))); }
mkdir src
ok qemu-img create -f qcow2 src/comp.qcow2 4M
io -c 'write -c -P 7 192k 64k' -c 'write -P 5 0 192k' -c 'write -P 5 256k 3M' src/comp.qcow2
l2=$(($(be64 src/comp.qcow2 $(($(be64 src/comp.qcow2 40) & 0xfffffffffe00))) & 0xfffffffffe00))
data=$(($(be64 src/comp.qcow2 $((l2 + 3 * 8))) & ((1 << 54) - 1)))
head -c 256 /dev/zero | tr '\0' '\377' | dd of=src/comp.qcow2 bs=1 seek=$data conv=notrunc status=none
ok qemu-img create -f qcow2 -b comp.qcow2 -F qcow2 src/top.qcow2
must_fail "$TOPCOW" rebase -b '' src/top.qcow2
case $ERR in *"error while reading from the old backing file at byte 196608: "*) ;;
*) fail "read error: $ERR" ;; esac
qemu_check_clean src/top.qcow2
grep -q '^backing file: comp.qcow2' <(qemu-img info src/top.qcow2) ||
    fail "a failed rebase changed the backing file"
rm -rf src

mkdir src
cd src
ok qemu-img create -f qcow2 base.qcow2 4M
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
ok qemu-img create -f qcow2 new.qcow2 4M
io -c 'write -P 1 0 1M' new.qcow2
sum=$(sha top.qcow2)
expect_error() { # expected message, then the arguments
    local want=$1
    shift
    must_fail "$TOPCOW" rebase "$@"
    [ "$ERR" = "topcow: $want" ] || fail "rebase $*: '$ERR', expected '$want'"
    [ "$(sha top.qcow2)" = "$sum" ] || fail "rebase $* changed the image"
}
expect_error "Must specify backing file (-b) or use unsafe mode (-u)" top.qcow2
expect_error "Must specify backing file (-b) or use unsafe mode (-u)" -F qcow2 top.qcow2
expect_error "Could not change the backing file to 'new.qcow2': backing format must be specified" \
    -b new.qcow2 top.qcow2
expect_error "Could not change the backing file to 'new.qcow2': backing format must be specified" \
    -u -b new.qcow2 top.qcow2
expect_error "Invalid format name: 'foo'" -b new.qcow2 -F foo top.qcow2
expect_error "Invalid format name: 'foo'" -u -F foo top.qcow2
expect_error "Invalid cache option: sometimes" -t sometimes -b new.qcow2 -F qcow2 top.qcow2
expect_error "Invalid source cache option: sometimes" -T sometimes -b '' top.qcow2
expect_error "Expecting one image file name" -b new.qcow2 -F qcow2 top.qcow2 new.qcow2
expect_error "Expecting one image file name" -b new.qcow2 -F qcow2
must_fail "$TOPCOW" rebase -b nothere.qcow2 -F qcow2 top.qcow2
case $ERR in "topcow: Could not open new backing file 'nothere.qcow2': "*) ;;
*) fail "missing new backing file: $ERR" ;; esac
must_fail "$TOPCOW" rebase -b new.qcow2 -F qcow2 nothere.qcow2
case $ERR in "topcow: Could not open 'nothere.qcow2': "*) ;; *) fail "missing image: $ERR" ;; esac
must_fail "$TOPCOW" rebase -c -b new.qcow2 -F qcow2 top.qcow2
expect_error "Could not change the backing file to 'new.qcow2': Operation not supported" \
    -f raw -b new.qcow2 -F qcow2 top.qcow2
[ -n "$("$TOPCOW" rebase --help)" ] || fail "rebase --help prints nothing"

# Hold $2 open in a qemu-io ($1: -r for a reader) until release; its lock
# is awaited in /proc/locks, since probing with another open could race.
hold() {
    rm -f hold.fifo
    mkfifo hold.fifo
    qemu-io $1 -f qcow2 "$2" <hold.fifo >/dev/null 2>&1 &
    HOLDER=$!
    exec 3>hold.fifo
    local inode
    inode=$(stat -c %i "$2")
    for _ in $(seq 100); do
        grep -q ":$inode " /proc/locks && return 0
        sleep 0.1
    done
    fail "qemu-io did not lock $2"
}
release() {
    exec 3>&-
    wait $HOLDER || true
    HOLDER=
}
for mode in "" -r; do # the image is in use
    hold "$mode" top.qcow2
    must_fail "$TOPCOW" rebase -b new.qcow2 -F qcow2 top.qcow2
    case $ERR in "topcow: Could not open 'top.qcow2': "*) ;; *) fail "locked ($mode): $ERR" ;; esac
    must_fail "$TOPCOW" rebase -u -b new.qcow2 -F qcow2 top.qcow2
    release
    [ "$(sha top.qcow2)" = "$sum" ] || fail "rebase of a locked image changed it"
done
# A writer holds the new backing file: refused, unless -U.
hold "" new.qcow2
must_fail "$TOPCOW" rebase -b new.qcow2 -F qcow2 top.qcow2
case $ERR in "topcow: Could not open new backing file 'new.qcow2': "*) ;;
*) fail "new backing file locked: $ERR" ;; esac
[ "$(sha top.qcow2)" = "$sum" ] || fail "a refused rebase changed the image"
ok "$TOPCOW" rebase -U -b new.qcow2 -F qcow2 top.qcow2
release
qemu_check_clean top.qcow2
ok qemu-img compare top.qcow2 base.qcow2
exit 0
