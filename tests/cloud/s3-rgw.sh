#!/bin/bash
# The S3 client (lib/cloud/s3.c, through tests/cloud/s3-tool) against a real
# Ceph RADOS Gateway started once for this script by rgw.sh: round trips,
# ranges, HEAD, listing with continuation, create-once and compare-and-swap
# conflicts, delete, a wrong secret key, retries through a fault-injecting
# proxy (s3-proxy.py), and a stalled and then a stopped server, which must
# end in clear errors within bounded time.  Then store.sh, the object-store
# checks that also run on file://, on an s3:// store in the same bucket.
#   s3-rgw.sh S3_TOOL STORE_TOOL     (the environment of tests/lib.sh)
# Exit 77 when Ceph or botocore is not installed.
. "$TOPCOW_SRCDIR/tests/lib.sh"

S3=${1:?usage: s3-rgw.sh S3_TOOL STORE_TOOL}
STORE_TOOL=${2:?usage: s3-rgw.sh S3_TOOL STORE_TOOL}
HERE=$TOPCOW_SRCDIR/tests/cloud
PY=/usr/bin/python3
RGW_DIR=$SCRATCH/rgw
PROXY_PID=

finish() {
    [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
    "$HERE/rgw.sh" stop "$RGW_DIR"
    cleanup_scratch
}
trap finish EXIT

t0=$SECONDS
rc=0
"$HERE/rgw.sh" start "$RGW_DIR" $$ >"$SCRATCH/env" || rc=$?
[ $rc = 77 ] && exit 77
[ $rc = 0 ] || fail "the RGW fixture did not start (exit $rc)"
. "$SCRATCH/env"
B=$RGW_BUCKET
echo "RGW up at $AWS_ENDPOINT_URL in $((SECONDS - t0)) s"

step() { echo "== $*"; }

# s3_fails ERRNO_NAME TEXT CMD...: CMD must fail with that errno, and its
# message must contain TEXT.  The message stays in $ERR.
s3_fails() {
    local name=$1 text=$2
    shift 2
    must_fail "$@"
    case $ERR in
    *"s3-tool: $name: "*"$text"*) ;;
    *) fail "expected $name and '$text' from: $*; got: $ERR" ;;
    esac
}

# stat_of NAME TEXT: a counter from the --stats line s3-tool printed in TEXT.
stat_of() { printf '%s\n' "$2" | sed -n "s/^stats .*\b$1=\([0-9]*\).*/\1/p"; }

step "put and get round trip (1 MiB, empty)"
head -c 1048576 /dev/urandom >"$SCRATCH/big"
: >"$SCRATCH/empty"
etag=$("$S3" put "$B" img/big "$SCRATCH/big")
[ "$etag" = "$(md5sum <"$SCRATCH/big" | cut -d' ' -f1)" ] || fail "ETag $etag is not the MD5"
"$S3" get "$B" img/big "$SCRATCH/big.back"
cmp "$SCRATCH/big" "$SCRATCH/big.back" || fail "GET returned other bytes"
"$S3" put "$B" img/empty "$SCRATCH/empty" >/dev/null
"$S3" get "$B" img/empty "$SCRATCH/empty.back"
[ -f "$SCRATCH/empty.back" ] && [ ! -s "$SCRATCH/empty.back" ] || fail "empty object"

step "range get"
range_ok() { # OFF LEN EXPECTED_COUNT
    local got
    got=$("$S3" get-range "$B" img/big "$1" "$2" "$SCRATCH/range") || fail "get-range $1 $2"
    [ "$got" = "$3" ] || fail "get-range $1 $2 gave $got bytes, expected $3"
    cmp <(tail -c +$(($1 + 1)) "$SCRATCH/big" | head -c "$3") "$SCRATCH/range" ||
        fail "get-range $1 $2: wrong bytes"
}
range_ok 0 1 1
range_ok 4096 65536 65536
range_ok 999999 1 1
range_ok 1048000 4096 576  # runs past the end: the tail only
range_ok 1048576 10 0      # at the end
range_ok 5000000 10 0      # beyond it

step "head"
[ "$("$S3" head "$B" img/big)" = "1048576 $etag" ] || fail "head img/big"
[ "$("$S3" head "$B" img/empty)" = "0 d41d8cd98f00b204e9800998ecf8427e" ] || fail "head img/empty"
s3_fails ENOENT "HEAD $B/img/none: 404 Not Found" "$S3" head "$B" img/none

step "keys that need encoding"
keys=("sp ace/x y" "uni/été/日本語" "plus+tilde~" "pct%20=&?#!*'()" "dots/./a/../b" "a//b"
      "colon:semi;comma,at@dollar\$")
echo hi >"$SCRATCH/hi"
for k in "${keys[@]}"; do
    "$S3" put "$B" "odd/$k" "$SCRATCH/hi" >/dev/null || fail "put '$k'"
    [ "$("$S3" get "$B" "odd/$k" -)" = hi ] || fail "get '$k'"
done
# Keys with spaces print as several words; compare whole lines instead.
"$S3" list "$B" odd/ | sed 's/ [0-9]* [0-9a-f]*$//' >"$SCRATCH/odd.list"
printf 'odd/%s\n' "${keys[@]}" | LC_ALL=C sort >"$SCRATCH/odd.want"
diff "$SCRATCH/odd.want" "$SCRATCH/odd.list" || fail "listing of the encoded keys"

step "list: 1100 keys, continuation, prefix, page sizes"
ERR=$("$S3" --stats put-many "$B" many/k 1100 2>&1) || fail "put-many: $ERR"
[ "$(stat_of requests "$ERR")" = 1100 ] && [ "$(stat_of connects "$ERR")" = 1 ] ||
    fail "1100 PUTs should reuse one connection: $ERR"
"$S3" put "$B" many-not/x "$SCRATCH/hi" >/dev/null   # shares "many" but not "many/"
"$S3" put "$B" man "$SCRATCH/hi" >/dev/null
seq -f 'many/k%05g' 0 1099 >"$SCRATCH/many.want"
ERR=$("$S3" --stats list "$B" many/ 2>&1 >"$SCRATCH/many.out") || fail "list: $ERR"
cut -d' ' -f1 "$SCRATCH/many.out" | diff -q "$SCRATCH/many.want" - >/dev/null ||
    fail "list many/ (default page of 1000) did not return exactly the 1100 keys in order"
[ "$(stat_of requests "$ERR")" = 2 ] || fail "1100 keys in pages of 1000 should take 2 requests: $ERR"
ERR=$("$S3" --stats --page-size 7 list "$B" many/k0002 2>&1 >"$SCRATCH/page7.out") ||
    fail "list with page size 7: $ERR"
seq -f 'many/k%05g' 20 29 | diff - <(cut -d' ' -f1 "$SCRATCH/page7.out") ||
    fail "list many/k0002 in pages of 7"
[ "$(stat_of requests "$ERR")" = 2 ] || fail "10 keys in pages of 7 should take 2 requests: $ERR"
ERR=$("$S3" --stats --page-size 100 list "$B" many/ 2>&1 >"$SCRATCH/page100.out") ||
    fail "list with page size 100: $ERR"
cmp -s "$SCRATCH/many.out" "$SCRATCH/page100.out" || fail "pages of 100 list differently"
[ "$(stat_of requests "$ERR")" = 11 ] || fail "1100 keys in pages of 100 should take 11 requests: $ERR"
[ "$(awk '{print $2, $3}' "$SCRATCH/many.out" | sed -n 2p)" = "2 $(echo 1 | md5sum | cut -d' ' -f1)" ] ||
    fail "listed size and ETag of many/k00001"
[ -z "$("$S3" list "$B" nothing-here/)" ] || fail "an empty prefix listing"

step "create once"
echo first >"$SCRATCH/first"
echo second >"$SCRATCH/second"
"$S3" put "$B" gen/manifest.1 "$SCRATCH/first" create-once >/dev/null || fail "first create-once"
s3_fails EEXIST "PUT $B/gen/manifest.1: 412 Precondition Failed" \
    "$S3" put "$B" gen/manifest.1 "$SCRATCH/second" create-once
[ "$("$S3" get "$B" gen/manifest.1 -)" = first ] || fail "create-once overwrote the object"

step "compare and swap"
e1=$("$S3" put "$B" gen/HEAD "$SCRATCH/first")
e2=$("$S3" put "$B" gen/HEAD "$SCRATCH/second" if-match "$e1") || fail "CAS with the current ETag"
[ "$("$S3" get "$B" gen/HEAD -)" = second ] || fail "CAS did not write"
s3_fails ESTALE "PUT $B/gen/HEAD: 412 Precondition Failed" \
    "$S3" put "$B" gen/HEAD "$SCRATCH/first" if-match "$e1"
[ "$("$S3" get "$B" gen/HEAD -)" = second ] || fail "a stale CAS overwrote the object"
s3_fails ESTALE "PUT $B/gen/none" "$S3" put "$B" gen/none "$SCRATCH/first" if-match "$e1"
"$S3" put "$B" gen/HEAD "$SCRATCH/first" if-match "$e2" >/dev/null || fail "CAS after CAS"

step "delete"
"$S3" delete "$B" gen/HEAD
s3_fails ENOENT "HEAD $B/gen/HEAD: 404 Not Found" "$S3" head "$B" gen/HEAD
s3_fails ENOENT "GET $B/gen/HEAD: 404 Not Found (NoSuchKey)" "$S3" get "$B" gen/HEAD -
"$S3" delete "$B" gen/HEAD || fail "deleting a deleted key should succeed, as S3 does"

step "wrong credentials: a clear error, no retries"
ERR=
s3_fails EACCES "GET $B/img/big: 403 Forbidden (SignatureDoesNotMatch" \
    env AWS_SECRET_ACCESS_KEY=not-the-secret "$S3" --stats get "$B" img/big -
[ "$(stat_of requests "$ERR")" = 1 ] || fail "a 403 must not be retried: $ERR"
s3_fails EACCES "403 Forbidden (InvalidAccessKeyId" env AWS_ACCESS_KEY_ID=NOSUCHKEY "$S3" get "$B" img/big -
s3_fails EACCES "HEAD $B/img/big: 403 Forbidden" env AWS_ACCESS_KEY_ID=NOSUCHKEY "$S3" head "$B" img/big

step "virtual-host addressing"
vh=${AWS_ENDPOINT_URL/127.0.0.1/localhost}   # rgw dns name = localhost
[ "$("$S3" --endpoint "$vh" --virtual-host get "$B" "odd/sp ace/x y" -)" = hi ] ||
    fail "GET with virtual-host addressing"
[ "$("$S3" --endpoint "$vh" --virtual-host list "$B" many/k0000 | wc -l)" = 10 ] ||
    fail "list with virtual-host addressing"

step "the object-store interface on s3:// (store.sh)"
bash "$HERE/store.sh" "$STORE_TOOL" "s3://$B/store" | sed 's/^/   /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "store.sh on s3://$B/store"

# A proxy between client and RGW that breaks the first COUNT requests RULE picks.
start_proxy() { # RULE COUNT
    rm -f "$SCRATCH/proxy.port"
    "$PY" "$HERE/s3-proxy.py" "${AWS_ENDPOINT_URL##*:}" "$SCRATCH/proxy.port" "$1" "$2" \
        2>"$SCRATCH/proxy.log" &
    PROXY_PID=$!
    for _ in $(seq 100); do [ -f "$SCRATCH/proxy.port" ] && break; sleep 0.05; done
    [ -f "$SCRATCH/proxy.port" ] || fail "the proxy did not start"
    PROXY=http://127.0.0.1:$(cat "$SCRATCH/proxy.port")
}
stop_proxy() { kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=; }

step "retries: 503 twice, then success"
start_proxy status-503 2
ERR=$("$S3" --endpoint "$PROXY" --stats --backoff-ms 20 get "$B" img/big "$SCRATCH/big.retry" 2>&1) ||
    fail "GET through two 503s: $ERR"
cmp -s "$SCRATCH/big" "$SCRATCH/big.retry" || fail "GET after retries returned other bytes"
[ "$(stat_of retries "$ERR")" = 2 ] || fail "expected 2 retries: $ERR"
stop_proxy

step "retries: 503 until the attempts run out"
start_proxy status-503 1000
t=$SECONDS
s3_fails EIO "GET $B/img/big: 503 Service Unavailable (SlowDown: Please reduce your request rate.) (4 attempts)" \
    "$S3" --endpoint "$PROXY" --attempts 4 --backoff-ms 20 get "$B" img/big -
[ $((SECONDS - t)) -lt 10 ] || fail "4 attempts took $((SECONDS - t)) s"
stop_proxy

step "a create-once whose reply was lost is not a conflict with itself"
start_proxy lose-put 1
echo once >"$SCRATCH/once"
ERR=$("$S3" --endpoint "$PROXY" --stats --backoff-ms 20 put "$B" gen/once "$SCRATCH/once" create-once 2>&1) ||
    fail "create-once with a lost reply: $ERR; proxy log: $(cat "$SCRATCH/proxy.log")"
grep -q "PUT /$B/gen/once -> 200 upstream, 500 (injected)" "$SCRATCH/proxy.log" ||
    fail "the proxy did not lose the first reply: $(cat "$SCRATCH/proxy.log")"
grep -q "PUT /$B/gen/once -> 412" "$SCRATCH/proxy.log" || fail "the retry did not hit 412"
stop_proxy
start_proxy lose-put 1
e1=$("$S3" put "$B" gen/HEAD2 "$SCRATCH/first")
"$S3" --endpoint "$PROXY" --backoff-ms 20 put "$B" gen/HEAD2 "$SCRATCH/second" if-match "$e1" >/dev/null ||
    fail "CAS with a lost reply"
[ "$("$S3" get "$B" gen/HEAD2 -)" = second ] || fail "CAS with a lost reply wrote something else"
stop_proxy
step "...but a real conflict behind a retry still is one"
start_proxy status-503 1
s3_fails EEXIST "PUT $B/gen/manifest.1: 412 Precondition Failed" \
    "$S3" --endpoint "$PROXY" --backoff-ms 20 put "$B" gen/manifest.1 "$SCRATCH/second" create-once
stop_proxy
[ "$("$S3" get "$B" gen/manifest.1 -)" = first ] || fail "the conflicting create-once wrote"

step "a stalled server: timeouts, retries, a clear error"
kill -STOP "$RGW_PID"
t=$SECONDS
s3_fails ETIMEDOUT "GET $B/img/big: Operation too slow" \
    "$S3" --stats --stall-ms 1000 --attempts 3 --backoff-ms 50 get "$B" img/big -
case $ERR in *"(3 attempts)"*) ;; *) fail "expected 3 attempts: $ERR" ;; esac
[ "$(stat_of retries "$ERR")" = 2 ] || fail "expected 2 retries: $ERR"
[ $((SECONDS - t)) -lt 15 ] || fail "the stalled GET took $((SECONDS - t)) s"
kill -CONT "$RGW_PID"
[ "$("$S3" get "$B" gen/manifest.1 -)" = first ] || fail "RGW did not come back after SIGCONT"

step "the server stopped in the middle of a series of PUTs: retries, then a clear error"
t=$SECONDS
"$S3" --stats --attempts 4 --backoff-ms 100 put-many "$B" stop/k 100000 2>"$SCRATCH/stop.err" &
tool=$!
sleep 1
kill -TERM "$RGW_PID"
if ! timeout 30 tail --pid="$tool" -f /dev/null; then
    kill -KILL "$tool"
    fail "the client hung after the server stopped"
fi
wait "$tool" && fail "put-many succeeded with the server stopped"
ERR=$(cat "$SCRATCH/stop.err")
case $ERR in
*"s3-tool: ECONNREFUSED: s3: PUT $B/stop/k"*": Failed to connect to 127.0.0.1 port "*"(4 attempts)"* | \
*"s3-tool: ECONNREFUSED: s3: PUT $B/stop/k"*"Couldn't connect to server (4 attempts)"*) ;;
*) fail "unclear error after the server stopped: $ERR" ;;
esac
[ "$(stat_of retries "$ERR")" -ge 3 ] || fail "expected retries: $ERR"
n=$(stat_of requests "$ERR")
[ "$n" -gt 4 ] || fail "the server stopped before any PUT went through ($n requests): $ERR"
echo "$(sed -n 's/^s3-tool: //p' "$SCRATCH/stop.err") after $((n - 4)) PUTs, in $((SECONDS - t)) s"
[ $((SECONDS - t)) -lt 20 ] || fail "stopping took $((SECONDS - t)) s"

echo "PASS in $((SECONDS - t0)) s"
