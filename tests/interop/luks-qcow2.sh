#!/bin/bash
# SPDX-License-Identifier: MIT
# LUKS-encrypted qcow2 images, topcow against qemu-img/qemu-io:
#  - every cipher family, mode, IV generator and hash: images
#    qemu-img made read identically through topcow, topcow's unaligned and
#    copy-on-write writes into them read back in qemu-io, and they check clean;
#  - images topcow made (create and convert) open in qemu-img with the same
#    secret and read identically;
#  - wrong and missing passphrases are refused with a clear message, and the
#    passphrase never appears in any output;
#  - key slots added or removed by either tool work in the other;
#  - info matches qemu-img's, and legacy AES images convert out.
# Usage: luks-qcow2.sh [CHUNK NCHUNKS] (the cipher list is split; chunk 0
# also runs the rest).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
. "$TOPCOW_SRCDIR/tests/interop/luks-common.sh"
cd "$SCRATCH"
chunk=${1:-0} nchunks=${2:-1}

S=(--object "secret,id=s0,data=$PW")
io_t() { "$TOPCOW" io "${S[@]}" --image-opts "$@" 2>&1 | grep -v "warning: secret"; }
spec() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=${2:-s0}"; }
qio() { # FILE COMMANDS...: qemu-io on an encrypted qcow2
    local f=$1 cmds=()
    shift
    for c in "$@"; do cmds+=(-c "$c"); done
    ok qemu-io "${S[@]}" --image-opts "$(spec "$f")" "${cmds[@]}"
}
tio() { # the same with topcow io
    local f=$1 cmds=()
    shift
    for c in "$@"; do cmds+=(-c "$c"); done
    ok "$TOPCOW" io "${S[@]}" --image-opts "$(spec "$f")" "${cmds[@]}"
    ! grep -q -- "$PW" <<<"$out" || fail "the passphrase was printed"
}
rio() { # the same commands on the raw reference
    local cmds=()
    for c in "$@"; do cmds+=(-c "$c"); done
    ok qemu-io -f raw "${cmds[@]}" ref.raw
}
check_enc() { # FILE: qemu-img check with the key, clean
    out=$(qemu-img check "${S[@]}" --image-opts "$(spec "$1")" 2>&1) ||
        { echo "$out" >&2; fail "qemu-img check $1"; }
}
same_as_ref() { # FILE: reads as ref.raw in qemu-img and in topcow
    ok qemu-img compare "${S[@]}" --image-opts "$(spec "$1")" "driver=raw,file.filename=ref.raw"
    rm -f t.raw
    ok "$TOPCOW" convert "${S[@]}" --image-opts -O raw "$(spec "$1")" t.raw
    cmp -s t.raw ref.raw || fail "$1 reads differently through topcow"
}

W1=('write -P 0x5a 0 192k' 'write -P 0x33 300k 3000' 'write -z 64k 4k')
# topcow: unaligned (sector read-modify-write), cluster copy-on-write after a
# snapshot (re-encryption at the new host offset), zeros.
W2=('write -P 0x77 1000 5000' 'write -P 0x11 65537 100' 'write -z 130000 2000'
    'write -P 0x22 1M 64k')

# qemu-img create, retried: with a fast PBKDF2 qemu-img 7.2 often fails its
# iteration measurement ("Unable to get accurate CPU usage").
qcreate() { # FILE OPTS SIZE
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        rm -f "$1"
        out=$(qemu-img create -f qcow2 "${S[@]}" -o "$2" "$1" "$3" 2>&1) && return 0
        case $out in *"accurate CPU usage"*) continue ;; esac
        break
    done
    fail "qemu-img create -o $2: $out"
}

n=0 # combos seen
run_combo() { # ALG MODE IVGEN[:HASH] HASH
    n=$((n + 1))
    [ $((n % nchunks)) = "$chunk" ] || return 0
    local o what="[$*]"
    o=$(qemu_opts "$@" | sed 's/\([a-z-]*=\)/encrypt.\1/g')
    rm -f q.qcow2 ref.raw
    qcreate q.qcow2 "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,$o" 2M
    ok qemu-img create -f raw ref.raw 2M
    qio q.qcow2 "${W1[@]}"
    rio "${W1[@]}"
    same_as_ref q.qcow2 || fail "$what: qemu-img's image"
    ok "$TOPCOW" snapshot -c s q.qcow2
    tio q.qcow2 "${W2[@]}"
    rio "${W2[@]}"
    check_enc q.qcow2
    same_as_ref q.qcow2 || fail "$what: after topcow's writes"
    # And the other way: topcow creates with the same options.
    rm -f t.qcow2
    ok "$TOPCOW" create -f qcow2 "${S[@]}" \
        -o "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,$o" t.qcow2 2M
    tio t.qcow2 "${W1[@]}" "${W2[@]}"
    check_enc t.qcow2
    same_as_ref t.qcow2 || fail "$what: topcow's image"
    diff <("$TOPCOW" info --output=json q.qcow2 | sed -n '/"encrypt"/,/master-key-iters/p') \
         <(qemu-img info --output=json q.qcow2 | sed -n '/"encrypt"/,/master-key-iters/p') >&2 ||
        fail "$what: info's encrypt block differs from qemu-img's"
}

# Every cipher family, mode, IV generator and hash at least once (the LUKS
# layer itself meets every combination qemu-img accepts in luks-matrix and
# luks-qemu-headers; here it is the qcow2 data path that is exercised).
# LUKS_FULL=1 (the long suite): every combination qemu-img accepts, each
# image made by qemu-img (about a second of its PBKDF2 timing each).
if [ "${LUKS_FULL:-0}" = 1 ]; then
    while read -r alg mode iv; do
        run_combo "$alg" "$mode" "$iv" sha256
    done < <(luks_combos)
    for h in "${LUKS_HASHES[@]}"; do
        run_combo aes-256 xts plain64 "$h"
    done
fi
while read -r combo; do
    run_combo $combo
done <<'COMBOS'
aes-256 xts plain64 sha256
aes-128 cbc essiv:sha256 sha1
aes-192 xts plain sha384
aes-256 ctr plain64 sha512
aes-128 ecb plain md5
serpent-256 xts plain64 sha256
serpent-128 cbc essiv:md5 sha224
twofish-256 xts plain64 sha256
twofish-128 ctr plain ripemd160
cast5-128 cbc plain64 sha256
cast5-128 ctr essiv:md5 sha1
COMBOS

[ "$chunk" = 0 ] || exit 0

# Wrong and missing passphrases: refused, one line, nothing read.
qcreate e.qcow2 encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 1M
qio e.qcow2 'write -P 0x42 0 64k'
must_fail "$TOPCOW" io --object secret,id=bad,data=wrong --image-opts "$(spec e.qcow2 bad)" -c 'read 0 1'
grep -q "Invalid password, cannot unlock any keyslot" <<<"$ERR" || fail "wrong passphrase: $ERR"
! grep -q wrong <<<"$ERR" || fail "the wrong passphrase was printed"
must_fail "$TOPCOW" io -c 'read 0 512' e.qcow2
grep -q "Parameter 'encrypt.key-secret' is required for cipher" <<<"$ERR" || fail "no key: $ERR"
must_fail "$TOPCOW" convert -O raw e.qcow2 x.raw
grep -q "encrypt.key-secret" <<<"$ERR" || fail "convert without key: $ERR"
[ ! -e x.raw ] || fail "convert without a key made an output"
must_fail "$TOPCOW" io --object secret,id=s0,file=/nonexistent --image-opts "$(spec e.qcow2)" -c 'read 0 1'
grep -q "Unable to read secret file '/nonexistent'" <<<"$ERR" || fail "missing secret file: $ERR"
# On a terminal the passphrase is asked for, without echo.
out=$( (sleep 1; echo "$PW") | script -qec "'$TOPCOW' io -c 'read -P 0x42 0 64k' e.qcow2" /dev/null |
      tr -d '\r')
grep -q "Passphrase for 'e.qcow2'" <<<"$out" || fail "no prompt: $out"
grep -q "^read 65536/65536 bytes" <<<"$out" || fail "prompted passphrase: $out"
! grep -q -- "$PW" <<<"$out" || fail "the typed passphrase was echoed"
out=$( (sleep 1; echo wrong) | script -qec "'$TOPCOW' convert -O raw e.qcow2 p.raw" /dev/null |
      tr -d '\r')
grep -q "Invalid password" <<<"$out" || fail "wrong prompted passphrase: $out"
[ ! -e p.raw ] || fail "a wrong prompted passphrase made an output"
# Metadata work needs no key.
ok "$TOPCOW" info e.qcow2
ok "$TOPCOW" check e.qcow2
# A secret from a file (its bytes as they are).
printf '%s' "$PW" >pw.txt
ok "$TOPCOW" io --object secret,id=f,file=pw.txt --image-opts "$(spec e.qcow2 f)" -c 'read -P 0x42 0 64k'
# A secret in base64.
ok "$TOPCOW" io --object "secret,id=b,data=$(printf '%s' "$PW" | base64),format=base64" \
    --image-opts "$(spec e.qcow2 b)" -c 'read -P 0x42 0 64k'

# Key slots: topcow adds, qemu-io opens with it; qemu-img removes the old
# one, topcow no longer opens with it; the last slot is protected.
K=("${S[@]}" --object secret,id=s1,data=second-pass)
ok "$TOPCOW" amend "${K[@]}" --image-opts -o encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10 \
    "$(spec e.qcow2)"
ok qemu-io "${K[@]}" --image-opts "$(spec e.qcow2 s1)" -c 'read -P 0x42 0 64k'
ok qemu-img amend "${K[@]}" --image-opts -o encrypt.state=inactive,encrypt.old-secret=s0 "$(spec e.qcow2 s1)"
must_fail "$TOPCOW" io "${K[@]}" --image-opts "$(spec e.qcow2)" -c 'read 0 1'
ok qemu-img amend "${K[@]}" --image-opts -o encrypt.state=active,encrypt.new-secret=s0,encrypt.keyslot=3,encrypt.iter-time=10 "$(spec e.qcow2 s1)"
ok "$TOPCOW" amend "${K[@]}" --image-opts -o encrypt.state=inactive,encrypt.keyslot=1 "$(spec e.qcow2)"
ok qemu-io "${K[@]}" --image-opts "$(spec e.qcow2)" -c 'read -P 0x42 0 64k'
must_fail qemu-io "${K[@]}" --image-opts "$(spec e.qcow2 s1)" -c 'read 0 1'
must_fail "$TOPCOW" amend "${K[@]}" --image-opts -o encrypt.state=inactive,encrypt.keyslot=3 "$(spec e.qcow2)"
check_enc e.qcow2

# convert into a LUKS image and out of one.
head -c 3000000 /dev/urandom >plain.raw
rm -f c.qcow2 back.raw
ok "$TOPCOW" convert "${S[@]}" -O qcow2 -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 plain.raw c.qcow2
check_enc c.qcow2
ok qemu-img compare "${S[@]}" --image-opts "driver=raw,file.filename=plain.raw" "$(spec c.qcow2)"
ok "$TOPCOW" convert "${S[@]}" --image-opts -O raw "$(spec c.qcow2)" back.raw
cmp -s <(head -c 3000000 back.raw) plain.raw || fail "convert out of a LUKS image"

# Legacy AES (crypt_method 1): readable, convertible, not writable.
ok qemu-img create -f qcow2 "${S[@]}" -o encrypt.format=aes,encrypt.key-secret=s0 aes.qcow2 1M
ok qemu-io "${S[@]}" --image-opts "$(spec aes.qcow2)" -c 'write -P 0x66 4096 100000'
ok qemu-img convert "${S[@]}" --image-opts -O raw "$(spec aes.qcow2)" aes-q.raw
ok "$TOPCOW" convert "${S[@]}" --image-opts -O raw "$(spec aes.qcow2)" aes-t.raw
cmp -s aes-q.raw aes-t.raw || fail "legacy AES image reads differently"
must_fail "$TOPCOW" io "${S[@]}" --image-opts "$(spec aes.qcow2)" -c 'write 0 512'
grep -q "write failed: Operation not supported" <<<"$ERR" || fail "legacy AES write: $ERR"
ok qemu-img compare "${S[@]}" --image-opts "$(spec aes.qcow2)" "driver=raw,file.filename=aes-q.raw"

# Refusals, each on one line and leaving no output behind.
must_fail "$TOPCOW" convert -n -O qcow2 plain.raw c.qcow2
grep -q "Parameter 'encrypt.key-secret' is required for cipher" <<<"$ERR" || fail "-n: $ERR"
must_fail "$TOPCOW" convert "${S[@]}" -c -O qcow2 \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 plain.raw cz.qcow2
grep -q "compressed clusters cannot be encrypted" <<<"$ERR" || fail "-c into LUKS: $ERR"
[ ! -e cz.qcow2 ] || fail "a refused compressed LUKS conversion left its output"
must_fail "$TOPCOW" create -f qcow2 "${S[@]}" \
    -o encrypt.format=luks,encrypt.key-secret=s0,preallocation=metadata p.qcow2 1M
grep -q "preallocation of encrypted images is not supported" <<<"$ERR" || fail "prealloc: $ERR"
must_fail "$TOPCOW" create -f qcow2 -o encrypt.format=luks,encrypt.key-secret=nope p.qcow2 1M
grep -q "No secret with id 'nope'" <<<"$ERR" || fail "unknown secret: $ERR"
must_fail "$TOPCOW" info --object iothread,id=x e.qcow2
grep -q "only 'secret', 'tls-creds-x509' and 'tls-creds-psk' objects are supported" <<<"$ERR" || fail "other object: $ERR"
must_fail "$TOPCOW" amend "${K[@]}" --image-opts -o encrypt.new-secret=s1 "$(spec e.qcow2)"
grep -q "encrypt.state must be given" <<<"$ERR" || fail "amend without state: $ERR"

# compat=0.10 has no zero flag: amend writes the zero clusters out, encrypted.
rm -f z.qcow2 ref.raw
ok "$TOPCOW" create -f qcow2 "${S[@]}" -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 z.qcow2 1M
ok qemu-img create -f raw ref.raw 1M
tio z.qcow2 'write -P 0x31 0 256k' 'write -z 64k 64k'
rio 'write -P 0x31 0 256k' 'write -z 64k 64k'
ok "$TOPCOW" amend "${S[@]}" --image-opts -o compat=0.10 "$(spec z.qcow2)"
check_enc z.qcow2
same_as_ref z.qcow2 || fail "amend compat=0.10 of a LUKS image"
[ "$(qemu-img info --output=json z.qcow2 | grep -c '"compat": "0.10"')" = 1 ] ||
    fail "amend compat=0.10 did not downgrade"

exit 0
