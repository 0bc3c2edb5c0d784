#!/bin/bash
# SPDX-License-Identifier: MIT
# The threaded paths of the command line, meant for a ThreadSanitizer build
# (suite 'tsan' in build-tsan; see meson.build here): the parallel copy
# engine of convert (-m 8, in order and out of order with -W, compressing
# and decompressing), sliced LUKS transfers, compare's
# parallel readers, and the chain copy engine of commit and rebase.  Every
# result is checked against qemu-img.  A data race makes the command exit 66
# with a ThreadSanitizer report, which fails the test; so does a wrong copy.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1}
cd "$SCRATCH"

# A run of the command must succeed without a ThreadSanitizer report.
tc() {
    if ! "$TOPCOW" "$@" >out.txt 2>err.txt || grep -q ThreadSanitizer err.txt; then
        cat out.txt err.txt >&2
        fail "topcow $*"
    fi
}
same() {
    out=$(qemu-img compare "$1" "$2" 2>&1) || { echo "$out" >&2; fail "$1 and $2 differ"; }
}

# 24 MiB with data in 64 KiB..1 MiB extents, holes and zeros between them,
# so that the copy engine's units race over allocation in the target.
cmds=()
for i in $(seq 0 47); do
    off=$((i * 512 + (i % 7) * 13))k
    case $((i % 4)) in
    0 | 1) cmds+=(-c "write -P $((i + 1)) $off $(((i % 5 + 1) * 64))k") ;;
    2) cmds+=(-c "write -z $off 128k") ;;
    3) ;;
    esac
done
qemu-img create -q -f qcow2 -o cluster_size=65536 src.qcow2 24M
qemu-io -f qcow2 "${cmds[@]}" src.qcow2 >/dev/null

tc convert -m 8 -W -O qcow2 src.qcow2 unordered.qcow2
same src.qcow2 unordered.qcow2
tc convert -m 8 -O qcow2 -o cluster_size=4096 src.qcow2 ordered.qcow2
same src.qcow2 ordered.qcow2
tc convert -m 8 -W -O raw src.qcow2 out.raw
same src.qcow2 out.raw
tc compare src.qcow2 ordered.qcow2
tc compare src.qcow2 unordered.qcow2

# Compressed output: the readers compress in parallel and the writer packs
# the streams; a compressed source is decompressed by parallel readers.
tc convert -m 8 -W -c -O qcow2 -o compression_type=zstd src.qcow2 comp.qcow2
same src.qcow2 comp.qcow2
tc convert -m 8 -c -O qcow2 comp.qcow2 comp2.qcow2
same src.qcow2 comp2.qcow2
tc convert -m 8 -W -O raw comp.qcow2 comp.raw
same src.qcow2 comp.raw

# LUKS: large transfers are cut into slices run on several threads.
printf 'tsan-passphrase' >pass
enc="driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s"
tc convert --object secret,id=s,file=pass -m 8 -O qcow2 \
    -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10 src.qcow2 enc.qcow2
tc io --object secret,id=s,file=pass --image-opts "$enc" -c 'write -P 0x5 0 24M' -c 'read -P 0x5 0 24M'
out=$(qemu-io --object secret,id=s,file=pass --image-opts "$enc" -c 'read -P 0x5 0 24M' 2>&1) ||
    { echo "$out" >&2; fail "the LUKS image does not read back in qemu-io"; }

# commit: an overlay's data goes down into its backing file.
cp src.qcow2 base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c 'write -P 0xa1 1m 3m' -c 'write -z 8m 2m' -c 'write -P 0xa2 20m 1m' \
    top.qcow2 >/dev/null
qemu-img convert -O raw top.qcow2 expect.raw
tc commit -d top.qcow2
same base.qcow2 expect.raw

# rebase (safe mode): the overlay keeps its contents on a new backing file.
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2
qemu-io -f qcow2 -c 'write -P 0xb1 5m 2m' over.qcow2 >/dev/null
qemu-img convert -O raw over.qcow2 expect2.raw
tc rebase -b src.qcow2 -F qcow2 over.qcow2
same over.qcow2 expect2.raw
