#!/bin/bash
# SPDX-License-Identifier: MIT
# convert -c: for zlib and zstd and cluster sizes 4K, 64K and 2M, topcow's
# compressed output passes qemu-img check, compares identical to the source
# and is at most 3% bigger than what qemu-img convert -c makes of the same
# data;
# qemu-img's compressed images read back identically through topcow; and
# the options that cannot compress are refused.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io openssl
cd "$SCRATCH"

# Deterministic bytes: AES-CTR over zeros with a fixed key ($1 = IV, $2 = bytes).
stream() {
    { openssl enc -aes-128-ctr -nosalt -K 746f70636f772d746573742d6b657931 -iv "$1" \
        -in /dev/zero 2>/dev/null || true; } | head -c "$2"
}

# A mixed 24 MiB + 1536 bytes source (not a whole number of clusters):
# text, incompressible bytes, zeros, holes, runs shorter than a cluster.
{
    seq 1 400000 | head -c 3145728             # 3M text
    stream 01 2097152                          # 2M random
    head -c 1048576 /dev/zero                  # 1M zeros
    seq 7 3 2000000 | head -c 1000000          # text, not cluster aligned
    stream 02 12345
    head -c 70000 /dev/zero
    seq 5 9 900000 | head -c 4000000
} >src.raw
truncate -s $((24 * 1024 * 1024 + 1536)) src.raw   # the tail is a hole
printf 'topcow' | dd of=src.raw bs=1 seek=$((24 * 1024 * 1024 + 1000)) conv=notrunc 2>/dev/null

size_of() { stat -c %s "$1"; }

for ct in zlib zstd; do
    for cs in 4k 64k 2M; do
        o="compression_type=$ct,cluster_size=$cs"
        rm -f t.qcow2 q.qcow2
        ok "$TOPCOW" convert -c -O qcow2 -o "$o" src.raw t.qcow2
        qemu_check_clean t.qcow2
        ok qemu-img compare src.raw t.qcow2
        out=$(qemu-img check t.qcow2 2>&1)
        grep -q "compressed clusters" <<<"$out" || fail "$o: no compressed clusters: $out"
        ok qemu-img convert -c -O qcow2 -o "$o" src.raw q.qcow2
        t=$(size_of t.qcow2) q=$(size_of q.qcow2)
        # Not more than 3% bigger (smaller is fine: libdeflate beats zlib).
        [ $((t * 100)) -le $((q * 103)) ] ||
            fail "$o: topcow's file is $t bytes, qemu-img's $q (more than 3% bigger)"
        # qemu-img's compressed image through topcow, raw out.
        rm -f back.raw
        ok "$TOPCOW" convert -O raw q.qcow2 back.raw
        cmp -s back.raw src.raw || fail "$o: qemu-img's compressed image reads differently"
        ok "$TOPCOW" compare src.raw q.qcow2
    done
done

# Worker counts, out-of-order, -S 0 (zero clusters compressed too), and a
# compressed source recompressed (decompression in parallel).
for opts in "-m 1" "-m 16 -W" "-S 0" "-W"; do
    rm -f t.qcow2 t2.qcow2
    ok "$TOPCOW" convert $opts -c -O qcow2 src.raw t.qcow2
    qemu_check_clean t.qcow2
    ok qemu-img compare src.raw t.qcow2
    ok "$TOPCOW" convert $opts -c -O qcow2 -o compression_type=zstd t.qcow2 t2.qcow2
    qemu_check_clean t2.qcow2
    ok qemu-img compare src.raw t2.qcow2
done
# -S 0 allocates every cluster: none may be left unallocated.
rm -f t.qcow2
ok "$TOPCOW" convert -S 0 -c -O qcow2 src.raw t.qcow2
qemu-img map --output=json t.qcow2 | grep -q '"present": false' && fail "-S 0 -c left holes"

# -B: only the top layer is copied, compressed; clusters partly defined by
# the top layer are completed from the backing file.
ok qemu-img create -f qcow2 base.qcow2 4M
ok qemu-io -c 'write -P 0x11 0 4M' base.qcow2
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 -o cluster_size=4k top.qcow2 4M
ok qemu-io -c 'write -P 0x22 4k 4k' -c 'write -z 64k 8k' -c 'write -P 0x33 200k 1k' top.qcow2
rm -f t.qcow2
ok "$TOPCOW" convert -c -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 t.qcow2
qemu_check_clean t.qcow2
ok qemu-img compare top.qcow2 t.qcow2
# What the top layer did not define stays unallocated.
out=$(qemu-io -r -c 'alloc 256k 3840k' t.qcow2)
grep -q "^0/3932160 bytes allocated" <<<"$out" || fail "-B -c copied the backing file: $out"

# -n into existing qcow2 images that already hold data: one of the
# source's size, and a bigger one (whose cluster holding the source's last
# bytes is not its last: stored uncompressed, its tail kept).
n=$(size_of src.raw)
for size in $n 25M; do
    rm -f old.qcow2 old.raw
    ok qemu-img create -f qcow2 old.qcow2 $size
    ok qemu-io -c "write -P 0x77 0 $size" old.qcow2
    ok "$TOPCOW" convert -n -c -O qcow2 src.raw old.qcow2
    qemu_check_clean old.qcow2
    ok qemu-img convert -O raw old.qcow2 old.raw
    cmp -s -n $n src.raw old.raw || fail "-n -c into a $size image: data differs"
    [ "$size" = "$n" ] || [ "$(tail -c +$((n + 1)) old.raw | tr -d '\167' | wc -c)" = 0 ] ||
        fail "-n -c into a $size image: the bytes past the source changed"
done

# Refused: formats without compressed clusters, external data files.
must_fail "$TOPCOW" convert -c -O raw src.raw out.raw
grep -q "Compression not supported for this file format" <<<"$ERR" || fail "raw -c: $ERR"
[ ! -e out.raw ] || fail "raw -c created its output"
must_fail "$TOPCOW" convert -c -O qcow2 -o data_file=out.data src.raw out.qcow2
grep -q "external data file" <<<"$ERR" || fail "data_file -c: $ERR"
[ ! -e out.qcow2 ] || fail "data_file -c created its output"
exit 0
