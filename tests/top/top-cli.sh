#!/bin/bash
# topcow top's command line and its statistics directory: every bad option
# gets one clear line and exit status 1; the screen refuses to start without
# a terminal; an unreadable statistics directory is reported once, however
# many samples fail; temporary files that a publisher died before renaming
# are removed once they are old (a fresh one may be a publisher at work and
# stays), and so are files nobody holds.
. "$TOPCOW_SRCDIR/tests/lib.sh"

export TOPCOW_STATS_DIR="$SCRATCH/stats"
cd "$SCRATCH"

bad() { # EXPECTED-MESSAGE ARGS...
    local want=$1
    shift
    must_fail "$TOPCOW" top "$@" </dev/null
    [ "$(printf '%s\n' "$ERR" | head -n1)" = "$want" ] || fail "top $*: '$ERR', expected '$want'"
}
bad "topcow: top: -n wants a count of 1 or more, not '0'" -b -n 0
bad "topcow: top: -n wants a count of 1 or more, not 'x'" -b -n x
bad "topcow: top: -d wants seconds between 0.05 and 86400, not '0'" -b -d 0
bad "topcow: top: -d wants seconds between 0.05 and 86400, not 'abc'" -b -d abc
bad "topcow: top: unknown sort key 'bogus' (io, iops, latency, growth, name, pid)" -b -s bogus
bad "topcow: top: choose one of -b, --json and --prometheus" -b --json
bad "topcow: top: choose one of -b, --json and --prometheus" --json --prometheus :1
bad "topcow: top: unexpected argument 'extra'" -b extra
bad "topcow: top: the screen needs a terminal; use -b or --json for output to a pipe"
ok "$TOPCOW" top --help
echo "$out" | grep -q -- "--prometheus" || fail "--help does not describe --prometheus"

# An unreadable directory: one message for three failing samples, exit 0.
touch notadir
"$TOPCOW" top -b -n 2 -d 0.1 --stats-dir "$SCRATCH/notadir" >out.txt 2>err.txt ||
    fail "top with an unreadable statistics directory exited with $?"
[ "$(cat err.txt)" = "topcow top: stats scan: cannot read statistics directory \
$SCRATCH/notadir: Not a directory" ] || fail "unreadable directory: $(cat err.txt)"
[ "$(grep -c '^topcow top - ' out.txt)" = 2 ] || fail "two tables expected: $(cat out.txt)"

# Leftovers of publishers that died: an old temporary file and a file
# nobody holds go; a fresh temporary file stays.
mkdir -p "$TOPCOW_STATS_DIR"
head -c 100 /dev/zero >"$TOPCOW_STATS_DIR/.4000001-1.tmp"
touch -d '1 minute ago' "$TOPCOW_STATS_DIR/.4000001-1.tmp"
head -c 100 /dev/zero >"$TOPCOW_STATS_DIR/.4000002-1.tmp"
head -c 100 /dev/zero >"$TOPCOW_STATS_DIR/4000003-1.stats"
ok "$TOPCOW" top --json -n 1 -d 0.1
echo "$out" | grep -q '"images":\[\]' || fail "leftovers shown as images: $out"
left=$(cd "$TOPCOW_STATS_DIR" && ls -A | tr '\n' ' ')
[ "$left" = ".4000002-1.tmp " ] || fail "after a scan the directory holds: '$left'"
echo "top-cli: OK"
