#!/bin/bash
# Every malformed image of the unit test (bad magic, truncated header,
# cluster_bits out of range, tables past EOF or over the header, unaligned
# L2 and data offsets, unknown incompatible bits, refcount block loops, ...)
# makes each command that reads the damaged structure exit non-zero with one
# line on stderr naming it - never a crash or a hang.  Damage below the
# header and tables (an unaligned L2 or data offset) is invisible to info,
# as in qemu-img; check reports it as corruption (exit 2).
. "$TOPCOW_SRCDIR/tests/lib.sh"
"$TOPCOW_BUILDDIR/tests/unit/test-malformed" --keep "$SCRATCH" >/dev/null || fail "test-malformed"

# run NAME ARGS...: sets rc and err (stderr), fails on crashes and hangs.
run() {
    local name=$1
    shift
    set +e
    err=$(timeout 60 "$TOPCOW" "$@" 2>&1 >/dev/null)
    rc=$?
    set -e
    [ "$rc" -lt 124 ] || fail "$name: exit $rc (crash or hang)"
}

one_line_naming() { # label expected
    [ "$rc" -ne 0 ] || fail "$1 succeeded"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$1: not one line: $err"
    case "$err" in *"$2"*) ;; *) fail "$1: '$err' does not name '$2'" ;; esac
}

n=0
for img in "$SCRATCH"/*.qcow2; do
    want=$(cat "${img%.qcow2}.expect")
    b=$(basename "$img")
    run "info $b" info -f qcow2 "$img"
    if [ "$rc" -eq 0 ]; then
        # Damage below the tables: check must find it.
        run "check $b" check -f qcow2 "$img"
        [ "$rc" -eq 2 ] || fail "check on $b ($want): exit $rc, expected 2: $err"
        case "$err" in *ERROR*) ;; *) fail "check on $b reports no ERROR: $err" ;; esac
    else
        one_line_naming "info on $b" "$want"
        run "check $b" check -f qcow2 "$img"
        one_line_naming "check on $b" "$want"
    fi
    run "map $b" map --output=json -f qcow2 "$img"
    one_line_naming "map on $b" "$want"
    run "io $b" io -r -f qcow2 -c "read 0 64k" "$img"
    one_line_naming "io on $b" "$want"
    run "convert $b" convert -f qcow2 -O raw "$img" "$SCRATCH/out.raw"
    one_line_naming "convert on $b" "$want"
    n=$((n + 1))
done
[ "$n" -ge 20 ] || fail "only $n malformed images"
echo "ok: $n malformed images, every command fails cleanly"
