#!/bin/bash
# Error paths of info, check and map: a missing file, an unknown format, a
# bad --output value, bad arguments; each fails with a one-line reason and
# qemu-img's exit status.  check -r on a clean image changes nothing.  A locked image (opened read-write by qemu-io) can be inspected
# only with -U.  --help works.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

qemu-img create -q -f qcow2 a.qcow2 4M
qio a.qcow2 "write -P 1 0 64k"
for sub in info check map; do
    compare_failure $sub nope.qcow2
    compare_failure $sub --output=json nope.qcow2
    compare_failure $sub -f nosuchformat a.qcow2
    compare_failure $sub -f qcow2 "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
    compare $sub --output=xml a.qcow2
    compare_failure $sub
    "$TOPCOW" $sub --help | grep -q "^usage: topcow $sub" || fail "$sub --help"
    must_fail "$TOPCOW" $sub a.qcow2 a.qcow2
    [ "$(wc -l <<<"$ERR")" = 1 ] || fail "$sub with two files: $ERR"
done
compare map --start-offset=x a.qcow2
compare map --max-length=-1 a.qcow2

# -r: a bad value is named; on a clean image a repair finds and writes
# nothing; -U cannot be combined with it.
must_fail "$TOPCOW" check -r sometimes a.qcow2
grep -q "Unknown option value for -r (expecting 'leaks' or 'all'): sometimes" <<<"$ERR" ||
    fail "check -r sometimes: $ERR"
before=$(sha a.qcow2)
for r in leaks all; do
    compare check -r $r a.qcow2
done
must_fail "$TOPCOW" check -U -r all a.qcow2
[ "$(sha a.qcow2)" = "$before" ] || fail "check -r modified the image"

# A writer holds the image (qemu-io waits on its stdin).  Wait for its locks
# in /proc/locks: probing with another open could make its open fail.
mkfifo hold
qemu-io a.qcow2 <hold >/dev/null 2>&1 &
writer=$!
exec 3>hold
inode=$(stat -c %i a.qcow2)
for _ in $(seq 100); do
    grep -q ":$inode " /proc/locks && break
    sleep 0.1
done
grep -q ":$inode " /proc/locks || fail "qemu-io did not lock the image"
for sub in info check map; do
    compare_failure $sub a.qcow2
    compare $sub -U a.qcow2
    compare $sub --force-share --output=json a.qcow2
done
exec 3>&-
wait $writer || true
echo "ok: $COMPARED comparisons"
