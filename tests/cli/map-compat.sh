#!/bin/bash
# `topcow map` prints what qemu-img map prints: JSON runs merged the same
# way (depth, present, zero, data, offset), and the human table of data
# ranges, which refuses compressed clusters after printing the ranges before
# them.  Images: zero and zero-allocated clusters, extended-L2 subclusters,
# compressed clusters, data files, metadata preallocation, raw files with
# holes; also partial ranges (--start-offset, --max-length), empty ones
# included.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

make_images
for f in "${IMAGES[@]}"; do
    compare map "$f"
    compare map --output=json "$f"
done
for range in "--start-offset=1000 --max-length=70000" "--start-offset=64k" \
    "--max-length=1M" "--start-offset=1.5M --max-length=3000" "--start-offset=3M" \
    "--start-offset=100M" "--max-length=0" "--start-offset=4M --max-length=1"; do
    for f in zero.qcow2 el2.qcow2 comp.qcow2 holes.raw; do
        # shellcheck disable=SC2086
        compare map --output=json $range "$f"
        # shellcheck disable=SC2086
        compare map $range -U "$f"
    done
done
compare map -f raw --output=json plain.qcow2
# The refusal, checked directly too.
rc=0; "$TOPCOW" map comp.qcow2 >out 2>err || rc=$?
[ $rc = 1 ] || fail "map of compressed image: exit $rc"
grep -q "File contains external, encrypted or compressed clusters." err ||
    fail "refusal: $(cat err)"
echo "ok: $COMPARED comparisons"
