#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow convert with several sources: they are concatenated, each taking
# its size rounded up to 512 bytes (as qemu-img sizes images), in raw and
# qcow2 outputs; byte-identical to qemu-img's output.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# Raw sources of odd sizes (one shorter than a sector, one spanning several
# work units and ending mid-cluster) and qcow2 sources with holes.
head -c 1000 /dev/urandom >a.raw
ok qemu-img create -f raw b.raw 3000000
ok qemu-io -f raw -c 'write -P 0xb1 0 100000' -c 'write -P 0xb2 2900000 100000' b.raw
ok qemu-img create -f qcow2 c.qcow2 5M
ok qemu-io -f qcow2 -c 'write -P 0xc1 1M 1M' -c 'write -z 2M 64k' -c 'write -P 0xc2 4M 512' \
    c.qcow2
ok qemu-img create -f qcow2 d.qcow2 64k
ok qemu-io -f qcow2 -c 'write -P 0xd1 0 64k' d.qcow2

check_raw() { # $1: label; rest: sources
    local label=$1
    shift
    rm -f t.raw q.raw
    ok "$TOPCOW" convert -O raw "$@" t.raw
    ok qemu-img convert -O raw "$@" q.raw
    [ "$(stat -c %s t.raw)" = "$(stat -c %s q.raw)" ] || fail "$label: output size differs"
    [ "$(sha t.raw)" = "$(sha q.raw)" ] || fail "$label: output differs from qemu-img's"
}
check_raw "raw pair" -f raw a.raw b.raw
check_raw "qcow2 triple" -f qcow2 c.qcow2 d.qcow2 c.qcow2
check_raw "mixed, probed" a.raw c.qcow2 b.raw d.qcow2
check_raw "one source" b.raw

for opts in "" "-W" "-m 1" "-S 0"; do
    rm -f t.qcow2
    ok "$TOPCOW" convert $opts -O qcow2 a.raw c.qcow2 b.raw d.qcow2 t.qcow2
    qemu_check_clean t.qcow2
    ok qemu-img convert -O raw a.raw c.qcow2 b.raw d.qcow2 q.raw
    ok qemu-img compare -f raw -F qcow2 q.raw t.qcow2
done

# -B makes no sense with several sources.
must_fail "$TOPCOW" convert -O qcow2 -B c.qcow2 -F qcow2 c.qcow2 d.qcow2 x.qcow2
case $ERR in *"makes no sense when concatenating multiple input images"*) ;;
*) fail "-B with several sources: $ERR" ;; esac
# A missing source is an open error naming it; no output is created.
must_fail "$TOPCOW" convert -O qcow2 c.qcow2 nope.qcow2 x.qcow2
case $ERR in *"Could not open 'nope.qcow2'"*) ;; *) fail "missing source: $ERR" ;; esac
[ ! -e x.qcow2 ] || fail "output created although a source is missing"
exit 0
