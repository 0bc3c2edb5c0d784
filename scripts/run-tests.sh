#!/bin/sh
# Run the test suite and end with one line "N passed, N failed".
#
#   run-tests.sh BUILD [ASAN_BUILD]
#
# BUILD: every suite except 'long' and 'robust' (MESON_TEST_ARGS overrides
# the selection).
# ASAN_BUILD, if given: the unit, io, cli, fuzz and crash suites again under
# ASan+UBSan (the interop suite there would double the run time for little:
# it drives the same code through the same commands), and the 'robust' suite
# (the mutation test, which is there to find memory errors) only there.
# A skipped test counts as failed: `make test` installs every tool the tests
# use, so a skip means the install step is broken.
set -u
BUILD=${1:-build}
ASAN_BUILD=${2:-}
passed=0 failed=0 skipped=0 rc=0
# Undefined behaviour fails the test, as memory errors do.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# Add the counts of meson's summary in $1/meson-logs/testlog.txt.
count() {
    log=$1/meson-logs/testlog.txt
    get() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$log" | tail -1; }
    ok=$(get Ok) xfail=$(get 'Expected Fail') fail=$(get Fail)
    xpass=$(get 'Unexpected Pass') skip=$(get Skipped) timeout=$(get Timeout)
    passed=$((passed + ${ok:-0} + ${xfail:-0}))
    failed=$((failed + ${fail:-0} + ${xpass:-0} + ${skip:-0} + ${timeout:-0}))
    skipped=$((skipped + ${skip:-0}))
}

# shellcheck disable=SC2086 # MESON_TEST_ARGS is a list of words
meson test -C "$BUILD" --print-errorlogs --num-processes 2 ${MESON_TEST_ARGS:---no-suite long --no-suite robust} || rc=1
count "$BUILD"
if [ -n "$ASAN_BUILD" ]; then
    echo "== the same under ASan+UBSan ($ASAN_BUILD)"
    meson test -C "$ASAN_BUILD" --print-errorlogs --num-processes 2 \
        --suite unit --suite io --suite cli --suite fuzz --suite crash --suite robust || rc=1
    count "$ASAN_BUILD"
fi
[ "$skipped" -gt 0 ] && echo "note: $skipped skipped test(s) counted as failed (a tool is missing)"
echo "$passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
