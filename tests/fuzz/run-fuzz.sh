#!/bin/bash
# SPDX-License-Identifier: MIT
# Fuzz one target with libFuzzer for a while.
#
# usage: run-fuzz.sh TARGET SECONDS [CORPUS_DIR]
#   TARGET      fuzz-qcow2-open, fuzz-qcow2-check, fuzz-qcow2-repair,
#               fuzz-luks-header, or a foreign format's parser:
#               fuzz-vdi-open, fuzz-vmdk-open, fuzz-vpc-open, fuzz-vhdx-open
#   SECONDS     how long to fuzz
#   CORPUS_DIR  where libFuzzer keeps the inputs it finds interesting
#               (kept between runs; default: a scratch directory)
#
# Unless FUZZ_BINARY names a libFuzzer binary already built (the 'fuzz-long'
# meson suite does that), the binary is built in FUZZ_BUILDDIR (default
# build-fuzz in the source tree), configured on first use as
#   CC=clang meson setup build-fuzz -Db_sanitize=address,undefined -Db_lundef=false
# which needs clang and its libFuzzer runtime (Debian 12: clang,
# libclang-rt-14-dev).  A fresh seed corpus from make-corpus.sh (qcow2),
# make-corpus-luks.sh or make-corpus-formats.sh is read alongside CORPUS_DIR.  Crashes, leaks, timeouts and out-of-memory inputs are
# saved under FUZZ_ARTIFACTS (default: BUILD/fuzz-artifacts/TARGET/); minimise
# one with
#   BINARY -minimize_crash=1 -runs=10000 -exact_artifact_path=OUT CRASH_FILE
# and commit it under tests/fuzz/regressions/TARGET/ (see README.md there).
#
# Extra libFuzzer options can be passed in FUZZ_OPTS (e.g. "-dict=..." or
# "-jobs=2 -workers=2"); the default is one process.
# Exit status: libFuzzer's (0: nothing found in SECONDS).
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
target=$1
seconds=$2
case $target in
fuzz-qcow2-open | fuzz-qcow2-check | fuzz-qcow2-repair | fuzz-luks-header) ;;
fuzz-vdi-open | fuzz-vmdk-open | fuzz-vpc-open | fuzz-vhdx-open) ;;
*) echo "run-fuzz: unknown target '$target'" >&2; exit 2 ;;
esac
src=$(cd "$(dirname "$0")/../.." && pwd)

if [ -z "${FUZZ_BINARY:-}" ]; then
    build=${FUZZ_BUILDDIR:-$src/build-fuzz}
    command -v clang >/dev/null || { echo "run-fuzz: clang is not installed" >&2; exit 1; }
    if [ ! -f "$build/build.ninja" ]; then
        CC=clang meson setup "$build" "$src" -Db_sanitize=address,undefined -Db_lundef=false \
            >"${TMPDIR:-/tmp}/run-fuzz-setup.$$.log" ||
            { cat "${TMPDIR:-/tmp}/run-fuzz-setup.$$.log" >&2; exit 1; }
        rm -f "${TMPDIR:-/tmp}/run-fuzz-setup.$$.log"
    fi
    if ! grep -q "tests/fuzz/$target:" "$build/build.ninja"; then
        echo "run-fuzz: $build cannot build libFuzzer binaries (needs clang, -Db_sanitize=address" \
             "and the libFuzzer runtime: Debian package libclang-rt-14-dev)" >&2
        exit 1
    fi
    ninja -C "$build" "tests/fuzz/$target" tools/topcow tests/tools/luks-tool >/dev/null
    export LUKS_TOOL=${LUKS_TOOL:-$build/tests/tools/luks-tool}
    FUZZ_BINARY=$build/tests/fuzz/$target
    export TOPCOW=${TOPCOW:-$build/tools/topcow}
else
    build=${TOPCOW_BUILDDIR:-$(dirname "$FUZZ_BINARY")}
    : "${TOPCOW:?TOPCOW must point at the topcow binary}"
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/topcow-fuzz-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
corpus=${3:-$scratch/corpus}
mkdir -p "$corpus"
case $target in
fuzz-luks-header) "$src/tests/fuzz/make-corpus-luks.sh" "$scratch/seeds" ;;
fuzz-qcow2-*) "$src/tests/fuzz/make-corpus.sh" "$scratch/seeds" ;;
*) fmt=${target#fuzz-}
    TOPCOW_SRCDIR=$src "$src/tests/fuzz/make-corpus-formats.sh" "${fmt%-open}" "$scratch/seeds" ;;
esac
# Inputs up to 1 MiB, except VHDX: its regions are 1 MiB-aligned, so its
# smallest images take about 9 MiB.
max_len=1048576
[ "$target" = fuzz-vhdx-open ] && max_len=$((10 << 20))
# The targets' sandbox directories go there too, even when a crash skips
# their own cleanup.
mkdir -p "$scratch/tmp"
export TMPDIR=$scratch/tmp
artifacts=${FUZZ_ARTIFACTS:-$build/fuzz-artifacts/$target}
mkdir -p "$artifacts"

# UBSan findings are fatal, as the ASan ones are.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
echo "run-fuzz: $target for ${seconds}s; corpus $corpus; artifacts in $artifacts/" >&2
# -error_exitcode=1: libFuzzer's default (77) would read as "skipped" to meson.
# shellcheck disable=SC2086
"$FUZZ_BINARY" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
    -error_exitcode=1 -timeout_exitcode=1 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_OPTS:-} "$corpus" "$scratch/seeds"
