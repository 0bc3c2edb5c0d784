#!/bin/bash
# `topcow check` prints what qemu-img check prints (summary, percentages,
# image end offset; JSON with the optional members left out when zero) and
# exits with the same status, for every kind of image qemu-img makes.
# -q prints nothing on stdout; raw images have no check (exit 63).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

make_images
for f in "${IMAGES[@]}"; do
    compare check "$f"
    compare check --output=json "$f"
    compare check -q "$f"
    compare check -q --output=json -U "$f"
done
compare check -f qcow2 --output=human plain.qcow2
compare check -f raw plain.qcow2
# The exit statuses themselves, not only their agreement with qemu-img.
rc=0; "$TOPCOW" check plain.qcow2 >/dev/null || rc=$?
[ $rc = 0 ] || fail "clean image: exit $rc"
rc=0; "$TOPCOW" check holes.raw >/dev/null 2>&1 || rc=$?
[ $rc = 63 ] || fail "raw image: exit $rc"
rc=0; "$TOPCOW" check dirty.qcow2 >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "dirty image: exit $rc"
echo "ok: $COMPARED comparisons"
