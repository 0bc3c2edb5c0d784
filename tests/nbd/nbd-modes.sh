#!/bin/bash
# topcow serve's qemu-nbd options and its life cycle:
#   -r refuses writes; -s keeps the image untouched; -l exports an internal
#   snapshot; without -t the server leaves with its last client; --fork and
#   --pid-file; TCP on 127.0.0.1 by default; --detect-zeroes; the cache modes;
#   SIGTERM during writes finishes and closes the image clean (the lazy
#   refcounts dirty bit cleared); a client killed mid-write leaves the image
#   consistent; bad options get one-line errors.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require qemu-img qemu-io nbdinfo nbdcopy fio
cd "$SCRATCH"

qemu-img create -q -f qcow2 img.qcow2 32M
ok qemu-io -f qcow2 -c 'write -P 0x11 0 8M' img.qcow2

# ---- -r ------------------------------------------------------------------------
serve_start r -r -f qcow2 img.qcow2
must_fail qemu-io -f raw -c 'write -P 1 0 4k' "$(uri r)"
grep -q 'Permission denied\|Operation not permitted' <<<"$ERR" || fail "-r write: $ERR"
serve_wait r   # no -t: the server left with its client
ok qemu-io -r -f qcow2 -c 'read -P 0x11 0 8M' img.qcow2

# ---- -s: writes go to a temporary overlay ----------------------------------------
sha0=$(sha img.qcow2)
serve_start s -s -t -f qcow2 img.qcow2
nbdinfo "$(uri s)" | grep -q 'can_multi_conn: false' ||
    fail "multi-conn advertised with -e 1 (a client opening more connections would wait)"
ok qemu-io -f raw -c 'write -P 0x22 1M 1M' "$(uri s)"
ok qemu-io -f raw -c 'read -P 0x22 1M 1M' -c 'read -P 0x11 0 1M' "$(uri s)"
serve_stop s
[ "$(sha img.qcow2)" = "$sha0" ] || fail "-s changed the image"
! compgen -G "${TMPDIR:-/var/tmp}/topcow-serve-snapshot.*" >/dev/null ||
    fail "-s left its overlay behind"

# ---- -l: an internal snapshot, read-only ------------------------------------------
cp img.qcow2 snap.qcow2
qemu-img snapshot -c first snap.qcow2
ok qemu-io -f qcow2 -c 'write -P 0x33 0 4M' snap.qcow2
serve_start l -t -l first -f qcow2 snap.qcow2
ok qemu-io -r -f raw -c 'read -P 0x11 0 8M' "$(uri l)"
must_fail qemu-io -f raw -c 'write -P 1 0 4k' "$(uri l)"
serve_stop l
serve_start l2 -t -l snapshot.name=first -f qcow2 snap.qcow2
qemu-img convert -l snapshot.name=first -O raw snap.qcow2 first.raw
nbdcopy "$(uri l2)" l2.raw
cmp first.raw l2.raw || fail "-l snapshot.name= exported other data"
serve_stop l2
must_fail "$TOPCOW" serve -k "$SCRATCH/x.sock" -l nosuch snap.qcow2
grep -q "nosuch" <<<"$ERR" || fail "-l unknown snapshot: $ERR"

# ---- --fork, --pid-file, TCP on localhost ----------------------------------------------
port=$((20000 + RANDOM % 20000))
ok "$TOPCOW" serve --fork --pid-file "$SCRATCH/pid" -t -p "$port" -f qcow2 img.qcow2
p=$(cat "$SCRATCH/pid")
kill -0 "$p" || fail "--fork: no process $p"
SERVE_PID[fork]=$p   # killed at exit if a check below fails
nbdinfo "nbd://127.0.0.1:$port" | grep -q 'export-size: 33554432' ||
    fail "TCP export on 127.0.0.1:$port"
ss -ltn 2>/dev/null | grep ":$port " | grep -q '127.0.0.1' ||
    fail "the server should listen on 127.0.0.1 only: $(ss -ltn | grep ":$port ")"
kill -TERM "$p"
for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
kill -0 "$p" 2>/dev/null && fail "--fork server ignored SIGTERM"
unset 'SERVE_PID[fork]'
[ ! -e "$SCRATCH/pid" ] || fail "pid file left behind"

# ---- --detect-zeroes ----------------------------------------------------------------------
qemu-img create -q -f qcow2 dz.qcow2 16M
serve_start dz -t --detect-zeroes=unmap --discard=unmap -f qcow2 dz.qcow2
head -c 4M /dev/zero > zero.bin
nbdcopy zero.bin "$(uri dz)"   # plain writes of zeros
ok qemu-io -f raw -c 'write -P 0 8M 1M' -c 'write -P 5 12M 64k' "$(uri dz)"
serve_stop dz
qemu_check_clean dz.qcow2
alloc=$(qemu-img map --output=json dz.qcow2 | /usr/bin/python3 -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
[ "$alloc" -eq 65536 ] || fail "--detect-zeroes=unmap stored $alloc bytes of data (want 64 KiB)"

# ---- cache modes ------------------------------------------------------------------------------
for mode in none writethrough directsync unsafe writeback; do
    cp img.qcow2 c.qcow2
    serve_start c -t --cache=$mode -f qcow2 c.qcow2
    ok qemu-io -f raw -c 'write -P 0x44 4096 64k' -c flush "$(uri c)"
    serve_stop c
    ok qemu-io -r -f qcow2 -c 'read -P 0x44 4096 64k' -c 'read -P 0x11 0 4096' c.qcow2
done

# ---- SIGTERM while writes are in flight: clean close ---------------------------------------------
qemu-img create -q -f qcow2 -o lazy_refcounts=on lz.qcow2 256M
serve_start z -t -e 4 -f qcow2 lz.qcow2
fio --name=w --ioengine=nbd --uri="$(uri z)" --rw=randwrite --bs=4k --iodepth=16 \
    --numjobs=2 --size=64M --time_based --runtime=30 >fio-term.log 2>&1 &
FIO=$!
sleep 2
serve_stop z 20
wait $FIO || true   # fio sees the connection end
qemu-img info --output=json lz.qcow2 | grep -q '"dirty-flag": false' ||
    fail "the image was not closed clean after SIGTERM: $(qemu-img info lz.qcow2)"
qemu_check_clean lz.qcow2

# ---- SIGTERM while a client does not read its replies: cut after the grace --------------------------
serve_start g -t -f qcow2 img.qcow2
/usr/bin/python3 - "$(sock g)" > idle.log 2>&1 <<'PY' &
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.recv(18)                                               # greeting
s.sendall(struct.pack(">I", 3))                          # fixed newstyle, no zeroes
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 0)) # EXPORT_NAME ""
s.recv(10)
for i in range(64):                                      # 64 MiB of replies nobody reads
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, i, 0, 1 << 20))
time.sleep(60)
PY
IDLE=$!
sleep 1
t0=$(date +%s)
serve_stop g 20
t=$(( $(date +%s) - t0 ))
[ "$t" -ge 4 ] || fail "the server did not give in-flight replies their grace ($t s)"
kill $IDLE 2>/dev/null || true
wait $IDLE 2>/dev/null || true

# ---- a client killed mid-write ---------------------------------------------------------------------
serve_start k -t -e 2 -f qcow2 lz.qcow2
fio --name=w --ioengine=nbd --uri="$(uri k)" --rw=randwrite --bs=64k --iodepth=32 \
    --size=128M --time_based --runtime=30 >fio-kill.log 2>&1 &
FIO=$!
sleep 1.5
kill -KILL $FIO
wait $FIO 2>/dev/null || true
ok qemu-io -f raw -c 'write -P 0x55 0 64k' -c 'read -P 0x55 0 64k' "$(uri k)"
serve_stop k
qemu_check_clean lz.qcow2

# ---- bad command lines: one line each, exit 1 ---------------------------------------------------------
for args in "-k a.sock -p 10809 img.qcow2" "--cache=bogus img.qcow2" "-e 0 img.qcow2" \
            "-U img.qcow2" "--detect-zeroes=unmap img.qcow2" "-k a.sock nosuch.qcow2" \
            "-k a.sock" "--tls-creds nope img.qcow2" "-c /dev/nbd0 img.qcow2" \
            "-k /nonexistent/a.sock img.qcow2" "-k a.sock --pid-file /nonexistent/pid img.qcow2" \
            "-b 127.0.0.1 -p 70000 img.qcow2"; do
    # shellcheck disable=SC2086
    must_fail "$TOPCOW" serve $args
    [ "$(wc -l <<<"$ERR")" -eq 1 ] || fail "serve $args: not one line: $ERR"
    grep -q '^topcow: ' <<<"$ERR" || fail "serve $args: $ERR"
done
TMPDIR=/nonexistent must_fail "$TOPCOW" serve -s -k a.sock img.qcow2
grep -q "^topcow: Could not create a temporary overlay" <<<"$ERR" || fail "-s without TMPDIR: $ERR"
[ ! -e a.sock ] || fail "a failed start left its socket"

# ---- an image that cannot be read: an NBD error, and the server goes on ----------------------
qemu-img create -q -f qcow2 bad.qcow2 4M
ok qemu-io -f qcow2 -c 'write -P 1 0 64k' -c 'write -P 2 1M 64k' bad.qcow2
/usr/bin/python3 - bad.qcow2 <<'PY'   # the L2 entry of cluster 0: an unaligned host offset
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(72)
f.seek(struct.unpack(">Q", h[40:48])[0])
l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2)
e = struct.unpack(">Q", f.read(8))[0]
f.seek(l2)
f.write(struct.pack(">Q", e | 0x200))
PY
serve_start bad -t -r -f qcow2 bad.qcow2
# Short and long (sparse path) reads, with structured and simple replies:
# EIO for the bad cluster, the right data next to it.
/usr/bin/python3 - "$(sock bad)" <<'PY' || fail "reads of an unreadable cluster"
import nbd, sys
for structured in (True, False):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.connect_unix(sys.argv[1])
    for off, n in ((0, 4096), (0, 2 << 20), (512, 512)):
        try:
            h.pread(n, off)
            sys.exit("read %d+%d of the bad cluster succeeded" % (off, n))
        except nbd.Error as e:
            assert e.errnum == 5, e   # EIO
    assert h.pread(65536, 1 << 20) == b"\x02" * 65536
    h.shutdown()
PY
serve_stop bad

# ---- a client that connects and then says nothing -----------------------------
# It is cut after the 10 s handshake timeout, and the next client (-e 1)
# gets in: a silent connection cannot hold the only slot for ever.
serve_start quiet -t -r -f qcow2 img.qcow2
/usr/bin/python3 - "$(sock quiet)" <<'PY' || fail "a silent client was not cut after the handshake timeout"
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(30)
t0 = time.monotonic()
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
waited = time.monotonic() - t0
assert data[:8] == b"NBDMAGIC", data[:8]
assert waited >= 8, "cut after %.1f s, before the handshake timeout" % waited
PY
ok qemu-io -r -f raw -c 'read 0 4k' "$(uri quiet)"
serve_stop quiet
echo "nbd-modes: ok"
