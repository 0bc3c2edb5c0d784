#!/bin/sh
# Install the Debian 12 packages topcow needs to build, test and demo.
# Fast on a second run: only packages that dpkg does not report as installed are fetched.
set -eu

PKGS="build-essential gcc clang lld meson ninja-build pkg-config
      zlib1g-dev libzstd-dev libdeflate-dev libssl-dev nettle-dev liburing-dev
      qemu-utils cryptsetup-bin hyperfine bzip2 xxd strace python3 libclang-rt-14-dev valgrind"

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
