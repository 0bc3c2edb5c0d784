#!/bin/bash
# Network faults under topcow push and pull, against a real Ceph RGW started
# once for this script (rgw.sh):
#   - transient 503s and lost replies (to chunk uploads, the lease, the HEAD
#     swap), through s3-proxy.py: retried, counted in --output=json, and the
#     transfer succeeds; a 503 on every attempt fails clearly and changes
#     nothing; when every reply to the HEAD swap is lost, the push fails
#     although HEAD moved, and the next push finds its generation there;
#   - radosgw stopped (SIGSTOP) in the middle of a push;
#   - radosgw killed in the middle of a pull, then started again (the data
#     lives in the OSD, so only the gateway restarts);
#   - as root with iptables: connections rejected (TCP reset) in the middle
#     of a push, and dropped in the middle of a pull.
# Each fault must end in a clear one-line error within bounded time, with
# HEAD, the local image and its state file (IMG.topcow) as they were; then
# the next push or pull must send or fetch exactly what is still missing,
# counted independently (chunk hashes of the files, objects on the server
# listed with s3cmd), and the result must compare identical.
#
# The whole script runs in a network namespace of its own (unshare -n: it
# ends with the script, where one from `ip netns add` would outlive a killed
# test), so that its iptables rules touch nothing else: the fixture, the clients and
# the rules all live on that namespace's loopback.  Without root, unshare or
# iptables it runs in the caller's namespace and skips the iptables steps;
# the SIGSTOP and kill steps cover a stalled and a vanished server there.
#   cloud-faults.sh          (the environment of tests/lib.sh)
# Exit 77 when Ceph, botocore or s3cmd is not installed.
if [ -z "${CLOUD_FAULTS_NETNS:-}" ]; then
    if [ "$(id -u)" = 0 ] && command -v iptables >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 &&
        unshare -n true 2>/dev/null; then
        export CLOUD_FAULTS_NETNS=1
        exec unshare -n bash "$0" "$@"
    fi
    CLOUD_FAULTS_NETNS=0
fi
. "$TOPCOW_SRCDIR/tests/lib.sh"

HERE=$TOPCOW_SRCDIR/tests/cloud
T=$TOPCOW
PY=/usr/bin/python3
RGW_DIR=$SCRATCH/rgw
PROXY_PID=
RULE=
step() { echo "== $*"; }

require s3cmd
if [ "$CLOUD_FAULTS_NETNS" = 1 ]; then
    ip link set lo up || fail "cannot bring up lo in the new network namespace"
    if ! iptables -S >/dev/null 2>&1; then
        echo "iptables does not work in a network namespace here: its steps are skipped"
        CLOUD_FAULTS_NETNS=0
    fi
fi

finish() {
    [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
    [ -n "${RGW_PID:-}" ] && kill -CONT "$RGW_PID" 2>/dev/null
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
PORT=${AWS_ENDPOINT_URL##*:}
echo "RGW up at $AWS_ENDPOINT_URL in $((SECONDS - t0)) s" \
    "($([ "$CLOUD_FAULTS_NETNS" = 1 ] && echo "in a network namespace" || echo "no iptables steps"))"
cd "$SCRATCH"

# The server side, read with s3cmd rather than with the code under test.
s3c() { s3cmd -c "$RGW_S3CFG" "$@"; }
# Chunk objects in store $1 (a prefix of the bucket).
server_chunks() { s3c ls -r "s3://$B/$1/chunks/" | wc -l; }
# ... once the count has not changed for half a second: requests a stopped
# server had queued are answered when it runs again.
settled_chunks() {
    local a b
    a=$(server_chunks "$1")
    for _ in $(seq 20); do
        sleep 0.5
        b=$(server_chunks "$1")
        [ "$a" = "$b" ] && break
        a=$b
    done
    echo "$b"
}
head_of() { "$T" remote log "$1" | sed -n 's/^\* \([0-9a-f-]*\) .*/\1/p'; }
json_field() { sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p"; }

# chunk_sums FILE: the SHA-256 of each 4 MiB piece of FILE (the default chunk
# size), one a line, or "zero" for a piece of zeros (never stored).
chunk_sums() {
    "$PY" - "$1" <<'EOF'
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    while b := f.read(4 << 20):
        print("zero" if b.count(0) == len(b) else hashlib.sha256(b).hexdigest())
EOF
}
# new_chunks OLD NEW: the distinct non-zero chunks of NEW that OLD lacks (what
# a push of NEW must upload to a store holding OLD).
new_chunks() {
    comm -13 <(chunk_sums "$1" | grep -v '^zero$' | sort -u) \
        <(chunk_sums "$2" | grep -v '^zero$' | sort -u) | wc -l
}
# missing_chunks TARGET PART [OLD]: chunks of TARGET that a pull must fetch
# when PART holds an interrupted pull and OLD the image pulled before: those
# not all zeros, not already in place in PART, and not anywhere in OLD.
missing_chunks() {
    local old=${3:-/dev/null}
    "$PY" - "$1" "$2" "$old" <<'EOF'
import hashlib, sys
def sums(path):
    out = []
    with open(path, "rb") as f:
        while b := f.read(4 << 20):
            out.append(None if b.count(0) == len(b) else hashlib.sha256(b).hexdigest())
    return out
target, part, old = (sums(p) for p in sys.argv[1:4])
have = set(old)
print(sum(1 for i, h in enumerate(target)
          if h is not None and (i >= len(part) or part[i] != h) and h not in have))
EOF
}

# mkimg NAME MIB: a qcow2 image of MIB MiB of random data, fully allocated.
mkimg() {
    head -c "$2M" /dev/urandom >raw
    qemu-img convert -f raw -O qcow2 raw "$1"
    rm raw
}
# rewrite NAME MIB: new random data over the first MIB MiB of the guest disk,
# in place (the clusters are allocated, so the file changes only there).
rewrite() {
    head -c "$2M" /dev/urandom >new.bin
    qemu-io -f qcow2 -c "write -s new.bin 0 $2M" "$1" >/dev/null
    rm new.bin
}

# MiB sent or fetched so far, from the last progress line (-p) in file $1.
moved_mib() {
    tr '\r' '\n' <"$1" | awk '{
        for (i = 1; i < NF - 1; i++) if ($i == "sent" || $i == "fetched") { v = $(i + 1); u = $(i + 2) } }
        END { print int(u == "GiB" ? v * 1024 : u == "MiB" ? v : 0) }'
}
# wait_moved FILE MIB PID: until process PID (a push or pull -p writing its
# progress to FILE) has moved MIB MiB.  Fails if it ends first.
wait_moved() {
    for _ in $(seq 600); do
        [ "$(moved_mib "$1")" -ge "$2" ] && return 0
        kill -0 "$3" 2>/dev/null || fail "the transfer ended before $2 MiB moved: $(tr '\r' '\n' <"$1")"
        sleep 0.05
    done
    fail "the transfer did not move $2 MiB in 30 s"
}
# wait_bounded PID SECONDS: wait for PID to exit, at most SECONDS; its exit
# status in $RC and the time it took after this call in $TOOK.
wait_bounded() {
    local t=$SECONDS
    if ! timeout "$2" tail --pid="$1" -f /dev/null; then
        kill -KILL "$1" 2>/dev/null
        fault_off
        fail "still running $2 s after the fault: the client hangs"
    fi
    RC=0
    wait "$1" || RC=$?
    TOOK=$((SECONDS - t))
}
# The message of a failed command run with -p: its stderr without the
# progress lines.  It must be exactly one line.
one_line_error() {
    local msg
    msg=$(tr '\r' '\n' <"$1" | grep -v -e '^push \[' -e '^pull \[' -e '^$' || true)
    [ -n "$msg" ] || fail "no error message"
    [ "$(printf '%s\n' "$msg" | wc -l)" = 1 ] || fail "the error is not one line: $msg"
    printf '%s\n' "$msg"
}

# The faults.  fault_on NAME starts one; fault_off ends whichever is on.
fault_on() {
    RULE=$1
    case $1 in
    sigstop) kill -STOP "$RGW_PID" ;;
    kill) kill -KILL "$RGW_PID" ;;
    reject | drop)
        local target=DROP
        [ "$1" = reject ] && target="REJECT --reject-with tcp-reset"
        # shellcheck disable=SC2086
        iptables -I INPUT -p tcp --dport "$PORT" -j $target || fail "iptables -I"
        ;;
    esac
}
fault_off() {
    case $RULE in
    sigstop) kill -CONT "$RGW_PID" ;;
    kill) restart_radosgw ;;
    reject) iptables -D INPUT -p tcp --dport "$PORT" -j REJECT --reject-with tcp-reset ;;
    drop) iptables -D INPUT -p tcp --dport "$PORT" -j DROP ;;
    esac
    RULE=
}
# radosgw alone again, on the same port with the same cluster: the objects
# are in the OSD's memstore and survive.  rgw.sh stop ends it with the rest.
restart_radosgw() {
    radosgw -c "$RGW_DIR/ceph.conf" -n client.rgw -f </dev/null >>"$RGW_DIR/log/rgw.out" 2>&1 &
    RGW_PID=$!
    disown "$RGW_PID" # no "Killed" from bash when rgw.sh stop ends it
    echo "$RGW_PID" >>"$RGW_DIR/pids"
    for _ in $(seq 150); do
        curl -s -o /dev/null --max-time 2 "$AWS_ENDPOINT_URL/" && return 0
        kill -0 "$RGW_PID" 2>/dev/null || break
        sleep 0.2
    done
    fail "radosgw did not start again: $(tail -n 5 "$RGW_DIR/log/rgw.out")"
}

# A proxy between client and RGW that breaks the first COUNT requests RULE
# (status-503, lose-put) picks among those whose path contains MATCH; its
# log in proxy.log.
start_proxy() { # RULE COUNT [MATCH]
    rm -f proxy.port
    "$PY" "$HERE/s3-proxy.py" "$PORT" proxy.port "$1" "$2" "${3:-}" 2>proxy.log &
    PROXY_PID=$!
    for _ in $(seq 100); do [ -f proxy.port ] && break; sleep 0.05; done
    [ -f proxy.port ] || fail "the proxy did not start"
    PROXY=http://127.0.0.1:$(cat proxy.port)
}
stop_proxy() { kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=; }

# push_fault FAULT PATTERN: push a change of 96 MiB to a 128 MiB image, and
# FAULT once 8 MiB went out (a stall is noticed after 2 s, a request tried
# twice).  The push must fail within 20 s with one line
# matching PATTERN, leave HEAD and IMG.topcow alone; once the fault is
# over, the next push must upload exactly the new chunks the failed one did
# not, and HEAD must then pull back identical.
push_fault() {
    local fault=$1 pattern=$2 store=$1-push
    local remote=s3://$B/$store/img
    mkimg img.qcow2 128
    ok "$T" push img.qcow2 "$remote"
    local gen1 new base partial before after n msg
    gen1=$(head_of "$remote")
    cp img.qcow2 img.before
    cp img.qcow2.topcow state.before
    rewrite img.qcow2 96
    new=$(new_chunks img.before img.qcow2)
    base=$(server_chunks "$store")
    TOPCOW_S3_STALL_TIMEOUT=2 AWS_MAX_ATTEMPTS=2 "$T" push -p img.qcow2 "$remote" >out 2>err &
    local pid=$!
    wait_moved err 8 $pid
    fault_on "$fault"
    wait_bounded $pid 60
    [ "$RC" != 0 ] || { fault_off; fail "the push succeeded during the fault ($fault)"; }
    [ "$TOOK" -lt 20 ] || { fault_off; fail "the push took $TOOK s to fail ($fault)"; }
    fault_off
    msg=$(one_line_error err)
    echo "   failed after $TOOK s: $msg"
    # shellcheck disable=SC2254 # PATTERN is a glob
    case $msg in $pattern) ;; *) fail "unclear error ($fault): $msg" ;; esac
    [ "$(head_of "$remote")" = "$gen1" ] || fail "HEAD moved although the push failed ($fault)"
    cmp -s img.qcow2.topcow state.before || fail "the failed push changed img.qcow2.topcow ($fault)"
    partial=$(($(settled_chunks "$store") - base))
    [ "$partial" -ge 1 ] && [ "$partial" -lt "$new" ] ||
        fail "the failed push stored $partial of $new new chunks: the fault did not hit mid-push"
    before=$(server_chunks "$store")
    out=$("$T" push --output=json img.qcow2 "$remote") || fail "the push after the fault: $out"
    after=$(server_chunks "$store")
    n=$(json_field chunks-transferred <<<"$out")
    echo "   $new new chunks: $partial stored before the fault, $n by the next push"
    [ "$n" = $((new - partial)) ] || fail "the next push uploaded $n chunks, not the $((new - partial)) missing: $out"
    [ $((after - before)) = "$n" ] || fail "the server gained $((after - before)) chunks, the push says $n"
    [ "$(json_field generation <<<"$out")" = "$(head_of "$remote")" ] || fail "HEAD is not the new push"
    grep -q "^generation $(json_field generation <<<"$out")$" img.qcow2.topcow ||
        fail "img.qcow2.topcow does not name the new generation"
    ok "$T" pull "$remote" check.qcow2
    qemu-img compare -q img.qcow2 check.qcow2 || fail "HEAD does not pull back as the image ($fault)"
    rm -f img.qcow2 img.qcow2.topcow img.before state.before check.qcow2 check.qcow2.topcow out err
    s3c del -r --force "s3://$B/$store/" >/dev/null
}

# pull_fault FAULT PATTERN [fresh]: pull a 224 MiB change of a 256 MiB image
# over the copy pulled before (or, with "fresh", into a new file), and FAULT
# once 8 MiB came in.  The pull must fail within 20 s with one line matching
# PATTERN; the local image and its state file must be as they were (or not
# exist), the part file must be there; once the fault is over, the next pull
# must fetch exactly the chunks neither the part file nor the old image
# has, and produce the image.
pull_fault() {
    local fault=$1 pattern=$2 fresh=${3:-} store=$1-pull
    local remote=s3://$B/$store/img
    mkimg img.qcow2 256
    ok "$T" push img.qcow2 "$remote"
    mkdir -p local
    local sum="" missing changed n msg
    if [ -z "$fresh" ]; then
        ok "$T" pull "$remote" local/img.qcow2
        sum=$(sha local/img.qcow2)
        cp local/img.qcow2.topcow state.before
    fi
    rewrite img.qcow2 224
    ok "$T" push img.qcow2 "$remote"
    changed=$(missing_chunks img.qcow2 /dev/null "$([ -z "$fresh" ] && echo local/img.qcow2)")
    TOPCOW_S3_STALL_TIMEOUT=2 AWS_MAX_ATTEMPTS=2 "$T" pull -p "$remote" local/img.qcow2 >out 2>err &
    local pid=$!
    wait_moved err 8 $pid
    fault_on "$fault"
    wait_bounded $pid 60
    [ "$RC" != 0 ] || { fault_off; fail "the pull succeeded during the fault ($fault)"; }
    [ "$TOOK" -lt 20 ] || { fault_off; fail "the pull took $TOOK s to fail ($fault)"; }
    fault_off
    msg=$(one_line_error err)
    echo "   failed after $TOOK s: $msg"
    # shellcheck disable=SC2254 # PATTERN is a glob
    case $msg in $pattern) ;; *) fail "unclear error ($fault): $msg" ;; esac
    if [ -z "$fresh" ]; then
        [ "$(sha local/img.qcow2)" = "$sum" ] || fail "the failed pull changed the local image ($fault)"
        cmp -s local/img.qcow2.topcow state.before || fail "the failed pull changed its state file"
        missing=$(missing_chunks img.qcow2 local/img.qcow2.topcow-part local/img.qcow2)
    else
        [ ! -e local/img.qcow2 ] && [ ! -e local/img.qcow2.topcow ] ||
            fail "the failed pull left an image behind ($fault)"
        missing=$(missing_chunks img.qcow2 local/img.qcow2.topcow-part)
    fi
    [ -f local/img.qcow2.topcow-part ] || fail "the failed pull left no part file ($fault)"
    [ "$missing" -ge 1 ] && [ "$missing" -lt "$changed" ] ||
        fail "$missing of $changed chunks missing: the fault did not hit mid-pull"
    out=$("$T" pull --output=json "$remote" local/img.qcow2) || fail "the pull after the fault: $out"
    n=$(json_field chunks-transferred <<<"$out")
    echo "   $changed chunks to fetch: $((changed - missing)) before the fault, $n by the next pull"
    [ "$n" = "$missing" ] || fail "the next pull fetched $n chunks, not the $missing missing: $out"
    cmp img.qcow2 local/img.qcow2 || fail "the resumed pull is not the image ($fault)"
    [ ! -e local/img.qcow2.topcow-part ] || fail "the resumed pull left its part file"
    grep -q "^generation $(head_of "$remote")$" local/img.qcow2.topcow ||
        fail "local/img.qcow2.topcow does not name HEAD"
    rm -rf local img.qcow2 img.qcow2.topcow state.before out err
    s3c del -r --force "s3://$B/$store/" >/dev/null
}

step "transient 503s through a proxy: push and pull retry, count the retries, and succeed"
export TOPCOW_S3_BACKOFF_MS=20
mkimg small.qcow2 24
start_proxy status-503 6
out=$(AWS_MAX_ATTEMPTS=10 "$T" push --output=json --endpoint "$PROXY" small.qcow2 "s3://$B/retry/small") ||
    fail "push through six 503s: $out; proxy: $(cat proxy.log)"
stop_proxy
[ "$(grep -c '503 (injected)' proxy.log)" = 6 ] || fail "the proxy did not inject six 503s: $(cat proxy.log)"
[ "$(json_field retries <<<"$out")" = 6 ] || fail "six 503s, but the push reports: $out"
start_proxy status-503 4
out=$(AWS_MAX_ATTEMPTS=10 "$T" pull --output=json --endpoint "$PROXY" "s3://$B/retry/small" small.pulled) ||
    fail "pull through four 503s: $out; proxy: $(cat proxy.log)"
stop_proxy
[ "$(json_field retries <<<"$out")" = 4 ] || fail "four 503s, but the pull reports: $out"
cmp small.qcow2 small.pulled || fail "the pull through 503s is not the image"
rm -f small.pulled small.pulled.topcow

step "a 503 on every attempt: a clear error, HEAD and IMG.topcow unchanged"
gen=$(head_of "s3://$B/retry/small")
cp small.qcow2.topcow state.before
qemu-io -f qcow2 -c "write -P 0x55 0 4M" small.qcow2 >/dev/null
start_proxy status-503 1000
t=$SECONDS
must_fail env AWS_MAX_ATTEMPTS=3 "$T" push --endpoint "$PROXY" small.qcow2 "s3://$B/retry/small"
stop_proxy
case $ERR in
"topcow: push: s3: "*": 503 Service Unavailable (SlowDown: Please reduce your request rate.) (3 attempts)") ;;
*) fail "unclear error after 503s: $ERR" ;;
esac
[ $((SECONDS - t)) -lt 10 ] || fail "three attempts took $((SECONDS - t)) s"
[ "$(head_of "s3://$B/retry/small")" = "$gen" ] || fail "HEAD moved"
cmp -s small.qcow2.topcow state.before || fail "the failed push changed small.qcow2.topcow"

step "lost replies to PUTs (chunks, the HEAD swap, the lease): retried, not taken for conflicts"
# lost_push MATCH COUNT WHAT: push lost.qcow2 through a proxy that loses the
# replies to the first COUNT PUTs whose path contains MATCH.
lost_push() {
    start_proxy lose-put "$2" "$1"
    out=$("$T" push --output=json --endpoint "$PROXY" lost.qcow2 "s3://$B/retry/lost") ||
        fail "push with $2 lost replies to $3: $out; proxy: $(cat proxy.log)"
    stop_proxy
    [ "$(grep -c " 500 (injected)" proxy.log)" = "$2" ] ||
        fail "the proxy did not lose $2 replies to $3: $(cat proxy.log)"
    [ "$(json_field retries <<<"$out")" = "$2" ] || fail "$2 lost replies, but the push reports: $out"
    [ "$(head_of "s3://$B/retry/lost")" = "$(json_field generation <<<"$out")" ] ||
        fail "HEAD is not the push with lost replies to $3"
    grep -q "^generation $(json_field generation <<<"$out")$" lost.qcow2.topcow ||
        fail "lost.qcow2.topcow does not name the pushed generation ($3)"
    "$T" remote ls "s3://$B/retry" | grep -q '^lost .*until' && fail "the lease was not released ($3)"
    ok "$T" pull "s3://$B/retry/lost" lost.pulled
    cmp lost.qcow2 lost.pulled || fail "the push with lost replies to $3 does not pull back the same"
    rm -f lost.pulled lost.pulled.topcow
}
mkimg lost.qcow2 24
lost_push /chunks/ 3 "chunk uploads"
qemu-io -f qcow2 -c "write -P 0x66 0 4M" lost.qcow2 >/dev/null
lost_push /images/lost/HEAD 1 "the HEAD compare-and-swap"
qemu-io -f qcow2 -c "write -P 0x67 0 4M" lost.qcow2 >/dev/null
lost_push /images/lost/LEASE 2 "taking the lease"

step "every reply to the HEAD swap lost: the push fails, yet HEAD moved; the next push finds its generation there"
qemu-io -f qcow2 -c "write -P 0x68 0 4M" lost.qcow2 >/dev/null
cp lost.qcow2.topcow state.before
start_proxy lose-put 1000 /images/lost/HEAD
must_fail env AWS_MAX_ATTEMPTS=3 TOPCOW_S3_BACKOFF_MS=20 "$T" push --endpoint "$PROXY" lost.qcow2 "s3://$B/retry/lost"
stop_proxy
echo "   $ERR"
[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "not one line: $ERR"
case $ERR in "topcow: push: s3: PUT $B/retry/images/lost/HEAD: "*"(3 attempts)") ;; *) fail "unclear: $ERR" ;; esac
cmp -s lost.qcow2.topcow state.before || fail "the failed push changed lost.qcow2.topcow"
out=$("$T" push --output=json lost.qcow2 "s3://$B/retry/lost") || fail "the push after: $out"
[ "$(json_field up-to-date <<<"$out")" = true ] && [ "$(json_field chunks-transferred <<<"$out")" = 0 ] ||
    fail "the push after the lost HEAD swap did not find its generation at HEAD: $out"
grep -q "^generation $(head_of "s3://$B/retry/lost")$" lost.qcow2.topcow ||
    fail "lost.qcow2.topcow does not name HEAD after the next push"
ok "$T" pull "s3://$B/retry/lost" lost.pulled
cmp lost.qcow2 lost.pulled || fail "HEAD after the lost swap is not the image"
rm -f lost.* small.* state.before
unset TOPCOW_S3_BACKOFF_MS

step "radosgw stopped (SIGSTOP) in the middle of a push"
push_fault sigstop "topcow: push: s3: * */chunks/*: Operation too slow: nothing sent or received for 2 s (2 attempts)"

step "radosgw killed in the middle of a pull over an older copy, then started again"
pull_fault kill "topcow: pull: s3: GET */chunks/*connect*(2 attempts)"

if [ "$CLOUD_FAULTS_NETNS" = 1 ]; then
    step "iptables REJECT (TCP reset) in the middle of a push"
    push_fault reject "topcow: push: s3: * */chunks/*connect*(2 attempts)"
    step "iptables DROP in the middle of a pull into a new file"
    pull_fault drop "topcow: pull: s3: GET */chunks/*: Operation too slow: nothing sent or received for 2 s (2 attempts)" fresh
fi

echo "PASS in $((SECONDS - t0)) s"
