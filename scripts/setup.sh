#!/bin/sh
# Install the Debian 12 packages topcow needs to build, test and demo.
# Fast on a second run: only packages that dpkg does not report as installed are fetched.
set -eu

PKGS="build-essential gcc clang lld meson ninja-build pkg-config
      zlib1g-dev libzstd-dev libdeflate-dev libssl-dev nettle-dev liburing-dev
      qemu-utils cryptsetup-bin hyperfine bzip2 xxd strace python3 libclang-rt-14-dev valgrind
      libgnutls28-dev gnutls-bin libnbd-bin python3-libnbd fio
      libncurses-dev libjson-c-dev tmux prometheus
      qemu-system-x86 seabios busybox-static syslinux-common mtools dosfstools cpio syslinux
      libcurl4-openssl-dev libexpat1-dev python3-botocore s3cmd
      radosgw ceph-mon ceph-osd ceph-common iptables"

# ---- guest kernel for tests/interop/guest-boot.sh ---------------------------
# A Debian cloud kernel package, downloaded once into GUEST_CACHE (not
# installed).  Nothing to do when one is already there.
GUEST_CACHE=${TOPCOW_GUEST_CACHE:-/var/cache/topcow-guest}
if ! ls "$GUEST_CACHE"/linux-image-*-amd64_*.deb >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] && [ ! -w "$(dirname "$GUEST_CACHE")" ] && [ ! -w "$GUEST_CACHE" ]; then
        echo "setup: no guest kernel in $GUEST_CACHE (run as root to fetch it; guest-boot test skips)" >&2
    else
        guest_kernel() {
            apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n1
        }
        kpkg=$(guest_kernel)
        if [ -z "$kpkg" ]; then
            apt-get update -qq || apt-get update
            kpkg=$(guest_kernel)
        fi
        [ -n "$kpkg" ] || { echo "setup: cannot find the package linux-image-cloud-amd64 depends on" >&2; exit 1; }
        echo "setup: fetching $kpkg into $GUEST_CACHE"
        mkdir -p "$GUEST_CACHE"
        tmp=$(mktemp -d "$GUEST_CACHE/.fetch.XXXXXX")
        chmod 755 "$tmp"
        if id _apt >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then chown _apt "$tmp"; fi
        (cd "$tmp" && apt-get download -q "$kpkg")
        mv "$tmp"/*.deb "$GUEST_CACHE"/
        rm -rf "$tmp"
    fi
fi
# ---- end of guest kernel ---------------------------------------------------

missing=""
for p in $PKGS; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages:$missing (run as root or install them)" >&2
    exit 1
fi
echo "setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
