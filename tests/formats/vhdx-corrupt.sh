#!/bin/bash
# SPDX-License-Identifier: MIT
# Damaged VHDX images get one clear error naming the file, never a crash
# or a hang: truncated files, bad signatures and checksums, out-of-range
# fields with valid checksums, and random byte flips in the metadata.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
[ -x /usr/bin/python3 ] || { echo "SKIP: /usr/bin/python3 not installed" >&2; exit 77; }
POKE="/usr/bin/python3 $TOPCOW_SRCDIR/tests/formats/vhdx-gen.py poke"
cd "$SCRATCH"

# An 8 MiB image with 1 MiB blocks, some of them written.  qemu-img's
# layout: log at 1 MiB, BAT at 2 MiB, metadata at 3 MiB (items from
# 3 MiB + 64 KiB: block size, disk size, page 83, logical, physical
# sector size).
ok qemu-img create -f vhdx -o block_size=1M good.vhdx 8M
ok qemu-io -f vhdx -c 'write -P 0x42 0 1500k' -c 'write -P 0x43 5M 4k' good.vhdx
ok qemu-img convert -O raw good.vhdx good.raw
H1=$((64 << 10)) H2=$((128 << 10)) R1=$((192 << 10)) R2=$((256 << 10))
BAT=$((2 << 20)) META=$((3 << 20))

# Sanitizer builds report with exit status 1 too: look at what was said.
no_sanitizer_report() {
    case $2 in *Sanitizer*|*"runtime error"*) fail "topcow $1: $2" ;; esac
}

# Opening, describing and reading must each fail cleanly: exit status 1
# (never a signal) and a message that names the image.
fails_cleanly() {
    local img=$1 want=$2 st
    for cmd in "info -f vhdx $img" "convert -f vhdx -O raw $img out.raw" "map -f vhdx $img"; do
        set +e
        err=$("$TOPCOW" $cmd 2>&1 >/dev/null)
        st=$?
        set -e
        [ $st = 1 ] || fail "topcow $cmd: exit status $st ($err)"
        no_sanitizer_report "$cmd" "$err"
        case $err in *"$img"*"$want"*) ;; *) fail "topcow $cmd: unclear error: $err" ;; esac
    done
}

# Still readable (a problem the spec tolerates), with the original contents.
reads_good() {
    rm -f out.raw
    ok "$TOPCOW" convert -O raw "$1" out.raw
    cmp -s out.raw good.raw || fail "$1 reads differently from the undamaged image"
}

variant() { cp good.vhdx "$1"; }

# Truncated files.
for n in 0 8 100 65600 200000 1048576 2100000 3200000; do
    variant cut.vhdx
    truncate -s $n cut.vhdx
    fails_cleanly cut.vhdx vhdx
done

# Headers: one bad copy is survivable, two are not.
variant h.vhdx; $POKE h.vhdx $H1 58585858
reads_good h.vhdx
variant h.vhdx; $POKE h.vhdx $((H2 + 100)) ff
reads_good h.vhdx
variant h.vhdx; $POKE h.vhdx $H1 58585858; $POKE h.vhdx $((H2 + 100)) ff
fails_cleanly h.vhdx "neither header"
variant h.vhdx; $POKE h.vhdx $((H1 + 66)) 0200 $H1 4096; $POKE h.vhdx $((H2 + 66)) 0200 $H2 4096
fails_cleanly h.vhdx "version"
# A log GUID with the log placed past the end of the file.
variant h.vhdx
for h in $H1 $H2; do $POKE h.vhdx $((h + 48)) 11111111111111111111111111111111 $h 4096; done
for h in $H1 $H2; do $POKE h.vhdx $((h + 72)) 0000000001000000 $h 4096; done
fails_cleanly h.vhdx "log"
# A log GUID over an empty log: nothing to replay.
variant h.vhdx
for h in $H1 $H2; do $POKE h.vhdx $((h + 48)) 11111111111111111111111111111111 $h 4096; done
reads_good h.vhdx

# Region tables (checksums recomputed, so only the values are wrong).
variant r.vhdx; $POKE r.vhdx $R1 00; $POKE r.vhdx $R2 00
fails_cleanly r.vhdx "region table"
variant r.vhdx; for r in $R1 $R2; do $POKE r.vhdx $((r + 8)) 88130000 $r 65536; done
fails_cleanly r.vhdx "region table"
variant r.vhdx; for r in $R1 $R2; do $POKE r.vhdx $((r + 32)) 0000000000000000 $r 65536; done
fails_cleanly r.vhdx "BAT region"
variant r.vhdx; for r in $R1 $R2; do $POKE r.vhdx $((r + 40)) 00000000 $r 65536; done
fails_cleanly r.vhdx "BAT region"
variant r.vhdx; for r in $R1 $R2; do $POKE r.vhdx $((r + 64)) 0000200000000000 $r 65536; done
fails_cleanly r.vhdx "overlap"
variant r.vhdx; for r in $R1 $R2; do $POKE r.vhdx $((r + 48)) 0000000000ffff00 $r 65536; done
fails_cleanly r.vhdx "metadata"
variant r.vhdx; for r in $R1 $R2; do $POKE r.vhdx $((r + 16)) 01 $r 65536; $POKE r.vhdx $((r + 44)) 01000000 $r 65536; done
fails_cleanly r.vhdx "unknown"

# Metadata items.
md() { variant m.vhdx; $POKE m.vhdx "$@"; }
md $META 00;                              fails_cleanly m.vhdx "metadata"
md $((META + 10)) ffff;                   fails_cleanly m.vhdx "metadata table"
md $((META + 48)) 00000000;               fails_cleanly m.vhdx "file parameters"
md $((META + 52)) 04000000;               fails_cleanly m.vhdx "file parameters"
md $((META + 65536)) 00003000;            fails_cleanly m.vhdx "block size"
md $((META + 65536)) 00000000;            fails_cleanly m.vhdx "block size"
md $((META + 65544)) 0000000000000010;    fails_cleanly m.vhdx "virtual disk size"
md $((META + 65544)) 0102000000000000;    fails_cleanly m.vhdx "virtual disk size"
md $((META + 65568)) e8030000;            fails_cleanly m.vhdx "logical sector"
md $((META + 65572)) 00040000;            fails_cleanly m.vhdx "physical sector"
md $((META + 65540)) 02;                  fails_cleanly m.vhdx "parent locator"
md $((META + 32)) 00;                     fails_cleanly m.vhdx "required item"
md $((META + 32 + 24)) 01;                fails_cleanly m.vhdx "no file parameters"

# BAT entries.
md $BAT 05;                               fails_cleanly m.vhdx "BAT entry 0"
md $BAT 07;                               fails_cleanly m.vhdx "BAT entry 0"
md $BAT 0600000000000000;                 fails_cleanly m.vhdx "BAT entry 0"
md $BAT 06000000000000ff;                 fails_cleanly m.vhdx "BAT entry 0"

# Random damage anywhere in the first 4 MiB: any outcome but a crash, a
# hang or an error without a message.
variant base.vhdx
for seed in $(seq 1 60); do
    cp base.vhdx f.vhdx
    /usr/bin/python3 - f.vhdx $seed <<'PY'
import random, sys
r = random.Random(int(sys.argv[2]))
f = bytearray(open(sys.argv[1], "rb").read())
for _ in range(r.randint(1, 8)):
    # Favour the structures: headers, region tables, BAT, metadata items.
    base = r.choice([0, 64 << 10, 128 << 10, 192 << 10, 256 << 10, 2 << 20, 3 << 20, (3 << 20) + 65536])
    f[base + r.randrange(128)] = r.randrange(256)
open(sys.argv[1], "wb").write(f)
PY
    for cmd in "info -f vhdx f.vhdx" "convert -f vhdx -O raw f.vhdx out.raw" "map -f vhdx f.vhdx"; do
        set +e
        err=$(timeout 60 "$TOPCOW" $cmd 2>&1 >/dev/null)
        st=$?
        set -e
        [ $st = 0 ] || [ $st = 1 ] || fail "seed $seed: topcow $cmd: exit status $st ($err)"
        [ $st = 0 ] || [ -n "$err" ] || fail "seed $seed: topcow $cmd failed silently"
        no_sanitizer_report "seed $seed: $cmd" "$err"
    done
done
exit 0
