#!/bin/bash
# SPDX-License-Identifier: MIT
# Replay a freshly generated seed corpus through the fuzz targets' replay
# drivers (built with the normal compiler and the build's sanitizers): every
# seed image must go through open, check and the write path cleanly.
#
# usage: replay-corpus.sh REPLAY_BINARY...
# Environment: as for every shell test (tests/lib.sh).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io

corpus=$SCRATCH/corpus
"$TOPCOW_SRCDIR/tests/fuzz/make-corpus.sh" "$corpus" || fail "make-corpus.sh failed"
for replay in "$@"; do
    c=$corpus
    case $replay in
    *luks*) # LUKS header areas, not qcow2 images
        c=$SCRATCH/corpus-luks
        [ -d "$c" ] || "$TOPCOW_SRCDIR/tests/fuzz/make-corpus-luks.sh" "$c" ||
            fail "make-corpus-luks.sh failed" ;;
    *-vdi-open | *-vmdk-open | *-vpc-open | *-vhdx-open) # a foreign format's images
        fmt=${replay##*/replay-fuzz-}
        fmt=${fmt%-open}
        c=$SCRATCH/corpus-$fmt
        "$TOPCOW_SRCDIR/tests/fuzz/make-corpus-formats.sh" "$fmt" "$c" ||
            fail "make-corpus-formats.sh $fmt failed" ;;
    esac
    "$replay" "$c" || fail "$(basename "$replay") failed on the seed corpus (see above)"
done
