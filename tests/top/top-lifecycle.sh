#!/bin/bash
# Published statistics over the life of a process: an image appears in
# `topcow top` while it is open and disappears when the process exits,
# cleanly or by SIGKILL (the next scan removes the file the dead process
# left); `serve --fork` is shown under the pid that serves; a chain shows
# its depth; NBD clients are counted while connected; zeros found by
# --detect-zeroes are counted; TOPCOW_STATS=off publishes nothing; an
# unwritable statistics directory does not stop an image from opening.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io /usr/bin/python3

export TOPCOW_STATS_DIR="$SCRATCH/stats"
cd "$SCRATCH"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    cleanup_scratch
}
trap cleanup EXIT

# The images `top --json` sees now, one "PID NAME DEPTH CLIENTS ZEROS" line each.
seen() {
    "$TOPCOW" top --json -n 1 -d 0.1 | /usr/bin/python3 -c '
import json, sys
for i in json.load(sys.stdin)["images"]:
    print(i["pid"], i["name"], i["depth"], i["clients"], i["zero_bytes_detected"])'
}
published() { find "$TOPCOW_STATS_DIR" -name '*.stats' 2>/dev/null | wc -l; }

ok qemu-img create -q -f qcow2 base.qcow2 64M
ok qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
ok qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
ok qemu-img create -q -f qcow2 plain.qcow2 64M

# A chain of three, served; then a clean exit (SIGTERM).
"$TOPCOW" serve -t -k a.sock top.qcow2 & a=$!; pids+=("$a")
wait_socket a.sock
out=$(seen)
echo "$out" | grep -qx "$a $SCRATCH/top.qcow2 3 0 0" || fail "served chain not seen as depth 3: $out"
"$TOPCOW" top -b -n 1 -d 0.1 | grep -q "top.qcow2" || fail "top -b does not list the image"
kill -TERM "$a"; wait "$a" || true
[ "$(published)" = 0 ] || fail "a clean exit left a statistics file"
[ -z "$(seen)" ] || fail "an exited server is still shown"

# SIGKILL: the file stays until the next scan, which removes it.
"$TOPCOW" serve -t -k b.sock plain.qcow2 & b=$!; pids+=("$b")
wait_socket b.sock
[ "$(published)" = 1 ] || fail "expected one statistics file"
kill -KILL "$b"; wait "$b" 2>/dev/null || true
[ "$(published)" = 1 ] || fail "SIGKILL cannot have removed the file"
out=$(seen)
[ -z "$out" ] || fail "a killed server is still shown: $out"
[ "$(published)" = 0 ] || fail "the scan did not remove the dead process's file"

# serve --fork: the image is opened before the fork; the child serves it.
ok "$TOPCOW" serve --fork --pid-file=c.pid -t -k c.sock --detect-zeroes=on plain.qcow2
c=$(cat c.pid); pids+=("$c")
out=$(seen)
echo "$out" | grep -q "^$c $SCRATCH/plain.qcow2 1 " || fail "--fork: not shown under pid $c: $out"

# A client holding a connection is counted; zeros written are detected; a
# long read answered partly with hole chunks counts once, in full.
/usr/bin/python3 - "$SCRATCH/c.sock" > client.out 2>&1 <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.connect_unix(sys.argv[1])
h.pwrite(bytes(65536), 0)
h.pwrite(b"x" * 4096, 65536)
# A long read over zeros, data and never-written space: the server sends
# holes as hole chunks, and it is still one read of 1 MiB.
assert h.get_structured_replies_negotiated()
data = h.pread(1 << 20, 0)
assert data[65536:69632] == b"x" * 4096 and data.count(0) == (1 << 20) - 4096
print("connected", flush=True)
time.sleep(3)
h.shutdown()
PY
cl=$!
for _ in $(seq 100); do grep -q connected client.out && break; sleep 0.05; done
grep -q connected client.out || fail "nbd client: $(cat client.out)"
out=$(seen)
echo "$out" | grep -qx "$c $SCRATCH/plain.qcow2 1 1 65536" || fail "one client and 64 KiB of zeros expected: $out"
reads=$("$TOPCOW" top --json -n 1 -d 0.1 | /usr/bin/python3 -c '
import json, sys
t = json.load(sys.stdin)["images"][0]
print(t["totals"]["read_ops"], t["totals"]["read_bytes"], sum(n for _, n in t["heat"]["read"]))')
[ "$reads" = "1 1048576 1048576" ] || fail "a sparse 1 MiB read: ops, bytes, heat map = $reads"
wait "$cl"
out=$(seen)
echo "$out" | grep -qx "$c $SCRATCH/plain.qcow2 1 0 65536" || fail "the client left: $out"
kill -TERM "$c"
for _ in $(seq 100); do kill -0 "$c" 2>/dev/null || break; sleep 0.05; done
[ "$(published)" = 0 ] || fail "--fork server left its file"

# A short-lived command is seen while it runs (topcow io sleeping).
"$TOPCOW" io -c 'sleep 1500' plain.qcow2 & d=$!; pids+=("$d")
sleep 0.7
seen | grep -q "^$d $SCRATCH/plain.qcow2 " || fail "topcow io not seen while running"
wait "$d"
[ "$(published)" = 0 ] || fail "topcow io left its file"

# Statistics off: nothing published, the image works.
TOPCOW_STATS=off "$TOPCOW" io -c 'write -P 7 0 64k' -c 'sleep 800' plain.qcow2 >/dev/null & e=$!
sleep 0.4
[ "$(published)" = 0 ] || fail "TOPCOW_STATS=off published"
wait "$e" || fail "TOPCOW_STATS=off: io failed"

# An unwritable statistics directory: the image opens all the same.
touch notadir
TOPCOW_STATS_DIR="$SCRATCH/notadir/x" ok "$TOPCOW" io -c 'read -P 7 0 64k' plain.qcow2
TOPCOW_STATS_DIR="$SCRATCH/notadir/x" ok "$TOPCOW" top -b -n 1 -d 0.1
echo "top-lifecycle: OK"
