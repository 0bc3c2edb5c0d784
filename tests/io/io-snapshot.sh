#!/bin/bash
# topcow io -l SNAPSHOT reads an image as it was at an internal snapshot
# (qemu-io has no such option; qemu-img convert -l is the oracle): reads with
# -P patterns succeed on the snapshot's data and fail on the current data,
# `map` describes the snapshot, writes are refused (read-only), and unknown
# snapshots or formats without snapshots fail with one line.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

qemu-img create -q -f qcow2 a.qcow2 4M
qemu-io -c "write -P 0x11 0 1M" a.qcow2 >/dev/null
qemu-img snapshot -c one a.qcow2
qemu-io -c "write -P 0x22 0 512k" -c "write -P 0x33 2M 1M" a.qcow2 >/dev/null

ok "$TOPCOW" io -l one -c "read -P 0x11 0 1M" -c "read -P 0 1M 3M" a.qcow2
case $out in *"Pattern verification failed"*) fail "snapshot read: $out" ;; esac
"$TOPCOW" io -l one -c "read -P 0x22 0 512k" a.qcow2 2>&1 | grep -q "Pattern verification failed" ||
    fail "io -l read the current data, not the snapshot's"
# The same bytes as qemu-img convert -l.
qemu-img convert -l snapshot.name=one -O raw a.qcow2 want.raw
# map: at the snapshot only the first MiB is allocated (now 0-1M and 2M-3M).
ok "$TOPCOW" io -l one -c "map" a.qcow2
[ "$out" = "1 MiB (0x100000) bytes     allocated at offset 0 bytes (0x0)
3 MiB (0x300000) bytes not allocated at offset 1 MiB (0x100000)" ] ||
    fail "map at the snapshot: $out"
ok "$TOPCOW" convert -l one -O raw a.qcow2 got.raw
cmp -s want.raw got.raw || fail "convert -l differs from qemu-img convert -l"
# By id too.
ok "$TOPCOW" io -l 1 -c "read -P 0x11 0 1M" a.qcow2
case $out in *"Pattern verification failed"*) fail "snapshot by id: $out" ;; esac

# Read-only: writes are refused, the image is unchanged.
before=$(sha a.qcow2)
"$TOPCOW" io -l one -c "write -P 0x44 0 4k" a.qcow2 >out 2>&1 || true
grep -q "Read-only file system" out || fail "write at a snapshot: $(cat out)"
[ "$(sha a.qcow2)" = "$before" ] || fail "a write at a snapshot changed the image"

# Errors: one line each.
must_fail "$TOPCOW" io -l nope -c "read 0 4k" a.qcow2
[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "unknown snapshot: $ERR"
case $ERR in *nope*) ;; *) fail "unknown snapshot not named: $ERR" ;; esac
truncate -s 1M r.raw
must_fail "$TOPCOW" io -f raw -l one -c "read 0 4k" r.raw
case $ERR in *"no internal snapshots"*) ;; *) fail "raw: $ERR" ;; esac
echo "ok: io -l"
