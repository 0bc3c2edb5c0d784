#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow convert keeps outputs sparse like qemu-img: holes and zero clusters
# are skipped using block status, zero runs inside data are detected (-S,
# default 4k), -S 0 allocates everything, and long holes are cheap.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# Disk usage in KiB.
usage() { du -k "$1" | cut -f1; }
# Allocated clusters of a qcow2 image.
allocated() {
    qemu-img check --output=json "$1" | sed -n 's/.*"allocated-clusters": \([0-9]*\).*/\1/p'
}

# A 64 MiB raw image that is mostly zeros: a hole, 8 MiB of written zeros,
# zero runs of 4k, 32k and 64k (aligned) inside data, and a little data.
ok qemu-img create -f raw src.raw 64M
ok qemu-io -f raw -c 'write -P 0 1M 8M' -c 'write -P 0xaa 16M 64k' -c 'write -P 0 16448k 4k' \
    -c 'write -P 0xbb 16452k 60k' -c 'write -P 0 16512k 32k' -c 'write -P 0xcc 16544k 32k' \
    -c 'write -P 0 16576k 64k' -c 'write -P 0xdd 16640k 64k' -c 'write -P 0xee 40M 4k' src.raw
ref=$(sha src.raw)

# Default: a raw output of a mostly-zero source uses little disk.
ok "$TOPCOW" convert -f raw -O raw src.raw out.raw
[ "$(sha out.raw)" = "$ref" ] || fail "raw output differs"
[ "$(usage out.raw)" -le 512 ] || fail "raw output not sparse: $(usage out.raw) KiB"
ok "$TOPCOW" convert -f raw -O qcow2 src.raw out.qcow2
qemu_check_clean out.qcow2
ok qemu-img compare -f raw src.raw out.qcow2
[ "$(allocated out.qcow2)" -le 6 ] || fail "qcow2 output allocates $(allocated out.qcow2) clusters"

# -S 0: everything allocated, in both formats, as qemu-img does.
rm -f out.raw out.qcow2
ok "$TOPCOW" convert -S 0 -f raw -O raw src.raw out.raw
[ "$(sha out.raw)" = "$ref" ] || fail "-S 0 raw output differs"
[ "$(usage out.raw)" -ge 65536 ] || fail "-S 0 raw output is sparse: $(usage out.raw) KiB"
ok "$TOPCOW" convert -S 0 -W -f raw -O qcow2 src.raw out.qcow2
qemu_check_clean out.qcow2
ok qemu-img compare -f raw src.raw out.qcow2
[ "$(allocated out.qcow2)" = 1024 ] || fail "-S 0 qcow2 output allocates $(allocated out.qcow2)"

# -S decides which zero runs inside data become holes; same allocation as
# qemu-img for raw outputs (4k file system blocks), and the same data.
for s in 4k 8k 32k 64k 1M; do
    rm -f out.raw q.raw
    ok "$TOPCOW" convert -S $s -f raw -O raw src.raw out.raw
    ok qemu-img convert -S $s -f raw -O raw src.raw q.raw
    [ "$(sha out.raw)" = "$ref" ] || fail "-S $s output differs"
    # From 1M: qemu-img allocates the first 4k of every raw file it creates.
    qemu-img map -f raw --output=json --start-offset=1M out.raw >t.map
    qemu-img map -f raw --output=json --start-offset=1M q.raw >q.map
    cmp -s t.map q.map || { diff t.map q.map >&2; fail "-S $s: holes differ from qemu-img's"; }
done
must_fail "$TOPCOW" convert -S 1000 -f raw src.raw bad.raw
case $ERR in *"Valid sizes are multiples of 512 up to 16777216"*) ;; *) fail "-S 1000: $ERR" ;; esac
must_fail "$TOPCOW" convert -S 32M -f raw src.raw bad.raw

# A long hole is skipped in few requests: a 1 TiB qcow2 with a little data
# converts quickly to a sparse raw file and to qcow2.
ok qemu-img create -f qcow2 huge.qcow2 1T
ok qemu-io -f qcow2 -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 600G 1M' -c 'write -P 1 1023G 64k' \
    huge.qcow2
ok "$TOPCOW" convert -O qcow2 huge.qcow2 huge-out.qcow2
qemu_check_clean huge-out.qcow2
ok qemu-img compare huge.qcow2 huge-out.qcow2
ok "$TOPCOW" convert -O raw huge.qcow2 huge.raw
[ "$(usage huge.raw)" -le 4096 ] || fail "1 TiB raw output uses $(usage huge.raw) KiB"
ok qemu-img compare -f qcow2 -F raw huge.qcow2 huge.raw
exit 0
