#!/bin/sh
# Run the test suite and end with one line "N passed, N failed".
#
#   run-tests.sh BUILD [ASAN_BUILD [TSAN_BUILD [FUZZ_BUILD]]]
#
# BUILD: every suite except 'long' and 'robust' (MESON_TEST_ARGS overrides
# the selection).
# ASAN_BUILD, if given: the unit, io, cli, fuzz, crash, formats, nbd, top and cloud suites again
# under ASan+UBSan (the interop suite there would double the run time for
# little: it drives the same code through the same commands), and the
# 'robust' suite (the mutation test, which is there to find memory errors)
# only there.  The 1 GiB cloud round trip and the guest boots from the cloud
# (suite cloud-big) run in BUILD only.
# TSAN_BUILD, if given (and not empty): suite 'tsan' (the threaded paths)
# under ThreadSanitizer.
# FUZZ_BUILD, if given (and not empty): suite FUZZ_SUITE (default 'fuzz-long',
# 60 s of libFuzzer per target, the targets in parallel) in a clang build.
# A skipped test counts as failed: `make test` installs every tool the tests
# use, so a skip means the install step is broken.
set -u
BUILD=${1:-build}
ASAN_BUILD=${2:-}
TSAN_BUILD=${3:-}
FUZZ_BUILD=${4:-}
passed=0 failed=0 skipped=0 rc=0
# Undefined behaviour fails the test, as memory errors do.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# A data race fails the test (exit status 66), at the first report.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

# Add the counts of meson's summary in $1/meson-logs/testlog.txt; a run
# that left no summary (no test matched the suites: a build without them)
# counts as one failure.
count() {
    log=$1/meson-logs/testlog.txt
    if [ ! -f "$log" ]; then
        echo "note: no test ran in $1"
        failed=$((failed + 1))
        return
    fi
    get() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$log" | tail -1; }
    ok=$(get Ok) xfail=$(get 'Expected Fail') fail=$(get Fail)
    xpass=$(get 'Unexpected Pass') skip=$(get Skipped) timeout=$(get Timeout)
    passed=$((passed + ${ok:-0} + ${xfail:-0}))
    failed=$((failed + ${fail:-0} + ${xpass:-0} + ${skip:-0} + ${timeout:-0}))
    skipped=$((skipped + ${skip:-0}))
}

# meson test in build $1 with the arguments that follow, then count().
suite() {
    dir=$1
    shift
    rm -f "$dir/meson-logs/testlog.txt"
    meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || rc=1
    count "$dir"
}

# shellcheck disable=SC2086 # MESON_TEST_ARGS is a list of words
suite "$BUILD" ${MESON_TEST_ARGS:---no-suite long --no-suite robust --no-suite tsan}
if [ -n "$ASAN_BUILD" ]; then
    echo "== the same under ASan+UBSan ($ASAN_BUILD)"
    suite "$ASAN_BUILD" --suite unit --suite io --suite cli --suite fuzz --suite crash --suite formats \
        --suite robust --suite nbd --suite top --suite cloud --no-suite cloud-big
fi
if [ -n "$TSAN_BUILD" ]; then
    echo "== the threaded paths under TSan ($TSAN_BUILD)"
    suite "$TSAN_BUILD" --suite tsan
fi
if [ -n "$FUZZ_BUILD" ]; then
    echo "== libFuzzer, suite ${FUZZ_SUITE:-fuzz-long} ($FUZZ_BUILD)"
    suite "$FUZZ_BUILD" --suite "${FUZZ_SUITE:-fuzz-long}"
fi
[ "$skipped" -gt 0 ] && echo "note: $skipped skipped test(s) counted as failed (a tool is missing)"
echo "$passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
