#!/bin/bash
# SPDX-License-Identifier: MIT
# VHDX images qemu-img 7.2 cannot make or read, crafted from the [MS-VHDX]
# specification by vhdx-gen.py together with the raw contents they must
# read as: 4096-byte logical sectors, differencing images (parent found by
# relative path, then absolute path; sector bitmaps), and a pending log
# (judged by qemu-img check -r all, which replays it).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
GEN="/usr/bin/python3 $TOPCOW_SRCDIR/tests/formats/vhdx-gen.py"
[ -x /usr/bin/python3 ] || { echo "SKIP: /usr/bin/python3 not installed" >&2; exit 77; }
cd "$SCRATCH"

# 4096-byte logical sectors, every payload block state.
ok $GEN sectors4k s4k.vhdx s4k.expected
ok "$TOPCOW" convert -O raw s4k.vhdx s4k.raw
[ "$(sha s4k.raw)" = "$(sha s4k.expected)" ] || fail "4K-sector image reads wrong"
ok "$TOPCOW" convert -O qcow2 s4k.vhdx s4k.qcow2
ok qemu-img compare -f raw s4k.expected s4k.qcow2

# A differencing image over a qemu-made parent with 1 MiB blocks; the
# child's blocks cycle through not present, fully present, partially
# present and zero.
mkdir sub
ok qemu-img create -f raw p.raw 8M
ok qemu-io -f raw -c 'write -P 0x5a 0 3M' -c 'write -P 0x77 5M 2M' p.raw
ok qemu-img convert -O vhdx -o block_size=1M p.raw sub/parent.vhdx
ok qemu-img convert -O raw sub/parent.vhdx parent.raw
ok $GEN diff sub/child.vhdx child.expected parent.raw parent.vhdx
ok "$TOPCOW" convert -O raw sub/child.vhdx child.raw
[ "$(sha child.raw)" = "$(sha child.expected)" ] || fail "differencing image reads wrong"
out=$("$TOPCOW" info sub/child.vhdx)
case $out in *"backing file: ./parent.vhdx (actual path: sub/./parent.vhdx)"*"backing file format: vhdx"*) ;;
    *) fail "differencing info: $out" ;; esac
# Through the chain, block status keeps the layers apart: the child's own
# data, the parent's, zeros.
ok "$TOPCOW" convert -O qcow2 sub/child.vhdx child.qcow2
ok qemu-img compare -f raw child.expected child.qcow2
ok "$TOPCOW" map sub/child.vhdx
map=$("$TOPCOW" map --output=json sub/child.vhdx)
case $map in *'"depth": 1'*'"depth": 0'*) ;; *) fail "map shows no layers: $map" ;; esac
# Writes to a differencing image are refused; reads go on.
must_fail "$TOPCOW" io -f vhdx -c 'write 0 512' sub/child.vhdx
# The relative path missing, the absolute one is used.
ok $GEN diff abs-child.vhdx abs.expected parent.raw nowhere/parent.vhdx \
    --absolute "$SCRATCH/sub/parent.vhdx"
ok "$TOPCOW" convert -O raw abs-child.vhdx abs.raw
[ "$(sha abs.raw)" = "$(sha abs.expected)" ] || fail "parent by absolute path reads wrong"
# Neither there: a clear error naming the parent.
ok $GEN diff lost.vhdx lost.expected parent.raw nowhere/parent.vhdx
must_fail "$TOPCOW" convert -O raw lost.vhdx lost.raw
case $ERR in *nowhere/parent.vhdx*) ;; *) fail "missing parent: $ERR" ;; esac

# A pending log of two entries (new data, zeros, a BAT sector allocating a
# block).  Read-only, topcow reads what qemu-img reads after its own
# replay, and leaves the file alone; read-write, it replays into the file.
ok qemu-img convert -O vhdx -o block_size=1M p.raw log.vhdx
ok $GEN addlog log.vhdx
cp log.vhdx replayed.vhdx
ok qemu-img check -r all replayed.vhdx
ok qemu-img convert -O raw replayed.vhdx replayed.raw
cmp -s replayed.raw parent.raw && fail "the crafted log changes nothing"
before=$(sha log.vhdx)
ok "$TOPCOW" convert -O raw log.vhdx log.raw
[ "$(sha log.raw)" = "$(sha replayed.raw)" ] || fail "read-only log replay reads wrong"
[ "$(sha log.vhdx)" = "$before" ] || fail "read-only open changed the image"
cp log.vhdx rw.vhdx
ok "$TOPCOW" io -c 'read 0 512' rw.vhdx
qemu_check_clean rw.vhdx
ok qemu-img compare replayed.vhdx rw.vhdx
# Writes after the replay land on the replayed image.
ok "$TOPCOW" io -c 'write -P 0x99 0 64k' rw.vhdx
ok qemu-io -c 'write -P 0x99 0 64k' replayed.vhdx
qemu_check_clean rw.vhdx
ok qemu-img compare replayed.vhdx rw.vhdx
exit 0
