#!/bin/bash
# SPDX-License-Identifier: MIT
# Differencing VHDs: qemu-img 7.2 can neither create them nor follow their
# parent, so the children come from tests/formats/vhd-mkdiff.py (written from
# the specification) and the expected contents from qemu-img and qemu-io: the
# parent converted to raw by qemu-img, then the child's sectors written over
# it with qemu-io.  topcow must read the chain (parent where the child's
# bitmap says "not present", even when the child's block holds other bytes
# there), find the parent through each kind of locator, and write into the
# child (allocating blocks filled from the parent) with the parent unchanged.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
mkdiff() { "$PY" "$TOPCOW_SRCDIR/tests/formats/vhd-mkdiff.py" "$@"; }

# The parent: a qemu-img dynamic VHD of 20 MiB (10 blocks) with data,
# written zeros and untouched blocks.
ok qemu-img create -f vpc parent.vhd 20M
ok qemu-io -f vpc -c 'write -P 0x11 0 3M' -c 'write -P 0x22 6M 1M' -c 'write -z 6M 64k' \
    -c 'write -P 0x33 12345600 700000' parent.vhd
ok qemu-img convert -f vpc -O raw parent.vhd expect.raw

# The child's sectors: whole blocks, partial blocks crossing a block edge,
# single sectors, over parent data and over parent holes, and the last
# sector of the disk.
size=$(qemu-img info --output=json -f vpc parent.vhd | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
last=$((size - 512))
writes="0:4096:0xa1 2097152:2097152:0xa2 4194304:512:0xa3 4195328:1024:0xa4
6291456:1048576:0xa5 8388096:1024:0xa6 16777216:65536:0xa7 $last:512:0xa8"
for w in $writes; do
    IFS=: read -r off len byte <<<"$w"
    ok qemu-io -f raw -c "write -P $byte $off $len" expect.raw
done
ref=$(sha expect.raw)

check_child() { # CHILD WHAT: topcow reads CHILD (through its parent) as expect.raw
    rm -f out.raw
    ok "$TOPCOW" convert -f vpc -O raw "$1" out.raw
    [ "$(sha out.raw)" = "$ref" ] || fail "$2: the chain does not read as expected"
}

# Locators: the relative Windows path; a stale absolute path next to it
# (the relative one wins); a Mac file URL; none (the parent's name beside the
# child); an absolute path that does not exist here (the name is used).
mkdiff parent.vhd child.vhd --garbage $writes
check_child child.vhd "W2ru locator"
info=$("$TOPCOW" info child.vhd)
case $info in *"file format: vpc"*"backing file: parent.vhd"*) ;; *) fail "info: $info" ;; esac
mkdiff parent.vhd c2.vhd --locators 'W2ku=D:\\old\\parent.vhd,W2ru=.\\parent.vhd' $writes
check_child c2.vhd "W2ku+W2ru locators"
mkdiff parent.vhd c3.vhd --locators "MacX=file://localhost$SCRATCH/parent.vhd" $writes
check_child c3.vhd "MacX locator"
mkdiff parent.vhd c4.vhd --locators '' $writes
check_child c4.vhd "parent name only"
mkdiff parent.vhd c5.vhd --locators 'W2ku=C:\\VMs\\parent.vhd' $writes
check_child c5.vhd "absolute locator missing here"
# In a subdirectory, relative to the child, with 512 KiB blocks.
mkdir sub
mkdiff parent.vhd sub/c6.vhd --block-size 524288 --locators 'W2ru=..\\parent.vhd' $writes
check_child sub/c6.vhd "relative locator to the parent directory"

# A chain of three: a differencing child of the differencing child.
mkdiff child.vhd grand.vhd 1048576:512:0xb1 4194304:1048576:0xb2
ok qemu-io -f raw -c 'write -P 0xb1 1048576 512' -c 'write -P 0xb2 4194304 1048576' expect.raw
ref=$(sha expect.raw)
check_child grand.vhd "chain of three"
# Without the chain, the child's own sectors only (zeros elsewhere).
out=$("$TOPCOW" map --output=json grand.vhd)
case $out in *'"depth": 2'*) ;; *) fail "map does not reach the grandparent: $out" ;; esac

# A missing parent is an error naming it.
mkdiff parent.vhd orphan.vhd --locators 'W2ru=.\\gone.vhd' --parent-name gone.vhd 0:512:1
must_fail "$TOPCOW" convert -O raw orphan.vhd x.raw
case $ERR in *gone.vhd*) ;; *) fail "missing parent error: $ERR" ;; esac

# Writes into the child: a new block (filled from the parent), a block
# with some sectors present, unaligned bytes; the parent must not change.
psha=$(sha parent.vhd)
cmds=(-c 'write -P 0xc1 9437184 4096' -c 'write -P 0xc2 4194816 700' -c 'write -P 0xc3 8388000 300'
      -c 'write -z 2097152 4096')
ok "$TOPCOW" io -f vpc "${cmds[@]}" grand.vhd
ok qemu-io -f raw "${cmds[@]}" expect.raw
ref=$(sha expect.raw)
check_child grand.vhd "writes into a differencing disk"
[ "$(sha parent.vhd)" = "$psha" ] || fail "writing the child changed the parent"
exit 0
