#!/bin/bash
# SPDX-License-Identifier: MIT
# VDI images topcow writes (create -f vdi, convert -O vdi, writes through
# topcow io) pass qemu-img check and read through qemu-img as the data
# written; holes and zeros are never allocated; create's Formatting line and
# -o help are qemu-img's.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# The Formatting line and the options, as qemu-img prints them for vdi
# (qemu-img also lists the file protocol's options, which topcow has not).
for args in "5M" "-o static=on 3000" "-o static=off,preallocation=falloc 2M" \
    "-o static=on,preallocation=full 1M"; do
    rm -f q.vdi t.vdi
    size=${args##* } opts=${args% *}
    [ "$opts" != "$args" ] || opts=
    q=$(qemu-img create -f vdi $opts q.vdi $size | sed 's/q\.vdi/X/')
    t=$("$TOPCOW" create -f vdi $opts t.vdi $size | sed 's/t\.vdi/X/')
    [ "$q" = "$t" ] || fail "Formatting line for '$args': qemu '$q', topcow '$t'"
    qemu_check_clean t.vdi
    q=$(qemu-img info --output=json q.vdi | grep -E '"(virtual-size|cluster-size|format)"')
    t=$(qemu-img info --output=json t.vdi | grep -E '"(virtual-size|cluster-size|format)"')
    [ "$q" = "$t" ] || fail "created image for '$args': qemu '$q', topcow '$t'"
    ok qemu-img compare q.vdi t.vdi
done
q=$(qemu-img create -f vdi -o help x.vdi | grep -v -e extent_size_hint -e nocow)
t=$("$TOPCOW" create -f vdi -o help x.vdi)
[ "$q" = "$t" ] || fail "-o help: qemu '$q', topcow '$t'"
must_fail "$TOPCOW" create -f vdi -o static=maybe x.vdi 1M
must_fail "$TOPCOW" create -f vdi -o cluster_size=64k x.vdi 1M
must_fail "$TOPCOW" create -f vdi -b base.qcow2 -F qcow2 x.vdi 1M

# A source with data across block boundaries, unaligned data, zeros written
# as data and as zero clusters, holes, and a partial last block.
ok qemu-img create -f qcow2 src.qcow2 $((13 * 1024 * 1024 + 1536))
ok qemu-io -f qcow2 \
    -c 'write -P 0x11 0 1536k' -c 'write -P 0x22 3000000 70000' -c 'write -z 4M 1M' \
    -c 'write -P 0 6M 1M' -c 'write -P 0x33 8M 4k' -c 'write -P 0x44 9437184 1048576' \
    -c 'write -P 0x55 13M 1536' src.qcow2
ok qemu-img convert -O raw src.qcow2 ref.raw

# The ranges qemu-img map shows of $1 as present and as data, merged: which
# blocks are allocated, whatever their place in the file (and whatever
# holes the file has inside them).
alloc_map() {
    qemu-img map --output=json "$1" | /usr/bin/python3 -c '
import json, sys
runs = []
for e in json.load(sys.stdin):
    key = (e["present"], e["data"])
    if runs and runs[-1][2] == key:
        runs[-1][1] += e["length"]
    else:
        runs.append([e["start"], e["length"], key])
for r in runs:
    print(*r)'
}

for static in off on; do
    for opts in "" "-W" "-m 1" "-S 0" "-t none -W"; do
        rm -f t.vdi q.vdi
        ok "$TOPCOW" convert $opts -O vdi -o static=$static src.qcow2 t.vdi
        qemu_check_clean t.vdi
        ok qemu-img compare -f raw -F vdi ref.raw t.vdi
        # Which blocks are allocated: as in qemu-img's own conversion.
        ok qemu-img convert $opts -O vdi -o static=$static src.qcow2 q.vdi
        alloc_map q.vdi > q.map
        alloc_map t.vdi > t.map
        cmp -s q.map t.map || { diff q.map t.map >&2; fail "static=$static '$opts': map"; }
        # (O_DIRECT writes round the file up to whole 4 KiB pages.)
        slack=0
        [ "$opts" = "-t none -W" ] && slack=4095
        [ $(stat -c %s t.vdi) -le $(($(stat -c %s q.vdi) + slack)) ] ||
            fail "static=$static '$opts': output larger than qemu-img's"
    done
done
# Sparse: only blocks with non-zero data take room in the file (1 KiB of
# header and block map, then 1 MiB per block).
ok "$TOPCOW" convert -O vdi src.qcow2 sparse.vdi
nonzero=$(/usr/bin/python3 -c '
import sys
d = open("ref.raw", "rb").read()
B = 1 << 20
print(sum(1 for i in range(0, len(d), B) if d[i:i + B].strip(b"\0")))')
[ "$(stat -c %s sparse.vdi)" = $((1024 + nonzero * 1048576)) ] ||
    fail "sparse.vdi: $(stat -c %s sparse.vdi) bytes for $nonzero blocks with data"

# Writes through topcow io into a new dynamic image and into a static one:
# partial blocks, whole blocks, writes across blocks, zeroing allocated and
# free ranges; qemu-io does the same on a raw reference, except the last
# command: discard is advisory, and VDI (as in qemu) keeps the data.
cmds=(-c 'write -P 0xa1 5M 4k' -c 'write -P 0xa2 1M 1M' -c 'write -P 0xa3 100 3'
      -c 'write -P 0xa4 2096640 1024' -c 'write -z 1M 4k' -c 'write -z 3M 1M'
      -c 'write -P 0xa5 6M 512' -c 'write -z 6M 256' -c 'write -P 0xa6 7M 64k'
      -c 'write -P 0xa7 7340032 1M' -c 'discard 7M 1M')
ok qemu-img create -f raw ref2.raw 9M
ok qemu-io -f raw "${cmds[@]::20}" ref2.raw
for static in off on; do
    rm -f w.vdi
    ok "$TOPCOW" create -f vdi -o static=$static w.vdi 9M
    ok "$TOPCOW" io -f vdi "${cmds[@]}" w.vdi
    qemu_check_clean w.vdi
    ok qemu-img compare -f raw -F vdi ref2.raw w.vdi
    # Reopened by topcow, the same again.
    ok "$TOPCOW" convert -O raw w.vdi back.raw
    cmp -s back.raw ref2.raw || fail "static=$static: topcow reads back other data"
done
# Writes into an image qemu-img made, then qemu-io writes more into it.
ok qemu-img convert -O vdi src.qcow2 mixed.vdi
ok "$TOPCOW" io -f vdi -c 'write -P 0xb1 12M 8k' -c 'write -P 0xb2 1500k 100k' mixed.vdi
ok qemu-io -f vdi -c 'write -P 0xb3 10M 4k' mixed.vdi
ok qemu-io -f raw -c 'write -P 0xb1 12M 8k' -c 'write -P 0xb2 1500k 100k' \
    -c 'write -P 0xb3 10M 4k' ref.raw
qemu_check_clean mixed.vdi
ok qemu-img compare -f raw -F vdi ref.raw mixed.vdi
echo PASS
