#!/bin/bash
# SPDX-License-Identifier: MIT
# Damaged VDI images: truncated files, header fields out of range, bad block
# map entries and random flips.  Every command fails with one clear error
# (or, where the damage is harmless, works) and never crashes: exit status
# 0 or 1, no sanitizer report (run it in an ASan/UBSan build to check that).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:exitcode=87"

ok qemu-img create -f qcow2 src.qcow2 3M
ok qemu-io -f qcow2 -c 'write -P 0x11 0 4k' -c 'write -P 0x22 2M 1M' src.qcow2
ok qemu-img convert -O vdi src.qcow2 good.vdi
# good.vdi: header, block map at 512 (3 entries), data at 1024, 2 blocks.

# Run the read and write commands on $1; each may fail, none may crash.
# With $2 = fail, opening must fail with a message naming the file and vdi.
exercise() {
    local f=$1 want=${2:-any} rc
    for cmd in "info -f vdi $f" "map -f vdi --output=json $f" \
        "convert -f vdi -O raw $f out.raw" "io -f vdi -c read_0_3M $f" \
        "io -f vdi -c write_-P_7_1M_8k -c write_-z_0_1M $f"; do
        cp "$f" work.vdi
        # shellcheck disable=SC2086
        set -- ${cmd//$f/work.vdi}
        set -- "${@//_/ }"
        rc=0
        out=$("$TOPCOW" "$@" 2>&1) || rc=$?
        case $out in *AddressSanitizer*|*"runtime error"*|*LeakSanitizer*)
            echo "$out" >&2; fail "$f: sanitizer report from topcow $cmd" ;; esac
        [ $rc -le 1 ] || { echo "$out" >&2; fail "$f: topcow $cmd exited with $rc"; }
        if [ "$want" = fail ]; then
            [ $rc = 1 ] || fail "$f: topcow $cmd accepted a damaged image"
            case $out in *work.vdi*vdi*) ;; *) fail "$f: unclear error: $out" ;; esac
        fi
    done
}

# patch FILE OFFSET STRUCT-FORMAT VALUE: write VALUE little-endian.
patch() {
    /usr/bin/python3 -c '
import struct, sys
f, off, fmt, val = sys.argv[1], int(sys.argv[2], 0), sys.argv[3], int(sys.argv[4], 0)
with open(f, "r+b") as fp:
    fp.seek(off)
    fp.write(struct.pack("<" + fmt, val))' "$@"
}

exercise good.vdi
# The intact image works.
ok "$TOPCOW" info -f vdi good.vdi

# Truncated files: inside the pre-header, the header and the block map are
# refused; a file cut inside the data area reads zeros there.
for len in 0 1 63 71 72 200 455 456 511 512 515; do
    head -c $len good.vdi > trunc-$len.vdi
    exercise trunc-$len.vdi fail
done
for len in 1024 5000 1049600; do
    head -c $len good.vdi > trunc-$len.vdi
    exercise trunc-$len.vdi
done

# Header fields out of range: offset, width, value.
bad=(
    "0x40 I 0x12345678"    # signature
    "0x44 I 0x00000000"    # version 0.0
    "0x44 I 0x00020000"    # version 2.0
    "0x48 I 0"             # header size
    "0x48 I 0xffffffff"
    "0x4c I 0"             # image type
    "0x4c I 5"
    "0x4c I 4"             # differencing, with no parent UUID
    "0x154 I 0"            # block map offset
    "0x154 I 0x100"
    "0x154 I 0xffffffff"
    "0x158 I 0"            # data offset
    "0x158 I 0x204"
    "0x170 Q 0xffffffffffffffff" # disk size
    "0x170 Q 0x40000000"
    "0x178 I 0"            # block size
    "0x178 I 3"
    "0x178 I 256"
    "0x178 I 0x80000000"
    "0x17c I 0xffffffff"   # block extra
    "0x180 I 0"            # blocks
    "0x180 I 0xffffffff"
    "0x180 I 0x40000000"
    "0x184 I 0xffffffff"   # blocks allocated
    "0x184 I 1"            # an entry points past the allocated blocks
    "0x200 I 0x7fffffff"   # block map entry past the data area
    "0x200 I 1"            # two entries for one block
)
for b in "${bad[@]}"; do
    read -r off fmt val <<< "$b"
    cp good.vdi bad.vdi
    patch bad.vdi "$off" "$fmt" "$val"
    exercise bad.vdi fail
done

# Harmless changes still open: a larger header, block extra bytes (then
# the data reads from elsewhere, but within the file), undo and fixed types,
# free and zero entries.
for b in "0x48 I 0x190" "0x4c I 3" "0x4c I 2" "0x200 I 0xfffffffe" "0x208 I 0xffffffff" \
    "0x17c I 512"; do
    read -r off fmt val <<< "$b"
    cp good.vdi ok.vdi
    patch ok.vdi "$off" "$fmt" "$val"
    exercise ok.vdi
    ok "$TOPCOW" info -f vdi ok.vdi
done

# Random byte flips in the header and block map (fixed seed).
for i in $(seq 1 40); do
    cp good.vdi rand.vdi
    /usr/bin/python3 -c '
import random, sys
r = random.Random(int(sys.argv[2]))
with open(sys.argv[1], "r+b") as f:
    for _ in range(r.randint(1, 4)):
        off = r.choice([r.randrange(0x40, 0x1c8), r.randrange(0x200, 0x20c)])
        f.seek(off)
        f.write(bytes([r.randrange(256)]))' rand.vdi "$i"
    exercise rand.vdi
done
echo PASS
