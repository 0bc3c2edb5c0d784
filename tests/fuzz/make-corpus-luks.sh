#!/bin/bash
# SPDX-License-Identifier: MIT
# Generate the seed corpus of fuzz-luks-header into OUTDIR: LUKS1 header
# areas made by lib/crypto (through luks-tool) and by qemu-img, with 16-byte
# keys (so each seed stays near 512 KiB) across cipher families, modes, IV
# generators and hashes.  Slot 0 of each holds the passphrase "fuzz", and
# PBKDF2 runs its minimum count, so the target's unlock runs them through.
#
# usage: make-corpus-luks.sh OUTDIR
# Environment: LUKS_TOOL (tests/tools/luks-tool of a build).
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
: "${LUKS_TOOL:?LUKS_TOOL must point at tests/tools/luks-tool}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/topcow-corpus-luks.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export LUKS_PASS=fuzz
n=0
while read -r alg mode iv hash; do
    f=$WORK/v.luks
    rm -f "$f"
    opts=(--cipher-alg "$alg" --cipher-mode "$mode" --ivgen-alg "${iv%%:*}" --hash-alg "$hash"
          --iter-time 1)
    case $iv in *:*) opts+=(--ivgen-hash-alg "${iv#*:}") ;; esac
    "$LUKS_TOOL" create "$f" 4096 "${opts[@]}" >/dev/null
    cp "$f" "$OUT/seed-$(printf %02d $n)-$alg-$mode-${iv/:/-}-$hash"
    n=$((n + 1))
done <<'COMBOS'
aes-128 cbc plain64 sha256
aes-128 ecb plain sha1
aes-128 ctr essiv:sha256 sha512
serpent-128 cbc essiv:md5 sha224
twofish-128 ctr plain64 ripemd160
cast5-128 cbc plain64 md5
COMBOS
echo "make-corpus-luks: $n seeds in $OUT" >&2
