#!/bin/bash
# SPDX-License-Identifier: MIT
# The VHD sample images made by other tools (Disk2VHD, Hyper-V 2012 R2,
# Virtual PC) read as qemu-img 7.2 reads them: the same virtual size (each
# exercises one branch of the footer's sizing rule), the same map, and the
# same bytes; the fuzzed afl5.img is refused with one clear line.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/formats/corpus.sh"
require qemu-img
cd "$SCRATCH"

vsize() { sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }

for name in d2v-zerofilled.vhd hyperv2012r2-dynamic.vhd virtualpc-dynamic.vhd; do
    img=$(corpus_unpack "$name")
    q=$(qemu-img info --output=json "$img" | vsize)
    t=$("$TOPCOW" info --output=json "$img" | vsize)
    [ -n "$q" ] && [ "$q" = "$t" ] || fail "$name: virtual size $t, qemu-img says $q"
    out=$("$TOPCOW" info "$img")
    case $out in *"file format: vpc"*"cluster_size: 2097152"*) ;; *) fail "$name: $out" ;; esac
    # Which blocks hold data, as qemu-img maps them.
    qemu-img map --output=json "$img" >q.map
    "$TOPCOW" map --output=json "$img" >t.map
    cmp -s q.map t.map || { diff q.map t.map >&2; fail "$name: map differs from qemu-img's"; }
    # The bytes: qemu-img compares the image with topcow's conversion of it
    # (the 127 GiB ones are sparse, so compare skips the holes).
    rm -f out.qcow2
    ok "$TOPCOW" convert -O qcow2 "$img" out.qcow2
    ok qemu-img compare -f vpc -F qcow2 "$img" out.qcow2
done

# The small one also byte for byte through raw.
img=$(corpus_unpack d2v-zerofilled.vhd)
ok qemu-img convert -O raw "$img" q.raw
ok "$TOPCOW" convert -O raw "$img" t.raw
[ "$(sha q.raw)" = "$(sha t.raw)" ] || fail "d2v-zerofilled.vhd: raw conversion differs"
rm -f q.raw t.raw

# afl5.img: a dynamic header whose table would need 4 GiB of entries.
img=$(corpus_unpack afl5.img)
must_fail "$TOPCOW" info "$img"
[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "afl5.img: not one line: $ERR"
case $ERR in *"$img"*"Max Table Entries too large (1073741825)"*) ;; *) fail "afl5.img: $ERR" ;; esac
must_fail "$TOPCOW" convert -O raw "$img" afl.raw
case $ERR in *"Max Table Entries too large"*) ;; *) fail "afl5.img convert: $ERR" ;; esac
[ ! -e afl.raw ] || fail "a failed convert left its output behind"
exit 0
