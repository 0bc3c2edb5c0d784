#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow convert of images with backing chains: flattened by default; with
# -B only the source's top layer is copied (qemu-img's rule), so the output
# over the source's own backing reads like the source and allocates exactly
# what the source's top layer allocates.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# base (16 MiB) <- mid (v3) <- top (20 MiB, longer than its backing files).
ok qemu-img create -f qcow2 base.qcow2 16M
ok qemu-io -f qcow2 -c 'write -P 1 0 8M' -c 'write -P 7 12M 1M' base.qcow2
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
ok qemu-io -f qcow2 -c 'write -P 2 1M 1M' -c 'write -z 3M 1M' -c 'discard 5M 1M' \
    -c 'write -P 0 12M 64k' mid.qcow2
ok qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 20M
ok qemu-io -f qcow2 -c 'write -P 3 1572864 65536' -c 'write -P 0 6M 1M' -c 'write -z 7M 64k' \
    -c 'write -P 4 10M 100k' -c 'write -P 5 17M 1M' -c 'discard 12M 1M' top.qcow2
ok qemu-img convert -O raw top.qcow2 ref.raw

# Flattened: the whole chain's contents, no backing file.
for opts in "" "-W" "-m 1"; do
    rm -f flat.raw flat.qcow2
    ok "$TOPCOW" convert $opts -O raw top.qcow2 flat.raw
    [ "$(sha flat.raw)" = "$(sha ref.raw)" ] || fail "flattened raw output differs ($opts)"
    ok "$TOPCOW" convert $opts -O qcow2 top.qcow2 flat.qcow2
    qemu_check_clean flat.qcow2
    ok qemu-img compare top.qcow2 flat.qcow2
    case $(qemu-img info flat.qcow2) in
    *"backing file"*) fail "flattened output has a backing file" ;;
    esac
done

# -B: the top layer only, over mid.qcow2.
for cfg in "" "cluster_size=4k" "compat=0.10" "extended_l2=on"; do
    for opts in "" "-W" "-m 2"; do
        rm -f t.qcow2 q.qcow2
        ok "$TOPCOW" convert $opts -O qcow2 ${cfg:+-o "$cfg"} -B mid.qcow2 -F qcow2 \
            top.qcow2 t.qcow2
        qemu_check_clean t.qcow2
        ok qemu-img compare top.qcow2 t.qcow2
        out=$(qemu-img info t.qcow2)
        case $out in *"backing file: mid.qcow2"*"backing file format: qcow2"*) ;;
        *) fail "-B output does not name its backing file: $out" ;; esac
        # The top layer allocates what the source's top layer allocates.
        ok qemu-img convert -O qcow2 ${cfg:+-o "$cfg"} -B mid.qcow2 -F qcow2 top.qcow2 q.qcow2
        qemu-io -r -f qcow2 -c map t.qcow2 >t.map
        qemu-io -r -f qcow2 -c map q.qcow2 >q.map
        cmp -s t.map q.map || { diff t.map q.map >&2; fail "-B allocation differs ($cfg $opts)"; }
    done
done

# -o backing_file/backing_fmt are -B/-F.
rm -f t.qcow2
ok "$TOPCOW" convert -O qcow2 -o backing_file=mid.qcow2,backing_fmt=qcow2 top.qcow2 t.qcow2
ok qemu-img compare top.qcow2 t.qcow2
qemu-io -r -f qcow2 -c map t.qcow2 >t.map
cmp -s t.map q.map || fail "-o backing_file allocation differs from -B"

# -B with a source that has no backing file: everything it does not hold
# becomes zeros over the new backing file.
ok qemu-img create -f qcow2 lone.qcow2 16M
ok qemu-io -f qcow2 -c 'write -P 9 4M 1M' lone.qcow2
rm -f t.qcow2
ok "$TOPCOW" convert -O qcow2 -B base.qcow2 -F qcow2 lone.qcow2 t.qcow2
qemu_check_clean t.qcow2
ok qemu-img compare lone.qcow2 t.qcow2

# A raw backing file at the bottom of the chain.
ok qemu-img convert -O raw base.qcow2 base.raw
ok qemu-img create -f qcow2 -b base.raw -F raw over.qcow2
ok qemu-io -f qcow2 -c 'write -P 6 2M 64k' over.qcow2
rm -f t.raw
ok "$TOPCOW" convert -O raw over.qcow2 t.raw
ok qemu-img convert -O raw over.qcow2 q.raw
[ "$(sha t.raw)" = "$(sha q.raw)" ] || fail "qcow2 over raw backing: output differs"
exit 0
