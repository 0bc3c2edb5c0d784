#!/bin/bash
# SPDX-License-Identifier: MIT
# VMDK images topcow writes, judged by qemu-img: convert -O vmdk in every
# subformat (and zeroed_grain=on) compares identical to the source, passes
# qemu-img check, and topcow info agrees with qemu-img info on it; the
# streamOptimized output ends as VMware's spec requires (footer marker,
# footer, end-of-stream marker; GD_AT_END in the header); `create` prints
# qemu-img's Formatting line, -o help and errors; writes into sparse images
# (partial grains, zeroed grains, a child filled from its parent) read back
# as qemu-io's same writes do.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

info_same() {
    local img=$1 t q
    t=$("$TOPCOW" info "$img") || fail "$img: topcow info failed"
    q=$(qemu-img info "$img")
    [ "$t" = "$q" ] || { diff <(echo "$t") <(echo "$q"); fail "$img: info differs"; } >&2
    "$TOPCOW" info --output=json "$img" > t.json || fail "$img: topcow info json failed"
    qemu-img info --output=json "$img" > q.json
    /usr/bin/python3 -c 'import json,sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
sys.exit(a != b)' t.json q.json || { diff t.json q.json; fail "$img: info JSON differs"; } >&2
}

# Bytes [$2, $2+$3) of file $1 as hex.
hexat() { od -An -tx1 -v -j "$2" -N "$3" "$1" | tr -d ' \n'; }

ok qemu-img create -f qcow2 src.qcow2 40M
ok qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -z 1M 128k' \
    -c 'write -P 0x22 5000000 70000' -c 'write -P 0 8M 1M' \
    -c 'write -P 0x33 33550000 100000' -c 'write -P 0x44 41942528 512' src.qcow2
ok qemu-img create -f qcow2 big.qcow2 2200M
ok qemu-io -f qcow2 -c 'write -P 0x55 0 64k' -c 'write -P 0x66 2047M 2M' \
    -c 'write -P 0x77 2199M 1M' big.qcow2

# convert -O vmdk, every subformat; -W and -m 1 change the order of writes.
for sub in monolithicSparse monolithicFlat streamOptimized "monolithicSparse,zeroed_grain=on" \
           "streamOptimized,adapter_type=lsilogic,hwversion=7"; do
    for opts in "" "-W -m 4" "-m 1"; do
        rm -f out*.vmdk
        ok "$TOPCOW" convert $opts -O vmdk -o subformat=$sub src.qcow2 out.vmdk
        ok qemu-img compare src.qcow2 out.vmdk
        qemu_check_clean out.vmdk
    done
    info_same out.vmdk
    [ "$("$TOPCOW" check out.vmdk)" = "$(qemu-img check out.vmdk)" ] || fail "$sub: check differs"
done
for sub in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    rm -f out*.vmdk
    ok "$TOPCOW" convert -O vmdk -o subformat=$sub big.qcow2 out.vmdk
    ok qemu-img compare big.qcow2 out.vmdk
    qemu_check_clean out.vmdk
    info_same out.vmdk
    letter=s; [ "${sub%Flat}" = "$sub" ] || letter=f
    [ -f out-${letter}002.vmdk ] || fail "$sub: no second extent file"
done
rm -f out*.vmdk

# streamOptimized as VMware's spec lays it out: header with compressed
# grains and markers and gdOffset GD_AT_END; the last three sectors are a
# footer marker (type 3), the footer ("KDMV") and the end-of-stream marker.
ok "$TOPCOW" convert -O vmdk -o subformat=streamOptimized src.qcow2 so.vmdk
size=$(stat -c %s so.vmdk)
[ $((size % 512)) = 0 ] || fail "streamOptimized: size $size is not whole sectors"
[ "$(hexat so.vmdk 0 4)" = 4b444d56 ] || fail "streamOptimized: no KDMV header"
[ "$(hexat so.vmdk 10 2)" = 0300 ] || fail "streamOptimized: header lacks compressed|markers flags"
[ "$(hexat so.vmdk 56 8)" = ffffffffffffffff ] || fail "streamOptimized: header gdOffset is not GD_AT_END"
[ "$(hexat so.vmdk $((size - 1536)) 16)" = 01000000000000000000000003000000 ] ||
    fail "streamOptimized: no footer marker before the footer"
[ "$(hexat so.vmdk $((size - 1024)) 4)" = 4b444d56 ] || fail "streamOptimized: no footer"
[ "$(hexat so.vmdk $((size - 512)) 512)" = "$(printf '0%.0s' $(seq 1024))" ] ||
    fail "streamOptimized: no end-of-stream marker"
# Holes and zeros are not stored: the 40 MiB source has ~3.2 MiB of data.
[ "$size" -lt $((3 << 20)) ] || fail "streamOptimized: $size bytes, zeros were stored"
# A stream, once closed, is not written again.
must_fail "$TOPCOW" io -c 'write -P 1 0 64k' so.vmdk
ok qemu-img compare src.qcow2 so.vmdk

# create: the Formatting line, -o help and errors are qemu-img's.
mkdir -p t q
for o in "" "subformat=monolithicFlat,adapter_type=legacyESX,toolsversion=5" \
         "subformat=twoGbMaxExtentSparse,zeroed_grain=on,compat6=on" \
         "subformat=streamOptimized,hwversion=7" "subformat=twoGbMaxExtentFlat" \
         "preallocation=off,nocow=off,extent_size_hint=1M"; do
    (cd t && rm -f ./* && "$TOPCOW" create -f vmdk ${o:+-o "$o"} img.vmdk 3G > ../t.out) ||
        fail "create -o '$o' failed"
    (cd q && rm -f ./* && qemu-img create -f vmdk ${o:+-o "$o"} img.vmdk 3G > ../q.out)
    diff t.out q.out >&2 || fail "create -o '$o': Formatting line differs"
    qemu_check_clean t/img.vmdk
    info_same t/img.vmdk
    [ "$(ls t)" = "$(ls q)" ] || fail "create -o '$o': files $(ls t) instead of $(ls q)"
done
diff <("$TOPCOW" create -f vmdk -o help x.vmdk) <(qemu-img create -f vmdk -o help x.vmdk) >&2 ||
    fail "-o help differs"
for o in subformat=foo adapter_type=scsi compat6=on,hwversion=7 \
         subformat=monolithicFlat,zeroed_grain=on preallocation=metadata; do
    if (cd t && "$TOPCOW" create -f vmdk -o $o e.vmdk 1M > ../t.out 2> ../t.err); then
        fail "create -o $o should fail"
    fi
    (cd q && qemu-img create -f vmdk -o $o e.vmdk 1M > ../q.out 2> ../q.err) || true
    diff t.out q.out >&2 || fail "create -o $o: Formatting line differs"
    [ "$(sed 's/^topcow: //' t.err)" = "$(sed 's/^qemu-img: //' q.err)" ] ||
        { cat t.err q.err; fail "create -o $o: error differs from qemu-img's"; } >&2
done

# Writes into sparse images: the same qemu-io commands through topcow io
# and through qemu-io on twin images give the same contents.
cmds=(-c 'write -P 0x11 1000 3000' -c 'write -P 0x22 64k 64k' -c 'write -P 0x33 200k 300k'
      -c 'write -z 70k 4k' -c 'write -z 128k 128k' -c 'write -P 0x44 33554000 1000'
      -c 'write -P 0x55 0 512')
for o in "" "zeroed_grain=on"; do
    rm -f a.vmdk b.vmdk
    ok "$TOPCOW" create -f vmdk ${o:+-o $o} a.vmdk 40M
    ok qemu-img create -f vmdk ${o:+-o $o} b.vmdk 40M
    ok "$TOPCOW" io "${cmds[@]}" a.vmdk
    ok qemu-io -f vmdk "${cmds[@]}" b.vmdk
    ok qemu-img compare a.vmdk b.vmdk
    qemu_check_clean a.vmdk
    # Without zeroed grains, write -z leaves unallocated grains alone where
    # qemu-io allocates zero-filled ones: the contents agree, the maps not.
    [ -z "$o" ] || [ "$("$TOPCOW" map --output=json a.vmdk)" = "$(qemu-img map --output=json b.vmdk |
        sed 's/b\.vmdk/a.vmdk/g')" ] || fail "-o '$o': the written image maps differently"
done
# A child: partly written grains are filled from the parent.
ok qemu-img create -f vmdk base.vmdk 8M
ok qemu-io -f vmdk -c 'write -P 0xaa 0 8M' base.vmdk
ok "$TOPCOW" create -f vmdk -b base.vmdk -F vmdk child.vmdk
ok qemu-img create -f vmdk -b base.vmdk -F vmdk child2.vmdk
[ "$(grep -a parentCID child.vmdk)" = "$(grep -a parentCID child2.vmdk)" ] ||
    fail "child: parentCID is not the parent's CID"
ok "$TOPCOW" io -c 'write -P 0xbb 1000 3000' -c 'write -z 4M 4k' -c 'write -P 0xcc 5M 64k' \
    child.vmdk
ok qemu-io -f vmdk -c 'write -P 0xbb 1000 3000' -c 'write -z 4M 4k' -c 'write -P 0xcc 5M 64k' \
    child2.vmdk
ok qemu-img compare child.vmdk child2.vmdk
qemu_check_clean child.vmdk
info_same child.vmdk

# -c: a streamOptimized image is compressed anyway, so it is accepted (as
# qemu-img accepts it); other subformats refuse it.
ok "$TOPCOW" convert -c -O vmdk -o subformat=streamOptimized src.qcow2 c.vmdk
ok qemu-img compare src.qcow2 c.vmdk
qemu_check_clean c.vmdk
must_fail "$TOPCOW" convert -c -O vmdk src.qcow2 c2.vmdk
grep -q "Compression not supported for this file format" <<<"$ERR" || fail "-c monolithicSparse: $ERR"
exit 0
