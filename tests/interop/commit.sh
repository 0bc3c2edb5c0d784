#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow commit against qemu-img commit.  Chains are built with qemu-img and
# qemu-io (data, zeros, discards, partial clusters, holes, overlays longer
# and shorter than their backing files, 3-deep chains, raw and compat=0.10
# bases, relative names across directories); each is copied twice, qemu-img
# commits one copy and topcow the other, with the same options.  Then every
# qcow2 image of both must pass qemu-img check, every image of the topcow copy
# must read like its twin in the qemu copy (qemu-img compare), sizes must
# match and the top layers must allocate the same (emptied, or untouched).
# Errors: missing file, no backing file, base not in the chain, images
# locked by a running qemu-io.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

HOLDER=
trap 'exec 3>&- 2>/dev/null; [ -z "$HOLDER" ] || kill $HOLDER 2>/dev/null; cleanup_scratch' EXIT

io() { ok qemu-io -f qcow2 "$@"; }

# Run "commit ARGS" in copies q/ (qemu-img) and t/ (topcow) of src/, where
# @D@ in ARGS stands for the copy's absolute path; same() compares after.
both() {
    rm -rf q t
    cp -a src q
    cp -a src t
    local a qargs=() targs=()
    for a in "$@"; do
        qargs+=("${a//@D@/$SCRATCH/q}")
        targs+=("${a//@D@/$SCRATCH/t}")
    done
    (cd q && qemu-img commit "${qargs[@]}") >q.out 2>&1 ||
        { cat q.out >&2; fail "qemu-img commit $*"; }
    (cd t && "$TOPCOW" commit "${targs[@]}") >t.out 2>&1 ||
        { cat t.out >&2; fail "topcow commit $*"; }
}

# The images (paths relative to q/ and t/) must be clean and read alike.
same() {
    for f in "$@"; do
        case $f in *.qcow2) qemu_check_clean "t/$f"; qemu_check_clean "q/$f" ;; esac
        out=$(qemu-img compare "q/$f" "t/$f" 2>&1) || { echo "$out" >&2; fail "$f differs"; }
        [ "$(qemu-img info "q/$f" | grep '^virtual size')" = \
          "$(qemu-img info "t/$f" | grep '^virtual size')" ] || fail "$f: sizes differ"
    done
}

# The top layer of the image allocates the same in both copies.
same_top_map() {
    qemu-io -r -f qcow2 -c map "q/$1" >q.map
    qemu-io -r -f qcow2 -c map "t/$1" >t.map
    sed -i 's|[qt]/||' q.map t.map
    cmp -s q.map t.map || { diff q.map t.map >&2; fail "top layer of $1 differs"; }
}

# ---- two layers: data, zeros, discards, partial clusters, holes ----------
mkdir src
ok qemu-img create -f qcow2 src/base.qcow2 16M
io -c 'write -P 1 0 8M' -c 'write -P 7 12M 1M' src/base.qcow2
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 src/top.qcow2
io -c 'write -P 2 1M 1M' -c 'write -z 3M 1M' -c 'discard 5M 128k' -c 'write -P 3 100k 3k' \
    -c 'write -z 6M 1000' -c 'write -P 0 12M 64k' -c 'write -P 4 15M 1M' src/top.qcow2
for opts in "" "-p" "-q" "-t none" "-t unsafe" "-t writethrough"; do
    both $opts top.qcow2
    same base.qcow2 top.qcow2
    same_top_map top.qcow2
    case $opts in
    -q) [ ! -s t.out ] || fail "commit -q printed: $(cat t.out)" ;;
    -p) tail -c 17 t.out | grep -q '^Image committed.$' || fail "commit -p: $(cat t.out)"
        grep -q '(100.00/100%)' t.out || fail "commit -p shows no progress: $(cat t.out)" ;;
    *) cmp -s q.out t.out || { diff q.out t.out >&2; fail "commit $opts: output differs"; } ;;
    esac
done
grep -qx 'Image committed.' t.out || fail "commit output: $(cat t.out)"
# -d keeps the top as it was.
both -d top.qcow2
same base.qcow2 top.qcow2
same_top_map top.qcow2
cmp -s src/top.qcow2 t/top.qcow2 || fail "commit -d modified the top image"
# An empty overlay changes nothing.
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 src/empty.qcow2
both empty.qcow2
same base.qcow2 empty.qcow2
cmp -s src/base.qcow2 t/base.qcow2 || qemu-img compare src/base.qcow2 t/base.qcow2 >/dev/null ||
    fail "committing an empty overlay changed the base"
rm -rf src

# ---- 3-deep chains with overlays longer and shorter than their backing ----
# base 24M (data past 16M) <- mid 16M <- top 20M
mkdir src
ok qemu-img create -f qcow2 src/base.qcow2 24M
io -c 'write -P 1 0 24M' src/base.qcow2
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 src/mid.qcow2 16M
io -c 'write -P 2 1M 2M' -c 'write -z 4M 1M' -c 'write -P 5 15M 1M' src/mid.qcow2
ok qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 src/top.qcow2 20M
io -c 'write -P 3 2M 2M' -c 'write -z 5M 64k' -c 'write -P 6 17M 1M' -c 'write -P 8 10M 5k' \
    src/top.qcow2
both top.qcow2 # into mid, which grows to 20M
same base.qcow2 mid.qcow2 top.qcow2
same_top_map top.qcow2
for b in base.qcow2 ./base.qcow2 @D@/base.qcow2; do
    both -b "$b" top.qcow2
    same base.qcow2 mid.qcow2 top.qcow2
    same_top_map top.qcow2
done
both -b mid.qcow2 top.qcow2 # -b implies -d
same base.qcow2 mid.qcow2 top.qcow2
same_top_map top.qcow2
both -d -p top.qcow2
same base.qcow2 mid.qcow2 top.qcow2
# the middle layer committed into the bottom one
both mid.qcow2
same base.qcow2 mid.qcow2
same_top_map mid.qcow2
rm -rf src

# ---- relative backing names across directories ------------------------------
# a/base.qcow2 <- b/c/mid.qcow2 ("../../a/base.qcow2") <- b/top.qcow2 ("c/mid.qcow2")
mkdir -p src/a src/b/c
ok qemu-img create -f qcow2 src/a/base.qcow2 8M
io -c 'write -P 1 0 8M' src/a/base.qcow2
ok qemu-img create -f qcow2 -b ../../a/base.qcow2 -F qcow2 src/b/c/mid.qcow2
io -c 'write -P 2 1M 1M' src/b/c/mid.qcow2
ok qemu-img create -f qcow2 -b c/mid.qcow2 -F qcow2 src/b/top.qcow2
io -c 'write -P 3 3M 1M' -c 'write -z 0 64k' src/b/top.qcow2
both b/top.qcow2
same a/base.qcow2 b/c/mid.qcow2 b/top.qcow2
same_top_map b/top.qcow2
# -b is resolved against the directory of the layer that names it.
both -b ../../a/base.qcow2 b/top.qcow2
same a/base.qcow2 b/c/mid.qcow2 b/top.qcow2
same_top_map b/top.qcow2
(cd t && must_fail "$TOPCOW" commit -b a/base.qcow2 b/top.qcow2)
(cd q && must_fail qemu-img commit -b a/base.qcow2 b/top.qcow2)
rm -rf src

# ---- raw and compat=0.10 bases, other cluster sizes -----------------------
mkdir src
ok qemu-img create -f raw src/base.raw 8M
ok qemu-io -f raw -c 'write -P 1 0 6M' src/base.raw
ok qemu-img create -f qcow2 -o compat=0.10 -b base.raw -F raw src/v2.qcow2
io -c 'write -P 2 0 1M' -c 'write -z 2M 1M' src/v2.qcow2
ok qemu-img create -f qcow2 -o cluster_size=4k -b v2.qcow2 -F qcow2 src/small.qcow2 12M
io -c 'write -P 3 512k 1M' -c 'write -z 1M 64k' -c 'write -z 4M 8k' -c 'write -P 4 9M 1M' \
    src/small.qcow2
ok qemu-img create -f qcow2 -o extended_l2=on,cluster_size=128k -b small.qcow2 -F qcow2 \
    src/sub.qcow2
io -c 'write -P 5 100k 4k' -c 'write -z 2M 8k' -c 'write -P 6 11M 300k' src/sub.qcow2
both sub.qcow2
same v2.qcow2 small.qcow2 sub.qcow2 base.raw
same_top_map sub.qcow2
both -d sub.qcow2
same v2.qcow2 small.qcow2 sub.qcow2 base.raw
same_top_map sub.qcow2
both small.qcow2 # zeros into a compat=0.10 image
same base.raw v2.qcow2 small.qcow2
same_top_map small.qcow2
both -b base.raw sub.qcow2 # into a raw file, which grows to 12M
same base.raw v2.qcow2 small.qcow2 sub.qcow2
cmp -s q/base.raw t/base.raw || fail "raw bases differ byte for byte"
rm -rf src

# ---- a cluster size above the copy unit (2M) ----------------------------------
mkdir src
ok qemu-img create -f qcow2 -o cluster_size=2M src/base.qcow2 12M
io -c 'write -P 1 0 12M' src/base.qcow2
ok qemu-img create -f qcow2 -o cluster_size=2M -b base.qcow2 -F qcow2 src/top.qcow2
io -c 'write -P 2 1M 3M' -c 'write -z 6M 2M' -c 'write -P 3 9000 100' src/top.qcow2
both -p top.qcow2
same base.qcow2 top.qcow2
same_top_map top.qcow2

# ---- errors ------------------------------------------------------------------
# A read error stops the commit before the top is emptied: a compressed
# cluster of the top whose data is garbage (its one L2 table is found
# through the L1 table, whose offset is at byte 40 of the header).
be64() { echo $((16#$(od -A n -t x1 -j "$2" -N 8 "$1" | tr -d ' \n'))); }
ok qemu-img create -f qcow2 src/comp.qcow2 -b base.qcow2 -F qcow2
io -c 'write -c -P 7 192k 64k' -c 'write -P 5 0 192k' -c 'write -P 5 256k 3M' src/comp.qcow2
l2=$(($(be64 src/comp.qcow2 $(($(be64 src/comp.qcow2 40) & 0xfffffffffe00))) & 0xfffffffffe00))
data=$(($(be64 src/comp.qcow2 $((l2 + 3 * 8))) & ((1 << 54) - 1)))
head -c 256 /dev/zero | tr '\0' '\377' | dd of=src/comp.qcow2 bs=1 seek=$data conv=notrunc status=none
sum=$(sha src/comp.qcow2)
must_fail "$TOPCOW" commit src/comp.qcow2
case $ERR in *"error while reading at byte 196608: "*) ;; *) fail "read error: $ERR" ;; esac
[ "$(sha src/comp.qcow2)" = "$sum" ] || fail "a failed commit emptied the top"
qemu_check_clean src/base.qcow2
rm src/comp.qcow2

cd src
must_fail "$TOPCOW" commit nothere.qcow2
case $ERR in *"Could not open 'nothere.qcow2'"*) ;; *) fail "missing image: $ERR" ;; esac
must_fail "$TOPCOW" commit base.qcow2
[ "$ERR" = "topcow: Image does not have a backing file" ] || fail "no backing file: $ERR"
must_fail "$TOPCOW" commit -b nothere.qcow2 top.qcow2
[ "$ERR" = "topcow: Did not find 'nothere.qcow2' in the backing chain of 'top.qcow2'" ] ||
    fail "base not in chain: $ERR"
must_fail "$TOPCOW" commit -b top.qcow2 top.qcow2
must_fail "$TOPCOW" commit
must_fail "$TOPCOW" commit top.qcow2 base.qcow2
must_fail "$TOPCOW" commit -t sometimes top.qcow2
[ "$ERR" = "topcow: Invalid cache option: sometimes" ] || fail "bad cache: $ERR"
must_fail "$TOPCOW" commit -r 1x top.qcow2
case $ERR in "topcow: Invalid rate limit specified."*) ;; *) fail "bad rate: $ERR" ;; esac
sum_base=$(sha base.qcow2) sum_top=$(sha top.qcow2)
[ "$("$TOPCOW" commit --help | head -1)" != "" ] || fail "commit --help prints nothing"

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
unchanged() {
    [ "$(sha base.qcow2)" = "$sum_base" ] && [ "$(sha top.qcow2)" = "$sum_top" ] ||
        fail "$1 changed the images"
}
for mode in "" -r; do # a writer or a reader of the top refuses an emptying commit
    hold "$mode" top.qcow2
    must_fail "$TOPCOW" commit top.qcow2
    case $ERR in *"Could not open 'top.qcow2'"*) ;; *) fail "top locked ($mode): $ERR" ;; esac
    release
    unchanged "commit of a locked top"
done
for mode in "" -r; do # the base is in use: no writes into it
    hold "$mode" base.qcow2
    must_fail "$TOPCOW" commit top.qcow2
    case $ERR in *base.qcow2*) ;; *) fail "base locked ($mode): $ERR" ;; esac
    must_fail "$TOPCOW" commit -d top.qcow2
    release
    unchanged "commit into a locked base"
done
# A writer of the middle layer of a chain refuses a commit through it.
cd ..
rm -rf src
mkdir src
ok qemu-img create -f qcow2 src/base.qcow2 4M
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 src/mid.qcow2
ok qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 src/top.qcow2
io -c 'write -P 3 0 1M' src/top.qcow2
cd src
sum_base=$(sha base.qcow2) sum_top=$(sha top.qcow2)
hold "" mid.qcow2
must_fail "$TOPCOW" commit -b base.qcow2 top.qcow2
release
unchanged "commit through a locked middle layer"
ok "$TOPCOW" commit -r 10M -b base.qcow2 top.qcow2
grep -q "rate limit" <<<"$out" || fail "-r gives no warning: $out"
ok qemu-img compare top.qcow2 base.qcow2
exit 0
