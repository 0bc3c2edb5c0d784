#!/bin/bash
# SPDX-License-Identifier: MIT
# Damaged VMDK images fail cleanly: truncated sparse and stream-optimized
# files, header fields set to absurd values, grain directories and tables
# pointing outside the file, bad compressed grains and broken descriptor
# files.  Every command (info, map, convert) exits 0 or 1 (never a crash),
# prints at most one error line, and no sanitizer report; the variants that
# cannot be read at all are refused with an error naming the file.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# Write hex bytes $3 at offset $2 of file $1.
poke() { printf "$(echo "$3" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

# Every command on image $1 exits 0 or 1 with at most one error line.
survives() {
    local img=$1 rc
    for cmd in info map convert; do
        rc=0
        case $cmd in
        convert) rm -f out.raw; "$TOPCOW" convert -f vmdk -O raw "$img" out.raw > out 2> err || rc=$? ;;
        *) "$TOPCOW" $cmd -f vmdk "$img" > out 2> err || rc=$? ;;
        esac
        [ "$rc" -le 1 ] || { cat err; fail "$cmd $img: exit status $rc (crash?)"; } >&2
        ! grep -q "Sanitizer\|runtime error" err || { cat err; fail "$cmd $img: sanitizer"; } >&2
        [ "$(wc -l < err)" -le 1 ] || { cat err; fail "$cmd $img: more than one error line"; } >&2
    done
}

# Image $1 cannot be opened: one line naming it, matching $2.
refused() {
    local img=$1 rc=0
    "$TOPCOW" info -f vmdk "$img" > out 2> err || rc=$?
    [ "$rc" = 1 ] || fail "info $img: exit status $rc, wanted a refusal"
    [ "$(wc -l < err)" = 1 ] && grep -q "$img" err && grep -q "$2" err ||
        { cat err; fail "info $img: wanted one error line naming it and saying '$2'"; } >&2
    survives "$img"
}

ok qemu-img create -f vmdk sparse.vmdk 4M
ok qemu-io -f vmdk -c 'write -P 0x11 0 200k' -c 'write -P 0x22 3M 64k' sparse.vmdk
ok qemu-img convert -O vmdk -o subformat=streamOptimized sparse.vmdk qstream.vmdk
ok "$TOPCOW" convert -O vmdk -o subformat=streamOptimized sparse.vmdk tstream.vmdk
ok qemu-img convert -O vmdk -o subformat=twoGbMaxExtentSparse sparse.vmdk split.vmdk
survives sparse.vmdk
survives tstream.vmdk

# Truncations, down to nothing.
for base in sparse.vmdk qstream.vmdk tstream.vmdk; do
    size=$(stat -c %s $base)
    for len in 0 1 100 511 512 513 1024 10240 65536 $((size - 512)) $((size - 1)); do
        [ "$len" -lt "$size" ] || continue
        head -c "$len" $base > trunc.vmdk
        survives trunc.vmdk
    done
done
head -c 10000 tstream.vmdk > nofooter.vmdk
refused nofooter.vmdk "footer"

# Header fields (little-endian), each set to an absurd value.
variant() { cp "$1" bad.vmdk; poke bad.vmdk "$2" "$3"; }
variant sparse.vmdk 4 09000000;              refused bad.vmdk "version 9"
variant sparse.vmdk 20 0000000000000000;     refused bad.vmdk "grain size"
variant sparse.vmdk 20 0300000000000000;     refused bad.vmdk "grain size"
variant sparse.vmdk 20 ffffffffffffffff;     refused bad.vmdk "grain size"
variant sparse.vmdk 44 00000000;             refused bad.vmdk "grain table"
variant sparse.vmdk 44 ffffffff;             refused bad.vmdk "grain table"
variant sparse.vmdk 12 ffffffffffffffff;     refused bad.vmdk "L1 size too big"
variant sparse.vmdk 12 0000000010000000;     refused bad.vmdk "outside the file"
variant sparse.vmdk 56 0000000000ffffff;     refused bad.vmdk "outside the file"
variant sparse.vmdk 56 0000000000000000;     refused bad.vmdk "outside the file"
variant sparse.vmdk 36 00000000ffffffff;     refused bad.vmdk "embedded descriptor"
variant sparse.vmdk 28 00ffffffffffffff;     refused bad.vmdk "embedded descriptor"
variant sparse.vmdk 8 03000100;              survives bad.vmdk  # claims compressed grains
variant qstream.vmdk 77 0200;                refused bad.vmdk "compression algorithm"
variant sparse.vmdk 512 00;                  survives bad.vmdk  # no descriptor text
variant sparse.vmdk 512 "$(printf 'RW 1 FLAT "x' | od -An -tx1 | tr -d ' \n')"
survives bad.vmdk

# The first grain directory entry, then the first grain table entry,
# pointing far beyond the end of the file.
gd=$(od -An -tu8 -j 56 -N 8 sparse.vmdk | tr -d ' ')
variant sparse.vmdk $((gd * 512)) ffffff7f;  survives bad.vmdk
gt=$(od -An -tu4 -j $((gd * 512)) -N 4 sparse.vmdk | tr -d ' ')
variant sparse.vmdk $((gt * 512)) ffffff7f;  survives bad.vmdk
# check finds that grain as qemu-img check does: same report, same status.
for o in "" "--output=json"; do
    rc=0; "$TOPCOW" check $o bad.vmdk > t.out 2> t.err || rc=$?
    qrc=0; qemu-img check $o bad.vmdk > q.out 2> q.err || qrc=$?
    [ "$rc" = "$qrc" ] && diff t.out q.out >&2 &&
        [ "$(sed 's/^topcow: //' t.err)" = "$(sed 's/^qemu-img: //' q.err)" ] ||
        { cat t.err q.err; fail "check $o: a grain after EOF is reported differently"; } >&2
done
# Compressed grains: a huge size, a zero size, a garbage stream.
ov=$(od -An -tu8 -j 64 -N 8 tstream.vmdk | tr -d ' ')
variant tstream.vmdk $((ov * 512 + 8)) ffffffff; survives bad.vmdk
variant tstream.vmdk $((ov * 512 + 8)) 00000000; survives bad.vmdk
variant tstream.vmdk $((ov * 512 + 12)) 0123456789abcdef0123456789abcdef; survives bad.vmdk
rc=0; "$TOPCOW" convert -O raw bad.vmdk out.raw 2> err || rc=$?
[ "$rc" = 1 ] && grep -q "corrupt" err || { cat err; fail "a garbage grain is not reported"; } >&2

# Descriptor files.
desc() { printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="x"\n%s\n' "$1" > d.vmdk; }
desc 'RW 100 SPARSE "missing.vmdk"';          refused d.vmdk "missing.vmdk"
desc 'RW 100 FLAT "missing.vmdk" 0';          refused d.vmdk "missing.vmdk"
desc '';                                      refused d.vmdk "no extents"
desc 'RW 100 VMFSSPARSE "split-s001.vmdk"';   refused d.vmdk "not supported"
desc 'RW 99999999999999999999 ZERO';          refused d.vmdk "malformed"
desc 'RW 18014398509481984 ZERO';             refused d.vmdk "too big"
desc 'RW 100 FLAT "split-s001.vmdk" 18446744073709551615'; refused d.vmdk "too big"
desc 'RW 100 SPARSE "split-s001.vmdk';        refused d.vmdk "malformed"
desc 'RW 100 SPARSE "d.vmdk"';                refused d.vmdk "KDMV"
desc 'CID=zz';                                refused d.vmdk "CID"
desc 'RW 8 ZERO
RW 2097152 SPARSE "split-s001.vmdk"
RW 8 FLAT "sparse.vmdk" 1';                   survives d.vmdk
ok "$TOPCOW" info d.vmdk
head -c 100000 /dev/urandom > junk.vmdk;      survives junk.vmdk
exit 0
