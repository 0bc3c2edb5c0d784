#!/bin/bash
# fio's verify workloads over the nbd engine: 4 jobs (4 connections) of
# random mixed reads and writes with crc32c checksums, on a fresh image and
# on an overlay of a backing file (4 KiB clusters), with 4k..64k requests,
# 3584-byte requests across cluster boundaries and 1000-byte ones across
# sector boundaries.  A control run corrupts one written block behind fio's back and
# requires fio to notice, so that a verify that checks nothing cannot pass.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require qemu-img qemu-io fio
cd "$SCRATCH"

fio_verify() {   # NAME URI EXTRA...
    local name=$1 u=$2
    shift 2
    if ! fio --name="$name" --ioengine=nbd --uri="$u" --numjobs=4 --size=24M \
        --offset_increment=24M --iodepth=16 --verify=crc32c --verify_fatal=1 \
        --do_verify=1 --group_reporting "$@" > "$name.log" 2>&1; then
        cat "$name.log" >&2
        fail "fio $name"
    fi
    grep -q 'err= 0' "$name.log" || { cat "$name.log" >&2; fail "fio $name: errors"; }
}

qemu-img create -q -f qcow2 fresh.qcow2 128M
qemu-img create -q -f qcow2 -o cluster_size=4096 base.qcow2 128M
ok qemu-io -f qcow2 -c 'write -P 0x5a 0 128M' base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2

for img in fresh over; do
    serve_start "$img" -t -e 4 --discard=unmap -f qcow2 "$img.qcow2"
    fio_verify "$img-randrw" "$(uri "$img")" --rw=randrw --bsrange=4k-64k
    fio_verify "$img-odd" "$(uri "$img")" --rw=randrw --bs=3584
    fio_verify "$img-bytes" "$(uri "$img")" --rw=randrw --bs=1000 --size=2M
    serve_stop "$img"
    qemu_check_clean "$img.qcow2"
done

# Control: fio writes with checksums, one block is overwritten through a
# second connection, and fio's verify-only pass must fail.
qemu-img create -q -f qcow2 ctl.qcow2 32M
serve_start ctl -t -e 2 -f qcow2 ctl.qcow2
fio --name=w --ioengine=nbd --uri="$(uri ctl)" --rw=write --bs=64k --size=8M \
    --verify=crc32c --do_verify=0 > ctl-w.log 2>&1 || { cat ctl-w.log >&2; fail "fio write"; }
ok qemu-io -f raw -c 'write -P 0x77 1M 512' "$(uri ctl)"
if fio --name=w --ioengine=nbd --uri="$(uri ctl)" --rw=write --bs=64k --size=8M \
    --verify=crc32c --verify_only --verify_fatal=1 > ctl-v.log 2>&1; then
    cat ctl-v.log >&2
    fail "fio's verify did not notice a corrupted block: the verify runs prove nothing"
fi
grep -qi 'verify\|crc' ctl-v.log || { cat ctl-v.log >&2; fail "control failed for another reason"; }
serve_stop ctl
echo "nbd-fio: ok"
