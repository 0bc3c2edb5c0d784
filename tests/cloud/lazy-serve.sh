#!/bin/bash
# Running an image straight from a remote (lib/cloud/io-remote.c), through
# topcow serve and the other commands: reads fetch only the chunks they
# touch, a restart reads from the persistent cache (a store whose chunks
# are all corrupted by then still serves what was read), a corrupted chunk
# is refused and never served, writes stay local until a clean shutdown
# pushes them as a new generation, a second read-write serve is refused by
# the lease, and the next open prefetches what the last run read.
#   lazy-serve.sh file     a file:// store in the scratch directory
#   lazy-serve.sh s3       an s3:// store on a Ceph RGW started by rgw.sh
. "$TOPCOW_SRCDIR/tests/lib.sh"

KIND=${1:?usage: lazy-serve.sh file|s3}
HERE=$TOPCOW_SRCDIR/tests/cloud
T=$TOPCOW
step() { echo "== $*"; }
SRV=
finish() {
    [ -n "$SRV" ] && kill "$SRV" 2>/dev/null
    [ "$KIND" = s3 ] && "$HERE/rgw.sh" stop "$SCRATCH/rgw"
    cleanup_scratch
}
trap finish EXIT

if [ "$KIND" = s3 ]; then
    require s3cmd
    rc=0
    "$HERE/rgw.sh" start "$SCRATCH/rgw" $$ >"$SCRATCH/env" || rc=$?
    [ $rc = 77 ] && exit 77
    [ $rc = 0 ] || fail "the RGW fixture did not start (exit $rc)"
    . "$SCRATCH/env"
    STORE=s3://$RGW_BUCKET/lazy
    s3c() { s3cmd -c "$RGW_S3CFG" "$@"; }
    chunk_keys() { s3c ls -r "$STORE/chunks/" | awk '{print $4}' | sed "s|^$STORE/||"; }
    corrupt() { # KEY: flip every bit of its middle byte
        s3c get --force "$STORE/$1" "$SCRATCH/obj" >/dev/null
        flip "$SCRATCH/obj"
        s3c put "$SCRATCH/obj" "$STORE/$1" >/dev/null
    }
else
    mkdir "$SCRATCH/store"
    STORE=file://$SCRATCH/store
    chunk_keys() { (cd "$SCRATCH/store" && find chunks -type f); }
    corrupt() { flip "$SCRATCH/store/$1"; }
fi
flip() {
    local size off byte
    size=$(stat -c %s "$1")
    off=$((size / 2))
    byte=$(od -An -tu1 -j "$off" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((255 - byte)))" | dd of="$1" bs=1 seek="$off" conv=notrunc status=none
}
export TOPCOW_CACHE_DIR=$SCRATCH/cache
SOCK=$SCRATCH/nbd.sock
NBD="nbd+unix:///?socket=$SOCK"
serve() { # ARGS...: start topcow serve -t on $SOCK
    rm -f "$SOCK"
    "$T" serve -t -k "$SOCK" "$@" 2>"$SCRATCH/serve.err" & SRV=$!
    wait_socket "$SOCK" "$SCRATCH/serve.err"
}
stop_serve() {
    kill "$SRV"
    wait "$SRV" || fail "serve exited with an error: $(cat "$SCRATCH/serve.err")"
    SRV=
}
# Chunks present in the cache: the state bytes (after a 128-byte header)
# that are 1 (present) or 2 (dirty).
cached() { od -An -v -tu1 -j 128 "$TOPCOW_CACHE_DIR"/remote-*/state | tr -s ' ' '\n' | grep -c '^[12]$' || true; }

cd "$SCRATCH"
step "an image of 40 chunks of random data in the store"
head -c 160M /dev/urandom >data.bin
qemu-img create -q -f qcow2 a.qcow2 1G
qemu-io -f qcow2 -c "write -s data.bin 0 160M" a.qcow2 >/dev/null
ok "$T" push a.qcow2 "$STORE/a"
nchunks=$(( ($(stat -c %s a.qcow2) + 4194303) / 4194304 ))

step "a cold read fetches only what it touches (and a little readahead)"
serve -r "$STORE/a"
qemu-io -f raw -r -c "read -P 0 300M 1M" "$NBD" >/dev/null || fail "a read of a hole"
want=$(qemu-io -f qcow2 -r -c "read -v 100M 4k" a.qcow2 | head -n 2 | md5sum)
got=$(qemu-io -f raw -r -c "read -v 100M 4k" "$NBD" | head -n 2 | md5sum)
[ "$want" = "$got" ] || fail "the data read through the remote differs"
sleep 1 # readahead settles
n=$(cached)
echo "after two small reads: $n of $nchunks chunks in the cache"
[ "$n" -ge 2 ] && [ "$n" -le 10 ] || fail "$n chunks cached after two small reads"
qemu-img compare -f qcow2 -F raw a.qcow2 "$NBD" || fail "the served image differs from the pushed one"
[ "$(cached)" = "$nchunks" ] || fail "a full read left $(cached) of $nchunks chunks cached"
stop_serve
ok "$T" info "$STORE/a"
ok "$T" check "$STORE/a"

step "a restart reads from the cache: even a store whose chunks are all corrupt serves it"
for k in $(chunk_keys); do corrupt "$k"; done
serve -r "$STORE/a"
qemu-img compare -f qcow2 -F raw a.qcow2 "$NBD" || fail "the warm cache served other data"
stop_serve

step "a corrupt chunk is refused, never served"
for k in $(chunk_keys); do corrupt "$k"; done # flip them back
rm -rf "$TOPCOW_CACHE_DIR"
# The chunk that holds guest offset 100M, found with qemu-img map and hashed
# with sha256sum: independent of topcow.
host=$(qemu-img map --output=json a.qcow2 |
       python3 -c 'import json, sys
for e in json.load(sys.stdin):
    if e["data"] and e["start"] <= 100 << 20 < e["start"] + e["length"]:
        print(e["offset"] + (100 << 20) - e["start"])')
ci=$((host / 4194304))
h=$(dd if=a.qcow2 bs=4M skip="$ci" count=1 status=none | sha256sum | cut -d' ' -f1)
corrupt "chunks/${h:0:2}/$h"
serve -r "$STORE/a"
must_fail qemu-io -f raw -r -c "read 100M 4k" "$NBD"
qemu-io -f raw -r -c "read 0 64k" "$NBD" >/dev/null || fail "the intact chunks stopped working"
stop_serve
corrupt "chunks/${h:0:2}/$h" # flip it back
rm -rf "$TOPCOW_CACHE_DIR"

step "writes stay local; a clean shutdown pushes them as a new generation"
cp a.qcow2 expect.qcow2
rm -f expect.qcow2.topcow
qemu-io -f qcow2 -c "write -P 0x5c 7M 3M" -c "write -P 0x3d 900M 1M" expect.qcow2 >/dev/null
serve "$STORE/a"
qemu-io -f raw -c "write -P 0x5c 7M 3M" -c "write -P 0x3d 900M 1M" "$NBD" >/dev/null
[ "$("$T" remote log "$STORE/a" | grep -c '^[* ] [0-9]')" = 1 ] || fail "a write reached the store before shutdown"
step "while it runs, a second read-write serve is refused by the lease"
must_fail "$T" serve -t -k "$SCRATCH/second.sock" "$STORE/a"
case $ERR in *"is leased to "*"pid $SRV (serve) until "*" UTC"*) ;; *) fail "second serve: $ERR" ;; esac
[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "not one line: $ERR"
stop_serve
[ "$("$T" remote log "$STORE/a" | grep -c '^[* ] [0-9]')" = 2 ] || fail "the shutdown pushed no generation"
ok "$T" pull "$STORE/a" pulled.qcow2
qemu-img compare expect.qcow2 pulled.qcow2 || fail "the pushed generation is not the written image"
qemu_check_clean pulled.qcow2
# The lease was released: another machine may write now.
TOPCOW_MACHINE_ID=other-machine ok "$T" push --force pulled.qcow2 "$STORE/a"

step "a linked clone runs from the remote, its base beside it in the store"
qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x21 0 2M" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 clone.qcow2
qemu-io -f qcow2 -c "write -P 0x22 1M 2M" clone.qcow2 >/dev/null
ok "$T" push base.qcow2 "$STORE/"
ok "$T" push clone.qcow2 "$STORE/clone"
qemu-img compare -f qcow2 clone.qcow2 "$(TOPCOW_CACHE_DIR=$SCRATCH/cache2 "$T" convert -O qcow2 "$STORE/clone" flat.qcow2 && echo flat.qcow2)" ||
    fail "the clone read from the remote differs"
"$T" info --backing-chain "$STORE/clone" | grep -q "^image: $STORE/base.qcow2$" || fail "the backing chain is not in the store"

step "the next open prefetches what the last run read"
rm -rf "$TOPCOW_CACHE_DIR"
serve -r "$STORE/a"
qemu-io -f raw -r -c "read 0 1M" -c "read 120M 1M" -c "read 40M 1M" "$NBD" >/dev/null
stop_serve
trace=$(wc -l <"$TOPCOW_CACHE_DIR"/remote-*/trace)
[ "$trace" -ge 3 ] || fail "the trace holds $trace chunks"
rm -f "$TOPCOW_CACHE_DIR"/remote-*/data "$TOPCOW_CACHE_DIR"/remote-*/state # cold again, trace kept
serve -r "$STORE/a"
for _ in $(seq 50); do [ "$(cached)" -ge "$trace" ] && break; sleep 0.1; done
[ "$(cached)" -ge "$trace" ] || fail "only $(cached) of the $trace traced chunks were prefetched"
stop_serve
if [ "$KIND" = s3 ]; then
    step "the server is stopped when serve shuts down: the writes stay cached; topcow push REMOTE sends them"
    cp pulled.qcow2 expect2.qcow2
    rm -f expect2.qcow2.topcow
    qemu-io -f qcow2 -c "write -P 0x6e 20M 1M" expect2.qcow2 >/dev/null
    rm -rf "$TOPCOW_CACHE_DIR"
    gens=$("$T" remote log "$STORE/a" | grep -c '^[* ] [0-9]')
    TOPCOW_S3_STALL_TIMEOUT=2 AWS_MAX_ATTEMPTS=1 serve "$STORE/a"
    qemu-io -f raw -c "write -P 0x6e 20M 1M" "$NBD" >/dev/null
    kill -STOP "$RGW_PID"
    kill "$SRV"
    wait "$SRV" || true
    SRV=
    kill -CONT "$RGW_PID"
    grep -q "." "$SCRATCH/serve.err" || fail "the failed push at shutdown said nothing"
    [ "$("$T" remote log "$STORE/a" | grep -c '^[* ] [0-9]')" = "$gens" ] ||
        fail "a generation appeared although the push failed"
    out=$("$T" push "$STORE/a") || fail "push REMOTE: $out"
    case $out in *"pushed the cached writes as generation"*) ;; *) fail "push REMOTE: $out" ;; esac
    ok "$T" pull --force "$STORE/a" pulled.qcow2
    qemu-img compare expect2.qcow2 pulled.qcow2 || fail "the writes pushed later are not the image"
    out=$("$T" push "$STORE/a")
    case $out in *"nothing to push"*) ;; *) fail "a second push REMOTE: $out" ;; esac
fi
echo "all lazy-serve checks passed ($KIND)"
