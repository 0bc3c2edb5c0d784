#!/bin/bash
# SPDX-License-Identifier: MIT
# VHDs that qemu-img 7.2 writes (dynamic and fixed, sized by geometry or
# with force_size, at sizes that need rounding) read through topcow exactly
# as through qemu-img: the same raw bytes, virtual size, map and info.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

vsize() { sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }

# A 24 MiB source (not a whole number of CHS cylinders) with data at
# unaligned offsets, written zeros, holes, and data in the last sectors.
ok qemu-img create -f qcow2 src.qcow2 25165312
ok qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -z 1M 128k' -c 'write -P 0x22 4100000 10000' \
    -c 'write -P 0 8M 2M' -c 'write -P 0x33 8490000 5000' -c 'write -P 0x44 12345678 1000000' \
    -c 'write -P 0x55 25160192 5120' src.qcow2

for o in subformat=dynamic subformat=fixed subformat=dynamic,force_size=on \
    subformat=fixed,force_size=on; do
    rm -f q.vhd q.raw t.raw
    ok qemu-img convert -O vpc -o "$o" src.qcow2 q.vhd
    ok qemu-img convert -f vpc -O raw q.vhd q.raw
    ok "$TOPCOW" convert -f vpc -O raw q.vhd t.raw
    [ "$(sha q.raw)" = "$(sha t.raw)" ] || fail "$o: topcow reads other bytes than qemu-img"
    q=$(qemu-img info -f vpc --output=json q.vhd | vsize)
    t=$("$TOPCOW" info -f vpc --output=json q.vhd | vsize)
    [ -n "$q" ] && [ "$q" = "$t" ] || fail "$o: virtual size $t, qemu-img says $q"
    # info agrees (text and JSON: format, sizes, cluster size of dynamic disks).
    for out in human json; do
        qemu-img info -f vpc --output=$out q.vhd >q.info
        "$TOPCOW" info -f vpc --output=$out q.vhd >t.info
        cmp -s q.info t.info || { diff q.info t.info >&2; fail "$o: info --output=$out differs"; }
    done
    qemu-img map -f vpc --output=json q.vhd >q.map
    "$TOPCOW" map -f vpc --output=json q.vhd >t.map
    cmp -s q.map t.map || { diff q.map t.map >&2; fail "$o: map differs"; }
    # Unaligned reads across block boundaries.
    ok "$TOPCOW" io -f vpc -r -c 'read -P 0x44 12345678 1000000' -c 'read -P 0x11 2097000 1000' \
        -c 'read -P 0 4194000 1000' q.vhd
done

# Dynamic disks probe as vpc; fixed ones as raw (they start with data), in
# both tools.
ok qemu-img convert -O vpc src.qcow2 d.vhd
ok qemu-img convert -O vpc -o subformat=fixed src.qcow2 f.vhd
for f in d.vhd f.vhd; do
    q=$(qemu-img info "$f" | sed -n 's/^file format: //p')
    t=$("$TOPCOW" info "$f" | sed -n 's/^file format: //p')
    [ "$q" = "$t" ] || fail "$f probes as $t, qemu-img says $q"
done

# Sizes from the geometry table's corners: tiny, a regime change of the
# CHS algorithm, beyond the largest geometry (sized by bytes).
for s in 1 100000 127G 200G; do
    rm -f s.vhd
    ok qemu-img create -f vpc s.vhd "$s"
    q=$(qemu-img info --output=json s.vhd | vsize)
    t=$("$TOPCOW" info --output=json s.vhd | vsize)
    [ "$q" = "$t" ] || fail "qemu-img create $s: virtual size $t, qemu-img says $q"
done
exit 0
