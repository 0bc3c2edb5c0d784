#!/bin/bash
# SPDX-License-Identifier: MIT
# The VMDK images of the corpus (QEMU's sample images), read as qemu-img
# 7.2 reads them: iotest-version3.vmdk (an ESXi streamOptimized image,
# version 3, GD at the end) converts to the same raw bytes and shows the
# same info; afl9.vmdk (a fuzzed header with an absurd capacity) is refused
# with one clear line, as qemu-img refuses it ("L1 size too big").
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/formats/corpus.sh"
require qemu-img
cd "$SCRATCH"

v3=$(corpus_unpack iotest-version3.vmdk)
ok "$TOPCOW" convert -O raw "$v3" t.raw
ok qemu-img convert -O raw "$v3" q.raw
# 16 GiB of raw output: hashing it takes minutes, so the two conversions are
# compared byte for byte by qemu-img compare, which skips their holes.
[ "$(stat -c %s t.raw)" = "$(stat -c %s q.raw)" ] || fail "iotest-version3.vmdk: raw sizes differ"
ok qemu-img compare -f raw -F raw t.raw q.raw
[ "$("$TOPCOW" info "$v3")" = "$(qemu-img info "$v3")" ] || fail "iotest-version3.vmdk: info differs"
[ "$("$TOPCOW" map --output=json "$v3")" = "$(qemu-img map --output=json "$v3")" ] ||
    fail "iotest-version3.vmdk: map differs"

afl=$(corpus_unpack afl9.vmdk)
qemu-img info "$afl" > /dev/null 2>&1 && fail "qemu-img now opens afl9.vmdk: revisit this test"
# One clean error line naming the file and the fault, exit status 1.
refused() {
    local rc=0
    "$@" > out 2> err || rc=$?
    [ "$rc" = 1 ] || fail "$*: exit status $rc, wanted 1"
    [ "$(wc -l < err)" = 1 ] || { cat err; fail "$*: not one line of error"; } >&2
    grep -q "afl9.vmdk" err && grep -q "L1 size too big" err ||
        { cat err; fail "$*: the error does not say what is wrong"; } >&2
}
refused "$TOPCOW" info "$afl"
refused "$TOPCOW" convert -O raw "$afl" out.raw
refused "$TOPCOW" map "$afl"
exit 0
