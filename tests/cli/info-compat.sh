#!/bin/bash
# `topcow info` prints what qemu-img info prints, human and JSON, for qcow2
# images of every kind qemu-img makes (v2/v3, cluster sizes, refcount widths,
# extended L2, lazy refcounts, zstd, data files, dirty, marked corrupt) and
# for raw files.  Only the allocated size of the file may differ.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io python3
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

make_images
cp plain.qcow2 corrupt.qcow2
poke incompat corrupt.qcow2 2 # the "corrupt" bit
for f in "${IMAGES[@]}" corrupt.qcow2; do
    compare info "$f"
    compare info --output=json "$f"
    compare info --output=human -U "$f"
done
# The format named with -f is used as is.
compare info -f raw --output=json plain.qcow2
compare info -f qcow2 lazy.qcow2
# `--output json` as two words, and --force-share spelled out.
compare info --output json --force-share v2.qcow2
# The allocated size is the image file's: with nothing writing, both tools
# see the same st_blocks, so here the outputs are compared unfiltered.
for f in plain.qcow2 holes.raw comp.qcow2; do
    want=$(($(stat -c %b "$f") * $(stat -c %B "$f")))
    "$TOPCOW" info --output=json "$f" | grep -q "\"actual-size\": $want," || fail "$f: actual-size"
    "$TOPCOW" info "$f" >t.out
    qemu-img info "$f" >q.out
    cmp -s t.out q.out || { diff -u q.out t.out >&2 || true; fail "$f: disk size"; }
done
# The dirty flag shows up in both outputs.
"$TOPCOW" info dirty.qcow2 | grep -qx "cleanly shut down: no" || fail "dirty image not shown dirty"
"$TOPCOW" info --output=json dirty.qcow2 | grep -q '"dirty-flag": true' || fail "dirty-flag"
echo "ok: $COMPARED comparisons"
