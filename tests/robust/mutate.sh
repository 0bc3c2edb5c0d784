#!/bin/bash
# SPDX-License-Identifier: MIT
# The mutation test: make the base images (make-images.sh), then run
# robust-mutate on them with the arguments given (see robust-mutate.c).
#
# usage: mutate.sh [robust-mutate options]
# Environment: TOPCOW, TOPCOW_SRCDIR, TOPCOW_BUILDDIR as for every shell test
# (tests/lib.sh); a failure prints a replay command that sets them.
# Failing mutants are kept in $TOPCOW_BUILDDIR/tests/robust/failed/.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io

mutate=$TOPCOW_BUILDDIR/tests/robust/robust-mutate
topcow=$(cd "$(dirname "$TOPCOW")" && pwd)/$(basename "$TOPCOW")
"$TOPCOW_SRCDIR/tests/robust/make-images.sh" "$SCRATCH/images" || fail "make-images.sh failed"
ROBUST_REPLAY="TOPCOW=$topcow TOPCOW_SRCDIR=$TOPCOW_SRCDIR TOPCOW_BUILDDIR=$TOPCOW_BUILDDIR"
export ROBUST_REPLAY="$ROBUST_REPLAY $TOPCOW_SRCDIR/tests/robust/mutate.sh"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
"$mutate" --keep "$TOPCOW_BUILDDIR/tests/robust/failed" "$@" "$SCRATCH/images"
