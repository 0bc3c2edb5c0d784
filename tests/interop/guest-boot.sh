#!/bin/bash
# A real guest boots from a qcow2 image served over NBD.
#
# tests/guest/build-guest-disk.sh makes a tiny MBR disk (syslinux, a FAT16
# partition with a Debian cloud kernel and a busybox initramfs) and converts
# it to qcow2 with topcow.  The NBD server serves it on a Unix socket and
# qemu-system-x86_64 (TCG) attaches it as an IDE disk; SeaBIOS boots from it.
# The guest prints markers on its serial console, reads back a file the host
# put on the disk, writes a file holding this run's token (passed on the
# kernel command line) and 4 MiB of random data with its checksum, unmounts
# and powers off.  The server then exits on its own (no -t: it stops after its
# last client disconnects), and the host reads the image back with topcow and
# checks it: the files, a clean FAT, a clean qemu-img check.
#
# NBD_SERVER picks the server: unset or "topcow" runs "$TOPCOW serve"; any
# other value is run as the command itself (e.g. NBD_SERVER=qemu-nbd), with
# the qemu-nbd options  -f qcow2 -k SOCKET --fork --pid-file FILE IMAGE.
# The kernel is the linux-image-*-amd64 .deb that scripts/setup.sh caches in
# /var/cache/topcow-guest/ (TOPCOW_GUEST_CACHE to look elsewhere,
# TOPCOW_GUEST_KERNEL_DEB to name a package file).
# GUEST_REMOTE (a store URL: file:///dir or s3://bucket/prefix) runs the
# guest from the cloud: the disk is pushed there as GUEST_REMOTE/guest and
# served from the remote (topcow serve REMOTE), with GUEST_MODE
#   lazy (default)  boot twice, with a cold and then a warm local chunk cache;
#                   each shutdown pushes what the guest wrote
#   pull            pull the image to a local file, then boot from it
# Each boot prints "boot MODE: N.NNN s"; the checks below then run on the
# remote's HEAD, pulled.  TOPCOW_CACHE_DIR is set to a private directory.
# Skips only when qemu-system-x86_64 or the cached kernel is absent.
. "$TOPCOW_SRCDIR/tests/lib.sh"

command -v qemu-system-x86_64 >/dev/null 2>&1 ||
    { echo "SKIP: qemu-system-x86_64 not installed (scripts/setup.sh installs it)" >&2; exit 77; }
deb=${TOPCOW_GUEST_KERNEL_DEB:-}
if [ -z "$deb" ]; then
    deb=$(ls -1 "${TOPCOW_GUEST_CACHE:-/var/cache/topcow-guest}"/linux-image-*-amd64_*.deb 2>/dev/null |
          sort -V | tail -n1)
fi
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "SKIP: no cached guest kernel (run scripts/setup.sh)" >&2; exit 77
fi
for p in qemu-img mtype mcopy fsck.fat; do
    command -v "$p" >/dev/null 2>&1 || fail "$p not installed (scripts/setup.sh installs it)"
done

case "${NBD_SERVER:-topcow}" in
    topcow) server=("$TOPCOW" serve) ;;
    *) read -r -a server <<< "$NBD_SERVER" ;;
esac

GUEST_TIMEOUT=${GUEST_TIMEOUT:-180}
dir=$SCRATCH/guest
sock=$SCRATCH/nbd.sock
pidf=$SCRATCH/nbd.pid
log=$SCRATCH/serial.log
img=$dir/guest.qcow2
export MTOOLS_SKIP_CHECK=1

server_pid() { [ -s "$pidf" ] && cat "$pidf"; }
cleanup() {
    local pid=${srv_pid:-}
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    cleanup_scratch
}
trap cleanup EXIT

show_log() {
    echo "--- serial console (last 40 lines) ---" >&2
    tail -n 40 "$log" >&2 2>/dev/null || true
    if [ -s "$SCRATCH/qemu.err" ]; then
        echo "--- qemu-system-x86_64 stderr ---" >&2
        cat "$SCRATCH/qemu.err" >&2
    fi
}

# A fresh token each run: the guest can only write it if it really booted now.
token=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
ok bash "$TOPCOW_SRCDIR/tests/guest/build-guest-disk.sh" "$deb" "$dir" "$token"
part_offset=$(sed -n 's/^part_offset=//p' "$dir/guest.info")
kernel=$(sed -n 's/^kernel=//p' "$dir/guest.info")

# Serve @1 (an image file or a remote), boot the guest from it, wait for the
# server to exit; print "boot @2: SECONDS" (serve start to server exit).
boot_once() {
    local image=$1 label=$2 t0 rc pid i
    rm -f "$log" "$pidf"
    t0=$(date +%s%N)
    # With --fork the server returns once the socket is ready.
    "${server[@]}" -f qcow2 -k "$sock" --fork --pid-file "$pidf" "$image" 2>"$SCRATCH/server.err" ||
        { cat "$SCRATCH/server.err" >&2; fail "${server[*]} did not start"; }
    [ -S "$sock" ] || fail "${server[*]}: no socket $sock"
    # The pid, read now: a server may remove its pid file when it exits.
    srv_pid=$(server_pid) || fail "${server[*]}: no pid in $pidf"

    # Boot.  -no-reboot turns a guest panic (panic=1) into an exit as well, so
    # success is judged by the markers, not by QEMU's exit status.
    rc=0
    timeout "$GUEST_TIMEOUT" qemu-system-x86_64 \
        -machine pc -accel tcg -m 256 -smp 1 \
        -nodefaults -no-user-config -display none -no-reboot \
        -serial "file:$log" \
        -drive "file=nbd+unix:///?socket=$sock,format=raw,if=ide,cache=writeback" \
        -boot c 2>"$SCRATCH/qemu.err" || rc=$?
    [ "$rc" != 124 ] || { show_log; fail "guest did not power off within ${GUEST_TIMEOUT}s"; }
    [ "$rc" = 0 ] || { show_log; fail "qemu-system-x86_64 exited with $rc"; }
    if grep -a 'TOPCOW-GUEST-FAIL' "$log" >&2; then
        show_log; fail "the guest reported a failure"
    fi
    grep -aq "^TOPCOW-GUEST-BOOTED token=$token" "$log" || { show_log; fail "no boot marker on the serial console"; }
    grep -aq "^TOPCOW-GUEST-READ-OK" "$log" || { show_log; fail "the guest did not read PAYLOAD.BIN back"; }
    grep -aq "^TOPCOW-GUEST-DONE token=$token" "$log" || { show_log; fail "the guest did not finish"; }

    # The server has no -t: it exits by itself once QEMU has disconnected
    # (serving a remote, after pushing what the guest wrote).
    pid=$srv_pid
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le 600 ] || fail "${server[*]} still running 60 s after its last client left"
        sleep 0.1
    done
    [ -z "${GUEST_REMOTE:-}" ] || [ ! -s "$SCRATCH/server.err" ] ||
        { cat "$SCRATCH/server.err" >&2; fail "serving the remote reported errors"; }
    echo "boot $label: $(( ($(date +%s%N) - t0) / 1000000 )) ms ($kernel)"
}

if [ -z "${GUEST_REMOTE:-}" ]; then
    boot_once "$img" local
else
    export TOPCOW_CACHE_DIR=$SCRATCH/cache
    remote=$GUEST_REMOTE/guest
    ok "$TOPCOW" push "$img" "$remote"
    case ${GUEST_MODE:-lazy} in
    lazy)
        boot_once "$remote" "from the remote, cold cache"
        [ "$("$TOPCOW" remote log "$remote" | grep -c '^[* ] [0-9]')" = 2 ] ||
            fail "the shutdown did not push a generation"
        boot_once "$remote" "from the remote, warm cache"
        ;;
    pull)
        rm -f "$img" "$img.topcow"
        t0=$(date +%s%N)
        ok "$TOPCOW" pull "$remote" "$img"
        echo "pull: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
        boot_once "$img" "after the pull"
        ok "$TOPCOW" push "$img" "$remote"
        ;;
    *) fail "GUEST_MODE must be lazy or pull" ;;
    esac
    ok "$TOPCOW" pull --force "$remote" "$img"
fi

# The host side: the image is consistent and holds what the guest wrote.
qemu_check_clean "$img"
ok "$TOPCOW" check "$img"
ok "$TOPCOW" convert -f qcow2 -O raw "$img" "$SCRATCH/back.raw"
ok qemu-img compare -f qcow2 -F raw "$img" "$SCRATCH/back.raw"
at="$SCRATCH/back.raw@@$part_offset"

got=$(mtype -i "$at" ::/GUEST.TXT) || fail "GUEST.TXT not on the disk"
[ "$got" = "topcow guest token $token" ] || fail "GUEST.TXT holds '$got', want token $token"

ok mcopy -i "$at" ::/GUESTDAT.BIN ::/GUESTDAT.SHA ::/PAYLOAD.BIN "$SCRATCH/"
[ "$(stat -c %s "$SCRATCH/GUESTDAT.BIN")" = 4194304 ] || fail "GUESTDAT.BIN has the wrong size"
[ "$(sha "$SCRATCH/GUESTDAT.BIN")" = "$(cat "$SCRATCH/GUESTDAT.SHA")" ] ||
    fail "GUESTDAT.BIN differs from what the guest wrote"
[ "$(sha "$SCRATCH/PAYLOAD.BIN")" = "$(sha "$dir/PAYLOAD.BIN")" ] || fail "PAYLOAD.BIN changed"

# The guest unmounted cleanly: the FAT has no errors and no dirty bit.
dd if="$SCRATCH/back.raw" of="$SCRATCH/part.raw" bs=1M skip=$((part_offset / 1048576)) status=none
fsck_out=$(fsck.fat -n "$SCRATCH/part.raw" 2>&1) || { echo "$fsck_out" >&2; fail "fsck.fat finds errors"; }
case "$fsck_out" in
    *"Dirty bit is set"*) echo "$fsck_out" >&2; fail "the FAT is still marked dirty" ;;
esac
echo "ok: guest boot over NBD (${server[*]})"
