#!/bin/busybox sh
# shellcheck shell=dash
# /init of the guest's initramfs (busybox-static).  The guest test boots it:
# print a marker on the serial console, load the disk drivers, mount the FAT
# partition it booted from, check the file the host left there, write files
# whose content the host checks afterwards, unmount and power off.
# Every failure prints a TOPCOW-GUEST-FAIL line and powers off at once, so the
# test never waits for its timeout.

/bin/busybox mkdir -p /proc /sys /dev /mnt /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "$*" > /dev/console; }
die() {
    say "TOPCOW-GUEST-FAIL: $*"
    sync
    poweroff -f
    sleep 5
    exit 1
}

token=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        topcow.token=*) token=${arg#topcow.token=} ;;
    esac
done
[ -n "$token" ] || die "no topcow.token= on the kernel command line"
say "TOPCOW-GUEST-BOOTED token=$token kernel=$(uname -r)"

# Disk drivers and the FAT filesystem are modules in the kernel package;
# /modules.list names them in dependency order.
while read -r mod args; do
    [ -n "$mod" ] || continue
    # shellcheck disable=SC2086
    insmod "/lib/modules/$mod" $args || die "insmod $mod"
done < /modules.list

i=0
while [ ! -b /dev/sda1 ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || die "no /dev/sda1 after 30 s"
    sleep 0.1
done

mount -t vfat /dev/sda1 /mnt || die "mount /dev/sda1"

# Read back what the host wrote before boot.
[ -f /mnt/PAYLOAD.BIN ] || die "PAYLOAD.BIN missing"
want=$(cat /mnt/PAYLOAD.SHA)
got=$(sha256sum /mnt/PAYLOAD.BIN | cut -d' ' -f1)
[ "$want" = "$got" ] || die "PAYLOAD.BIN reads back wrong: $got, want $want"
say "TOPCOW-GUEST-READ-OK"

# Write: a small file with the token, and 4 MiB of fresh random data with
# its checksum (spans many clusters of the qcow2 image).
echo "topcow guest token $token" > /mnt/GUEST.TXT || die "write GUEST.TXT"
dd if=/dev/urandom of=/mnt/GUESTDAT.BIN bs=65536 count=64 2>/dev/null || die "write GUESTDAT.BIN"
sha256sum /mnt/GUESTDAT.BIN | cut -d' ' -f1 > /mnt/GUESTDAT.SHA || die "write GUESTDAT.SHA"
sync
umount /mnt || die "umount /mnt"
sync

say "TOPCOW-GUEST-DONE token=$token"
poweroff -f
sleep 5
