#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow convert of images QEMU made with every kind of cluster: zero
# (plain and allocated), discarded, compressed (zlib and zstd), subclusters
# with extended L2, compat=0.10, tiny and huge clusters, internal snapshots.
# Raw outputs must be byte-identical to qemu-img's; qcow2 outputs must pass
# qemu-img check and compare identical.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

n=0
# $1: creation options; rest: qemu-io commands.
check_image() {
    local cfg=$1
    shift
    n=$((n + 1))
    local src=src$n.qcow2 cmds=()
    for c in "$@"; do cmds+=(-c "$c"); done
    ok qemu-img create -f qcow2 ${cfg:+-o "$cfg"} "$src" 12M
    ok qemu-io -f qcow2 "${cmds[@]}" "$src"
    ok qemu-img convert -O raw "$src" q$n.raw
    for opts in "" "-W" "-m 2 -S 64k"; do
        rm -f t$n.raw t$n.qcow2
        ok "$TOPCOW" convert $opts -O raw "$src" t$n.raw
        [ "$(sha t$n.raw)" = "$(sha q$n.raw)" ] || fail "image $n ($cfg, $opts): raw output differs"
        ok "$TOPCOW" convert $opts -O qcow2 "$src" t$n.qcow2
        qemu_check_clean t$n.qcow2
        ok qemu-img compare "$src" t$n.qcow2
    done
}

mixed=('write -P 0x10 0 2M' 'write -z 64k 64k' 'write -z -u 256k 128k' 'discard 1M 192k'
    'write -c -P 0x20 3M 256k' 'write -P 0x30 3200k 12k' 'write -P 0 5M 1M'
    'write -P 0x40 7654321 123456' 'write -c -P 0x50 11M 64k' 'write -P 0x60 12578816 4096')
check_image "" "${mixed[@]}"
check_image "compat=0.10" "${mixed[@]}"
check_image "compression_type=zstd" "${mixed[@]}"
check_image "cluster_size=512" "${mixed[@]}"
check_image "cluster_size=2M" 'write -P 0x10 0 3M' 'write -z 2M 2M' 'discard 4M 2M' \
    'write -c -P 0x20 6M 2M' 'write -P 0x40 7654321 123456' 'write -P 0 10M 2M'
check_image "extended_l2=on" "${mixed[@]}" 'write -P 0x70 9442304 3k'
check_image "extended_l2=on,cluster_size=128k" 'write -P 1 0 4k' 'write -P 2 100k 2k' \
    'write -z 1M 4k' 'discard 2M 128k' 'write -P 3 2M 4k' 'write -c -P 4 4M 128k'
check_image "lazy_refcounts=on" "${mixed[@]}"

# The active layer of an image with an internal snapshot.
ok qemu-img create -f qcow2 snap.qcow2 8M
ok qemu-io -f qcow2 -c 'write -P 1 0 4M' snap.qcow2
ok qemu-img snapshot -c s1 snap.qcow2
ok qemu-io -f qcow2 -c 'write -P 2 1M 1M' -c 'discard 3M 1M' snap.qcow2
ok "$TOPCOW" convert -O raw snap.qcow2 snap-t.raw
ok qemu-img convert -O raw snap.qcow2 snap-q.raw
[ "$(sha snap-t.raw)" = "$(sha snap-q.raw)" ] || fail "image with a snapshot: output differs"

# A raw source with holes and allocated zeros, into both formats.
ok qemu-img create -f raw holes.raw 12M
ok qemu-io -f raw -c 'write -P 9 1M 4k' -c 'write -P 0 2M 1M' -c 'write -P 8 11M 1M' holes.raw
ok "$TOPCOW" convert -f raw -O qcow2 holes.raw holes.qcow2
qemu_check_clean holes.qcow2
ok qemu-img compare -f raw -F qcow2 holes.raw holes.qcow2
exit 0
