#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow reads every VMDK subformat qemu-img 7.2 writes exactly as QEMU does:
# for each, the raw conversion has the sha256 of qemu-img convert's, map
# agrees with qemu-img map, and info (text and JSON) agrees with qemu-img
# info.  Covers monolithicSparse (also with zeroed-grain GTEs and as the
# child of a backing file), monolithicFlat, twoGbMaxExtentSparse and
# twoGbMaxExtentFlat (over 2 GiB virtual, so several extents exist, with
# little data) and streamOptimized.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# The same reads through both tools; $1 image.  Raw conversions of images
# over 2 GiB are compared with qemu-img compare (which skips their holes)
# rather than hashed.
same_as_qemu() {
    local img=$1 t q
    rm -f t.raw q.raw
    ok "$TOPCOW" convert -O raw "$img" t.raw
    ok qemu-img convert -O raw "$img" q.raw
    if [ "$(stat -c %s q.raw)" -gt $((64 << 20)) ]; then
        ok qemu-img compare -f raw -F raw t.raw q.raw
    else
        [ "$(sha t.raw)" = "$(sha q.raw)" ] || fail "$img: topcow reads different data than qemu"
    fi
    t=$("$TOPCOW" map --output=json "$img") || fail "$img: topcow map failed"
    q=$(qemu-img map --output=json "$img")
    [ "$t" = "$q" ] || { echo "topcow: $t"; echo "qemu: $q"; fail "$img: map differs"; } >&2
    t=$("$TOPCOW" info "$img") || fail "$img: topcow info failed"
    q=$(qemu-img info "$img")
    [ "$t" = "$q" ] || { diff <(echo "$t") <(echo "$q"); fail "$img: info differs"; } >&2
    "$TOPCOW" info --output=json "$img" > t.json || fail "$img: topcow info json failed"
    qemu-img info --output=json "$img" > q.json
    /usr/bin/python3 -c 'import json,sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
sys.exit(a != b)' t.json q.json || { diff t.json q.json; fail "$img: info JSON differs"; } >&2
}

# A 40 MiB source: data at unaligned offsets, runs across grains and grain
# tables (32 MiB each), written zeros, and data in the last sector.
ok qemu-img create -f qcow2 src.qcow2 40M
ok qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -z 1M 128k' \
    -c 'write -P 0x22 5000000 70000' -c 'write -P 0 8M 1M' \
    -c 'write -P 0x33 33550000 100000' -c 'write -P 0x44 41942528 512' src.qcow2
for sub in monolithicSparse monolithicFlat streamOptimized; do
    ok qemu-img convert -O vmdk -o subformat=$sub src.qcow2 $sub.vmdk
    same_as_qemu $sub.vmdk
done

# Over 2 GiB with little data: two extents of 2 GiB at most, data across the
# extent boundary at 2 GiB.
ok qemu-img create -f qcow2 big.qcow2 2200M
ok qemu-io -f qcow2 -c 'write -P 0x55 0 64k' -c 'write -P 0x66 2047M 2M' \
    -c 'write -P 0x77 2199M 1M' big.qcow2
for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    ok qemu-img convert -O vmdk -o subformat=$sub big.qcow2 $sub.vmdk
    same_as_qemu $sub.vmdk
done
rm -f twoGbMaxExtentFlat*.vmdk t.raw q.raw

# Zeroed-grain GTEs: qemu-io's write -z on a zeroed_grain image stores GTE 1.
ok qemu-img create -f vmdk -o zeroed_grain=on,adapter_type=lsilogic,hwversion=7 zg.vmdk 8M
ok qemu-io -f vmdk -c 'write -P 0x12 0 256k' -c 'write -z 64k 128k' -c 'write -z 1M 1M' \
    -c 'write -P 0x34 3000000 5000' zg.vmdk
same_as_qemu zg.vmdk

# A child with parentFileNameHint: unallocated grains read from the parent,
# and partly written grains are filled from it.
ok qemu-img create -f vmdk base.vmdk 8M
ok qemu-io -f vmdk -c 'write -P 0xaa 0 8M' base.vmdk
ok qemu-img create -f vmdk -b base.vmdk -F vmdk child.vmdk
ok qemu-io -f vmdk -c 'write -P 0xbb 1000 3000' -c 'write -P 0xcc 4M 64k' child.vmdk
rm -f t.raw q.raw
ok "$TOPCOW" convert -O raw child.vmdk t.raw
ok qemu-img convert -O raw child.vmdk q.raw
[ "$(sha t.raw)" = "$(sha q.raw)" ] || fail "child.vmdk: reads through the chain differ"
t=$("$TOPCOW" info child.vmdk)
q=$(qemu-img info child.vmdk)
[ "$t" = "$q" ] || { diff <(echo "$t") <(echo "$q"); fail "child.vmdk: info differs"; } >&2
exit 0
