#!/bin/bash
# topcow top --prometheus: two images served by `topcow serve` (one with a
# backing file, one whose name holds a quote, a backslash, a newline and a
# byte that is not UTF-8) are scraped over HTTP.  The body passes
# `promtool check metrics` and prom-metrics.py's checks (families declared
# once, no repeated series, cumulative histograms); the request counters
# equal what qemu-io did, exactly, and grow by exactly the next writes;
# reads answered by the backing file show at depth 1; label values come back
# intact.  Other paths get 404, other methods 405; a client that sends
# nothing does not block the next scrape for long; an address in use or
# malformed is a one-line error with exit 1; SIGTERM ends it with 0.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require promtool curl qemu-img qemu-io
cd "$SCRATCH"
export TOPCOW_STATS_DIR="$SCRATCH/stats"   # see only this test's images
mkdir "$TOPCOW_STATS_DIR"

TOP_PID=
trap '[ -z "$TOP_PID" ] || kill -KILL "$TOP_PID" 2>/dev/null; serve_kill_all; cleanup_scratch' EXIT

prom() { /usr/bin/python3 "$TOPCOW_SRCDIR/tests/top/prom-metrics.py" "$@"; }
# value FILE NAME SELECTOR...: the value of one series (see prom-metrics.py)
value() { prom value "$@" || fail "no single series $*"; }

# A scrape of PATH into FILE: prints "HTTP-CODE CONTENT-TYPE" (code 000
# when there was no answer).
scrape() {
    curl -sS -m 15 -o "$2" -w '%{http_code} %{content_type}' "http://127.0.0.1:$port$1" || true
}

# The whole body must be valid and lint-free, by promtool and by our checks.
check_body() {
    out=$(promtool check metrics <"$1" 2>&1) || { echo "$out" >&2; fail "promtool on $1"; }
    [ -z "$out" ] || fail "promtool lint on $1: $out"
    prom check "$1" || fail "structure of $1"
}

# ---- the images -------------------------------------------------------------------
qemu-img create -q -f qcow2 base.qcow2 64M
ok qemu-io -f qcow2 -c 'write -P 7 8M 1M' base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 a.qcow2
odd=$'odd"\\\nname\xff.qcow2'
qemu-img create -q -f qcow2 "$odd" 16M
serve_start a -t -f qcow2 a.qcow2
serve_start b -t -f qcow2 "$odd"

# Three writes (2 MiB + 64 KiB, whole clusters: no copy-on-write) and a
# read of 1 MiB that only the backing file holds.
ok qemu-io -f raw -c 'write -P 1 0 1M' -c 'write -P 2 1M 1M' -c 'write -P 3 4M 64k' \
    -c 'read -P 7 8M 1M' "$(uri a)"

# ---- the exporter -------------------------------------------------------------------
# A free port (another program could take it before top does: then top
# fails to start and the test says so).
free_port() {
    /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("", 0))
print(s.getsockname()[1])'
}
port=$(free_port)
"$TOPCOW" top --prometheus "127.0.0.1:$port" >top.out 2>top.log &
TOP_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/metrics" && break
    kill -0 "$TOP_PID" 2>/dev/null || { cat top.log >&2; fail "top --prometheus exited"; }
    sleep 0.05
done

r=$(scrape /metrics m1.txt)
[ "$r" = "200 text/plain; version=0.0.4; charset=utf-8" ] || fail "GET /metrics: $r"
check_body m1.txt

A=("image~/a.qcow2" "pid=${SERVE_PID[a]}" "command=topcow serve" "source=topcow")
[ "$(value m1.txt topcow_requests_total "${A[@]}" op=write)" = 3 ] ||
    fail "write requests: $(grep 'requests_total.*a.qcow2.*write' m1.txt)"
[ "$(value m1.txt topcow_request_bytes_total "${A[@]}" op=write)" = $((2 * 1048576 + 65536)) ] ||
    fail "write bytes: $(grep 'request_bytes_total.*a.qcow2.*write' m1.txt)"
[ "$(value m1.txt topcow_request_duration_seconds_count "${A[@]}" op=write)" = 3 ] ||
    fail "write latency histogram count"
[ "$(value m1.txt topcow_requests_total "${A[@]}" op=read)" = 1 ] || fail "read requests"
[ "$(value m1.txt topcow_request_bytes_total "${A[@]}" op=read)" = 1048576 ] || fail "read bytes"
[ "$(value m1.txt topcow_layer_read_resolved_bytes_total "${A[@]}" depth=1)" = 1048576 ] ||
    fail "read bytes resolved by the backing file: $(grep resolved m1.txt)"
[ "$(value m1.txt topcow_layer_read_resolved_bytes_total "${A[@]}" depth=0)" = 0 ] ||
    fail "read bytes resolved by the top layer"
[ "$(value m1.txt topcow_layer_info "${A[@]}" depth=1 file~/base.qcow2 format=qcow2)" = 1 ] ||
    fail "layer 1 info"
[ "$(value m1.txt topcow_virtual_size_bytes "${A[@]}")" = $((64 << 20)) ] || fail "virtual size"
[ "$(value m1.txt topcow_request_errors_total "${A[@]}" op=write)" = 0 ] || fail "write errors"
# The odd name, escaped in the body, reads back as the file's name with the
# stray byte as U+FFFD.
oddlabel=$'/odd"\\\nname\xef\xbf\xbd.qcow2'
[ "$(value m1.txt topcow_layer_info "image~$oddlabel" "file~$oddlabel" depth=0)" = 1 ] ||
    fail "the odd image's labels: $(grep layer_info m1.txt)"
[ "$(value m1.txt topcow_requests_total "image~$oddlabel" op=write)" = 0 ] ||
    fail "the odd image's writes"

# ---- more I/O: the counters grow by exactly that ------------------------------------------
ok qemu-io -f raw -c 'write -P 4 8M 512k' -c 'write -P 5 16M 512k' "$(uri a)"
r=$(scrape /metrics m2.txt)
[ "${r%% *}" = 200 ] || fail "second GET /metrics: $r"
check_body m2.txt
[ "$(value m2.txt topcow_requests_total "${A[@]}" op=write)" = 5 ] || fail "write requests after"
[ "$(value m2.txt topcow_request_bytes_total "${A[@]}" op=write)" = $((3 * 1048576 + 65536)) ] ||
    fail "write bytes after: $(grep 'request_bytes_total.*a.qcow2.*write' m2.txt)"

# ---- other paths and methods -----------------------------------------------------------------
r=$(scrape /other other.txt)
[ "${r%% *}" = 404 ] || fail "GET /other: $r"
r=$(curl -sS -m 15 -o /dev/null -w '%{http_code}' -X POST -d x=1 "http://127.0.0.1:$port/metrics")
[ "$r" = 405 ] || fail "POST /metrics: $r"

# ---- a client that sends nothing is dropped, and the next one is served -----------------------
exec 3<>"/dev/tcp/127.0.0.1/$port"
t0=$(date +%s)
r=$(scrape /metrics m3.txt)
exec 3>&-
[ "${r%% *}" = 200 ] || fail "GET /metrics behind a silent client: $r"
[ $(($(date +%s) - t0)) -le 8 ] || fail "a silent client held the scrape $(($(date +%s) - t0)) s"

# ---- concurrent scrapes are all answered, one after the other ---------------------------------
pids=()
for i in 1 2 3 4; do
    scrape /metrics "c$i.txt" >"c$i.code" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for i in 1 2 3 4; do
    [ "$(cut -d' ' -f1 "c$i.code")" = 200 ] || fail "concurrent scrape $i: $(cat "c$i.code")"
    check_body "c$i.txt"
done

# ---- bad addresses -------------------------------------------------------------------------------
bad() {
    st=0
    "$TOPCOW" top --prometheus "$1" >/dev/null 2>bad.err || st=$?
    [ "$st" = 1 ] || fail "--prometheus $1: exit $st"
    if [ "$(wc -l <bad.err)" != 1 ] || ! grep -q -- "$2" bad.err; then
        fail "--prometheus $1: want one line with '$2': $(cat bad.err)"
    fi
}
bad "127.0.0.1:$port" "127.0.0.1:$port: cannot listen: Address already in use"
bad "$port" "want HOST:PORT"
bad "127.0.0.1:99999" "want HOST:PORT"
bad "::1:$port" "want HOST:PORT"

# ---- SIGTERM: a clean exit -----------------------------------------------------------------------
kill -TERM "$TOP_PID"
for _ in $(seq 100); do
    kill -0 "$TOP_PID" 2>/dev/null || break
    sleep 0.05
done
kill -0 "$TOP_PID" 2>/dev/null && fail "top --prometheus ignored SIGTERM"
st=0
wait "$TOP_PID" || st=$?
TOP_PID=
[ "$st" = 0 ] || { cat top.log >&2; fail "top --prometheus exited with $st on SIGTERM"; }
grep -q "ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer" top.log &&
    { cat top.log >&2; fail "top: sanitizer report"; }

# ---- ":PORT" listens on every address; SIGINT ends it with 0 too ---------------------------------
port2=$(free_port)
"$TOPCOW" top --prometheus ":$port2" >top2.out 2>top2.log &
TOP_PID=$!
for _ in $(seq 100); do
    curl -s -o m4.txt "http://127.0.0.1:$port2/metrics" && break
    kill -0 "$TOP_PID" 2>/dev/null || { cat top2.log >&2; fail "top --prometheus :$port2 exited"; }
    sleep 0.05
done
[ "$(value m4.txt topcow_requests_total "${A[@]}" op=write)" = 5 ] || fail "scrape of :$port2"
kill -INT "$TOP_PID"
for _ in $(seq 100); do
    kill -0 "$TOP_PID" 2>/dev/null || break
    sleep 0.05
done
kill -0 "$TOP_PID" 2>/dev/null && fail "top --prometheus ignored SIGINT"
st=0
wait "$TOP_PID" || st=$?
TOP_PID=
[ "$st" = 0 ] || { cat top2.log >&2; fail "top --prometheus exited with $st on SIGINT"; }

serve_stop a
serve_stop b
exit 0
