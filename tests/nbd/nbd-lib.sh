# shellcheck shell=bash
# Shared helpers for the topcow serve tests.  Source after tests/lib.sh.
#   serve_start NAME [serve options...] FILE   start `topcow serve -k SOCK`
#       in the background as server NAME and wait for its socket (run
#       under the command prefix $SERVE_WRAP when set, e.g. strace)
#   serve_wait NAME [SECS] / serve_stop NAME [SECS]   wait for it to exit
#       by itself / after SIGTERM; require status 0 and no sanitizer report
#   sock NAME, uri NAME    its socket path, its nbd+unix:// URI
#   expected_map, nbd_map  allocation maps to compare (see below)
# Every server still running at exit is killed.

declare -A SERVE_PID=()
serve_kill_all() {
    for n in "${!SERVE_PID[@]}"; do kill -KILL "${SERVE_PID[$n]}" 2>/dev/null || true; done
}
trap 'serve_kill_all; cleanup_scratch' EXIT

sock() { echo "$SCRATCH/$1.sock"; }
uri() { echo "nbd+unix:///?socket=$(sock "$1")"; }

serve_start() {
    local name=$1
    shift
    rm -f "$(sock "$name")"
    # shellcheck disable=SC2086 # SERVE_WRAP: a command prefix, split into words
    ${SERVE_WRAP:-} "$TOPCOW" serve -k "$(sock "$name")" "$@" >"$SCRATCH/$name.log" 2>&1 &
    SERVE_PID[$name]=$!
    wait_socket "$(sock "$name")" "$SCRATCH/$name.log"
}

# Wait for server NAME to exit by itself (SECONDS), require status 0.
serve_wait() {
    local name=$1 secs=${2:-30} p=${SERVE_PID[$1]}
    for _ in $(seq $((secs * 20))); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$p" 2>/dev/null && fail "server $name still running after $secs s"
    local st=0
    wait "$p" || st=$?
    unset "SERVE_PID[$name]"
    [ "$st" -eq 0 ] || { cat "$SCRATCH/$name.log" >&2; fail "server $name exited with $st"; }
    grep -q "ERROR: AddressSanitizer\|runtime error:" "$SCRATCH/$name.log" &&
        { cat "$SCRATCH/$name.log" >&2; fail "server $name: sanitizer report"; }
    return 0
}

serve_stop() {
    kill -TERM "${SERVE_PID[$1]}" 2>/dev/null || true
    serve_wait "$1" "${2:-30}"
}

# The base:allocation map (offset length type) that qemu-img map --output=json
# (or $MAP_TOOL map, e.g. "topcow map") implies for IMAGE: hole unless data,
# zero if zero; neighbours merged.  This is the map an NBD server must
# report for the image.
expected_map() {
    ${MAP_TOOL:-qemu-img map} -U --output=json "$@" | /usr/bin/python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    t = (0 if e["data"] else 1) | (2 if e["zero"] else 0)
    if out and out[-1][2] == t and out[-1][0] + out[-1][1] == e["start"]:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["length"], t])
for o in out:
    print(*o)'
}

# nbdinfo --map=CONTEXT URI, as "offset length type" lines, neighbours of
# one type merged (a server may split runs across replies).
nbd_map() {
    nbdinfo --map="$1" "$2" | awk '
        n && $1 == off + len && $3 == type { len += $2; next }
        { if (n++) print off, len, type; off = $1; len = $2; type = $3 }
        END { if (n) print off, len, type }'
}
