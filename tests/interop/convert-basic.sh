#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow convert between raw and qcow2 with varied -o options and transfer
# options, qemu-img as the oracle: raw outputs are byte-identical to
# qemu-img convert's, qcow2 outputs pass qemu-img check and compare identical
# to the source.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# A 24 MiB qcow2 with data at unaligned offsets, runs that cross the 1 MiB
# work units, written zeros, zero and discarded clusters, compressed
# clusters and data in the last cluster.
ok qemu-img create -f qcow2 src.qcow2 24M
ok qemu-io -f qcow2 \
    -c 'write -P 0x11 0 3M' -c 'write -z 1M 128k' -c 'discard 2M 64k' \
    -c 'write -c -P 0x22 5M 128k' -c 'write -P 0 8M 2M' -c 'write -P 0x33 8490000 5000' \
    -c 'write -P 0x44 12345678 1000000' -c 'write -P 0x55 16252928 1048576' \
    -c 'write -P 0x66 25161728 4096' src.qcow2
ok qemu-img convert -O raw src.qcow2 ref.raw
ref=$(sha ref.raw)

# qcow2 -> raw, with the transfer options that change the order of work.
for opts in "" "-W" "-m 1" "-m 16 -W" "-m 3" "-S 64k" "-S 0" "-t writeback" "-T none"; do
    rm -f out.raw
    ok "$TOPCOW" convert $opts -O raw src.qcow2 out.raw
    [ "$(sha out.raw)" = "$ref" ] || fail "qcow2->raw with '$opts' differs from qemu-img's output"
done
# -O raw is the default output format.
ok "$TOPCOW" convert -f qcow2 src.qcow2 default.raw
[ "$(sha default.raw)" = "$ref" ] || fail "default output format is not raw"

# raw -> qcow2 with varied creation options; then back to raw.
for o in "" "cluster_size=4096" "cluster_size=2M" "cluster_size=512" "compat=0.10" \
    "extended_l2=on" "extended_l2=on,cluster_size=128k" "refcount_bits=1" \
    "lazy_refcounts=on,refcount_bits=64" "compression_type=zstd" \
    "preallocation=metadata" "preallocation=falloc" "preallocation=full"; do
    for opts in "" "-W" "-m 1"; do
        rm -f out.qcow2 back.raw
        ok "$TOPCOW" convert $opts -f raw -O qcow2 ${o:+-o "$o"} ref.raw out.qcow2
        qemu_check_clean out.qcow2
        ok qemu-img compare -f raw -F qcow2 ref.raw out.qcow2
        ok "$TOPCOW" convert -O raw out.qcow2 back.raw
        [ "$(sha back.raw)" = "$ref" ] || fail "round trip through qcow2 ($o, $opts) changed data"
    done
done
out=$(qemu-img info out.qcow2)
case $out in *"virtual size: 24 MiB"*) ;; *) fail "output size: $out" ;; esac

# The creation options really reach the image.
rm -f out.qcow2
ok "$TOPCOW" convert -O qcow2 -o cluster_size=4k,compat=0.10,refcount_bits=16 src.qcow2 out.qcow2
out=$(qemu-img info out.qcow2)
case $out in *"cluster_size: 4096"*"compat: 0.10"*) ;; *) fail "options not applied: $out" ;; esac

# qcow2 -> qcow2 and raw -> raw.
rm -f out.qcow2 out.raw
ok "$TOPCOW" convert -O qcow2 src.qcow2 out.qcow2
qemu_check_clean out.qcow2
ok qemu-img compare src.qcow2 out.qcow2
ok "$TOPCOW" convert -f raw -O raw ref.raw out.raw
[ "$(sha out.raw)" = "$ref" ] || fail "raw->raw differs"

# Data written into a qcow2 output lands in as few host clusters as the
# source has data (zeros and holes are not allocated), like qemu-img's.
ok qemu-img convert -O qcow2 src.qcow2 qemu.qcow2
t=$(qemu-img check --output=json out.qcow2 | sed -n 's/.*"allocated-clusters": \([0-9]*\).*/\1/p')
q=$(qemu-img check --output=json qemu.qcow2 | sed -n 's/.*"allocated-clusters": \([0-9]*\).*/\1/p')
[ "$t" = "$q" ] || fail "topcow allocated $t clusters, qemu-img $q"

# Without -W the layout is deterministic: the same file every time, with the
# data in guest order (host offsets grow with guest offsets).
rm -f o1.qcow2 o2.qcow2
ok "$TOPCOW" convert -f raw -O qcow2 ref.raw o1.qcow2
ok "$TOPCOW" convert -f raw -O qcow2 -m 16 ref.raw o2.qcow2
cmp -s o1.qcow2 o2.qcow2 || fail "in-order conversions produced different files"
qemu-img map --output=json o1.qcow2 | sed -n 's/.*"offset": \([0-9]*\).*/\1/p' >offsets
sort -n -c offsets || fail "in-order conversion did not lay data out in guest order"

# -p prints progress ending at 100%; -q prints nothing.
rm -f out.qcow2
out=$("$TOPCOW" convert -p -O qcow2 src.qcow2 out.qcow2) || fail "convert -p failed"
case $out in *"(100.00/100%)"*) ;; *) fail "no final progress line: $out" ;; esac
rm -f out.qcow2
out=$("$TOPCOW" convert -q -p -O qcow2 src.qcow2 out.qcow2 2>&1) || fail "convert -q failed"
[ -z "$out" ] || fail "convert -q printed: $out"

# Options may follow the file names, as with qemu-img.
rm -f out.qcow2
ok "$TOPCOW" convert src.qcow2 out.qcow2 -O qcow2
ok qemu-img compare src.qcow2 out.qcow2
exit 0
