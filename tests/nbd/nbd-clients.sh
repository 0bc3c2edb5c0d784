#!/bin/bash
# topcow serve with real NBD clients, QEMU's tools as the judges:
#   - nbdinfo --map (base:allocation and qemu:allocation-depth) equals what
#     qemu-img map says of the image, and what qemu-nbd serves for it;
#   - nbdinfo --list / --content; nbdcopy out and in (1 and 4 connections);
#   - qemu-img compare between the file and the URI;
#   - qemu-io -f raw over the URI writes patterns (normal, FUA, zeroes,
#     discard) that qemu-io then reads back from the file; qemu-img check clean.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require qemu-img qemu-io qemu-nbd nbdinfo nbdcopy
cd "$SCRATCH"

# A backing chain with data, zero clusters, discarded clusters and holes in
# both layers, an MBR signature for --content, and an unaligned tail.
qemu-img create -q -f qcow2 base.qcow2 65m
ok qemu-io -f qcow2 -c 'write -P 1 0 4M' -c 'write -P 2 10M 1M' -c 'write -z 20M 1M' \
    -c 'write -P 7 40M 3M' base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 65m
ok qemu-io -f qcow2 -c 'write -P 3 1M 64k' -c 'write -z 2M 128k' -c 'write -P 4 30M 100k' \
    -c 'discard 10M 64k' -c 'write -P 9 64M 1M' -c 'write -P 0 41M 64k' top.qcow2
ok qemu-io -f qcow2 -c "write -P 0x55 510 1" -c "write -P 0xaa 511 1" top.qcow2

# ---- block status: the map equals qemu-img map's, and qemu-nbd's --------------
serve_start t -t -e 4 -r -A -x disk -D "a test disk" -f qcow2 top.qcow2
qemu-nbd -t -r -A -x disk -k "$SCRATCH/q.sock" -f qcow2 top.qcow2 &
QPID=$!
wait_socket "$SCRATCH/q.sock" /dev/null
T="nbd+unix:///disk?socket=$(sock t)"
Q="nbd+unix:///disk?socket=$SCRATCH/q.sock"
expected_map top.qcow2 > want.map
nbd_map base:allocation "$T" > got.map
diff want.map got.map || fail "base:allocation map differs from qemu-img map"
MAP_TOOL="$TOPCOW map" expected_map top.qcow2 > topcow.map
diff topcow.map got.map || fail "base:allocation map differs from topcow map"
[ "$(wc -l < got.map)" -ge 6 ] || fail "map too simple to prove anything: $(cat got.map)"
nbd_map base:allocation "$Q" > qemu.map
diff qemu.map got.map || fail "base:allocation map differs from qemu-nbd's"
nbd_map qemu:allocation-depth "$T" > got-depth.map
nbd_map qemu:allocation-depth "$Q" > qemu-depth.map
diff qemu-depth.map got-depth.map || fail "qemu:allocation-depth differs from qemu-nbd's"
grep -q ' 2$' got-depth.map && grep -q ' 1$' got-depth.map && grep -q ' 0$' got-depth.map ||
    fail "allocation depth should show local, backing and absent runs: $(cat got-depth.map)"
# Depth from qemu-img map: present runs at depth d are d+1, absent ones 0.
qemu-img map -U --output=json top.qcow2 | /usr/bin/python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    t = e["depth"] + 1 if e["present"] else 0
    if out and out[-1][2] == t:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["length"], t])
for o in out: print(*o)' > want-depth.map
diff want-depth.map got-depth.map || fail "allocation depth differs from qemu-img map"
# The same through qemu-img map on the URI (QEMU as the NBD client).
qemu-img map --output=json -f raw "$T" | /usr/bin/python3 -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["start"], e["length"], (0 if e["data"] else 1) | (2 if e["zero"] else 0))' |
    awk 'n && $1 == off + len && $3 == type { len += $2; next }
         { if (n++) print off, len, type; off = $1; len = $2; type = $3 }
         END { if (n) print off, len, type }' > qemu-client.map
diff want.map qemu-client.map || fail "qemu-img map over NBD differs"

# ---- list, info, content --------------------------------------------------------
nbdinfo --list "nbd+unix:///?socket=$(sock t)" > list.txt
grep -q 'export="disk"' list.txt || fail "--list lacks the export: $(cat list.txt)"
grep -q 'description: a test disk' list.txt || fail "--list lacks the description"
nbdinfo "$T" > info.txt
grep -q 'export-size: 68157440' info.txt || fail "export size: $(cat info.txt)"
grep -q 'is_read_only: true' info.txt || fail "-r not advertised"
grep -q 'can_multi_conn: true' info.txt || fail "multi-conn not advertised"
nbdinfo --content "$T" | grep -q 'DOS/MBR boot sector' || fail "--content does not see the MBR"
nbdinfo "nbd+unix:///nosuch?socket=$(sock t)" >/dev/null 2>err.txt && fail "unknown export accepted"
grep -q 'error to opt_go request' err.txt || fail "unknown export: $(cat err.txt)"

# ---- nbdcopy out, and qemu-img compare ---------------------------------------------
qemu-img convert -U -O raw top.qcow2 want.raw
nbdcopy "$T" out1.raw
cmp want.raw out1.raw || fail "nbdcopy (1 connection) read different data"
nbdcopy --connections=4 --requests=16 "$T" out4.raw
cmp want.raw out4.raw || fail "nbdcopy (4 connections) read different data"
ok qemu-img compare -U top.qcow2 "$T"
# A long read over data and holes comes as data and hole chunks that
# assemble to the image's bytes; a short one (and one with DF) as one data chunk.
/usr/bin/python3 - "$(sock t)" want.raw <<'PY' || fail "structured reads with holes"
import nbd, sys
h = nbd.NBD()
h.set_export_name("disk")
h.connect_unix(sys.argv[1])
want = open(sys.argv[2], "rb").read()
def read(off, n, flags=0):
    chunks, buf = [], bytearray(n)
    def cb(sub, o, status, err):
        chunks.append(status)
        buf[o - off:o - off + len(sub)] = sub
        return 0
    h.pread_structured(n, off, cb, flags)
    assert bytes(buf) == want[off:off + n], "data at %d+%d" % (off, n)
    return chunks
c = read(3 << 20, 8 << 20)      # data to 4M, hole, data at 10M
assert nbd.READ_HOLE in c and nbd.READ_DATA in c, c
assert read(5 << 20, 1 << 20) == [nbd.READ_HOLE], "a hole-only read"
assert read(0, 4096) == [nbd.READ_DATA]
assert read(3 << 20, 8 << 20, nbd.CMD_FLAG_DF) == [nbd.READ_DATA], "DF"
h.shutdown()
PY
kill -TERM $QPID
wait $QPID || true
serve_stop t

# ---- writes: nbdcopy in, qemu-io patterns, read back from the file ---------------
cp top.qcow2 rw.qcow2
serve_start w -t -e 4 --discard=unmap -f qcow2 rw.qcow2
W=$(uri w)
head -c 3M /dev/urandom > r.bin
nbdcopy --connections=4 r.bin "$W"   # over the first 3 MiB, the rest untouched
ok qemu-io -f raw -c 'write -P 0x61 5M 1M' -c 'write -f -P 0x62 7M 12k' \
    -c 'write -P 0x63 8191 5000' -c 'write -z 12M 2M' -c 'write -z -u 14M 1M' \
    -c 'discard 40M 1M' -c 'aio_write -P 0x64 50M 64k' -c 'aio_write -P 0x65 52M 64k' \
    -c aio_flush -c flush "$W"
ok qemu-io -f raw -c 'read -P 0x61 5M 1M' -c 'read -P 0x63 8191 5000' "$W"
serve_stop w
qemu_check_clean rw.qcow2
ok qemu-io -r -f qcow2 -c 'read -P 0x61 5M 1M' -c 'read -P 0x62 7M 12k' \
    -c 'read -P 0x63 8191 5000' -c 'read -P 0 12M 3M' -c 'read -P 0 40M 1M' \
    -c 'read -P 0x64 50M 64k' -c 'read -P 0x65 52M 64k' -c 'read -P 7 43M 0' \
    -c 'read -P 9 64M 1M' rw.qcow2
qemu-img convert -O raw rw.qcow2 rw.raw
# nbdcopy's data, except where qemu-io wrote 0x63 over it.
cmp -n 8191 r.bin rw.raw && cmp -i 13191 -n $((3145728 - 13191)) r.bin rw.raw ||
    fail "nbdcopy's data is not in the image"
# discard=unmap freed the discarded range in the top layer (it reads zero, and
# is no longer stored there).
qemu-img map --output=json rw.qcow2 | /usr/bin/python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["start"] <= 40 << 20 < e["start"] + e["length"]:
        sys.exit(0 if e["zero"] and not e["data"] else 1)
sys.exit(1)' || fail "TRIM with --discard=unmap did not deallocate"
echo "nbd-clients: ok"
