#!/bin/bash
# When reads fail during the check (EIO injected with strace), `topcow check`
# says "Check failed" on stderr, still prints its summary with the number of
# internal errors (JSON: check-errors), and exits with status 1, as qemu-img
# does.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io strace
cd "$SCRATCH"

qemu-img create -q -f qcow2 a.qcow2 4M
qemu-io -c "write -P 1 0 256k" a.qcow2 >/dev/null
# Fail the Nth pread64 of the process, for growing N, until a read of the
# check itself fails (earlier ones fail the open or the loader).
inject() { # N, then topcow arguments
    local n=$1
    shift
    # LeakSanitizer cannot run under ptrace (ASan builds): without this it
    # dies at exit, before stdout is flushed.
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -o /dev/null -f -e trace=pread64 -e inject=pread64:error=EIO:when="$n" \
        "$TOPCOW" check "$@" a.qcow2 >out 2>err
}
found=
for n in $(seq 1 60); do
    rc=0
    inject "$n" || rc=$?
    if grep -q "internal errors have occurred during the check" out; then
        found=$n
        break
    fi
done
[ -n "$found" ] || fail "no injected read failure showed up as a check error"
[ "$rc" = 1 ] || fail "exit status $rc with check errors"
grep -qx "topcow: Check failed" err || fail "stderr: $(cat err)"
rc=0
inject "$found" --output=json || rc=$?
[ "$rc" = 1 ] || fail "JSON: exit status $rc with check errors"
grep -q '"check-errors": [1-9]' out || fail "JSON: $(cat out)"
echo "ok: read $found failed"
