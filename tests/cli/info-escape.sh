#!/bin/bash
# JSON strings are escaped as QEMU escapes them: quotes, backslashes and
# control characters, non-ASCII as \uXXXX (surrogate pairs above U+FFFF),
# and every invalid UTF-8 sequence or non-character as \uFFFD.  Human
# output prints names unchanged.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

names=(
    $'quote"back\\slash'
    $'ctl\x01\x08\x09\x0a\x0c\x0d\x1f\x7f.img'
    $'caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80-\xc2\x80\xc2\xa0'
    $'bad\xff\xfe\xc3x\xc0\x80\xc1\xbf\xe0\x80\x80'
    $'sur\xed\xa0\x80\xed\xbf\xbf-big\xf4\x90\x80\x80\xf8\x88\x80\x80\x80\xfc\x84\x80\x80\x80\x80'
    $'nonchar\xef\xbf\xbe\xef\xbf\xbf\xef\xb7\x90\xf0\x9f\xbf\xbe\xf4\x8f\xbf\xbd'
    $'cut\xe2\x82'
    $'cut4\xf0\x9f\x98'
    $'cut2\xc2'
    $'mix\xe2\x82\xe2\x82\xac\xf0\x9f\x98x\x80\xbf'
)
for f in "${names[@]}"; do
    qemu-img create -q -f qcow2 "$f" 1M
    compare info --output=json "$f"
    compare info "$f"
    compare check --output=json "$f"
done
echo "ok: $COMPARED comparisons"
