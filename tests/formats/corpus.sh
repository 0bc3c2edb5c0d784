# Locate the corpus of images made by other tools (QEMU's sample images,
# bzip2-compressed).  Source after tests/lib.sh:
#   . "$TOPCOW_SRCDIR/tests/formats/corpus.sh"
# Sets CORPUS to the directory holding them: $TOPCOW_CORPUS when set, else
# the corpus/qemu-sample-images directory beside the source tree (the
# project's checkout sits next to its shared folder).  A missing corpus is
# a failure, not a skip: the images are part of the test set.
# corpus_unpack NAME: bunzip2 CORPUS/NAME.bz2 into $SCRATCH/NAME, print the path.
CORPUS=${TOPCOW_CORPUS:-$TOPCOW_SRCDIR/../shared/corpus/qemu-sample-images}
[ -d "$CORPUS" ] || fail "corpus not found at $CORPUS (set TOPCOW_CORPUS)"
CORPUS=$(cd "$CORPUS" && pwd)

corpus_unpack() {
    [ -f "$CORPUS/$1.bz2" ] || fail "corpus image $1.bz2 missing from $CORPUS"
    [ -f "$SCRATCH/$1" ] || bzcat "$CORPUS/$1.bz2" > "$SCRATCH/$1"
    echo "$SCRATCH/$1"
}
