#!/bin/bash
# SPDX-License-Identifier: MIT
# Key slots across implementations: passphrases luks-tool adds open the
# volume in qemu-io, passphrases qemu-img amend adds unlock in luks-tool,
# and erasing works and is refused the same way in both (qemu-img amend -o
# state=active|inactive,new-secret,old-secret,keyslot), on a volume
# luks-tool made and on one qemu-img made.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/interop/luks-common.sh"
PATH=$PATH:/usr/sbin:/sbin # cryptsetup lives there
require qemu-img qemu-io python3 cryptsetup
cd "$SCRATCH"

P2=second-passphrase P3=third-passphrase P4=fourth-passphrase
opens_qemu() { # FILE PASS
    qemu-io $(qobj "$2") --image-opts "$(qimg "$1")" -c 'read -P 0x5a 0 64k' >/dev/null 2>&1
}
opens_tool() { # FILE PASS -> prints the slot
    LUKS_PASS="$2" "$LUKS_TOOL" unlock "$1" 2>/dev/null
}
active() { "$LUKS_TOOL" dump "$1" | sed -n 's/^slot \([0-7]\): active.*/\1/p' | tr '\n' ' '; }
# qemu-img amend unlocking with $PW; secrets s2..s4 hold P2..P4.  Retried
# when qemu-img 7.2 fails to measure PBKDF2 (see qemu_create).
amend() { # FILE OPTS
    local i out
    for i in 1 2 3 4 5 6 7 8 9 10; do
        if out=$(qemu-img amend $(qobj) --object "secret,id=s2,data=$P2" \
            --object "secret,id=s3,data=$P3" --object "secret,id=s4,data=$P4" \
            -o "$2" --image-opts "$(qimg "$1")" 2>&1); then
            return 0
        fi
        case $out in *"accurate CPU usage"*) continue ;; esac
        break
    done
    echo "$out"
    return 1
}

run() { # FILE: the volume holds $PW in slot 0 and the 0x5a pattern
    local f=$1 out
    # luks-tool adds, qemu-io opens.
    LUKS_NEW_PASS=$P2 "$LUKS_TOOL" add-key "$f" --iter-time 1 > out || fail "add-key"
    [ "$(cat out)" = "added slot 1" ] || fail "add-key: $(cat out)"
    opens_qemu "$f" "$P2" || fail "qemu-io cannot open with the key luks-tool added"
    if [ "$f" = a.luks ]; then
        # A third opinion on an aes-xts volume (cryptsetup decrypts AES key
        # slots in userspace, so no device-mapper is needed).
        cryptsetup luksDump "$f" | grep -q "^Key Slot 1: ENABLED" || fail "cryptsetup: slot 1 not enabled"
        echo -n "$P2" | cryptsetup open --test-passphrase --key-slot 1 "$f" 2>/dev/null ||
            fail "cryptsetup does not accept the key luks-tool added"
    fi
    # qemu-img adds (first free slot: 2), luks-tool opens.
    out=$(amend "$f" "state=active,new-secret=s3,iter-time=10" 2>&1) || fail "amend add: $out"
    [ "$(opens_tool "$f" "$P3")" = "unlocked slot 2" ] || fail "luks-tool cannot open with the key qemu-img added"
    # Explicit slots, both ways.
    LUKS_NEW_PASS=$P4 "$LUKS_TOOL" add-key "$f" --slot 6 --iter-time 1 >/dev/null || fail "add-key --slot 6"
    opens_qemu "$f" "$P4" || fail "qemu-io cannot open with the key luks-tool put in slot 6"
    if out=$(amend "$f" "state=active,new-secret=s4,keyslot=6,iter-time=10" 2>&1); then fail "qemu-img overwrote slot 6"; fi
    case $out in *"Refusing to overwrite active keyslot 6"*) ;; *) fail "qemu-img: $out" ;; esac
    if out=$(LUKS_NEW_PASS=$P4 "$LUKS_TOOL" add-key "$f" --slot 6 --iter-time 1 2>&1); then
        fail "luks-tool overwrote slot 6"
    fi
    case $out in *"refusing to overwrite active key slot 6"*) ;; *) fail "luks-tool: $out" ;; esac
    [ "$(active "$f")" = "0 1 2 6 " ] || fail "active slots: $(active "$f")"

    # luks-tool erases by passphrase (slot 1), qemu-io no longer opens with it.
    LUKS_OLD_PASS=$P2 "$LUKS_TOOL" remove-key "$f" --old > out || fail "remove-key --old"
    [ "$(cat out)" = "erased 1 slot" ] || fail "remove-key: $(cat out)"
    if opens_qemu "$f" "$P2"; then fail "qemu-io still opens with an erased passphrase"; fi
    opens_qemu "$f" "$PW" || fail "qemu-io cannot open with slot 0 after the erase"
    # qemu-img erases by passphrase (slot 2), luks-tool no longer opens with it.
    out=$(amend "$f" "state=inactive,old-secret=s3" 2>&1) || fail "amend erase: $out"
    if opens_tool "$f" "$P3" >/dev/null; then fail "luks-tool still opens with a passphrase qemu-img erased"; fi
    # qemu-img erases slot 6 by index.
    out=$(amend "$f" "state=inactive,keyslot=6" 2>&1) || fail "amend erase slot 6: $out"
    if opens_tool "$f" "$P4" >/dev/null; then fail "luks-tool still opens slot 6"; fi
    [ "$(active "$f")" = "0 " ] || fail "active slots: $(active "$f")"
    same_view "$f"

    # The last slot: both refuse without force, by index and by passphrase.
    if out=$("$LUKS_TOOL" remove-key "$f" --slot 0 2>&1); then fail "luks-tool erased the last slot"; fi
    case $out in *"refusing to erase the only active key slot 0"*) ;; *) fail "luks-tool: $out" ;; esac
    if out=$(LUKS_OLD_PASS=$PW "$LUKS_TOOL" remove-key "$f" --old 2>&1); then fail "luks-tool erased all slots"; fi
    case $out in *"refusing to erase every active key slot"*) ;; *) fail "luks-tool: $out" ;; esac
    if out=$(amend "$f" "state=inactive,keyslot=0" 2>&1); then fail "qemu-img erased the last slot"; fi
    case $out in *"only active keyslot 0"*) ;; *) fail "qemu-img: $out" ;; esac
    # Errors worded after qemu-img's.
    if out=$(LUKS_OLD_PASS=nope "$LUKS_TOOL" remove-key "$f" --old 2>&1); then fail "erased by a wrong passphrase"; fi
    case $out in *"no key slot holds the given old passphrase"*) ;; *) fail "luks-tool: $out" ;; esac
    if out=$("$LUKS_TOOL" remove-key "$f" --slot 3 2>&1); then fail "erased an inactive slot"; fi
    case $out in *"key slot 3 is already erased"*) ;; *) fail "luks-tool: $out" ;; esac
    opens_qemu "$f" "$PW" || fail "the refusals damaged slot 0"

    # Forced: the volume is locked for good, for both.
    "$LUKS_TOOL" remove-key "$f" --slot 0 --force >/dev/null || fail "forced erase"
    if opens_qemu "$f" "$PW"; then fail "qemu-io opens a volume without key slots"; fi
    [ "$(active "$f")" = "" ] || fail "active slots after forced erase: $(active "$f")"
}

# The header of FILE as qemu-img info and luks-tool see it.
same_view() {
    record_dump "$1" view
    check_dumps view
}

make_patterns
"$LUKS_TOOL" create a.luks 1M --iter-time 1 || fail "luks-tool create"
qemu-io $(qobj) --image-opts "$(qimg a.luks)" -c 'write -P 0x5a 0 64k' >/dev/null || fail "qemu-io write"
run a.luks

qemu_create b.luks 1M "cipher-alg=twofish-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=md5"
qemu-io $(qobj) --image-opts "$(qimg b.luks)" -c 'write -P 0x5a 0 64k' >/dev/null || fail "qemu-io write"
run b.luks
echo "key slots interoperate on volumes made by luks-tool and by qemu-img"
