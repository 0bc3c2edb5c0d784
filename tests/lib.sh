# Shared shell helpers for topcow's tests.  Source it first:
#   . "$TOPCOW_SRCDIR/tests/lib.sh"
# Environment (set by meson): TOPCOW (the binary), TOPCOW_SRCDIR, TOPCOW_BUILDDIR.
# Exit codes: 0 pass, 1 fail, 77 skip (only when a tool is genuinely absent).
set -eu

: "${TOPCOW:?TOPCOW must point at the topcow binary}"
: "${TOPCOW_SRCDIR:?}"

# A private scratch directory, removed on exit unless KEEP_SCRATCH=1.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/topcow-test.XXXXXX")
cleanup_scratch() {
    if [ "${KEEP_SCRATCH:-0}" = 1 ]; then
        echo "scratch kept in $SCRATCH" >&2
    else
        rm -rf "$SCRATCH"
    fi
}
trap cleanup_scratch EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Skip (77) unless every named program is on PATH.
require() {
    for p in "$@"; do
        command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p not installed" >&2; exit 77; }
    done
}

# Run a command that must succeed; show its output on failure.
ok() {
    out=$("$@" 2>&1) || { echo "$out" >&2; fail "command failed: $*"; }
}

# Run a command that must fail; its stderr is kept in $ERR.
must_fail() {
    if ERR=$("$@" 2>&1); then
        fail "command should have failed: $*"
    fi
}

# qemu-img check must report no errors and no leaks.
qemu_check_clean() {
    out=$(qemu-img check "$@" 2>&1) || { echo "$out" >&2; fail "qemu-img check $*"; }
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Wait until PATH is a socket (10 s), or fail showing LOG (if given).
wait_socket() {
    for _ in $(seq 200); do
        [ -S "$1" ] && return 0
        sleep 0.05
    done
    [ -z "${2:-}" ] || cat "$2" >&2 || true
    fail "no socket at $1"
}
