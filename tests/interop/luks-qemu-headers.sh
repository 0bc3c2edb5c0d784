#!/bin/bash
# SPDX-License-Identifier: MIT
# LUKS volumes qemu-img creates, covering every cipher family, mode, IV
# generator and hash at least once (qemu-img create spends seconds
# measuring PBKDF2, so not every combination; luks-matrix.sh covers those
# with volumes luks-tool creates): luks-tool reads the header as qemu-img
# info does, unlocks it, exchanges data with qemu-io both ways and refuses
# a wrong passphrase; and luks-tool lays out a volume with the same options
# exactly as QEMU does (key slot offsets, payload offset, file size).
#   luks-qemu-headers.sh CHUNK NCHUNKS
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/interop/luks-common.sh"
require qemu-img qemu-io python3
cd "$SCRATCH"
chunk=${1:-0} nchunks=${2:-1}

# "alg mode ivgen[:ivhash] hash", or "default" for no options at all
# (aes-256, xts, plain64, sha256); essiv without a hash means sha256.
cases=(
    "default"
    "aes-128 cbc essiv:md5 sha1"
    "aes-192 xts essiv sha512"
    "serpent-256 ecb plain ripemd160"
    "twofish-128 ctr plain:sha1 sha224"
    "cast5-128 cbc essiv:md5 md5"
    "serpent-128 xts plain64 sha384"
)

layout() { "$LUKS_TOOL" dump "$1" | sed -n 's/^\(payload-offset: .*\)/\1/p; s/^slot \([0-7]\): .*\(key-offset=[0-9]*\)/\1 \2/p'; }

make_patterns
names=()
for i in "${!cases[@]}"; do
    [ $((i % nchunks)) = "$chunk" ] || continue
    c=${cases[$i]}
    if [ "$c" = default ]; then
        qo="" to=""
    else
        # shellcheck disable=SC2086
        qo=$(qemu_opts $c) to=$(tool_opts $c)
    fi
    what="qemu-img create ${qo:-(defaults)}"
    qemu_create q.luks 1M "$qo"
    "$LUKS_TOOL" unlock q.luks > unlocked || fail "$what: luks-tool cannot unlock"
    [ "$(cat unlocked)" = "unlocked slot 0" ] || fail "$what: $(cat unlocked)"
    names+=("q$i")
    record_dump q.luks "q$i"
    exchange q.luks "$what"
    wrong_pass q.luks "$what"

    # shellcheck disable=SC2086
    "$LUKS_TOOL" create t.luks 1M $to --iter-time 1 || fail "$what: luks-tool create"
    [ "$(layout t.luks)" = "$(layout q.luks)" ] ||
        { diff <(layout t.luks) <(layout q.luks) >&2; fail "$what: layout differs from QEMU's"; }
    [ "$(stat -c %s t.luks)" = "$(stat -c %s q.luks)" ] || fail "$what: file size differs from QEMU's"
    cmp -s <(head -c 208 t.luks | tail -c +9 | head -c 96) <(head -c 208 q.luks | tail -c +9 | head -c 96) ||
        fail "$what: cipher name, mode or hash strings differ from QEMU's"
done
[ ${#names[@]} -gt 0 ] || fail "no case ran"
check_dumps "${names[@]}"
echo "${#names[@]} QEMU-made volumes in chunk $chunk of $nchunks"
