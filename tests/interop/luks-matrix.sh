#!/bin/bash
# SPDX-License-Identifier: MIT
# Every cipher/mode/ivgen combination qemu-img 7.2 accepts for LUKS, each
# with one of the seven hashes (rotated so that every hash meets every key
# size): luks-tool creates the volume; qemu-img info reads its header as
# luks-tool does; QEMU writes patterns that luks-tool must decrypt, and
# luks-tool writes data that QEMU must decrypt (qemu-img compare against a
# raw reference); a wrong passphrase is refused by both.
#   luks-matrix.sh CHUNK NCHUNKS   runs the combinations with index % NCHUNKS == CHUNK
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/interop/luks-common.sh"
require qemu-img qemu-io python3
cd "$SCRATCH"
chunk=${1:-0} nchunks=${2:-1}

make_patterns
declare -A seen
names=()
i=0 n=0
while read -r alg mode ivgen; do
    # key bytes: the family's size, twice that in xts
    bits=${alg#*-}
    ks=$((bits / 8))
    [ "$mode" = xts ] && ks=$((ks * 2))
    k=${seen[$ks]:-0}
    seen[$ks]=$((k + 1))
    hash=${LUKS_HASHES[$((k % ${#LUKS_HASHES[@]}))]}
    idx=$i
    i=$((i + 1))
    [ $((idx % nchunks)) = "$chunk" ] || continue

    what="$alg-$mode-$ivgen hash $hash"
    # shellcheck disable=SC2046
    "$LUKS_TOOL" create v.luks 1M $(tool_opts "$alg" "$mode" "$ivgen" "$hash") --iter-time 1 ||
        fail "$what: luks-tool create"
    name=$(echo "$what" | tr ' :' '__')
    record_dump v.luks "$name"
    names+=("$name")
    exchange v.luks "$what"
    wrong_pass v.luks "$what"
    n=$((n + 1))
done < <(luks_combos)
[ "$n" -gt 0 ] || fail "no combination ran"
check_dumps "${names[@]}"
echo "$n combinations in chunk $chunk of $nchunks"
