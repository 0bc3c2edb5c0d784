#!/bin/bash
# topcow push / pull / remote against a store: round trips judged by
# qemu-img compare, a delta push of 5% of a 1 GiB image counted on the
# server side, racing pushers of diverged copies, pushes killed at random
# points, leases, a corrupted chunk, pulls that must not lose local work,
# rollback and gc.
#   push-pull.sh file     a file:// store in the scratch directory
#   push-pull.sh s3       an s3:// store on a Ceph RGW started by rgw.sh;
#                         the server side is read with s3cmd
# Exit 77 when Ceph, botocore or s3cmd is not installed (s3 only).
. "$TOPCOW_SRCDIR/tests/lib.sh"

KIND=${1:?usage: push-pull.sh file|s3}
HERE=$TOPCOW_SRCDIR/tests/cloud
T=$TOPCOW
BIG=${PUSH_PULL_BIG_MB:-1024}   # the delta test's image, MiB of data
step() { echo "== $*"; }

if [ "$KIND" = s3 ]; then
    require s3cmd
    RGW_DIR=$SCRATCH/rgw
    finish() { "$HERE/rgw.sh" stop "$RGW_DIR"; cleanup_scratch; }
    trap finish EXIT
    rc=0
    "$HERE/rgw.sh" start "$RGW_DIR" $$ >"$SCRATCH/env" || rc=$?
    [ $rc = 77 ] && exit 77
    [ $rc = 0 ] || fail "the RGW fixture did not start (exit $rc)"
    . "$SCRATCH/env"
    STORE=s3://$RGW_BUCKET/pp
    s3c() { s3cmd -c "$RGW_S3CFG" "$@"; }
    # "COUNT BYTES" of the chunk objects, as the server lists them.
    server_chunks() {
        s3c ls -r "$STORE/chunks/" | awk '{n++; b += $3} END {print n + 0, b + 0}'
    }
    server_keys() { s3c ls -r "$STORE/$1" | awk '{print $4}' | sed "s|^$STORE/||"; }
    # Flip one bit in the middle of object KEY.
    corrupt() {
        s3c get --force "$STORE/$1" "$SCRATCH/obj" >/dev/null
        flip "$SCRATCH/obj"
        s3c put "$SCRATCH/obj" "$STORE/$1" >/dev/null
    }
else
    mkdir "$SCRATCH/store"
    STORE=file://$SCRATCH/store
    server_chunks() {
        find "$SCRATCH/store/chunks" -type f -printf '%s\n' 2>/dev/null |
            awk '{n++; b += $1} END {print n + 0, b + 0}'
    }
    server_keys() { (cd "$SCRATCH/store" && find "$1" -type f | sort); }
    corrupt() { flip "$SCRATCH/store/$1"; }
fi
flip() { # FILE: invert the bits of its middle byte, in place
    local size off byte
    size=$(stat -c %s "$1")
    off=$((size / 2))
    byte=$(od -An -tu1 -j "$off" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((255 - byte)))" | dd of="$1" bs=1 seek="$off" conv=notrunc status=none
}
json_field() { sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p"; }
head_of() { "$T" remote log "$1" | sed -n 's/^\* \([0-9a-f-]*\) .*/\1/p'; }

cd "$SCRATCH"

step "round trip: push, pull elsewhere, qemu-img compare"
qemu-img create -q -f qcow2 a.qcow2 256M
qemu-io -f qcow2 -c "write -P 0x5a 0 20M" -c "write -P 0xa5 100M 5M" -c "write -z 200M 1M" \
    a.qcow2 >/dev/null
ok "$T" push a.qcow2 "$STORE/"
mkdir other
ok "$T" pull "$STORE/a.qcow2" other/a.qcow2
qemu-img compare -q a.qcow2 other/a.qcow2 || fail "the pulled image reads differently"
cmp a.qcow2 other/a.qcow2 || fail "the pulled file differs from the pushed one"
qemu_check_clean other/a.qcow2
grep -q "^remote $STORE/a.qcow2$" other/a.qcow2.topcow || fail "pull wrote no state file"
# The pulled file is sparse where the image file has holes or zeros.
[ "$(stat -c %b other/a.qcow2)" -le "$(( $(stat -c %s other/a.qcow2) / 512 ))" ] ||
    fail "the pulled file is not sparse"
gen1=$(head_of "$STORE/a.qcow2")
[ -n "$gen1" ] || fail "remote log shows no HEAD"
cp a.qcow2 a.gen1

step "an unchanged image pushes nothing; the same data under another name uploads nothing"
out=$("$T" push --output=json a.qcow2 "$STORE/a.qcow2")
[ "$(json_field up-to-date <<<"$out")" = true ] || fail "second push not up to date: $out"
before=$(server_chunks)
cp a.qcow2 copy.qcow2
out=$("$T" push --output=json copy.qcow2 "$STORE/copy-of-a")
[ "$(json_field chunks-transferred <<<"$out")" = 0 ] || fail "a copy uploaded chunks: $out"
[ "$(server_chunks)" = "$before" ] || fail "the server gained chunks for a copy"

step "linked clone: an overlay's push shares nothing it should not upload twice"
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 clone.qcow2
qemu-io -f qcow2 -c "write -P 0x77 1M 1M" clone.qcow2 >/dev/null
out=$("$T" push --output=json clone.qcow2 "$STORE/clone")
n=$(json_field chunks-transferred <<<"$out")
[ "$n" -ge 1 ] && [ "$n" -le 2 ] || fail "the overlay (1 MiB of data) uploaded $n chunks: $out"

step "compressed on the wire: fewer bytes sent, the same image pulled"
# Text compresses; pattern runs would dedupe instead, which is not the point.
seq 1 3000000 >numbers.txt
qemu-img create -q -f qcow2 text.qcow2 64M
qemu-io -f qcow2 -c "write -s numbers.txt 0 20M" text.qcow2 >/dev/null
before=$(server_chunks)
out=$("$T" push -c --output=json text.qcow2 "$STORE/text")
after=$(server_chunks)
sent=$(json_field bytes-transferred <<<"$out")
n=$(json_field chunks-transferred <<<"$out")
echo "compressed push: $n chunks, $sent bytes sent for a $(stat -c %s text.qcow2)-byte file"
[ "$sent" -lt $(( $(stat -c %s text.qcow2) / 2 )) ] || fail "-c sent $sent bytes: $out"
[ $(( ${after#* } - ${before#* } )) = "$sent" ] || fail "the server holds other than what was sent"
ok "$T" pull "$STORE/text" text.pulled
cmp text.qcow2 text.pulled || fail "the compressed push does not pull back the same"
rm -f text.pulled text.pulled.topcow

step "pull: local chunks are reused, an interrupted pull's part file is resumed"
qemu-io -f qcow2 -c "write -P 0x33 120M 4M" a.qcow2 >/dev/null
ok "$T" push a.qcow2 "$STORE/a.qcow2"
out=$("$T" pull --output=json "$STORE/a.qcow2" other/a.qcow2)
n=$(json_field chunks-transferred <<<"$out")
# 4 MiB of guest data in place in the file, plus metadata: at most 3 chunks.
[ "$n" -ge 1 ] && [ "$n" -le 3 ] || fail "pull of a small change fetched $n chunks: $out"
qemu-img compare -q a.qcow2 other/a.qcow2 || fail "incremental pull differs"
# A part file holding the first half, as an interrupted pull leaves it.
mkdir resume
size=$(stat -c %s a.qcow2)
head -c $((size / 2)) a.qcow2 >resume/a.qcow2.topcow-part
truncate -s "$size" resume/a.qcow2.topcow-part
all=$("$T" pull --output=json "$STORE/a.qcow2" fresh.qcow2 | json_field chunks-transferred)
out=$("$T" pull --output=json "$STORE/a.qcow2" resume/a.qcow2)
n=$(json_field chunks-transferred <<<"$out")
[ "$n" -lt "$all" ] || fail "the resumed pull fetched $n of $all chunks: $out"
cmp a.qcow2 resume/a.qcow2 || fail "the resumed pull is wrong"
[ ! -e resume/a.qcow2.topcow-part ] || fail "the part file was left behind"

step "pull keeps local work: unpushed changes and foreign files are not overwritten"
qemu-io -f qcow2 -c "write -P 0x44 0 1M" other/a.qcow2 >/dev/null
sum=$(sha other/a.qcow2)
must_fail "$T" pull "$STORE/a.qcow2" other/a.qcow2
case $ERR in *"changes not pushed since generation"*"--force"*) ;; *) fail "unclear: $ERR" ;; esac
[ "$(sha other/a.qcow2)" = "$sum" ] || fail "a refused pull changed the image"
cp a.qcow2 stranger.qcow2
must_fail "$T" pull "$STORE/a.qcow2" stranger.qcow2
case $ERR in *"did not come from a remote"*) ;; *) fail "unclear: $ERR" ;; esac
ok "$T" pull --force "$STORE/a.qcow2" other/a.qcow2
qemu-img compare -q a.qcow2 other/a.qcow2 || fail "pull --force"

step "delta push: rewrite 5% of a ${BIG} MiB image, upload at most the changed chunks"
head -c $((BIG << 20)) /dev/urandom >big.raw
qemu-img convert -f raw -O qcow2 big.raw big.qcow2
rm big.raw
ok "$T" push -j 4 big.qcow2 "$STORE/big"
cp big.qcow2 big.before
# 5% of the data in 13 scattered pieces, rewritten in place.
piece=$(( (BIG << 20) / 20 / 13 / 65536 * 65536 ))
head -c $((piece * 13)) /dev/urandom >delta.bin
cmds=()
for i in $(seq 0 12); do
    cmds+=(-c "write -s delta.bin $(( i * (BIG << 20) / 13 + 4096 * i )) $piece")
done
# qemu-io -s reads from the start of the file each time: fine, the pieces
# still differ from what was there.
qemu-io -f qcow2 "${cmds[@]}" big.qcow2 >/dev/null
# The chunks that differ, counted independently of topcow: split both files
# in 4 MiB pieces and compare them.
mkdir c1 c2
split -a 4 -b 4M big.before c1/ && split -a 4 -b 4M big.qcow2 c2/
changed=0
for f in c2/*; do cmp -s "$f" "c1/${f#c2/}" || changed=$((changed + 1)); done
rm -rf c1 c2 big.before
before=$(server_chunks)
out=$("$T" push --output=json big.qcow2 "$STORE/big")
after=$(server_chunks)
sent=$(json_field chunks-transferred <<<"$out")
bytes=$(json_field bytes-transferred <<<"$out")
new=$(( ${after% *} - ${before% *} ))
newbytes=$(( ${after#* } - ${before#* } ))
echo "delta push: $changed chunks of 4 MiB changed; topcow uploaded $sent chunks ($bytes bytes);" \
     "the server gained $new chunk objects ($newbytes bytes); the image file is $(stat -c %s big.qcow2) bytes"
[ "$sent" -le "$changed" ] || fail "uploaded $sent chunks, only $changed changed"
[ "$sent" -ge 1 ] || fail "nothing uploaded"
[ "$new" = "$sent" ] && [ "$newbytes" = "$bytes" ] ||
    fail "the server gained $new objects / $newbytes bytes, topcow says $sent / $bytes"
ok "$T" pull "$STORE/big" big.pulled
qemu-img compare -q big.qcow2 big.pulled || fail "the big image's round trip"
rm -f big.pulled big.pulled.topcow

step "conflict: two pushers of diverged copies, at once; exactly one wins"
for who in x y; do
    mkdir "$who"
    ok "$T" pull "$STORE/a.qcow2" "$who/a.qcow2"
done
qemu-io -f qcow2 -c "write -P 0x78 50M 2M" x/a.qcow2 >/dev/null
qemu-io -f qcow2 -c "write -P 0x79 60M 2M" y/a.qcow2 >/dev/null
base=$(head_of "$STORE/a.qcow2")
"$T" push x/a.qcow2 "$STORE/a.qcow2" >x.out 2>&1 & px=$!
"$T" push y/a.qcow2 "$STORE/a.qcow2" >y.out 2>&1 & py=$!
rx=0 ry=0
wait $px || rx=$?
wait $py || ry=$?
echo "pusher x: exit $rx: $(cat x.out)"
echo "pusher y: exit $ry: $(cat y.out)"
if [ $rx = 0 ] && [ $ry != 0 ]; then win=x lose=y
elif [ $ry = 0 ] && [ $rx != 0 ]; then win=y lose=x
else fail "exit $rx and $ry: exactly one push must win"; fi
head=$(head_of "$STORE/a.qcow2")
ok "$T" pull -g "$head" "$STORE/a.qcow2" check.qcow2
qemu-img compare -q $win/a.qcow2 check.qcow2 || fail "HEAD is not the winner's copy"
rm -f check.qcow2 check.qcow2.topcow
grep -q "conflict" $lose.out || fail "no conflict reported: $(cat $lose.out)"
lgen=$(sed -n 's/.*stored as generation \([0-9a-f-]*\).*/\1/p' $lose.out)
[ -n "$lgen" ] || fail "the conflict message does not name the stored generation: $(cat $lose.out)"
[ "$(head_of "$STORE/a.qcow2")" = "$head" ] || fail "the loser moved HEAD"
ok "$T" pull -g "$lgen" "$STORE/a.qcow2" check.qcow2
qemu-img compare -q $lose/a.qcow2 check.qcow2 || fail "the loser's generation is not retrievable"
rm -f check.qcow2 check.qcow2.topcow
"$T" remote log "$STORE/a.qcow2" | grep -q " $lgen .*" || fail "remote log lacks $lgen"
[ "$(grep -c "^  $lgen $base " <("$T" remote log "$STORE/a.qcow2"))" = 1 ] ||
    fail "the loser's generation does not name $base as its parent"
# --force makes the loser's copy HEAD; the winner's stays in the log.
ok "$T" push --force $lose/a.qcow2 "$STORE/a.qcow2"
ok "$T" pull -g "$(head_of "$STORE/a.qcow2")" "$STORE/a.qcow2" check.qcow2
qemu-img compare -q $lose/a.qcow2 check.qcow2 || fail "push --force"
rm -f check.qcow2 check.qcow2.topcow
"$T" remote log "$STORE/a.qcow2" | grep -q " $head " || fail "the winner's generation vanished"

step "pushes killed at random points: HEAD always names a complete generation, the next push resumes"
mkdir k
head -c 192M /dev/urandom >k/raw
qemu-img convert -f raw -O qcow2 k/raw k/big.qcow2
rm k/raw
# Kill points spread over a whole push: time one (of 64 MiB of new data) first.
qemu-io -f qcow2 -c "write -P 15 0 64M" k/big.qcow2 >/dev/null
t0=$(date +%s%N)
ok "$T" push -j 2 k/big.qcow2 "$STORE/kill"
ms=$(( ($(date +%s%N) - t0) / 1000000 + 50 ))
echo "a push of 64 MiB of new data takes $ms ms here"
for round in 1 2 3 4 5 6; do
    head -c 64M /dev/urandom >k/new
    qemu-io -f qcow2 -c "write -s k/new $((round * 16))M 64M" k/big.qcow2 >/dev/null
    old=$(head_of "$STORE/kill")
    "$T" push -j 2 k/big.qcow2 "$STORE/kill" >/dev/null 2>&1 & pid=$!
    sleep "$(awk -v ms="$ms" -v r="$RANDOM" 'BEGIN {printf "%.3f", ms * (r % 1000) / 1000 / 1000}')"
    kill -KILL $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    now=$(head_of "$STORE/kill")
    ok "$T" pull -g "$now" "$STORE/kill" k/check.qcow2
    if [ "$now" = "$old" ]; then
        echo "round $round: killed before HEAD moved"
    else
        qemu-img compare -q k/big.qcow2 k/check.qcow2 ||
            fail "round $round: HEAD moved to $now, which is not the pushed image"
        echo "round $round: killed after HEAD moved to $now"
    fi
    qemu_check_clean k/check.qcow2
    rm -f k/check.qcow2 k/check.qcow2.topcow
    # The next push takes the dead pusher's lease (same machine, pid gone)
    # and sends only what the killed one did not.
    out=$("$T" push --output=json k/big.qcow2 "$STORE/kill") || fail "round $round: resume: $out"
    echo "round $round: the resumed push uploaded $(json_field chunks-transferred <<<"$out") chunks"
    # 64 MiB rewritten in place: 16 or 17 chunks, plus metadata chunks.
    [ "$(json_field chunks-transferred <<<"$out")" -le 20 ] || fail "round $round: resume sent too much: $out"
    ok "$T" pull "$STORE/kill" k/check.qcow2
    qemu-img compare -q k/big.qcow2 k/check.qcow2 || fail "round $round: after the resumed push"
    rm -f k/check.qcow2 k/check.qcow2.topcow
done

step "lease: another machine's live lease refuses writers, an expired one needs --take-lease"
# A pusher on "machine-2" stopped in the middle keeps its lease (ttl 4 s).
qemu-io -f qcow2 -c "write -P 0x66 0 4M" a.qcow2 >/dev/null
TOPCOW_MACHINE_ID=machine-2 "$T" push --force --lease-ttl 4 -j 1 big.qcow2 "$STORE/a.qcow2" \
    >/dev/null 2>&1 & pid=$!
for _ in $(seq 100); do
    "$T" remote ls "$STORE" | grep -q "^a.qcow2 .*(push) until" && break
    sleep 0.05
done
kill -STOP $pid
must_fail "$T" push --no-wait --force a.qcow2 "$STORE/a.qcow2"
case $ERR in *"is leased to root@"*"pid $pid (push) until "*" UTC"*) ;; *) fail "lease message: $ERR" ;; esac
must_fail "$T" remote gc "$STORE"
case $ERR in *"a.qcow2 is leased to"*) ;; *) fail "gc during a push: $ERR" ;; esac
# Without --no-wait a push waits for another push (15 s at most), then gives
# up once the lease expired: it was never released.
must_fail "$T" push --force a.qcow2 "$STORE/a.qcow2"
case $ERR in *"expired at"*"--take-lease"*) ;; *) fail "expired lease message: $ERR" ;; esac
ok "$T" push --force --take-lease a.qcow2 "$STORE/a.qcow2"
kill -CONT $pid
wait $pid && fail "the pusher whose lease was taken over succeeded"
ok "$T" pull -g "$(head_of "$STORE/a.qcow2")" "$STORE/a.qcow2" check.qcow2
qemu-img compare -q a.qcow2 check.qcow2 || fail "HEAD after the takeover is not the taker's"
rm -f check.qcow2 check.qcow2.topcow

step "a bit flipped in a stored chunk is detected on pull, never used"
ok "$T" push --force a.qcow2 "$STORE/a.qcow2"
# A chunk HEAD uses: the first hash in its manifest, read from the server.
hg=$(head_of "$STORE/a.qcow2")
if [ "$KIND" = s3 ]; then
    s3c get --force "$STORE/images/a.qcow2/gen/$hg" manifest >/dev/null
else
    cp "$SCRATCH/store/images/a.qcow2/gen/$hg" manifest
fi
hash=$(grep -m1 -E '^[0-9a-f]{64}$' manifest)
key=chunks/${hash:0:2}/$hash
corrupt "$key"
must_fail "$T" pull "$STORE/a.qcow2" corrupt.qcow2
case $ERR in *"$key is corrupt in the store: it does not match its hash"*) ;; *) fail "corruption: $ERR" ;; esac
[ ! -e corrupt.qcow2 ] || fail "a corrupt pull produced the image"
corrupt "$key" # flip it back
ok "$T" pull "$STORE/a.qcow2" corrupt.qcow2
qemu-img compare -q a.qcow2 corrupt.qcow2 || fail "after repair"

step "rollback"
gens=$("$T" remote log "$STORE/a.qcow2" | sed -n 's/^[* ] \([0-9]\{8\}-[0-9a-f]\{8\}\) .*/\1/p')
first=$(head -n 1 <<<"$gens")
ok "$T" remote rollback "$STORE/a.qcow2" "${first:0:12}"
[ "$(head_of "$STORE/a.qcow2")" = "$first" ] || fail "rollback did not move HEAD"
ok "$T" pull "$STORE/a.qcow2" rolled.qcow2
cmp a.gen1 rolled.qcow2 || fail "the rolled-back HEAD is not the first push's image"
[ "$(sed -n 's/^generation //p' rolled.qcow2.topcow)" = "$first" ] || fail "pulled not the rolled-back generation"
must_fail "$T" remote rollback "$STORE/a.qcow2" 99999999
case $ERR in *"no generation is '99999999'"*) ;; *) fail "rollback to nothing: $ERR" ;; esac

step "gc: unreferenced chunks go (after the grace period), referenced ones stay"
# An orphan, as an abandoned push leaves one: a chunk no manifest names.
head -c 100000 /dev/urandom >orphan
oh=$(sha orphan)
if [ "$KIND" = s3 ]; then
    s3c put orphan "$STORE/chunks/${oh:0:2}/$oh" >/dev/null
else
    mkdir -p "$SCRATCH/store/chunks/${oh:0:2}" && cp orphan "$SCRATCH/store/chunks/${oh:0:2}/$oh"
fi
before=$(server_chunks)
out=$("$T" remote gc "$STORE")
echo "$out"
case $out in *" 0 deleted"*) ;; *) fail "gc with the default grace deleted young chunks: $out" ;; esac
[ "$(server_chunks)" = "$before" ] || fail "gc with the default grace changed the store"
# The killed pushes above left unreferenced chunks (the 5 rounds' first tries
# are referenced by the resumed pushes; the lease-test pusher's are not).
sleep 2 # older than a grace period of 1 s
out=$("$T" remote gc --dry-run --grace 1 "$STORE")
echo "$out"
would=$(sed -n 's/.* \([0-9]*\) would be deleted.*/\1/p' <<<"$out")
[ "$would" -ge 1 ] || fail "gc --grace 1 would not delete the orphan: $out"
[ "$(server_chunks)" = "$before" ] || fail "gc --dry-run deleted"
ok "$T" remote gc --grace 1 "$STORE"
after=$(server_chunks)
[ $(( ${before% *} - ${after% *} )) = "$would" ] || fail "gc deleted other than --dry-run said ($before -> $after, $would)"
server_keys chunks/ | grep -q "$oh" && fail "gc left the orphan"
# Every generation of every image still pulls whole.
for img in a.qcow2 big clone copy-of-a kill; do
    for g in $("$T" remote log "$STORE/$img" | sed -n 's/^[* ] \([0-9]\{8\}-[0-9a-f]\{8\}\) .*/\1/p'); do
        ok "$T" pull -g "$g" "$STORE/$img" gc-check
        rm -f gc-check gc-check.topcow
    done
done

step "an image in use by a writer is neither pushed nor pulled over"
"$T" serve -k "$SCRATCH/busy.sock" a.qcow2 & srv=$!
wait_socket "$SCRATCH/busy.sock"
sum=$(sha a.qcow2)
must_fail "$T" push a.qcow2 "$STORE/a.qcow2"
case $ERR in *"a.qcow2 is open for writing by another process"*) ;; *) fail "push of a busy image: $ERR" ;; esac
must_fail "$T" pull --force "$STORE/a.qcow2" a.qcow2
case $ERR in *"a.qcow2 is in use by another process"*) ;; *) fail "pull over a busy image: $ERR" ;; esac
kill $srv; wait $srv 2>/dev/null || true
[ "$(sha a.qcow2)" = "$sum" ] || fail "the busy image changed"

step "bad input: clear one-line errors"
must_fail "$T" push a.qcow2 "$STORE/bad name"
case $ERR in *"only letters, digits"*) ;; *) fail "bad name: $ERR" ;; esac
must_fail "$T" push missing.qcow2 "$STORE/x"
case $ERR in *"missing.qcow2"*) ;; *) fail "missing file: $ERR" ;; esac
must_fail "$T" pull "$STORE/nothing-here" n.qcow2
case $ERR in *"no such image"*) ;; *) fail "missing image: $ERR" ;; esac
must_fail "$T" pull -g 12345678-abcdefab "$STORE/a.qcow2" n.qcow2
case $ERR in *"not in the store"*) ;; *) fail "missing generation: $ERR" ;; esac
must_fail "$T" push --chunk-size 1000 a.qcow2 "$STORE/x"
must_fail "$T" remote frobnicate "$STORE"
[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "not one line: $ERR"
echo "all push/pull checks passed ($KIND)"
