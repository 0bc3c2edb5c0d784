#!/bin/bash
# Build a tiny bootable Linux disk for the guest test, in qcow2.
#
#   build-guest-disk.sh KERNEL_DEB OUTDIR TOKEN
#
# KERNEL_DEB is a Debian linux-image-*-amd64 package (scripts/setup.sh caches
# one in /var/cache/topcow-guest/).  The disk, OUTDIR/guest.qcow2, is an
# MBR disk that the BIOS boots by itself: syslinux's MBR code, then one
# bootable FAT16 partition at 1 MiB holding syslinux (ldlinux.sys), the
# kernel, an initramfs of busybox-static with tests/guest/guest-init.sh as
# /init and the kernel's disk and FAT modules, and a random PAYLOAD.BIN with
# its checksum (the guest reads it back).  TOKEN goes on the kernel command
# line (topcow.token=TOKEN); the guest writes it into GUEST.TXT.
#
# The kernel and initramfs are kept in OUTDIR/kernel-VERSION/ and reused on a
# later call with the same OUTDIR; the disk itself is rebuilt every time.
# The raw disk becomes qcow2 with "$TOPCOW convert" when TOPCOW is set, with
# qemu-img convert otherwise.
# Needs: dpkg-deb, busybox-static, cpio, gzip, mkfs.vfat (dosfstools),
# mtools, syslinux, syslinux-common.  No root, no mounting.
set -eu

[ $# = 3 ] || { echo "usage: $0 KERNEL_DEB OUTDIR TOKEN" >&2; exit 2; }
deb=$1
out=$2
token=$3
here=$(cd "$(dirname "$0")" && pwd)

DISK_MIB=64
PART_START=2048                      # sectors: the partition starts at 1 MiB
PART_OFFSET=$((PART_START * 512))

die() { echo "build-guest-disk: $*" >&2; exit 1; }

for p in dpkg-deb cpio gzip mkfs.vfat mcopy mmd syslinux; do
    command -v "$p" >/dev/null 2>&1 || die "$p not installed (scripts/setup.sh installs it)"
done
mbr_bin=""
for f in /usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX/mbr.bin /usr/share/syslinux/mbr.bin; do
    [ -f "$f" ] && { mbr_bin=$f; break; }
done
[ -n "$mbr_bin" ] || die "syslinux mbr.bin not found (package syslinux-common)"
busybox=""
for f in /bin/busybox /usr/bin/busybox; do
    [ -x "$f" ] && { busybox=$f; break; }
done
[ -n "$busybox" ] || die "busybox not found (package busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked; the initramfs needs busybox-static"
fi
[ -f "$deb" ] || die "no kernel package $deb"

mkdir -p "$out"
export MTOOLS_SKIP_CHECK=1

# ---- kernel and initramfs, once per kernel version -------------------------
pkg=$(dpkg-deb -f "$deb" Package)
kver=${pkg#linux-image-}
kdir=$out/kernel-$kver
if [ ! -f "$kdir/vmlinuz" ] || [ ! -f "$kdir/initrd.gz" ]; then
    rm -rf "$kdir"
    mkdir -p "$kdir/x" "$kdir/root"
    dpkg-deb -x "$deb" "$kdir/x"
    [ -f "$kdir/x/boot/vmlinuz-$kver" ] || die "$deb has no boot/vmlinuz-$kver"
    moddir=$kdir/x/lib/modules/$kver

    # The modules the guest needs, in load order (dependencies first).  The
    # dependencies come from each module's own .modinfo "depends=" entry, so
    # no depmod/kmod is needed on the host.  Whatever the kernel has built
    # in is simply not found and not needed.
    declare -A done_mod=()
    order=()
    modfile() {
        local n=$1 alt
        alt=$(echo "$n" | tr _ -)
        find "$moddir/kernel" \( -name "$n.ko" -o -name "$alt.ko" -o -name "$n.ko.xz" -o -name "$alt.ko.xz" \) \
            -print -quit
    }
    addmod() {
        local n=$1 f deps d
        [ -n "${done_mod[$n]:-}" ] && return 0
        done_mod[$n]=1
        f=$(modfile "$n")
        [ -n "$f" ] || return 0          # built in
        case "$f" in
            *.xz) xz -dk "$f"; f=${f%.xz} ;;
        esac
        deps=$(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -n1)
        for d in $(echo "$deps" | tr , ' '); do
            addmod "$d"
        done
        order+=("${f#"$moddir/"}")
    }
    for m in ata_piix sd_mod vfat nls_cp437 nls_ascii; do
        addmod "$m"
    done

    root=$kdir/root
    mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/mnt" "$root/lib/modules"
    cp "$busybox" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    install -m 755 "$here/guest-init.sh" "$root/init"
    : > "$root/modules.list"
    for f in "${order[@]}"; do
        mkdir -p "$root/lib/modules/$(dirname "$f")"
        cp "$moddir/$f" "$root/lib/modules/$f"
        args=""
        case "$(basename "$f")" in
            scsi_mod.ko) args="scan=sync" ;;
        esac
        echo "$f $args" >> "$root/modules.list"
    done
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 > "$kdir/initrd.gz.tmp"
    cp "$kdir/x/boot/vmlinuz-$kver" "$kdir/vmlinuz.tmp"
    rm -rf "$kdir/x"
    mv "$kdir/initrd.gz.tmp" "$kdir/initrd.gz"
    mv "$kdir/vmlinuz.tmp" "$kdir/vmlinuz"
fi

# ---- the FAT partition -----------------------------------------------------
disk_sectors=$((DISK_MIB * 1024 * 2))
part_sectors=$((disk_sectors - PART_START))
part=$out/part.img
rm -f "$part"
mkfs.vfat -C -F 16 -n TOPCOWBOOT -h "$PART_START" "$part" $((part_sectors / 2)) >/dev/null
syslinux --install "$part"

cat > "$out/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /VMLINUZ
  INITRD /INITRD.GZ
  APPEND console=ttyS0,115200 panic=1 mitigations=off topcow.token=$token
EOF
head -c $((1024 * 1024)) /dev/urandom > "$out/PAYLOAD.BIN"
sha256sum "$out/PAYLOAD.BIN" | cut -d' ' -f1 > "$out/PAYLOAD.SHA"
mcopy -i "$part" "$out/syslinux.cfg" ::/SYSLINUX.CFG
mcopy -i "$part" "$kdir/vmlinuz" ::/VMLINUZ
mcopy -i "$part" "$kdir/initrd.gz" ::/INITRD.GZ
mcopy -i "$part" "$out/PAYLOAD.BIN" "$out/PAYLOAD.SHA" ::/

# ---- the whole disk: MBR boot code, partition table, partition ------------
# One partition entry (16 bytes) written by hand: no fdisk needed.
byte() { printf '%b' "\\0$(printf %03o "$1")"; }
le32() {
    byte $(($1 & 255)); byte $((($1 >> 8) & 255))
    byte $((($1 >> 16) & 255)); byte $((($1 >> 24) & 255))
}
chs() {       # CHS bytes of an LBA, for 255 heads and 63 sectors per track
    local lba=$1 c h s
    c=$((lba / (255 * 63))); h=$(((lba / 63) % 255)); s=$((lba % 63 + 1))
    if [ "$c" -gt 1023 ]; then c=1023; h=254; s=63; fi
    byte "$h"; byte $((s | ((c >> 2) & 0xc0))); byte $((c & 255))
}
raw=$out/guest.raw
rm -f "$raw"
truncate -s $((DISK_MIB * 1024 * 1024)) "$raw"
dd if="$mbr_bin" of="$raw" bs=440 count=1 conv=notrunc status=none
{
    printf '\200'                            # bootable
    chs "$PART_START"
    printf '\016'                            # FAT16, LBA
    chs $((PART_START + part_sectors - 1))
    le32 "$PART_START"
    le32 "$part_sectors"
} | dd of="$raw" bs=1 seek=446 conv=notrunc status=none
printf '\125\252' | dd of="$raw" bs=1 seek=510 conv=notrunc status=none
dd if="$part" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$part"

# ---- qcow2 -----------------------------------------------------------------
rm -f "$out/guest.qcow2"
if [ -n "${TOPCOW:-}" ]; then
    "$TOPCOW" convert -f raw -O qcow2 "$raw" "$out/guest.qcow2"
else
    qemu-img convert -f raw -O qcow2 "$raw" "$out/guest.qcow2"
fi
rm -f "$raw"
echo "part_offset=$PART_OFFSET" > "$out/guest.info"
echo "kernel=$kver" >> "$out/guest.info"
