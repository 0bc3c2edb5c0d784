#!/bin/bash
# topcow top --qmp against a real QEMU (TCG, started with -S: no guest runs,
# the I/O comes from QEMU's qemu-io monitor command, whose aio_* commands
# QEMU accounts like a guest's requests):
#   the drives appear (-drive and -blockdev ones, named by drive or device
#   id; not an empty CD-ROM) with QEMU's pid and name, their files and
#   backing chain, and totals equal to the I/O done and to QEMU's own
#   query-blockstats; rates over an interval match the I/O done in it; -b
#   shows the rows; top leaves the monitor free between samples; a monitor
#   another client holds, a dead socket and a stale one each give a one-line
#   error while published topcow images are still shown; a SIGSTOPped QEMU
#   costs one timeout, not a hang, and is back on a later sample.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-system-x86_64 qemu-img
cd "$SCRATCH"
export TOPCOW_STATS_DIR="$SCRATCH/stats"
QMPC=("/usr/bin/python3" "$TOPCOW_SRCDIR/tests/top/qmp-client.py")

if "$TOPCOW" top --qmp "$SCRATCH/x.sock" --json -n 1 -d 0.05 2>&1 >/dev/null |
        grep -q 'built without json-c'; then
    echo "SKIP: topcow built without json-c" >&2
    exit 77
fi

QPID= SPID=
kill_all() {
    [ -z "$QPID" ] || kill -KILL "$QPID" 2>/dev/null || true
    [ -z "$SPID" ] || kill -KILL "$SPID" 2>/dev/null || true
    jobs -p | xargs -r kill -KILL 2>/dev/null || true
}
trap 'kill_all; cleanup_scratch' EXIT

qemu-img create -q -f qcow2 base.qcow2 64M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-img create -q -f raw r.raw 8M
# Two monitors: top.sock for top, ctl.sock for this script.
qemu-system-x86_64 -machine accel=tcg -nodefaults -display none -S -m 32 -name guest=topvm \
    -qmp "unix:$SCRATCH/top.sock,server=on,wait=off" \
    -qmp "unix:$SCRATCH/ctl.sock,server=on,wait=off" \
    -drive "file=$SCRATCH/top.qcow2,if=none,id=disk0,format=qcow2" \
    -device virtio-blk-pci,drive=disk0 \
    -blockdev "driver=file,filename=$SCRATCH/r.raw,node-name=rawf" \
    -blockdev driver=raw,file=rawf,node-name=rawd \
    -device virtio-blk-pci,drive=rawd,id=vd1 \
    -device ide-cd,id=cd0 >qemu.log 2>&1 &
QPID=$!
wait_socket "$SCRATCH/top.sock" qemu.log
wait_socket "$SCRATCH/ctl.sock" qemu.log
ctl() { "${QMPC[@]}" "$SCRATCH/ctl.sock" "$@"; }
io0() { for c in "$@"; do printf 'hmp:qemu-io disk0 "%s"\n' "$c"; done; }

# ---- known I/O, then totals and identity -------------------------------------------
# disk0: 4 writes (4 MiB + 3 x 64 KiB), 7 reads (5 x 64 KiB + 2 x 1 MiB), 2
# flushes (aio_flush also waits for the requests before it); vd1: 1 write
# of 128 KiB and 1 flush.
mapfile -t cmds < <(io0 "aio_write -P 0x5a 0 4M" "aio_write -P 0x33 8M 64k" \
    "aio_write -P 0x33 9M 64k" "aio_write -P 0x33 10M 64k" "aio_flush" \
    "aio_read -P 0x5a 0 64k" "aio_read -P 0x5a 0 64k" "aio_read -P 0x5a 64k 64k" \
    "aio_read -P 0x5a 128k 64k" "aio_read -P 0x33 8M 64k" \
    "aio_read -P 0x5a 1M 1M" "aio_read -P 0x5a 2M 1M" "aio_flush")
ctl "${cmds[@]}" 'hmp:qemu-io -d vd1/virtio-backend "aio_write -P 7 0 128k"' \
    'hmp:qemu-io -d vd1/virtio-backend "aio_flush"' >/dev/null ||
    fail "qemu-io in QEMU failed"

"$TOPCOW" top --qmp "$SCRATCH/top.sock" --json -n 1 -d 0.5 >j1.json 2>j1.err ||
    fail "top --json: $(cat j1.err)"
[ ! -s j1.err ] || { cat j1.err >&2; fail "top --json complained"; }
ctl query-blockstats >qemu-stats.json
/usr/bin/python3 - "$SCRATCH" "$QPID" j1.json qemu-stats.json <<'EOF' || fail "--json figures"
import json, sys
d, qpid = sys.argv[1], int(sys.argv[2])
imgs = {i["key"]: i for i in json.loads(open(sys.argv[3]).read())["images"]}
qemu = {(s["device"] or s.get("qdev")): s["stats"] for s in json.load(open(sys.argv[4]))}
bad = []
def want(what, got, exp):
    if got != exp:
        bad.append(f"{what}: {got!r}, want {exp!r}")
sock = f"qmp:{d}/top.sock:"
want("images", sorted(imgs), [sock + "disk0", sock + "vd1"])  # not the empty cd0
for dev, qdev, exp in [
        ("disk0", "disk0", dict(write_ops=4, write_bytes=(4 << 20) + 3 * 65536, read_ops=7,
                                read_bytes=5 * 65536 + (2 << 20), flush_ops=2)),
        ("vd1", "/machine/peripheral/vd1/virtio-backend",
         dict(write_ops=1, write_bytes=128 << 10, read_ops=0, read_bytes=0, flush_ops=1))]:
    i = imgs.get(sock + dev)
    if not i:
        continue
    t = i["totals"]
    for k, v in exp.items():
        want(f"{dev} {k}", t[k], v)
    q = qemu[qdev]  # QEMU's own counters, read after top's sample (no I/O since)
    for k, qk in [("read_ops", "rd_operations"), ("read_bytes", "rd_bytes"),
                  ("write_ops", "wr_operations"), ("write_bytes", "wr_bytes"),
                  ("flush_ops", "flush_operations"), ("discard_ops", "unmap_operations"),
                  ("discard_bytes", "unmap_bytes"), ("read_errors", "failed_rd_operations"),
                  ("read_latency_ns", "rd_total_time_ns"),
                  ("write_latency_ns", "wr_total_time_ns"),
                  ("flush_latency_ns", "flush_total_time_ns")]:
        want(f"{dev} {k} vs QEMU {qk}", t[k], q[qk])
    want(f"{dev} source", i["source"], "qmp")
    want(f"{dev} pid", i["pid"], qpid)
    want(f"{dev} command", i["command"], "qemu-system-x86_64 topvm")
    if i["rates"] is None:
        bad.append(f"{dev}: no rates")
    else:
        want(f"{dev} idle read ops/s", i["rates"]["read_ops_per_s"], 0)
        want(f"{dev} idle write ops/s", i["rates"]["write_ops_per_s"], 0)
i = imgs.get(sock + "disk0")
if i:
    want("disk0 name", i["name"], f"disk0 ({d}/top.qcow2)")
    want("disk0 depth", i["depth"], 2)
    want("disk0 virtual size", i["virtual_size"], 64 << 20)
    want("disk0 layers", [(l["depth"], l["file"], l["format"]) for l in i["layers"]],
         [(0, f"{d}/top.qcow2", "qcow2"), (1, f"{d}/base.qcow2", "qcow2")])
    want("disk0 read_only", i["read_only"], False)
i = imgs.get(sock + "vd1")
if i:
    want("vd1 name", i["name"], f"vd1 ({d}/r.raw)")
    want("vd1 layers", [(l["file"], l["format"]) for l in i["layers"]], [(f"{d}/r.raw", "raw")])
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

# ---- -b ---------------------------------------------------------------------------
"$TOPCOW" top --qmp "$SCRATCH/top.sock" -b -n 1 -d 0.3 >b1.txt 2>&1 || fail "top -b"
row=$(grep -F "disk0 ($SCRATCH/top.qcow2)" b1.txt) || { cat b1.txt >&2; fail "-b: no disk0 row"; }
read -r pid cmd _ <<<"$row"
[ "$pid" = "$QPID" ] && [ "$cmd" = qemu-system-x86_64 ] || fail "-b row: $row"
[ "$(awk '{print $(NF-3)}' <<<"$row")" = 2 ] || fail "-b row depth: $row"
grep -qF "vd1 ($SCRATCH/r.raw)" b1.txt || { cat b1.txt >&2; fail "-b: no vd1 row"; }

# ---- rates: 10 reads of 4 KiB inside one interval -----------------------------------
"$TOPCOW" top --qmp "$SCRATCH/top.sock" --json -n 1 -d 3 >j2.json 2>j2.err &
tpid=$!
sleep 1
mapfile -t cmds < <(for n in $(seq 10); do io0 "aio_read -P 0x5a $((n * 4))k 4k"; done
                    io0 "aio_flush")
ctl "${cmds[@]}" >/dev/null || fail "qemu-io reads"
wait "$tpid" || fail "top --json -d 3"
/usr/bin/python3 - "$SCRATCH" j2.json <<'EOF' || fail "rates"
import json, sys
i = [i for i in json.load(open(sys.argv[2]))["images"]
     if i["key"] == f"qmp:{sys.argv[1]}/top.sock:disk0"][0]
r, t = i["rates"], i["totals"]
# The JSON has 6 significant digits: rate x interval is exact to about 1e-5.
got = (round(r["read_ops_per_s"] * r["interval_s"], 3),
       round(r["read_bytes_per_s"] * r["interval_s"] / 4096, 3), t["read_ops"])
if got != (10, 10, 17) or not 2.5 < r["interval_s"] < 4:
    sys.exit(f"reads in the interval, their 4k blocks, total reads: {got}, "
             f"interval {r['interval_s']}")
EOF

# ---- top leaves the monitor free between samples ------------------------------------
# QEMU 7.2 serves one client per QMP socket; the others wait unanswered.
# While top runs (3 s), other clients are answered within 1 s.
"$TOPCOW" top --qmp "$SCRATCH/top.sock" --json -n 6 -d 0.5 >j3.json 2>j3.err &
tpid=$!
for _ in 1 2 3 4 5; do
    sleep 0.4
    QMP_TIMEOUT=1 "${QMPC[@]}" "$SCRATCH/top.sock" query-name >/dev/null ||
        fail "another client could not use the monitor while top ran"
done
wait "$tpid" || fail "top --json -n 6"
[ ! -s j3.err ] || { cat j3.err >&2; fail "top and another client on one monitor"; }
[ "$(grep -c '"key":"qmp:[^"]*:disk0"' j3.json)" = 6 ] || fail "top -n 6: disk0 missing"

# Each failing source's message is printed once, however many samples fail
# the same way.
# ---- a monitor another client holds -------------------------------------------------
"${QMPC[@]}" --hold 8 "$SCRATCH/top.sock" >hold.out &
hpid=$!
for _ in $(seq 100); do [ -s hold.out ] && break; sleep 0.05; done
[ "$(cat hold.out)" = held ] || fail "could not hold the monitor"
start=$SECONDS
"$TOPCOW" top --qmp "$SCRATCH/top.sock" --json -n 1 -d 0.1 >j4.json 2>j4.err ||
    fail "top with a busy monitor exited with $?"
[ $((SECONDS - start)) -le 6 ] || fail "a busy monitor held top $((SECONDS - start)) s"
grep -q '"images":\[\]' j4.json || fail "busy monitor: $(cat j4.json)"
[ "$(grep -c "^topcow top: qmp $SCRATCH/top.sock: no greeting within 2 s (is another client" \
    j4.err)" = 1 ] && [ "$(wc -l <j4.err)" = 1 ] || { cat j4.err >&2; fail "busy monitor message (once, though both samples failed)"; }
kill "$hpid"
wait "$hpid" 2>/dev/null || true

# ---- dead and stale sockets; published images still shown ---------------------------
/usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
    "$SCRATCH/stale.sock"
qemu-img create -q -f qcow2 pub.qcow2 16M
"$TOPCOW" serve -k "$SCRATCH/nbd.sock" -t -f qcow2 pub.qcow2 >serve.log 2>&1 &
SPID=$!
wait_socket "$SCRATCH/nbd.sock" serve.log
"$TOPCOW" top --qmp "$SCRATCH/none.sock" --qmp "$SCRATCH/stale.sock" --json -n 1 -d 0.2 \
    >j5.json 2>j5.err || fail "top with dead sockets exited with $?"
grep -qF "\"file\":\"$SCRATCH/pub.qcow2\"" j5.json || fail "dead sockets: $(cat j5.json)"
[ "$(grep -cxF "topcow top: qmp $SCRATCH/none.sock: connect: No such file or directory" \
    j5.err)" = 1 ] &&
[ "$(grep -cxF "topcow top: qmp $SCRATCH/stale.sock: connect: Connection refused (no QEMU \
listens there any more)" j5.err)" = 1 ] && [ "$(wc -l <j5.err)" = 2 ] ||
    { cat j5.err >&2; fail "dead socket messages"; }
kill -TERM "$SPID"
wait "$SPID" || fail "topcow serve exited with $?"
SPID=

# ---- what a QEMU could send: multi-line messages split across reads, events, ---------
# replies to other ids, error replies (a fake monitor, tests/top/qmp-fake.py)
fake_start() { # NAME [COMMAND TO FAIL]
    /usr/bin/python3 "$TOPCOW_SRCDIR/tests/top/qmp-fake.py" "$SCRATCH/$1.sock" "${@:2}" \
        >"$1.out" 2>&1 &
    for _ in $(seq 100); do [ -s "$1.out" ] && break; sleep 0.05; done
    [ "$(cat "$1.out")" = ready ] || fail "fake monitor $1: $(cat "$1.out")"
}
fake_start fake
fpid=$!
fake_start fakefail query-blockstats
"$TOPCOW" top --qmp "$SCRATCH/fake.sock" --qmp "$SCRATCH/fakefail.sock" --json -n 1 -d 0.2 \
    >j7.json 2>j7.err || fail "top with fake monitors exited with $?"
[ "$(grep -cxF "topcow top: qmp $SCRATCH/fakefail.sock: query-blockstats: GenericError: \
query-blockstats refused" j7.err)" = 1 ] && [ "$(wc -l <j7.err)" = 1 ] ||
    { cat j7.err >&2; fail "fake monitor error reply"; }
/usr/bin/python3 - "$SCRATCH" "$fpid" j7.json <<'EOF2' || fail "fake monitor figures"
import json, sys
imgs = json.load(open(sys.argv[3]))["images"]
keys = [i["key"] for i in imgs]
if keys != [f"qmp:{sys.argv[1]}/fake.sock:fake0"]:
    sys.exit(f"images {keys}")
i = imgs[0]
got = (i["name"], i["command"], i["pid"], i["read_only"], i["depth"], i["virtual_size"],
       [(l["file"], l["format"]) for l in i["layers"]], i["totals"])
t = dict(read_ops=3, read_bytes=12288, read_errors=2, write_ops=2, write_bytes=1 << 20,
         write_errors=0, flush_ops=1, flush_bytes=0, flush_errors=0, zero_ops=0, zero_bytes=0,
         zero_errors=0, discard_ops=4, discard_bytes=65536, discard_errors=0,
         read_latency_ns=3000, write_latency_ns=5000, flush_latency_ns=700,
         zero_latency_ns=0, discard_latency_ns=11)
want = ("fake0 (/fake/top.qcow2)", "python3 fakevm", int(sys.argv[2]), True, 2, 1 << 30,
        [("/fake/top.qcow2", "qcow2"), ("/fake/base.raw", "raw")], t)
if got != want:
    sys.exit(f"got  {got}\nwant {want}")
EOF2

# ---- a stopped QEMU: one timeout, then back once it runs again ----------------------
kill -STOP "$QPID"
start=$SECONDS
timeout 20 "$TOPCOW" top --qmp "$SCRATCH/top.sock" --json -n 3 -d 0.2 >j6.json 2>j6.err &
tpid=$!
sleep 3
kill -CONT "$QPID"
wait "$tpid" || fail "top with a stopped QEMU exited with $?"
[ $((SECONDS - start)) -le 7 ] || fail "a stopped QEMU held top $((SECONDS - start)) s"
[ "$(cat j6.err)" = "topcow top: qmp $SCRATCH/top.sock: no greeting within 2 s (QEMU, pid \
$QPID, is stopped)" ] || { cat j6.err >&2; fail "stopped QEMU message"; }
[ "$(grep -c '"key":"qmp:[^"]*:disk0"' j6.json)" = 3 ] || fail "disk0 not back after SIGCONT"
tail -n 1 j6.json | grep -q '"read_ops":17,' || fail "disk0 totals after SIGCONT"

kill -TERM "$QPID"
wait "$QPID" 2>/dev/null || true
QPID=
exit 0
