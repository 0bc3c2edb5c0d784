#!/bin/bash
# topcow top's full-screen view in a real terminal (tmux): two served images,
# one busy (writes to the last 1/8 of its disk, reads of the first 1/16) and
# one idle, named so that name order and traffic order are opposite.  The rows
# appear; n and i reorder them; o hides the idle one and brings it back; the
# detail view's heat maps mark exactly the regions the traffic touches, and t
# switches them to the last interval (an image written only before top started
# goes blank); Esc goes back; a window resize redraws at once; q, Ctrl-C and
# SIGTERM end it with the terminal restored (alternate screen left, shell
# prompt back, exit status 0).  Runs with colours (TERM=screen) and without
# (NO_COLOR=1, and TERM=vt100: no colour drawn; no alternate screen, so the
# last frame must be wiped).
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require tmux qemu-io
grep -qa "built without ncurses" "$TOPCOW" && { echo "SKIP: no ncurses" >&2; exit 77; }
cd "$SCRATCH"

export TOPCOW_STATS_DIR="$SCRATCH/stats"
mkdir "$TOPCOW_STATS_DIR"
unset TMUX
tm() { tmux -S "$SCRATCH/tmux.sock" -f /dev/null "$@"; }   # a server of our own
LOOP=
stop_all() {
    [ -n "$LOOP" ] && kill "$LOOP" 2>/dev/null
    tm kill-server 2>/dev/null
    serve_kill_all
    cleanup_scratch
}
trap stop_all EXIT

# ---- two images, one busy --------------------------------------------------------
"$TOPCOW" create -q -f qcow2 zzz-busy.qcow2 256M
"$TOPCOW" create -q -f qcow2 aaa-idle.qcow2 256M
# Data under the reads (reads of holes may be answered without reading).
ok qemu-io -f qcow2 -c 'write -P 2 0 16M' zzz-busy.qcow2
serve_start busy -t -f qcow2 zzz-busy.qcow2
serve_start idle -t -f qcow2 aaa-idle.qcow2
ok qemu-io -f raw -c 'write -P 3 0 1M' "$(uri idle)"   # before top starts: never "active"
(
    while qemu-io -f raw -c 'write -P 1 224M 32M' -c 'read 0 16M' "$(uri busy)" >/dev/null 2>&1
    do
        sleep 0.05
    done
) &
LOOP=$!

# ---- helpers -------------------------------------------------------------------------
# until_screen TARGET WHAT CONDITION: poll the pane (text in $C) until the
# shell CONDITION holds, about 12 s at most; else show it and fail.
until_screen() {
    for _ in $(seq 100); do
        C=$(tm capture-pane -p -t "$1")
        if eval "$3"; then return 0; fi
        sleep 0.1
    done
    echo "$C" >&2
    fail "$2"
}
line_of() { grep -n -F "$1" <<<"$C" | head -1 | cut -d: -f1; }
# above A B: the row naming A is above the row naming B.
above() {
    local a b
    a=$(line_of "$1") b=$(line_of "$2")
    [ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ]
}
has() { grep -q -E -- "$1" <<<"$C"; }
header='^topcow top - [0-9]{2}:[0-9]{2}:[0-9]{2}'
# The busy row has rates (its WB/s is a figure above zero).
busy_rates() {
    grep -F zzz-busy.qcow2 <<<"$C" | awk '$7 != "-" && $7 != "0" { ok = 1 } END { exit !ok }'
}
colour_sgr() { tm capture-pane -p -e -t "$1" | grep -qP '\e\[([0-9]+;)*[34][0-7](;[0-9]+)*m'; }

# heat_ok MAP FROM TO: in the detail view's MAP ("Reads" or "Writes"), the
# cells in [FROM, TO) (fractions of the disk) are all marked and the others
# all blank.  heat_check: the same or fail.
heat_check() { heat_ok "$@" || { echo "$C" >&2; fail "heat map $1"; }; }
heat_ok() {
    printf '%s\n' "$C" >screen.txt
    /usr/bin/python3 - screen.txt "$@" <<'EOF'
import re, sys
from fractions import Fraction
name, lo, hi = sys.argv[2], Fraction(sys.argv[3]), Fraction(sys.argv[4])
lines = open(sys.argv[1]).read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith(name + ":"))
cells = ""
for l in lines[start + 1:]:
    m = re.match(r"^ *\S+ \|(.*)\|$", l)
    if not m:
        break
    cells += m.group(1)
n = len(cells)
a, b = int(lo * n), int(hi * n)
print(f"{name}: {n} cells, hot [{a}, {b})", file=sys.stderr)
ok = n >= 64 and " " not in cells[a:b] and cells[:a].strip() == "" and cells[b:].strip() == ""
sys.exit(0 if ok else 1)
EOF
}

# ---- with colours ---------------------------------------------------------------------
tm new-session -d -s main -x 160 -y 50 "env PS1='$ ' bash --norc --noprofile"
tm send-keys -t main -l "$TOPCOW top -d 0.5; echo top-exit=\$?"
tm send-keys -t main Enter
until_screen main "both images listed" \
    'has "$header" && has "2 images" && has aaa-idle.qcow2 && has zzz-busy.qcow2'
until_screen main "sorted by io, the busy image first" \
    'has "sort: io" && busy_rates && above zzz-busy aaa-idle'
tm display -p -t main '#{alternate_on}' | grep -qx 1 || fail "no alternate screen"
colour_sgr main || fail "TERM=screen: no colours drawn"
tm send-keys -t main n
until_screen main "n: sorted by name" 'has "sort: name" && above aaa-idle zzz-busy'
tm send-keys -t main i
until_screen main "i: sorted by io again" 'has "sort: io" && above zzz-busy aaa-idle'
tm send-keys -t main o
until_screen main "o: only the active image" \
    'has "refresh [0-9.]+s  only active" && has zzz-busy.qcow2 && ! has aaa-idle.qcow2'
tm send-keys -t main o
until_screen main "o again: both images" '! has "s  only active" && has aaa-idle.qcow2'

# The busy image is the top row: select it (k moves up) and open it.
tm send-keys -t main k k Enter
until_screen main "detail view of the busy image" \
    'has "${header} +PID [0-9]+ +topcow serve +.*zzz-busy.qcow2" && has "^  0 qcow2 " &&
     has "^Reads: [1-9]" && has "^Writes: [1-9]"'
heat_check Writes 7/8 1
heat_check Reads 0 1/16
tm send-keys -t main Escape
until_screen main "Esc: back to the list" 'has "PID COMMAND" && has aaa-idle.qcow2'

# The idle image was written once, at its start, before top began: t turns
# its heat map from "since open" (marked there) to "the last interval" (blank).
tm send-keys -t main j Enter
until_screen main "detail view of the idle image" \
    'has "${header} +PID .*aaa-idle.qcow2" && has "^Heat map since open"'
heat_check Writes 0 1/256
tm send-keys -t main t
until_screen main "t: the heat map of the last interval" \
    'has "^Heat map of the last interval" && heat_ok Writes 0 0'
tm send-keys -t main t Escape
until_screen main "Esc: back to the list again" 'has "PID COMMAND"'

tm send-keys -t main q
until_screen main "q: the shell is back" 'has "^top-exit=" && ! has "$header"'
has '^top-exit=0$' || { echo "$C" >&2; fail "q: exit status"; }
tm display -p -t main '#{alternate_on}' | grep -qx 0 || fail "q: alternate screen still on"

# SIGTERM and Ctrl-C restore the terminal too.
tm send-keys -t main clear Enter
tm send-keys -t main -l "$TOPCOW top -d 0.5; echo top-exit=\$?"
tm send-keys -t main Enter
until_screen main "second run" 'has "$header" && has zzz-busy.qcow2'
shell=$(tm display -p -t main '#{pane_pid}')
top_pid=$(ps -o pid= --ppid "$shell" | tr -d ' ')
[ -n "$top_pid" ] || fail "no top process under the pane's shell"
kill -TERM "$top_pid"
until_screen main "SIGTERM: the shell is back" 'has "^top-exit=0$" && ! has "$header"'
tm display -p -t main '#{alternate_on}' | grep -qx 0 || fail "SIGTERM: alternate screen on"
# NO_COLOR=1 turns the colours off on a terminal that has them.
tm send-keys -t main clear Enter
tm send-keys -t main -l "NO_COLOR=1 $TOPCOW top -d 0.5; echo top-exit=\$?"
tm send-keys -t main Enter
until_screen main "third run" 'has "$header" && has zzz-busy.qcow2'
colour_sgr main && fail "NO_COLOR=1: colour sequences drawn"
tm send-keys -t main C-c
until_screen main "Ctrl-C: the shell is back" 'has "^top-exit=0$" && ! has "$header"'
tm display -p -t main '#{alternate_on}' | grep -qx 0 || fail "Ctrl-C: alternate screen on"

# ---- without colours (vt100: no alternate screen either) ----------------------------
# -d 30: after the second sample (1 s, for rates) only keys and SIGWINCH redraw.
tm new-session -d -s vt -x 100 -y 30 "env PS1='$ ' bash --norc --noprofile"
tm send-keys -t vt -l "TERM=vt100 $TOPCOW top -d 30; echo top-exit=\$?"
tm send-keys -t vt Enter
until_screen vt "vt100: both images listed" \
    'has "$header" && has aaa-idle.qcow2 && has zzz-busy.qcow2 && busy_rates'
colour_sgr vt && fail "TERM=vt100: colour sequences drawn"
tm send-keys -t vt i k k Enter
until_screen vt "vt100: detail view" \
    'has "${header} +PID .*zzz-busy.qcow2" && has "^Reads: [1-9]" && has "^Writes: [1-9]"'
heat_check Writes 7/8 1
heat_check Reads 0 1/16
# A larger window (SIGWINCH): the map is redrawn twice as wide.
has '^ +0 \|.{64}\|$' || { echo "$C" >&2; fail "vt100: 64 cells a row at 100 columns"; }
tm resize-window -t vt -x 160 -y 50
until_screen vt "resize: 128 cells a row" 'has "^ +0 \|.{128}\|$"'
heat_check Writes 7/8 1
tm send-keys -t vt q
until_screen vt "vt100: q: the shell is back" 'has "^top-exit=" && ! has "$header"'
! has "Writes:|PID COMMAND" || { echo "$C" >&2; fail "vt100: the last frame was left"; }
has '^top-exit=0$' || { echo "$C" >&2; fail "vt100: q: exit status"; }
grep -q "Sanitizer\|runtime error" <<<"$C" && fail "sanitizer report"

kill "$LOOP"
wait "$LOOP" 2>/dev/null || true
LOOP=
serve_stop busy
serve_stop idle
echo "ok"
