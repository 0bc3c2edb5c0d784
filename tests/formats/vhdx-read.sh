#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow reads VHDX images as qemu-img 7.2 does: the sample images other
# tools made (Hyper-V, Disk2VHD, one with a pending log) and images
# qemu-img creates with each of its layouts; `info` agrees with qemu-img's.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/formats/corpus.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# Same guest bytes through both tools: sha256 of the raw conversions.
same_as_qemu() {
    rm -f t.raw q.raw
    ok "$TOPCOW" convert -O raw "$@" t.raw
    ok qemu-img convert -O raw "$@" q.raw
    [ "$(sha t.raw)" = "$(sha q.raw)" ] || fail "topcow reads $* differently from qemu-img"
    rm -f t.raw q.raw
}

# format, virtual size and cluster size as qemu-img reports them.
same_info() {
    local key
    for key in '"format"' '"virtual-size"' '"cluster-size"'; do
        t=$("$TOPCOW" info --output=json "$1" | grep "$key") || fail "topcow info $1: no $key"
        q=$(qemu-img info --output=json "$1" | grep "$key")
        [ "${t%,}" = "${q%,}" ] || fail "info $1: topcow '$t', qemu-img '$q'"
    done
    t=$("$TOPCOW" info "$1" | grep -E '^(file format|virtual size|cluster_size):')
    q=$(qemu-img info "$1" | grep -E '^(file format|virtual size|cluster_size):')
    [ "$t" = "$q" ] || fail "info $1 text: topcow '$t', qemu-img '$q'"
}

# The sample images: a 1 GiB dynamic image from Hyper-V, a 256 MiB one from
# Disk2VHD.
for name in iotest-dynamic-1G.vhdx test-disk2vhd.vhdx; do
    img=$(corpus_unpack "$name")
    same_as_qemu "$img"
    same_info "$img"
    rm -f "$img"
done

# A 10 GiB image whose log was never replayed.  qemu-img refuses to open it
# read-only; read-only, topcow replays it in memory and must read what
# qemu-img reads once `check -r all` has replayed a copy; the file itself
# stays untouched.
dirty=$(corpus_unpack iotest-dirtylog-10G-4M.vhdx)
before=$(sha "$dirty")
cp "$dirty" replayed.vhdx
ok qemu-img check -r all replayed.vhdx
must_fail qemu-img info "$dirty"      # the log really is pending
ok "$TOPCOW" info "$dirty"
ok "$TOPCOW" convert -O qcow2 "$dirty" t.qcow2
ok qemu-img compare replayed.vhdx t.qcow2
ok "$TOPCOW" map "$dirty"
[ "$(sha "$dirty")" = "$before" ] || fail "a read-only open changed the image with a pending log"
# Read-write, topcow replays the log into the file: qemu-img then opens it
# read-only, finds it clean, and reads it as its own replay.
cp "$dirty" rw.vhdx
ok "$TOPCOW" io -c 'read 0 4096' rw.vhdx
ok qemu-img info rw.vhdx
qemu_check_clean rw.vhdx
ok qemu-img compare replayed.vhdx rw.vhdx
rm -f "$dirty" replayed.vhdx rw.vhdx t.qcow2

# Images qemu-img makes, from a 40 MiB source with data (some unaligned,
# some across block boundaries), written zeros and holes.
ok qemu-img create -f qcow2 src.qcow2 40M
ok qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -z 1M 128k' \
    -c 'write -P 0x33 8490000 5000' -c 'write -P 0x44 12345678 1000000' \
    -c 'write -P 0 20M 1M' -c 'write -P 0x66 41938944 4096' src.qcow2
for o in "" subformat=dynamic subformat=fixed block_size=1M block_size=2M,log_size=3M \
    block_state_zero=off subformat=fixed,block_state_zero=off block_size=256M; do
    rm -f q.vhdx
    ok qemu-img convert -O vhdx ${o:+-o "$o"} src.qcow2 q.vhdx
    same_as_qemu q.vhdx
    same_info q.vhdx
    # Holes and zero blocks stay holes through topcow: a qcow2 conversion
    # allocates no more than qemu-img's own.
    rm -f t.qcow2 q.qcow2
    ok "$TOPCOW" convert -O qcow2 q.vhdx t.qcow2
    ok qemu-img convert -O qcow2 q.vhdx q.qcow2
    ok qemu-img compare q.vhdx t.qcow2
    t=$(qemu-img check --output=json t.qcow2 | sed -n 's/.*"allocated-clusters": \([0-9]*\).*/\1/p')
    q=$(qemu-img check --output=json q.qcow2 | sed -n 's/.*"allocated-clusters": \([0-9]*\).*/\1/p')
    [ "$t" -le "$q" ] || fail "($o) topcow's conversion allocated $t clusters, qemu-img's $q"
done

# Sizes that are not a multiple of the block size, and an empty image.
for size in 1000 3M 17M; do
    rm -f q.vhdx
    ok qemu-img create -f vhdx q.vhdx $size
    ok qemu-io -f vhdx -c "write -P 0x71 0 512" q.vhdx
    same_as_qemu q.vhdx
    same_info q.vhdx
done
rm -f q.vhdx
ok qemu-img create -f vhdx q.vhdx 0
same_info q.vhdx

# Probing finds vhdx by its signature.
ok qemu-img create -f vhdx probe.vhdx 4M
out=$("$TOPCOW" info probe.vhdx)
case $out in *"file format: vhdx"*) ;; *) fail "probe: $out" ;; esac
exit 0
