#!/bin/bash
# The tiny Linux guest of tests/interop/guest-boot.sh boots from an s3://
# image on a Ceph RGW started here: through `topcow serve s3://...` with a
# cold and then a warm chunk cache, and after a pull, as a local file.  Each
# boot prints its time ("boot ...: N ms"); bench/cloud-boot.sh takes medians.
# Exit 77 when Ceph or botocore is not installed, or the guest cannot run.
. "$TOPCOW_SRCDIR/tests/lib.sh"
HERE=$TOPCOW_SRCDIR/tests/cloud
finish() { "$HERE/rgw.sh" stop "$SCRATCH/rgw"; cleanup_scratch; }
trap finish EXIT
rc=0
"$HERE/rgw.sh" start "$SCRATCH/rgw" $$ >"$SCRATCH/env" || rc=$?
[ $rc = 77 ] && exit 77
[ $rc = 0 ] || fail "the RGW fixture did not start (exit $rc)"
. "$SCRATCH/env"
for mode in lazy pull; do
    rc=0
    GUEST_REMOTE=s3://$RGW_BUCKET/boot-$mode GUEST_MODE=$mode \
        bash "$TOPCOW_SRCDIR/tests/interop/guest-boot.sh" || rc=$?
    [ $rc = 0 ] || exit $rc
done
