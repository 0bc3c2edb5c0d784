#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow measure prints what qemu-img measure prints, byte for byte, exit
# status and error messages included: for empty images of many sizes and
# geometries (--size), and for raw and qcow2 sources with data, zeros,
# holes, compressed clusters, a backing chain, internal snapshots and
# persistent bitmaps.  qemu-img is the oracle; no number here is ours.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

n=0
# Run both tools with the same arguments; stdout, stderr (after the
# program-name prefix) and exit status must all match.
same() {
    local qo qe to te qrc=0 trc=0
    qo=$(qemu-img measure "$@" 2>qemu.err) || qrc=$?
    to=$("$TOPCOW" measure "$@" 2>topcow.err) || trc=$?
    qe=$(sed 's/^qemu-img: /topcow: /' qemu.err)
    te=$(cat topcow.err)
    [ "$qrc" = "$trc" ] || fail "exit status $trc, qemu-img $qrc: measure $*"
    [ "$qo" = "$to" ] || fail "measure $*: stdout differs:
--- qemu-img
$qo
--- topcow
$to"
    [ "$qe" = "$te" ] || fail "measure $*: stderr differs: '$te' vs qemu-img '$qe'"
    n=$((n + 1))
}

# --- Empty images: sizes x cluster sizes x refcount widths ----------------
sizes="0 1 511 512 1000 1001 64k 1M 1000M 1G 100G 1T 3T 16T 256T 1P 7E"
for size in $sizes; do
    same --size "$size"
    same --size "$size" -O raw --output=json
    for cs in 512 1k 4k 16k 64k 256k 2M; do
        same --size "$size" -O qcow2 -o cluster_size=$cs
        for rb in 1 2 4 8 32 64; do
            same --size "$size" -O qcow2 -o cluster_size=$cs,refcount_bits=$rb
        done
    done
done
# Odd sizes that are not a whole number of anything.
for size in 123457 9876543210 1234567890123; do
    for cs in 512 64k 2M; do
        same --size "$size" -O qcow2 -o cluster_size=$cs --output=json
    done
done

# Extended L2, compat, preallocation, lazy refcounts, both output forms.
for size in 0 1001 1G 100G 1T; do
    for cs in 16k 64k 2M; do
        same --size "$size" -O qcow2 -o cluster_size=$cs,extended_l2=on
        same --size "$size" -O qcow2 -o cluster_size=$cs,extended_l2=on,refcount_bits=1 \
            --output=json
    done
    for pre in off metadata falloc full; do
        same --size "$size" -O qcow2 -o preallocation=$pre
        same --size "$size" -O qcow2 -o preallocation=$pre,cluster_size=4k --output=json
        same --size "$size" -O raw -o preallocation=$pre
    done
    same --size "$size" -O qcow2 -o compat=0.10
    same --size "$size" -O qcow2 -o compat=0.10,cluster_size=512,lazy_refcounts=on
    same --size "$size" -O qcow2 -o compat=1.1,lazy_refcounts=on,compression_type=zstd
    same --size "$size" -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2
    same --size "$size" -O qcow2 -o extended_l2=on,compat=0.10
done
# Where the L1 limit starts to bite, on either side of it.
same --size 256T -O qcow2 -o cluster_size=64k
same --size 256T -O qcow2 -o cluster_size=32k
same --size 2049G -O qcow2 -o cluster_size=4k
same --size 2048G -O qcow2 -o cluster_size=4k
same --size 1P -O qcow2 -o cluster_size=2M,extended_l2=on
# Size spellings: fractions, hex, the b suffix, repeated options.
for s in 1.5k 1.25M 0x10000 1b 1.0 1.k 7E 8E 20E 1.5 1.5b .5k 1e3 abc -1 ""; do
    same --size "$s" -O qcow2
done
same --size 1G -O qcow2 -o cluster_size=1k -o cluster_size=2k
same --size 1G -O qcow2 -o compat=0.10 -o refcount_bits=16
same --size 1G -O qcow2 -o refcount_bits=0x10
for o in "" ",," ",help" ",cluster_size=4k" "cluster_size=4k," "cluster_size=4k,," \
    "cluster_size=4k,,," "a,,b," "=4k" "cluster_size=4k,,x"; do
    same --size 1G -O qcow2 -o "$o"
done

# --- Option and argument errors -----------------------------------------
ok qemu-img create -q -f qcow2 img.qcow2 1M
for args in "" "--size 1G img.qcow2" "-f qcow2" "-l snap" "img.qcow2 img.qcow2" \
    "--size 1G --output=xml" "--size 1G -O foo" "--size 1G -O vmdk" \
    "--size 1G -o foo=bar" "--size 1G -O qcow2 -o foo=bar" \
    "--size 1G -O raw -o cluster_size=4k" "--size 1G -O qcow2 -o cluster_size=3k" \
    "--size 1G -O qcow2 -o cluster_size=256" "--size 1G -O qcow2 -o cluster_size=4M" \
    "--size 1G -O qcow2 -o cluster_size=abc" "--size 1G -O qcow2 -o cluster_size" \
    "--size 1G -O qcow2 -o refcount_bits=3" "--size 1G -O qcow2 -o refcount_bits=128" \
    "--size 1G -O qcow2 -o refcount_bits=0" "--size 1G -O qcow2 -o refcount_bits=abc" \
    "--size 1G -O qcow2 -o compat=0.10,refcount_bits=8" \
    "--size 1G -O qcow2 -o extended_l2=on,cluster_size=8k" \
    "--size 1G -O qcow2 -o extended_l2=maybe" "--size 1G -O qcow2 -o extended_l2=1" \
    "--size 1G -O qcow2 -o extended_l2=y" "--size 1G -O qcow2 -o lazy_refcounts=x" \
    "--size 1G -O qcow2 -o compat=foo" "--size 1G -O qcow2 -o compat=v3" \
    "--size 1G -O qcow2 -o preallocation=foo" "--size 1G -O raw -o preallocation=foo" \
    "--size 1G -O qcow2 -o encrypt.format=luks" "--size 1G -O qcow2 -o size=abc" \
    "--size 1G -O qcow2 -o compat=foo,cluster_size=3k" \
    "--size 1G -O qcow2 -o extended_l2=on,cluster_size=4k,compat=foo" \
    "--size 1G -O qcow2 -o refcount_bits=3,compat=foo" \
    "--size 1G -O qcow2 -o preallocation=foo,compat=foo" \
    "--size 1G -O qcow2 -o cluster_size=abc,lazy_refcounts=x" \
    "--size 1E -O qcow2" "--size 1E -O qcow2 -o preallocation=foo" \
    "-O qcow2 -o size=5G" "-O qcow2 -o size=1E img.qcow2" "-f raw img.qcow2" \
    "-U img.qcow2"; do
    # shellcheck disable=SC2086
    same $args
done
# Open failures: the reason comes from the library, in its own words.
for args in "nonexistent.img" "-f raw nonexistent.img" "-O foo nonexistent.img" \
    "-f foo img.qcow2"; do
    # shellcheck disable=SC2086
    must_fail qemu-img measure $args
    # shellcheck disable=SC2086
    must_fail "$TOPCOW" measure $args
    case $ERR in "topcow: Could not open '"*"': "*) ;; *) fail "measure $args: $ERR" ;; esac
done
# A missing snapshot: our message names the snapshot and the image.
must_fail "$TOPCOW" measure -O qcow2 -l nope img.qcow2
case $ERR in *"snapshot"*"nope"*"img.qcow2"*) ;; *) fail "missing snapshot: $ERR" ;; esac

# --- Source images ------------------------------------------------------
# Every output geometry is measured against every source.
measure_all() {
    same "$@"
    same --output=json "$@"
    same -O raw "$@"
    for o in cluster_size=512 cluster_size=4k cluster_size=64k cluster_size=2M \
        cluster_size=16k,extended_l2=on refcount_bits=1 refcount_bits=64,cluster_size=1k \
        compat=0.10 preallocation=metadata preallocation=full backing_file=x; do
        same -O qcow2 -o $o "$@"
        same -O qcow2 -o $o --output=json "$@"
    done
}

# Raw: empty, sparse with data at odd places, an odd length, fully written.
truncate -s 10M sparse.raw
measure_all sparse.raw
printf 'x' | dd of=sparse.raw bs=1 seek=$((3 * 1024 * 1024 + 4095)) conv=notrunc status=none
head -c 70000 /dev/urandom | dd of=sparse.raw bs=1 seek=$((7 * 1024 * 1024 - 1000)) \
    conv=notrunc status=none
measure_all sparse.raw
measure_all -f raw sparse.raw
head -c 1000001 /dev/urandom >odd.raw
measure_all odd.raw
head -c 3M /dev/zero >zeros.raw
measure_all zeros.raw

# qcow2 sources in several cluster sizes: data, zero clusters, holes,
# compressed clusters, discarded ranges, data that is all zero bytes.
# (Compressed writes must cover whole clusters.)
for cs in 512 4k 64k 2M; do
    clen=256k
    [ $cs != 2M ] || clen=2M
    ok qemu-img create -q -f qcow2 -o cluster_size=$cs src.qcow2 33M
    ok qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 3M 100k' -c 'write -z 5M 1M' \
        -c "write -c -P 3 8M $clen" -c 'write -P 0 12M 64k' -c 'write -P 4 20M 1k' \
        -c 'discard 0 64k' -c 'write -P 5 33553920 512' src.qcow2
    measure_all src.qcow2
done
ok qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=16k v2.qcow2 5M
ok qemu-io -f qcow2 -c 'write -P 1 1M 1M' -c 'write -z 3M 512k' v2.qcow2
measure_all v2.qcow2
ok qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=64k ext.qcow2 5M
ok qemu-io -f qcow2 -c 'write -P 1 4k 4k' -c 'write -P 2 1M 2k' -c 'write -z 2M 128k' ext.qcow2
measure_all ext.qcow2
ok qemu-img create -q -f qcow2 -o preallocation=metadata meta.qcow2 5M
measure_all meta.qcow2
ok qemu-img create -q -f qcow2 empty.qcow2 100G
measure_all empty.qcow2

# A backing chain: the chain's data counts, zeros written over the backing
# file do not.
ok qemu-img create -q -f qcow2 -o cluster_size=4k base.qcow2 10M
ok qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 2 3M 100k' -c 'write -P 3 7M 256k' \
    base.qcow2
ok qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
ok qemu-io -f qcow2 -c 'write -z 0 512k' -c 'write -P 5 8M 1k' mid.qcow2
ok qemu-img create -q -f qcow2 -o cluster_size=64k -b mid.qcow2 -F qcow2 top.qcow2 12M
ok qemu-io -f qcow2 -c 'write -P 6 11M 64k' -c 'write -z 3M 64k' top.qcow2
measure_all top.qcow2
measure_all mid.qcow2
ok qemu-img create -q -f raw rawbase.raw 4M
ok qemu-io -f raw -c 'write -P 7 1M 1M' rawbase.raw
ok qemu-img create -q -f qcow2 -b rawbase.raw -F raw overlay.qcow2
measure_all overlay.qcow2

# Internal snapshots (-l by id, by name, and by snapshot.name=).
ok qemu-img create -q -f qcow2 snap.qcow2 8M
ok qemu-io -f qcow2 -c 'write -P 1 0 2M' snap.qcow2
ok qemu-img snapshot -c first snap.qcow2
ok qemu-io -f qcow2 -c 'write -P 2 4M 2M' -c 'write -z 0 1M' snap.qcow2
for l in first 1 snapshot.name=first snapshot.id=1; do
    same -O qcow2 -l "$l" snap.qcow2
    same -O qcow2 -o cluster_size=4k -l "$l" --output=json snap.qcow2
done
measure_all snap.qcow2

# Persistent bitmaps: counted for v3 output only.
ok qemu-img create -q -f qcow2 bm.qcow2 1G
ok qemu-img bitmap --add bm.qcow2 b1
measure_all bm.qcow2
ok qemu-img bitmap --add -g 512 bm.qcow2 a-much-longer-bitmap-name
ok qemu-img bitmap --add -g 2M bm.qcow2 coarse
ok qemu-img bitmap --disable bm.qcow2 b1
measure_all bm.qcow2
ok qemu-img create -q -f qcow2 -o cluster_size=4k bm2.qcow2 3G
for i in $(seq 1 20); do ok qemu-img bitmap --add -g 64k bm2.qcow2 "bitmap-number-$i"; done
measure_all bm2.qcow2

echo "measure: $n comparisons with qemu-img"
