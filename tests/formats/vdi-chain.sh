#!/bin/bash
# SPDX-License-Identifier: MIT
# VirtualBox differencing VDI chains (3 levels, made by make-vdi-chain.py
# from the format description, which also computes what each level reads
# as).  qemu-img refuses differencing VDIs, so the generator's expected
# contents are the oracle, and qemu-img judges topcow's qcow2 outputs:
# - the top converts to one flattened qcow2 reading as VirtualBox would;
# - --keep-chain gives a 3-layer qcow2 chain whose every layer, opened by
#   qemu-img with its backing chain, reads as the corresponding VDI level,
#   passes qemu-img check and shows its backing file in qemu-img info;
# - a missing parent is an error naming its UUID;
# - writes into a differencing image copy the rest of the block from the
#   parent.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img
cd "$SCRATCH"

/usr/bin/python3 "$TOPCOW_SRCDIR/tests/formats/make-vdi-chain.py" gen > levels ||
    fail "make-vdi-chain.py"
declare -a img exp
while read -r level path expect; do
    img[$level]=$path
    exp[$level]=$expect
done < levels
[ ${#img[@]} = 3 ] || fail "generator made ${#img[@]} levels"
top=${img[2]}

# Every level reads as expected through topcow (levels 1 and 2 find their
# parents by UUID: in the directory above, and in their own).
for l in 0 1 2; do
    rm -f out.raw
    ok "$TOPCOW" convert -O raw "${img[$l]}" out.raw
    cmp -s out.raw "${exp[$l]}" || fail "level $l reads other data than expected"
    # The same through plain reads (convert skips what block status calls zero).
    rm -f dd.raw
    ok "$TOPCOW" dd -f vdi -O raw bs=1M if="${img[$l]}" of=dd.raw
    cmp -s dd.raw "${exp[$l]}" || fail "level $l reads other data than expected (dd)"
done
info=$("$TOPCOW" info "${img[1]}")
case $info in *"backing file: ../base.vdi"*"backing file format: vdi"*) ;;
    *) fail "level 1 info: $info" ;; esac
# The base is a plain dynamic image qemu-img reads too.
ok qemu-img compare -f vdi -F raw "${img[0]}" "${exp[0]}"

# Flattened: one qcow2 image with no backing file.
ok "$TOPCOW" convert -O qcow2 "$top" flat.qcow2
qemu_check_clean flat.qcow2
ok qemu-img compare -f qcow2 -F raw flat.qcow2 "${exp[2]}"
case $(qemu-img info flat.qcow2) in *"backing file"*) fail "flat.qcow2 has a backing file" ;; esac

# --keep-chain: out.qcow2 (level 2) -> out.1.qcow2 (level 1) -> out.2.qcow2 (base).
ok "$TOPCOW" convert --keep-chain -O qcow2 "$top" out.qcow2
names=(out.2.qcow2 out.1.qcow2 out.qcow2) # by level
for l in 0 1 2; do
    qemu_check_clean "${names[$l]}"
    ok qemu-img compare -f qcow2 -F raw "${names[$l]}" "${exp[$l]}"
done
chain=$(qemu-img info --backing-chain out.qcow2)
case $chain in
    *"image: out.qcow2"*"backing file: out.1.qcow2"*"backing file format: qcow2"*"image: out.1.qcow2"*"backing file: out.2.qcow2"*"image: out.2.qcow2"*) ;;
    *) fail "qemu-img info --backing-chain: $chain" ;;
esac
case $(qemu-img info out.2.qcow2) in *"backing file"*) fail "the base has a backing file" ;; esac
# Each layer holds only what its VDI level defines: the data blocks of the
# level ('D' in the generator's layout), and zero clusters for its zero
# blocks (which read as zeros over a parent's data).
layout=$(/usr/bin/python3 -c '
import importlib.util, sys
spec = importlib.util.spec_from_file_location("g", sys.argv[1])
g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g)
print(" ".join(g.LAYOUT))' "$TOPCOW_SRCDIR/tests/formats/make-vdi-chain.py")
read -r -a layout <<< "$layout"
for l in 0 1 2; do
    got=$(qemu-img map --output=json "${names[$l]}" | /usr/bin/python3 -c '
import json, sys
B = 1 << 20
state = {}
for e in json.load(sys.stdin):
    if e["depth"] != 0 or not e["present"]:
        continue
    for b in range(e["start"] // B, (e["start"] + e["length"] + B - 1) // B):
        state[b] = "D" if e["data"] else "Z"
print("".join(state.get(b, ".") for b in range(8)))')
    want=${layout[$l]}
    # The base reads its free blocks as zeros: qemu-img shows them absent.
    [ "$l" = 0 ] && want=${want//Z/.}
    [ "$got" = "$want" ] || fail "layer $l (${names[$l]}) holds '$got', the VDI level '$want'"
done
# A qcow2 chain converts layer by layer too, and the naming rule holds for
# names without an extension.
ok "$TOPCOW" convert --keep-chain -O qcow2 out.qcow2 again
for l in 0 1 2; do
    n=(again.2 again.1 again)
    qemu_check_clean "${n[$l]}"
    ok qemu-img compare -f qcow2 -F raw "${n[$l]}" "${exp[$l]}"
done
must_fail "$TOPCOW" convert --keep-chain -O raw "$top" out.raw
# An output layer's name that is a source layer is refused, nothing written.
before=$(sha out.qcow2)
must_fail "$TOPCOW" convert --keep-chain -O qcow2 out.1.qcow2 out.qcow2
[ "$(sha out.qcow2)" = "$before" ] || fail "--keep-chain overwrote a source layer"
must_fail "$TOPCOW" convert --keep-chain -O qcow2 "$top" "${img[0]}" two.qcow2

# A missing parent: a clear error naming the UUID the child looks for.
mkdir lone
cp "${img[1]}" lone/child.vdi
link=$(basename "${img[0]}")
must_fail "$TOPCOW" info --backing-chain lone/child.vdi
uuid=$(/usr/bin/python3 -c '
import sys, uuid
h = open(sys.argv[1], "rb").read(0x1b8)
print(uuid.UUID(bytes_le=h[0x1a8:0x1b8]))' lone/child.vdi)
case $ERR in *"$uuid"*) ;; *) fail "missing parent error does not name {$uuid}: $ERR" ;; esac
must_fail "$TOPCOW" convert -O raw lone/child.vdi lone.raw
case $ERR in *"$uuid"*) ;; *) fail "missing parent error does not name {$uuid}: $ERR" ;; esac

# Writes into the top differencing image: a partial block over a free block
# copies the rest from the parent; a whole block zeroed over parent data
# becomes a zero block; the parents do not change.
cp -r gen gen2
top2=${top/gen/gen2}
ok "$TOPCOW" io -f vdi -c 'write -P 0xc1 1052672 4096' -c 'write -z 7M 512k' \
    -c 'write -z 3M 4k' -c 'write -P 0xc2 100 10' "$top2"
cp "${exp[2]}" want.raw
ok qemu-io -f raw -c 'write -P 0xc1 1052672 4096' -c 'write -z 7M 512k' \
    -c 'write -z 3M 4k' -c 'write -P 0xc2 100 10' want.raw
ok "$TOPCOW" convert -O raw "$top2" got.raw
cmp -s got.raw want.raw || fail "writes into the differencing image read back wrong"
for l in 0 1; do
    ok "$TOPCOW" convert -O raw "${img[$l]/gen/gen2}" parent.raw
    cmp -s parent.raw "${exp[$l]}" || fail "a write into the top changed level $l"
done
echo PASS
