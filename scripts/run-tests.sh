#!/bin/sh
# Run the whole test suite in build dir $1 and end with "N passed, N failed".
# A skipped test counts as failed: `make test` installs every tool the tests
# use, so a skip means the install step is broken.
set -u
BUILD=${1:-build}
LOG=$BUILD/meson-logs/testlog.txt
meson test -C "$BUILD" --print-errorlogs --num-processes 2 ${MESON_TEST_ARGS:---no-suite long}
rc=$?
ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$LOG" | tail -1)
xfail=$(sed -n 's/^Expected Fail: *\([0-9]*\).*/\1/p' "$LOG" | tail -1)
fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$LOG" | tail -1)
xpass=$(sed -n 's/^Unexpected Pass: *\([0-9]*\).*/\1/p' "$LOG" | tail -1)
skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$LOG" | tail -1)
timeout=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$LOG" | tail -1)
passed=$(( ${ok:-0} + ${xfail:-0} ))
failed=$(( ${fail:-0} + ${xpass:-0} + ${skip:-0} + ${timeout:-0} ))
[ "${skip:-0}" -gt 0 ] && echo "note: ${skip} skipped test(s) counted as failed (a tool is missing)"
echo "$passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
