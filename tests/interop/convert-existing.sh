#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow convert -n into existing images: zeros must be written (the target
# may hold old data) unless --target-is-zero promises it reads as zeros;
# checks on the target's size and on the options, as qemu-img makes them.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# Source: data, a hole, written zeros, a zero cluster, compressed data.
ok qemu-img create -f qcow2 src.qcow2 8M
ok qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -P 0 2M 1M' -c 'write -z 3M 64k' \
    -c 'write -c -P 2 4M 64k' -c 'write -P 3 5000000 70000' src.qcow2
ok qemu-img convert -O raw src.qcow2 ref.raw

# Targets full of old data in every format and version: after -n they read
# exactly like the source.
for cfg in "" "compat=0.10" "extended_l2=on" "cluster_size=4k"; do
    for opts in "" "-W" "-m 1"; do
        rm -f t.qcow2
        ok qemu-img create -f qcow2 ${cfg:+-o "$cfg"} t.qcow2 8M
        ok qemu-io -f qcow2 -c 'write -P 0xee 0 8M' t.qcow2
        ok "$TOPCOW" convert $opts -n -O qcow2 src.qcow2 t.qcow2
        qemu_check_clean t.qcow2
        ok qemu-img compare src.qcow2 t.qcow2
    done
done
head -c 8M /dev/urandom >t.raw
ok "$TOPCOW" convert -n -O raw src.qcow2 t.raw
[ "$(sha t.raw)" = "$(sha ref.raw)" ] || fail "-n raw target differs"

# Without -O the target is raw, as with qemu-img (so a qcow2 target is
# overwritten byte for byte).
cp ref.raw t2.raw
head -c 1M /dev/urandom | dd of=t2.raw conv=notrunc status=none
ok "$TOPCOW" convert -n src.qcow2 t2.raw
[ "$(sha t2.raw)" = "$(sha ref.raw)" ] || fail "-n without -O differs"

# A larger target: the source's range is written, the rest kept.
ok qemu-img create -f qcow2 big.qcow2 12M
ok qemu-io -f qcow2 -c 'write -P 0xee 0 12M' big.qcow2
ok "$TOPCOW" convert -n -O qcow2 src.qcow2 big.qcow2
ok qemu-io -r -f qcow2 -c 'read -P 0xee 8M 4M' big.qcow2
ok qemu-img convert -O raw big.qcow2 big.raw
[ "$(head -c 8M big.raw | sha256sum | cut -d' ' -f1)" = "$(sha ref.raw)" ] ||
    fail "-n into a larger target: the source's range differs"

# --target-is-zero: nothing is written for zeros, so a fresh target ends up
# with the source's data only (same allocation as qemu-img's).
for cfg in "" "compat=0.10"; do
    rm -f z.qcow2 qz.qcow2
    ok qemu-img create -f qcow2 ${cfg:+-o "$cfg"} z.qcow2 8M
    ok qemu-img create -f qcow2 ${cfg:+-o "$cfg"} qz.qcow2 8M
    ok "$TOPCOW" convert -n --target-is-zero -O qcow2 src.qcow2 z.qcow2
    ok qemu-img convert -n --target-is-zero -O qcow2 src.qcow2 qz.qcow2
    qemu_check_clean z.qcow2
    ok qemu-img compare src.qcow2 z.qcow2
    qemu-io -r -f qcow2 -c map z.qcow2 >t.map
    qemu-io -r -f qcow2 -c map qz.qcow2 >q.map
    cmp -s t.map q.map || { diff t.map q.map >&2; fail "--target-is-zero allocation ($cfg)"; }
done
# The promise is trusted: old data in a "zero" target stays where the
# source has zeros.
ok qemu-img create -f qcow2 liar.qcow2 8M
ok qemu-io -f qcow2 -c 'write -P 0xee 2M 64k' liar.qcow2
ok "$TOPCOW" convert -n --target-is-zero -O qcow2 src.qcow2 liar.qcow2
ok qemu-io -r -f qcow2 -c 'read -P 0xee 2M 64k' liar.qcow2

# Refusals, with qemu-img's messages.
ok qemu-img create -f qcow2 small.qcow2 4M
must_fail "$TOPCOW" convert -n -O qcow2 src.qcow2 small.qcow2
case $ERR in *"output file is smaller than input file"*) ;; *) fail "small target: $ERR" ;; esac
must_fail "$TOPCOW" convert --target-is-zero -O qcow2 src.qcow2 new.qcow2
case $ERR in *"--target-is-zero requires use of -n flag"*) ;; *) fail "no -n: $ERR" ;; esac
[ ! -e new.qcow2 ] || fail "target created despite the error"
must_fail "$TOPCOW" convert -n -o cluster_size=4k -O qcow2 src.qcow2 z.qcow2
case $ERR in *"-o has no effect when skipping image creation"*) ;; *) fail "-n -o: $ERR" ;; esac
must_fail "$TOPCOW" convert -n --target-is-zero -B src.qcow2 -O qcow2 src.qcow2 z.qcow2
case $ERR in *"Cannot use --target-is-zero when the destination image has a backing file"*) ;;
*) fail "--target-is-zero -B: $ERR" ;; esac
must_fail "$TOPCOW" convert -n -O qcow2 src.qcow2 missing.qcow2
case $ERR in *"Could not open 'missing.qcow2'"*) ;; *) fail "missing target: $ERR" ;; esac
exit 0
