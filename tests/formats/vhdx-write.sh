#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow writes VHDX images that qemu-img 7.2 reads identically and checks
# clean: convert -O vhdx and create -f vhdx with qemu-img's options (same
# Formatting lines, same refusals), and writes into new and qemu-made
# images, judged against qemu-io doing the same writes.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# The Formatting line (and the refusal) of create -f vhdx are qemu-img's.
for o in "" subformat=dynamic subformat=fixed block_size=1M log_size=1500K \
    block_state_zero=off subformat=fixed,block_state_zero=on,preallocation=off \
    block_size=3M log_size=0 subformat=foo block_state_zero=maybe; do
    t=$("$TOPCOW" create -f vhdx ${o:+-o "$o"} t.vhdx 20M 2>&1) && tr=0 || tr=$?
    q=$(qemu-img create -f vhdx ${o:+-o "$o"} t.vhdx 20M 2>&1) && qr=0 || qr=$?
    [ "$tr" = "$qr" ] || fail "create -o '$o': topcow exits $tr, qemu-img $qr"
    [ "${t//topcow: /}" = "${q//qemu-img: /}" ] || fail "create -o '$o': topcow says
$t
qemu-img says
$q"
done
must_fail "$TOPCOW" create -f vhdx t.vhdx 65T
must_fail "$TOPCOW" create -f vhdx -b base.qcow2 -F qcow2 t.vhdx 1M

# A 40 MiB source with data (some unaligned, some across block boundaries),
# written zeros and holes.
ok qemu-img create -f qcow2 src.qcow2 40M
ok qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -z 1M 128k' \
    -c 'write -P 0x33 8490000 5000' -c 'write -P 0x44 12345678 1000000' \
    -c 'write -P 0 20M 1M' -c 'write -P 0x66 41938944 4096' src.qcow2
ok qemu-img convert -O raw src.qcow2 ref.raw
ref=$(sha ref.raw)

# Bytes the image's data blocks hold, as qemu-img map sees them.
data_bytes() {
    qemu-img map --output=json "$1" |
        awk -F'[:,]' '/"data": true/ { for (i = 1; i < NF; i++) if ($i ~ /"length"/) s += $(i+1) }
                      END { print s + 0 }'
}

for o in "" subformat=fixed block_size=1M "block_size=2M,log_size=3M" block_state_zero=off \
    subformat=fixed,preallocation=full subformat=fixed,preallocation=falloc block_size=32M; do
    for opts in "" "-m 16 -W" "-m 1"; do
        rm -f t.vhdx back.raw
        ok "$TOPCOW" convert $opts -O vhdx ${o:+-o "$o"} src.qcow2 t.vhdx
        qemu_check_clean t.vhdx
        ok qemu-img compare -f raw -F vhdx ref.raw t.vhdx
        ok "$TOPCOW" convert -O raw t.vhdx back.raw
        [ "$(sha back.raw)" = "$ref" ] || fail "round trip through vhdx ($o, $opts) changed data"
    done
    # The options reach the image, and holes stay holes: no more data
    # than qemu-img's own conversion stores.
    rm -f q.vhdx
    ok qemu-img convert -O vhdx ${o:+-o "$o"} src.qcow2 q.vhdx
    t=$(qemu-img info --output=json t.vhdx | grep '"cluster-size"')
    q=$(qemu-img info --output=json q.vhdx | grep '"cluster-size"')
    [ "$t" = "$q" ] || fail "($o) block size: topcow $t, qemu-img $q"
    case $o in *fixed*) continue ;; esac
    t=$(data_bytes t.vhdx)
    q=$(data_bytes q.vhdx)
    [ "$t" -le "$q" ] || fail "($o) topcow's image stores $t bytes of data, qemu-img's $q"
done

# Writes into an image, new or made by qemu-img: the same qemu-io commands
# through topcow io and through qemu-io give images that compare equal.
cmds=(-c 'write -P 0x21 0 4096' -c 'write -P 0x22 1000 70000' -c 'write -P 0x23 8388000 9000'
      -c 'write -z 4096 512' -c 'write -P 0x24 33554432 1048576' -c 'write -z 33554432 4096'
      -c 'write -P 0x25 67108352 512' -c 'discard 0 512' -c 'flush')
for mk in topcow qemu-img; do
    for o in "" subformat=fixed block_size=1M block_state_zero=off; do
        rm -f t.vhdx q.vhdx
        if [ $mk = topcow ]; then
            ok "$TOPCOW" create -f vhdx ${o:+-o "$o"} t.vhdx 64M
        else
            ok qemu-img create -f vhdx ${o:+-o "$o"} t.vhdx 64M
        fi
        ok qemu-img create -f vhdx ${o:+-o "$o"} q.vhdx 64M
        ok "$TOPCOW" io -f vhdx "${cmds[@]}" t.vhdx
        ok qemu-io -f vhdx "${cmds[@]}" q.vhdx
        qemu_check_clean t.vhdx
        ok qemu-img compare t.vhdx q.vhdx
        # A second session writes on top of the first.
        ok "$TOPCOW" io -f vhdx -c 'write -P 0x31 2M 5M' t.vhdx
        ok qemu-io -f vhdx -c 'write -P 0x31 2M 5M' q.vhdx
        qemu_check_clean t.vhdx
        ok qemu-img compare t.vhdx q.vhdx
    done
done

# Writing into a read-only open fails; a differencing image cannot be written.
must_fail "$TOPCOW" io -r -f vhdx -c 'write 0 512' t.vhdx
exit 0
