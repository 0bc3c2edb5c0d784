#!/bin/bash
# Zeroing and discard corner cases where QEMU 7.2's behaviour is easy to get
# wrong, one case per run:
#   io-zero-parity.sh CASE
# Cases:
#   zero-no-l2        v3, no backing file: write -z over a range with no L2
#                     table yet sets zero flags (alloc and map report the
#                     range allocated)
#   v2-zero-dealloc   v2, no backing file: write -z (without -u) on a whole
#                     allocated cluster deallocates it
#   v2-zero-fast      v2: write -z -n (fast zeroing) is refused with ENOTSUP
#   v2-discard-backing  v2 with a backing file: discard is ignored (the
#                     backing data must not re-appear)
#   zero-partial-head write -z on part of a subcluster whose other bytes read
#                     as zeros makes it a zero subcluster (no data cluster is
#                     allocated; a later discard shows the same map)
#   zero-partial-cluster  the same without extended L2, seen by qemu-img map
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/io/io-compare.sh"
require qemu-img qemu-io

case ${1:?case name} in
zero-no-l2)
    qemu-img create -q -f qcow2 "$SCRATCH/a.qcow2" 4M
    io_compare a.qcow2 -c "write -z -u 0 128k" -c "write -z 128k 64k" -c "alloc 0 256k" -c map
    ;;
v2-zero-dealloc)
    qemu-img create -q -f qcow2 -o compat=0.10 "$SCRATCH/a.qcow2" 4M
    io_compare a.qcow2 -c "write -P 1 0 64k" -c "write -z 0 64k" -c "alloc 0 64k"
    ;;
v2-zero-fast)
    qemu-img create -q -f qcow2 -o compat=0.10 "$SCRATCH/a.qcow2" 4M
    io_compare a.qcow2 -c "write -z -n 0 64k"
    ;;
v2-discard-backing)
    qemu-img create -q -f qcow2 -o compat=0.10 "$SCRATCH/base.qcow2" 4M
    qemu-img create -q -f qcow2 -o compat=0.10,backing_file=base.qcow2,backing_fmt=qcow2 \
        "$SCRATCH/a.qcow2"
    IO_EXTRA=base.qcow2 io_compare a.qcow2 \
        -c "write -P 9 0 128k" -c "discard 0 64k" -c "read -P 9 0 64k" -c map
    ;;
zero-partial-head)
    qemu-img create -q -f qcow2 -o extended_l2=on "$SCRATCH/a.qcow2" 4M
    io_compare a.qcow2 -c "write -z 1000 3000" -c "discard 0 64k" -c map
    ;;
zero-partial-cluster)
    qemu-img create -q -f qcow2 "$SCRATCH/a.qcow2" 4M
    IO_MAP_CHECK=1 io_compare a.qcow2 -c "write -P 1 1M 64k" -c "write -z 1000 3000"
    ;;
*)
    fail "unknown case '$1'"
    ;;
esac
