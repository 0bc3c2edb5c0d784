#!/bin/bash
# SPDX-License-Identifier: MIT
# Damaged VHDs: truncated files and footers, dynamic headers and BATs with
# out-of-range fields (checksums fixed up, so that the field checks are the
# ones reached), bad checksums, differencing disks with wild locators, and
# seeded random byte flips.  Each must give either a clean open or one error
# line naming the file, never a crash or a hang, for info, map, reads and a
# write.  The exact messages of the checks qemu-img makes too are pinned.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io timeout
cd "$SCRATCH"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

ok qemu-img create -f vpc dyn.vhd 8M
ok qemu-io -f vpc -c 'write -P 0x11 0 64k' -c 'write -P 0x22 5M 1M' dyn.vhd
ok qemu-img create -f vpc -o subformat=fixed fix.vhd 1M
ok qemu-io -f vpc -c 'write -P 0x33 0 64k' fix.vhd
"$PY" "$TOPCOW_SRCDIR/tests/formats/vhd-mkdiff.py" dyn.vhd diff.vhd 0:4096:0x44

# mutate SRC DST OFFSET HEX [raw]: write HEX at OFFSET (negative: from the
# end), then fix the checksums of the footers and of the dynamic header
# unless "raw".  "trunc:N" as OFFSET truncates to N bytes instead.
mutate() {
    "$PY" - "$@" <<'EOF'
import struct, sys
src, dst, off, hx = sys.argv[1:5]
fix = len(sys.argv) < 6
d = bytearray(open(src, 'rb').read())
if off.startswith('trunc:'):
    d = d[:int(off[6:])]
else:
    o = int(off, 0)
    if o < 0:
        o += len(d)
    b = bytes.fromhex(hx)
    d[o:o + len(b)] = b
def fixsum(base, length, at):
    if base < 0 or base + length > len(d):
        return
    d[base + at:base + at + 4] = b'\0\0\0\0'
    s = sum(d[base:base + length]) & 0xffffffff
    d[base + at:base + at + 4] = struct.pack('>I', ~s & 0xffffffff)
if fix:
    for base in (0, len(d) - 512):
        if d[base:base + 8] == b'conectix':
            fixsum(base, 512, 64)
    if d[:8] == b'conectix':
        h = struct.unpack('>Q', d[16:24])[0]
        if h < len(d) and d[h:h + 8] == b'cxsparse':
            fixsum(h, 1024, 36)
open(dst, 'wb').write(d)
EOF
}

# run_op ARGS...: topcow ends cleanly (0, or 1 with one line naming $IMG),
# within a time limit.
run_op() {
    local rc=0 out
    out=$(timeout 60 "$TOPCOW" "$@" 2>&1 >/dev/null) || rc=$?
    case $out in *Sanitizer*|*"runtime error"*) fail "$IMG ($WHAT): $*: $out" ;; esac
    [ $rc -le 1 ] || fail "$IMG ($WHAT): topcow $* exited $rc: $out"
    if [ $rc = 1 ]; then
        [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "$IMG ($WHAT): $*: not one line: $out"
        case $out in *"$IMG"*) ;; *) fail "$IMG ($WHAT): $*: error does not name it: $out" ;; esac
    fi
}

run_all() {
    run_op info -f vpc "$IMG"
    run_op map -f vpc --output=json "$IMG"
    run_op io -f vpc -r -c 'read 0 64k' -c 'read 0 1' "$IMG"
    run_op io -f vpc -c 'write -P 7 4096 8192' "$IMG"
    run_op info "$IMG"
}

# expect_error SRC OFFSET HEX TEXT [raw]: the mutated image fails to open
# with TEXT in the message.
expect_error() {
    local src=$1 off=$2 hx=$3 text=$4
    mutate "$src" bad.vhd "$off" "$hx" ${5:-}
    must_fail "$TOPCOW" info -f vpc bad.vhd
    case $ERR in *"bad.vhd"*"$text"*) ;; *) fail "$src@$off=$hx: want '$text', got: $ERR" ;; esac
    IMG=bad.vhd WHAT="$src@$off=$hx" run_all
}

# Checks qemu-img makes as well (same words), and ours.
expect_error dyn.vhd 64 00000000 "incorrect footer checksum" raw
expect_error dyn.vhd 0x224 00000000 "incorrect dynamic header checksum" raw
expect_error dyn.vhd 0x21c 40000001 "Max Table Entries too large (1073741825)"
expect_error dyn.vhd 0x220 00100000 "Page table too small"
expect_error dyn.vhd 0x220 00000000 "invalid block size 0"
expect_error dyn.vhd 0x220 00000600 "invalid block size 1536"
expect_error dyn.vhd 0x200 00 "no dynamic disk header"
expect_error dyn.vhd 60 00000009 "unsupported disk type 9"
expect_error dyn.vhd 16 7fffffffffffff00 "dynamic header offset"
expect_error dyn.vhd 0x210 7fffffffffffff00 "block allocation table"
expect_error dyn.vhd 0x600 7fffffff "ends after the end of the file"
mutate dyn.vhd big.vhd 28 77696e20
mutate big.vhd bad.vhd 48 0000020000000000
must_fail "$TOPCOW" info bad.vhd
case $ERR in *"beyond the format's limit"*) ;; *) fail "2 TiB disk: $ERR" ;; esac
# A BAT entry pointing into the headers reads, but may not be written.
mutate dyn.vhd low.vhd 0x600 00000001
ok "$TOPCOW" info low.vhd
must_fail "$TOPCOW" io -f vpc -c 'write 0 512' low.vhd
case $ERR in *"overlaps the headers"*) ;; *) fail "low BAT entry: $ERR" ;; esac
# The footer copy at 0 is what counts; the one at the end may be stale.
mutate dyn.vhd tail.vhd -500 ff raw
ok "$TOPCOW" info -f vpc tail.vhd
# A differencing disk whose locator points outside the file.
expect_error diff.vhd 0x448 00ffffff "parent locator" # W2ru data length
expect_error diff.vhd 0x450 7fffffffffffff00 "parent locator" # W2ru data offset

# Truncations of each kind of image, at every interesting length.
for src in dyn.vhd fix.vhd diff.vhd; do
    n=$(stat -c %s $src)
    for len in 0 1 100 511 512 513 1000 1024 1536 1537 2000 2048 3072 4096 $((n / 2)) \
        $((n - 513)) $((n - 512)) $((n - 1)); do
        mutate $src t.vhd trunc:$len 00
        IMG=t.vhd WHAT="$src cut to $len" run_all
    done
done

# Seeded random damage to the metadata, checksums fixed up.
for seed in $(seq 1 40); do
    for src in dyn.vhd diff.vhd fix.vhd; do
        n=$(stat -c %s $src)
        off=$(( (seed * 7919 + ${#src} * 131) % 2048 ))
        [ $src = fix.vhd ] && off=$((n - 512 + off % 512))
        hx=$(printf '%02x%02x%02x%02x' $((seed * 37 % 256)) $((seed * 91 % 256)) $((seed * 13 % 256)) \
            $((255 - seed)))
        mutate $src r.vhd $off $hx
        IMG=r.vhd WHAT="$src@$off=$hx" run_all
    done
done
exit 0
