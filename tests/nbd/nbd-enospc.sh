#!/bin/bash
# SPDX-License-Identifier: MIT
# A full disk under topcow serve: writes that need space the file system
# does not have fail with ENOSPC at the client (qemu-io over NBD says "No
# space left on device"), the server keeps serving, what was written before
# reads back, and after SIGTERM the image is consistent for qemu-img check.
# The full disk is a real one (a 12 MiB tmpfs) where mounting is possible,
# else injected with strace (ENOSPC from the Nth data write of the server).
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/nbd/nbd-lib.sh"
require qemu-img qemu-io strace
cd "$SCRATCH"

mkdir small
if mount -t tmpfs -o size=12m tmpfs small 2>/dev/null; then
    trap 'serve_kill_all; umount "$SCRATCH/small" 2>/dev/null || true; cleanup_scratch' EXIT
    how="a 12 MiB tmpfs"
else
    SERVE_WRAP="strace -f -o /dev/null -e trace=pwrite64,pwritev,fallocate \
        -e inject=pwrite64,pwritev,fallocate:error=ENOSPC:when=40+"
    # LeakSanitizer cannot run under ptrace (an ASan build).
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
    how="ENOSPC injected from the 40th write"
fi
img=small/img.qcow2
ok qemu-img create -q -f qcow2 "$img" 64M
serve_start s -t -f qcow2 "$img"
U=$(uri s)
# 4 MiB first: it fits.
ok qemu-io -f raw -c 'write -P 0x11 0 4M' "$U"
# Then far more than the file system holds, in 1 MiB writes.
out=$(qemu-io -f raw -c 'write -P 0x22 8M 1M' -c 'write -P 0x22 9M 1M' -c 'write -P 0x22 10M 1M' \
    -c 'write -P 0x22 11M 1M' -c 'write -P 0x22 12M 1M' -c 'write -P 0x22 13M 1M' \
    -c 'write -P 0x22 14M 1M' -c 'write -P 0x22 15M 1M' -c 'write -P 0x22 16M 1M' \
    -c 'write -P 0x22 17M 1M' -c 'write -P 0x22 18M 1M' -c 'write -P 0x22 19M 1M' \
    -c 'write -P 0x22 20M 1M' "$U" 2>&1) || true
grep -q 'No space left on device' <<<"$out" ||
    fail "no ENOSPC at the client ($how): $out"
# The server is still there, and the first 4 MiB are intact.
ok qemu-io -f raw -c 'read -P 0x11 0 4M' "$U"
serve_stop s
# Exit 0 (clean) or 3 (leaked clusters only: allocated, then the write
# failed); 2 is corruption, 1 a check that could not run.
st=0
out=$(qemu-img check "$img" 2>&1) || st=$?
[ "$st" = 0 ] || [ "$st" = 3 ] || { echo "$out" >&2; fail "qemu-img check exit $st after the full disk"; }
ok qemu-io -r -f qcow2 -c 'read -P 0x11 0 4M' "$img"
echo "PASS ($how)"
