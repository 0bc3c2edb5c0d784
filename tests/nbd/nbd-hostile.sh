#!/bin/bash
# Hostile NBD clients (nbd-hostile.py) against the server: malformed
# handshakes, oversized lengths, offsets past the end, unknown commands and
# options, requests before negotiation, and a storm of connect/disconnect
# cycles from 64 concurrent clients.  Afterwards the server must still be
# alive and serving, hold no more fds than before, not have grown its RSS by
# 64 MiB or more (128 under ASan) nor by 16 MiB in a second storm, exit 0 on
# SIGTERM, print no sanitizer report, and leave both
# images clean (qemu-img check) with exactly the content the successful
# writes made (qemu-img compare against a reference).
#
# The server is `topcow serve`, or any command with the qemu-nbd options given
# in NBD_SERVER (NBD_SERVER=qemu-nbd runs the cases against qemu-nbd, which
# is held to the spec's MUSTs only; topcow also to its SHOULDs, --strict).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io timeout
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: $PY not installed" >&2; exit 77; }
HOSTILE=$TOPCOW_SRCDIR/tests/nbd/nbd-hostile.py

read -r -a SERVER <<<"${NBD_SERVER:-$TOPCOW serve}"
STRICT=--strict
[ "$(basename "${SERVER[0]}")" = qemu-nbd ] && STRICT=
# Under ASan a small quarantine, so that freed memory does not read as growth.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16

PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap 'stop_all; cleanup_scratch' EXIT

# The image with the known content, a reference copy, and a copy for the
# read-only server.
IMG=$SCRATCH/img.qcow2 REF=$SCRATCH/ref.qcow2 RO=$SCRATCH/ro.qcow2
qemu-img create -q -f qcow2 "$IMG" "$("$PY" "$HOSTILE" size)"
qemu_io_script() {   # FILE SUBCOMMAND: run the qemu-io commands nbd-hostile.py prints
    local args=() line
    while read -r line; do args+=(-c "$line"); done < <("$PY" "$HOSTILE" "$2")
    ok qemu-io -f qcow2 "${args[@]}" "$1"
}
qemu_io_script "$IMG" layout
cp "$IMG" "$REF"
cp "$IMG" "$RO"

alive() {   # PID: not gone, not a zombie (stopped counts: LeakSanitizer's exit check
            # traces the process, state t)
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || true
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status"; }

start() {   # SOCKET LOG EXPORT ARGS...: sets PID
    local sock=$1 log=$2 name=$3
    shift 3
    "${SERVER[@]}" -f qcow2 -k "$sock" -t -e 64 "$@" >"$log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    if ! "$PY" "$HOSTILE" ready "$sock" ${name:+"$name"} --pid "$PID"; then
        cat "$log" >&2
        fail "the server did not start: ${SERVER[*]} -f qcow2 -k $sock -t -e 64 $*"
    fi
}
start "$SCRATCH/sock" "$SCRATCH/server.log" "" "$IMG"
SRV=$PID
start "$SCRATCH/ro.sock" "$SCRATCH/ro-server.log" ro -r -x ro "$RO"
RO_SRV=$PID

sleep 0.2
fd0=$(fds "$SRV")
rss0=$(rss_kb "$SRV")

rc=0
timeout -k 5 300 "$PY" "$HOSTILE" run "$SCRATCH/sock" --readonly-socket "$SCRATCH/ro.sock" \
    --readonly-export ro --pid "$SRV" $STRICT -v || rc=$?
[ "$rc" -eq 124 ] && fail "nbd-hostile.py did not finish within 300 s"

problems=()
[ "$rc" -eq 0 ] || problems+=("hostile cases failed (see FAIL lines above)")
alive "$SRV" || problems+=("the server died")
alive "$RO_SRV" || problems+=("the read-only server died")

settle_fds() {   # PID: fds back to within 4 of fd0 (a little slack for caches) in 10 s
    for _ in $(seq 100); do
        fd1=$(fds "$1")
        [ "$fd1" -le $((fd0 + 4)) ] && return 0
        sleep 0.1
    done
    problems+=("the server holds $fd1 fds, $fd0 before the cases: $(
        find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' |
        sort | uniq -c | sort -rn | head -5 | tr '\n' ' ')")
}
if alive "$SRV"; then
    # The server still serves a normal client, and the connections that
    # ended are gone.
    "$PY" "$HOSTILE" ready "$SCRATCH/sock" || problems+=("the server no longer serves")
    settle_fds "$SRV"
    rss1=$(rss_kb "$SRV")
    # Another storm: a leak per connection would show as growth now that the
    # allocator has reached its working size.
    timeout -k 5 120 "$PY" "$HOSTILE" run "$SCRATCH/sock" --pid "$SRV" --only storm $STRICT ||
        problems+=("the second storm failed")
    settle_fds "$SRV"
    rss2=$(rss_kb "$SRV")
    # Growth bound: 64 MiB; twice that with AddressSanitizer's allocator.
    limit=65536
    grep -q -a -m1 __asan_init "/proc/$SRV/exe" 2>/dev/null && limit=131072
    [ "$rss2" -lt $((rss0 + limit)) ] ||
        problems+=("the server's RSS grew from $((rss0 / 1024)) MiB to $((rss2 / 1024)) MiB")
    [ "$rss2" -lt $((rss1 + 16384)) ] ||
        problems+=("the server's RSS grew from $((rss1 / 1024)) to $((rss2 / 1024)) MiB in the second storm")
    echo "server: fds $fd0 -> $fd1, RSS $((rss0 / 1024)) -> $((rss1 / 1024)) -> $((rss2 / 1024)) MiB"
fi

# SIGTERM: each server exits 0 within 30 s.
for p in "$SRV" "$RO_SRV"; do
    alive "$p" || continue
    kill -TERM "$p"
    for _ in $(seq 300); do alive "$p" || break; sleep 0.1; done
    if alive "$p"; then
        problems+=("server $p still running 30 s after SIGTERM")
        kill -KILL "$p" 2>/dev/null || true
    fi
    st=0
    wait "$p" || st=$?
    [ "$st" -eq 0 ] || problems+=("server $p exited with status $st after SIGTERM")
done
PIDS=()
for log in "$SCRATCH/server.log" "$SCRATCH/ro-server.log"; do
    if grep -q -E 'Sanitizer|runtime error:' "$log"; then
        problems+=("sanitizer report in $(basename "$log")")
    fi
done
if [ "${#problems[@]}" -gt 0 ]; then
    for log in "$SCRATCH/server.log" "$SCRATCH/ro-server.log"; do
        [ -s "$log" ] && { echo "--- $(basename "$log") (last 40 lines)"; tail -40 "$log"; }
    done >&2
    for p in "${problems[@]}"; do echo "FAIL: $p" >&2; done
    exit 1
fi

# The images: clean, and holding what the successful writes made, no more.
qemu_check_clean "$IMG"
qemu_check_clean "$RO"
out=$(qemu-img compare -f qcow2 -F qcow2 "$REF" "$RO" 2>&1) ||
    fail "the read-only image changed: $out"
qemu_io_script "$REF" final
out=$(qemu-img compare -f qcow2 -F qcow2 "$REF" "$IMG" 2>&1) ||
    fail "the image does not hold the expected content: $out"
echo "nbd-hostile: all checks passed"
