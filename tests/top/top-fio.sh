#!/bin/bash
# topcow top against a known workload: fio's nbd engine does exactly 20,000
# 4 KiB random writes and then 20,000 random reads, rate-limited, through
# `topcow serve` on a qcow2 overlay over a backing file full of data, while
# `topcow top --json` samples every second.  Checked against independent
# judges:
#   - totals: the image's read and write operation counts and bytes equal
#     fio's own counts, exactly;
#   - rates: every full interval inside fio's run reads within 5% of the rate
#     fio reports;
#   - allocation: the data clusters allocated equal the allocated clusters
#     `qemu-img check` reports for the overlay, and all clusters allocated
#     account for the growth of the image end it reports; the COW bytes are
#     exactly the rest of each newly allocated cluster, copied from the
#     backing file (each first 4 KiB write into a 64 KiB cluster copies
#     60 KiB);
#   - the heat map: writes landed only in the buckets of the region fio was
#     given, and in every one of them;
#   - the chain: the read bytes resolved by the overlay are those fio's I/O
#     log shows inside the written region; the backing file answered the
#     rest.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require fio qemu-img qemu-io python3
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "SKIP: fio has no nbd engine" >&2; exit 77; }

export TOPCOW_STATS_DIR="$SCRATCH/stats"
cd "$SCRATCH"

# A 1 GiB backing file with data everywhere fio will touch.
ok qemu-img create -q -f qcow2 base.qcow2 1G
ok qemu-io -f qcow2 -c 'write -P 0xb5 768M 128M' base.qcow2
ok qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
end_before=$(qemu-img check --output=json top.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["image-end-offset"])')

sock="$SCRATCH/nbd.sock"
"$TOPCOW" serve -t -k "$sock" -f qcow2 top.qcow2 &
server=$!
top_pid=
cleanup() {
    [ -z "$top_pid" ] || kill "$top_pid" 2>/dev/null || true
    kill "$server" 2>/dev/null || true
    wait 2>/dev/null || true
    cleanup_scratch
}
trap cleanup EXIT
wait_socket "$sock"

"$TOPCOW" top --json -d 1 > top.jsonl &
top_pid=$!
sleep 1.5

# Writes go to [768M, 896M) (heat buckets 768..895 of 1 MiB); reads to
# [704M, 832M), half of it never written, so the backing file answers those
# (fio's I/O log says which).  4,000 IOPS for 5 s each.
fio_run() {
    fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$1" --bs=4k \
        --offset="$2" --size=128M --number_ios=20000 --iodepth=4 --rate_iops=4000 \
        --randrepeat=1 --norandommap --write_iolog="$3.log" --output-format=json \
        --output="$3.json" >/dev/null || fail "fio $1 failed"
}
fio_run randwrite 768M fio-w
sleep 1.5
fio_run randread 704M fio-r
sleep 2.5
kill "$top_pid"; wait "$top_pid" 2>/dev/null || true
top_pid=
"$TOPCOW" top --json -n 1 -d 0.2 > final.json
kill "$server"; wait "$server" 2>/dev/null || true
qemu-img check --output=json top.qcow2 > check.json || fail "qemu-img check failed: $(cat check.json)"

python3 - "$end_before" <<'PY' || fail "topcow top disagrees with fio / qemu-img (see above)"
import json, sys
end_before = int(sys.argv[1])
fw = json.load(open("fio-w.json"))["jobs"][0]["write"]
# fio's I/O log of the reads: "FILE read OFFSET LENGTH" lines.
read_log = [l.split() for l in open("fio-r.log") if " read " in l]
read_offsets = [int(x[x.index("read") + 1]) for x in read_log]
assert len(read_offsets) == 20000, len(read_offsets)
fr = json.load(open("fio-r.json"))["jobs"][0]["read"]
final = json.load(open("final.json"))["images"]
assert len(final) == 1, f"expected one published image, got {len(final)}"
img = final[0]
t, layers = img["totals"], img["layers"]
bad = []
def check(what, got, want):
    print(f"{what}: topcow {got}, judge {want}")
    if got != want:
        bad.append(what)

# Totals, exactly.
check("write ops", t["write_ops"], fw["total_ios"])
check("write bytes", t["write_bytes"], fw["io_bytes"])
check("read ops", t["read_ops"], fr["total_ios"])
check("read bytes", t["read_bytes"], fr["io_bytes"])
check("write errors", t["write_errors"] + t["read_errors"], 0)

# Rates: full intervals while fio ran (all of an interval's samples are
# inside one phase when its rate is near the target: the first and last
# intervals of a phase are partial and are left out).
samples = [json.loads(l) for l in open("top.jsonl") if l.strip()]
def rates(key):
    out = []
    for s in samples:
        for i in s["images"]:
            if i["rates"] and i["rates"][key] > 0:
                out.append(i["rates"][key])
    return out[1:-1]
for key, fio_iops in (("write_ops_per_s", fw["iops"]), ("read_ops_per_s", fr["iops"])):
    r = rates(key)
    print(f"{key}: fio {fio_iops:.0f}/s, top intervals {[round(x) for x in r]}")
    if len(r) < 2:
        bad.append(f"{key}: only {len(r)} full intervals")
    for x in r:
        if abs(x - fio_iops) > 0.05 * fio_iops:
            bad.append(f"{key} {x:.0f} vs fio {fio_iops:.0f}")

# Allocation against qemu-img check.
chk = json.load(open("check.json"))
top_layer = layers[0]
check("data clusters allocated", top_layer["data_clusters_allocated"], chk["allocated-clusters"])
grown = (chk["image-end-offset"] - end_before) // 65536
check("clusters allocated (image end growth)", top_layer["clusters_allocated"], grown)
check("COW bytes", top_layer["cow_bytes"], chk["allocated-clusters"] * (65536 - 4096))

# Heat map: bucket size 1 MiB on a 1 GiB disk; fio's region is buckets 768..895.
heat = img["heat"]
assert heat["buckets"] == 1024 and heat["bucket_bytes"] == 1 << 20, heat["bucket_bytes"]
hot = {b for b, n in heat["write"] if n > 0}
outside = sorted(b for b in hot if not 768 <= b < 896)
print(f"write buckets: {len(hot)} hot, outside the region: {outside[:10]}")
if outside:
    bad.append("writes outside fio's region in the heat map")
if hot != set(range(768, 896)):
    bad.append(f"{128 - len(hot & set(range(768, 896)))} buckets of fio's region are cold")
check("heat map write bytes", sum(n for _, n in heat["write"]), fw["io_bytes"])
check("heat map read bytes", sum(n for _, n in heat["read"]), fr["io_bytes"])
read_hot = {b for b, n in heat["read"] if n > 0}
check("read buckets", read_hot, {o >> 20 for o in read_offsets})

# The chain.
assert len(layers) == 2 and layers[1]["file"].endswith("base.qcow2"), layers
res = [l["read_bytes_resolved"] for l in layers]
# Every written cluster of [768M, 896M) is in the overlay (qemu-img check
# counted them all above), nothing below 768M is.
in_top = sum(4096 for o in read_offsets if o >= 768 << 20)
check("read bytes resolved by the overlay", res[0], in_top)
check("read bytes resolved by the backing file", res[1], fr["io_bytes"] - in_top)
check("backing layer reads", layers[1]["read_bytes"], res[1])

if bad:
    print("MISMATCH:", "; ".join(bad))
    sys.exit(1)
PY
echo "top-fio: OK"
