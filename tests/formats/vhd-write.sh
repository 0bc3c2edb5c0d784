#!/bin/bash
# SPDX-License-Identifier: MIT
# VHDs that topcow writes read through qemu-img 7.2 as their source does, and
# look like qemu-img's own: `convert -O vpc` and `create -f vpc` give the
# virtual size and file length qemu-img gives (holes and zeros never
# allocated), the same Formatting line, -o help and refusals; read-write
# opens allocate blocks that qemu-img then reads, and qemu-io can go on
# writing after topcow.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

vsize() { sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }
length() { stat -c %s "$1"; }

ok qemu-img create -f qcow2 src.qcow2 25165312
ok qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -z 1M 128k' -c 'write -P 0x22 4100000 10000' \
    -c 'write -P 0 8M 2M' -c 'write -P 0x33 8490000 5000' -c 'write -P 0x44 12345678 1000000' \
    -c 'write -P 0x55 25160192 5120' src.qcow2
ok qemu-img convert -O raw src.qcow2 src.raw

# convert -O vpc, with the transfer options that run writers in parallel.
for o in "" subformat=dynamic subformat=fixed force_size=on subformat=fixed,force_size=on \
    force_size=off; do
    rm -f q.vhd
    ok qemu-img convert -O vpc ${o:+-o "$o"} src.qcow2 q.vhd
    for opts in "" "-W -m 16" "-m 1"; do
        rm -f t.vhd
        ok "$TOPCOW" convert $opts -O vpc ${o:+-o "$o"} src.qcow2 t.vhd
        ok qemu-img compare -f qcow2 -F vpc src.qcow2 t.vhd
        q=$(qemu-img info -f vpc --output=json q.vhd | vsize)
        t=$(qemu-img info -f vpc --output=json t.vhd | vsize)
        [ "$q" = "$t" ] || fail "convert -o '$o' $opts: virtual size $t, qemu-img's $q"
        [ "$(length q.vhd)" = "$(length t.vhd)" ] ||
            fail "convert -o '$o' $opts: $(length t.vhd) bytes, qemu-img's $(length q.vhd)"
        ok qemu-img convert -f vpc -O raw t.vhd back.raw
        cmp -s -n "$(length src.raw)" src.raw back.raw || fail "convert -o '$o' $opts: data"
    done
done

# create -f vpc: the Formatting line, the size (CHS rounding, force_size,
# beyond the largest geometry, the 2040 GiB limit) and the file.
for args in "1G" "1" "100000" "-o subformat=fixed 10M" "-o force_size=on 10M" \
    "-o subformat=fixed,force_size=on,preallocation=off 1M" "-o force_size=off,subformat=dynamic 1M" \
    "-o preallocation=full 1M" "127G" "200G" "2040G" "0" "-o subformat=fixed 0"; do
    rm -f q.vhd t.vhd
    opts=${args% *} size=${args##* }
    [ "$opts" != "$args" ] || opts=
    qout=$(qemu-img create -f vpc $opts q.vhd $size 2>&1) || fail "qemu-img create $args: $qout"
    tout=$("$TOPCOW" create -f vpc $opts t.vhd $size 2>&1) || fail "topcow create $args: $tout"
    [ "${tout//t.vhd/q.vhd}" = "$qout" ] || fail "create $args: '$tout', qemu-img: '$qout'"
    q=$(qemu-img info -f vpc --output=json q.vhd | vsize)
    t=$(qemu-img info -f vpc --output=json t.vhd | vsize)
    [ "$q" = "$t" ] || fail "create $args: virtual size $t, qemu-img's $q"
    [ "$(length q.vhd)" = "$(length t.vhd)" ] || fail "create $args: file length differs"
done

# Refusals, with qemu-img's words.
for args in "-o subformat=foo 1M" "-o force_size=maybe 1M" "3T" "-o subformat=fixed 3T" \
    "2041G"; do
    rm -f q.vhd t.vhd
    opts=${args% *} size=${args##* }
    [ "$opts" != "$args" ] || opts=
    qout=$(qemu-img create -f vpc $opts q.vhd $size 2>&1) && fail "qemu-img create $args succeeded"
    tout=$("$TOPCOW" create -f vpc $opts t.vhd $size 2>&1) && fail "topcow create $args succeeded"
    [ "$(printf '%s' "${tout//t.vhd/q.vhd}" | sed 's/^topcow:/qemu-img:/')" = "$qout" ] ||
        fail "create $args: '$tout', qemu-img: '$qout'"
done
# (preallocation=metadata: refused, as qemu-img's file layer does, but with
# the words topcow uses for every format.)
must_fail "$TOPCOW" create -f vpc -o preallocation=metadata t.vhd 1M
[ "$("$TOPCOW" create -f vpc -o help x.vhd)" = "$(qemu-img create -f vpc -o help x.vhd |
    grep -v -e extent_size_hint -e nocow)" ] || fail "-o help differs"

# Read-write opens: topcow writes into qemu-img's dynamic disk (new blocks,
# allocated ones, unaligned, across blocks, zeroes), qemu-img reads it;
# then qemu-io writes more and topcow reads that.
ok qemu-img create -f vpc rw.vhd 20M
ok qemu-img convert -f vpc -O raw rw.vhd expect.raw
cmds=(-c 'write -P 0x61 3M 64k' -c 'write -P 0x62 4194000 5000' -c 'write -P 0x63 100 1000'
      -c 'write -P 0x64 3M 512' -c 'write -z 3M 4096' -c 'write -P 0x65 20000000 100000')
ok "$TOPCOW" io -f vpc "${cmds[@]}" rw.vhd
ok qemu-io -f raw "${cmds[@]}" expect.raw
ok qemu-img compare -f raw -F vpc expect.raw rw.vhd
more=(-c 'write -P 0x71 10M 3M' -c 'write -P 0x72 0 512')
ok qemu-io -f vpc "${more[@]}" rw.vhd
ok qemu-io -f raw "${more[@]}" expect.raw
ok "$TOPCOW" convert -f vpc -O raw rw.vhd out.raw
[ "$(sha out.raw)" = "$(sha expect.raw)" ] || fail "topcow does not read qemu-io's writes after its own"
# And a fixed disk written in place.
ok qemu-img create -f vpc -o subformat=fixed fx.vhd 4M
ok qemu-img convert -f vpc -O raw fx.vhd fexpect.raw
ok "$TOPCOW" io -f vpc "${cmds[@]:0:8}" fx.vhd
ok qemu-io -f raw "${cmds[@]:0:8}" fexpect.raw
ok qemu-img compare -f raw -F vpc fexpect.raw fx.vhd
exit 0
