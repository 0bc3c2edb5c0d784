#!/bin/bash
# SPDX-License-Identifier: MIT
# Compressed writes (io write -c) and rewrites of compressed clusters, on
# images whose compressed clusters qemu-io wrote and on images topcow wrote,
# for many image options.  Every step is mirrored on a raw reference with
# qemu-io; the image must pass qemu-img check and compare identical to it.
# Also: snapshots sharing packed clusters, and write -c's refusals.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

seq 1 100000 | head -c 300000 >text   # compressible, not periodic in clusters
head -c 200000 /dev/urandom >noise    # incompressible

SIZE=$((6 * 1024 * 1024 + 512))       # the last cluster is short

# Run qemu-io commands on the raw reference.
ref() {
    local cmds=()
    for c in "$@"; do cmds+=(-c "$c"); done
    ok qemu-io -f raw "${cmds[@]}" ref.raw
}

# $1 tool (qemu-io or topcow), rest: commands, on img.qcow2.
on_img() {
    local tool=$1 cmds=()
    shift
    for c in "$@"; do cmds+=(-c "$c"); done
    if [ "$tool" = qemu-io ]; then
        ok qemu-io -f qcow2 "${cmds[@]}" img.qcow2
    else
        ok "$TOPCOW" io -f qcow2 "${cmds[@]}" img.qcow2
    fi
}

same() {
    qemu_check_clean img.qcow2
    ok qemu-img compare -f qcow2 -F raw img.qcow2 ref.raw
}

cluster_of() {
    qemu-img info --output=json "$1" | sed -n 's/.*"cluster-size": \([0-9]*\).*/\1/p'
}

for cfg in "" cluster_size=512 cluster_size=4k,compression_type=zstd cluster_size=2M \
           extended_l2=on compression_type=zstd compat=0.10 refcount_bits=1 \
           lazy_refcounts=on refcount_bits=64,cluster_size=16k; do
    for maker in qemu-io topcow; do
        what="[$cfg, compressed by $maker]"
        rm -f img.qcow2 ref.raw
        ok qemu-img create -f qcow2 ${cfg:+-o "$cfg"} img.qcow2 $SIZE
        ok qemu-img create -f raw ref.raw $SIZE
        cs=$(cluster_of img.qcow2)
        last=$(((SIZE - 1) / cs * cs))
        # Compressed and normal clusters, mixed; noise does not compress and
        # is stored as normal clusters.
        if [ $cs -lt 1048576 ]; then
            w=("write -c -P 0x11 0 $((2 * cs))" "write -P 0x22 $((4 * cs)) $((2 * cs))"
               "write -c -s text 1M 1M" "write -c -s noise $((3 * cs)) $cs"
               "write -c -s text $((2 * 1048576 + cs)) $((2 * 1048576 - cs))"
               "write -c -P 0x33 $last $((SIZE - last))")
        else
            w=("write -c -s text 0 $cs" "write -P 0x22 $cs $cs"
               "write -c -P 0x33 $last $((SIZE - last))")
        fi
        on_img $maker "${w[@]}"
        ref "${w[@]//-c /}"
        same || fail "$what after the compressed writes"
        qemu-img check img.qcow2 | grep -q "compressed clusters" ||
            fail "$what: no compressed clusters"

        # topcow rewrites: parts of compressed clusters (data, zeros), a
        # compressed cluster over a compressed one and over a normal one.
        r=("write -P 0x44 4097 3000" "write -z $((1048576 + 100)) 5000"
           "write -P 0x55 $((1048576 + cs - 10)) 20" "write -P 0x66 $((last + 7)) 100"
           "write -c -s text 0 $cs" "write -c -P 0x77 $((cs < 1048576 ? 4 * cs : cs)) $cs")
        on_img topcow "${r[@]}"
        ref "${r[@]//-c /}"
        same || fail "$what after topcow's rewrites"
        # And qemu-io rewrites what topcow left.
        q=("write -P 0x88 $((1048576 + 3 * cs / 2)) 777" "write -z 0 $((cs / 2))")
        on_img qemu-io "${q[@]}"
        ref "${q[@]}"
        same || fail "$what after qemu-io's rewrites"
    done
done

# Snapshots share packed clusters; rewriting after a snapshot must leave the
# snapshot's view intact, and deleting it must leave exact refcounts.
rm -f img.qcow2 ref.raw
ok qemu-img create -f qcow2 img.qcow2 4M
ok "$TOPCOW" io -c 'write -c -s text 0 2M' img.qcow2
ok "$TOPCOW" snapshot -c snap img.qcow2
ok "$TOPCOW" io -c 'write -P 0x99 1000 70000' -c 'write -c -P 0xaa 1M 128k' img.qcow2
qemu_check_clean img.qcow2
ok qemu-img create -f raw ref.raw 4M
ref 'write -s text 0 2M'
ok qemu-img convert -l snap -O raw img.qcow2 snap.raw
cmp -s snap.raw ref.raw || fail "the snapshot's view changed"
ref 'write -P 0x99 1000 70000' 'write -P 0xaa 1M 128k'
same || fail "after writes over a snapshot"
ok "$TOPCOW" snapshot -d snap img.qcow2
same || fail "after deleting the snapshot"

# Refusals, with qemu-io's messages.
must_fail "$TOPCOW" io -c 'write -c 512 64k' img.qcow2
[ "$ERR" = "write failed: Invalid argument" ] || fail "unaligned write -c: $ERR"
out=$("$TOPCOW" io -c 'write -c 0 1000' img.qcow2 2>&1) || true
grep -q "1000 is not a sector-aligned value for 'count'" <<<"$out" || fail "write -c 0 1000: $out"
out=$("$TOPCOW" io -c 'write -c -f 0 64k' img.qcow2 2>&1) || true
grep -q -- "-f and -b or -c cannot be specified at the same time" <<<"$out" || fail "-c -f: $out"
ok qemu-img create -f raw r.raw 1M
must_fail "$TOPCOW" io -f raw -c 'write -c 0 64k' r.raw
grep -q "write failed: Operation not supported" <<<"$ERR" || fail "raw write -c: $ERR"
exit 0
