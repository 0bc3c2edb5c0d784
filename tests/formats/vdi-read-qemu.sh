#!/bin/bash
# SPDX-License-Identifier: MIT
# VDI images qemu-img makes (dynamic and static, from a source with data,
# written zeros and holes, and empty ones) read through topcow as through
# qemu-img: the same raw bytes, the same allocation map, and info agrees
# with qemu-img info on format, virtual size and cluster size.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# 13 MiB + 1.5 KiB: data crossing block boundaries, unaligned data, written
# zeros, whole empty blocks, and a partial last block with data in it.
ok qemu-img create -f qcow2 src.qcow2 $((13 * 1024 * 1024 + 1536))
ok qemu-io -f qcow2 \
    -c 'write -P 0x11 0 1536k' -c 'write -P 0x22 3000000 70000' -c 'write -z 4M 1M' \
    -c 'write -P 0 6M 1M' -c 'write -P 0x33 8M 4k' -c 'write -P 0x44 9437184 1048576' \
    -c 'write -P 0x55 13M 1536' src.qcow2

# Compare topcow's reading of $1 with qemu-img's.
same_as_qemu() {
    local img=$1
    rm -f q.raw t.raw
    ok qemu-img convert -O raw "$img" q.raw
    ok "$TOPCOW" convert -O raw "$img" t.raw
    [ "$(sha q.raw)" = "$(sha t.raw)" ] || fail "$img: topcow reads other bytes than qemu-img"
    # Plain reads of every byte (convert skips what block status calls zero).
    rm -f dd.raw
    ok "$TOPCOW" dd -f vdi -O raw bs=64k if="$img" of=dd.raw
    [ "$(sha q.raw)" = "$(sha dd.raw)" ] || fail "$img: topcow dd reads other bytes than qemu-img"
    # The same extents in qemu-img map's JSON (present, zero, data, offset).
    qemu-img map --output=json "$img" > q.map || fail "qemu-img map $img"
    "$TOPCOW" map --output=json "$img" > t.map || fail "topcow map $img"
    cmp -s q.map t.map || { diff q.map t.map >&2; fail "$img: map differs from qemu-img's"; }
    # info: format, virtual size and cluster size as qemu-img reports them.
    for key in format virtual-size cluster-size; do
        q=$(qemu-img info --output=json "$img" | grep "\"$key\"")
        t=$("$TOPCOW" info --output=json "$img" | grep "\"$key\"")
        [ -n "$q" ] && [ "${q%,}" = "${t%,}" ] || fail "$img: info $key: qemu '$q', topcow '$t'"
    done
    for key in "file format" "virtual size" "cluster_size"; do
        q=$(qemu-img info "$img" | grep "^$key:")
        t=$("$TOPCOW" info "$img" | grep "^$key:")
        [ -n "$q" ] && [ "$q" = "$t" ] || fail "$img: info '$key': qemu '$q', topcow '$t'"
    done
    # Probed as vdi.
    case $("$TOPCOW" info "$img") in *"file format: vdi"*) ;; *) fail "$img not probed as vdi" ;; esac
}

ok qemu-img convert -O vdi src.qcow2 dynamic.vdi
same_as_qemu dynamic.vdi
ok qemu-img convert -O vdi -o static=on src.qcow2 static.vdi
same_as_qemu static.vdi
# Holes stay holes: topcow's conversion of the dynamic image to qcow2 maps
# the same ranges as data as qemu-img's conversion does.
ok qemu-img convert -O qcow2 dynamic.vdi q.qcow2
ok "$TOPCOW" convert -O qcow2 dynamic.vdi t.qcow2
qemu-img map --output=json q.qcow2 | sed 's/, "offset": [0-9]*//' > q.map
qemu-img map --output=json t.qcow2 | sed 's/, "offset": [0-9]*//' > t.map
cmp -s q.map t.map || { diff q.map t.map >&2; fail "vdi->qcow2 allocation differs from qemu-img's"; }

ok qemu-img create -f vdi empty.vdi 5M
same_as_qemu empty.vdi
ok qemu-img create -f vdi -o static=on empty-static.vdi 3000
same_as_qemu empty-static.vdi
ok qemu-img create -f vdi -o static=on,preallocation=falloc falloc.vdi 2M
same_as_qemu falloc.vdi

# Data written by qemu-io into a dynamic image (blocks allocated out of
# guest order) reads back the same.
ok qemu-img create -f vdi written.vdi 6M
ok qemu-io -f vdi -c 'write -P 0x66 5M 4k' -c 'write -P 0x77 1M 1M' -c 'write -P 0x88 100 3' \
    written.vdi
same_as_qemu written.vdi
echo PASS
