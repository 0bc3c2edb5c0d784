#!/bin/bash
# topcow io rejects what qemu-io rejects, with the same first complaint on the
# same stream and the same exit status: unknown commands, operand counts,
# getopt errors and usage lines, number and pattern syntax (cvtnum: suffixes,
# hex, fractions, overflow), request limits, out-of-range requests (EIO),
# sector alignment for -b/-c, conflicting write options, -s source files,
# commands without an image and writes to a read-only image.
. "$TOPCOW_SRCDIR/tests/lib.sh"
. "$TOPCOW_SRCDIR/tests/io/io-compare.sh"
require qemu-img qemu-io

qemu-img create -q -f qcow2 "$SCRATCH/a.qcow2" 4M
: >"$SCRATCH/empty"

# Operand counts, aliases, unknown commands, getopt errors and usage lines.
IO_NAME=dispatch io_compare a.qcow2 \
    -c "read" -c "read 0" -c "read 0 1 2" -c "read -1 1" -c "read 0 -1" -c "read -Z 0 1" \
    -c "foo" -c "len" -c "r" -c "w" -c "d" -c "o" -c "a" -c "t" -c "r -P" -c "r -Z 0 1" \
    -c "length 1" -c "flush 1" -c "info 1" -c "map 1" -c "close 1" -c "aio_flush 1" \
    -c "sleep" -c "sleep 1 2" -c "alloc" -c "alloc 0 1 2" -c "truncate" -c "truncate 1 2 3 4" \
    -c "open 1 2" -c "discard 0" -c "discard 0 1 2" -c "discard -Z 0 1" -c "readv 0" \
    -c "writev 0" -c "aio_read" -c "aio_write 0" -c "abort 1" -c "sigraise" -c "break 1" \
    -c "help read write" -c "help foo" -c "reopen 1 2" -c "remove_break" -c "resume" \
    -c "wait_break 1 2" -c "read -P 0 1" -c "read -s 0 0 1" -c "read -l 0 0 1" \
    -c "read -s 3 -l 2 0 4" -c "read -a 0 1" -c "write -Y 0 1" -c "write -P" \
    -c "write -z -P 1 0" -c "write -u 0" -c "write -u 0 1 2" -c "writev -P 1 0" \
    -c "aio_write -z -u 0" -c "aio_read -Q 0 1" -c "l" -c "i" -c "f" -c "?"

# Numbers: qemu-io's cvtnum, through alloc (which accepts any offset).
# shellcheck disable=SC2054 # "1,5k" is one (invalid) number
nums=(0x200 0X200 +0x10 0x10b 0x1e 1.5k 1K 1k 1b 1B 1e3 010 1kb 1.5 1.5b 0.5k 5.0 5. 0.5
    1.0009765625k .5k 1.k 0x1k 0x10p1 0x1.8k 0x 0xg 00x10 8E 7E 16E 1.5E 4.5P 1.5e
    9223372036854775807 9223372036854775808 18446744073709551615 100000000000000000000
    0x7fffffffffffffff 0x8000000000000000 0x10000000000000000 1t 1P 1e 1g 1m 1M
    1.2345k 0.1k 1.0000000001k 1.0000000001 abc -0 +1 ++1 1.5e3 1e-3k 1.0e3 inf nan
    1.5.5k 1..5k 1.5kk 1.-5k 1.e5k 1,5k 1_000 0.0 0.0k 00 0.5b 2097151.5k
    7.99999999999E 7.9999999999999999999E 8.0E 0.9999999999999999999k 0.99999999k
    0.9999999999999999k 0.99999999999999995k 1.9999999999999999999k 0.12345678901234567890123k
    0.00048828125k 0.00244140625k 0.00146484375k 0.000244140625k 1.00048828125k)
cmds=()
for n in "${nums[@]}"; do
    cmds+=(-c "alloc $n 1")
done
IO_NAME=numbers io_compare a.qcow2 "${cmds[@]}"

# Pattern bytes, sleep and sigraise arguments.
IO_NAME=patterns io_compare a.qcow2 \
    -c "write -P 0x100 0 1" -c "write -P 256 0 1" -c "write -P -1 0 1" -c "write -P xyz 0 1" \
    -c "write -P 1k 0 1" -c "write -P '' 0 1" -c "write -P 5x 0 1" -c "write -P 0x 0 1" \
    -c "write -P 99999999999999999999 0 1" -c "read -P x -s 1 0 4" -c "readv -P x 0 1" \
    -c "writev -P 256 x 1" -c "aio_write -P 300 0 1" \
    -c "sleep x" -c "sleep -1" -c "sleep 1k" -c "sleep 1.5" -c "sleep 0x10" -c "sleep 010" \
    -c "sleep 0" -c "sigraise x" -c "sigraise 66" -c "sigraise 1k" -c "sigraise 0"

# Ranges, limits, alignment and option conflicts, in qemu-io's order of checks.
IO_NAME=ranges io_compare a.qcow2 \
    -c "read x 1" -c "read 0 y" -c "read 0 2G" -c "read 0 3G" \
    -c "read 7E 1" -c "read 4M 1" -c "read 4194303 2" -c "read 5M 0" -c "write 5M 0" \
    -c "write 0 2G" -c "write 7E 512" -c "write -z 0 3G" -c "write -z 4M 1" -c "write -z 0 5M" \
    -c "write -z -n 0 3G" -c "write -f -z 0 3G" -c "write -z 0 3G 1" \
    -c "discard 0 5M" -c "discard 0 3G" -c "discard 5M 1" -c "discard x 3G" -c "discard 0 x" \
    -c "readv 0 2G" -c "readv 0 3G x" -c "readv 0 1G 1G" -c "readv 0 1G 1G x" -c "readv x 3G" \
    -c "writev 4M 1" -c "readv 4M 1" -c "aio_read 5M 1" -c "aio_flush" -c "aio_write 5M 1" \
    -c "aio_flush" -c "aio_write -z 5M 1" -c "aio_flush" -c "aio_read 0 x" -c "aio_read 0 3G" \
    -c "aio_write -z 0 x 1" -c "aio_write -z -u 0 1 x" -c "aio_write -u 0 x" \
    -c "aio_write -i 0 x" -c "aio_read -i x 1" -c "aio_read -i 0" \
    -c "aio_write -z 0 3G" -c aio_flush \
    -c "write -b 0 1" -c "read -b 1 1" -c "read -b 0 1" -c "read -b 0x1 1" -c "read -b 1 x" \
    -c "read -b 1 3G" -c "write -c 1 x" -c "write -c x 1" -c "write -c 1 3G" -c "write -c 1 1" \
    -c "write -c 0 1" -c "write -z -c 1 1" -c "read -b -P 1 -s 3 -l 2 1 4" \
    -c "read -b -P 1 -s 3 -l 2 512 513" -c "read -P 1 -s 3 -l 2 9M 4" \
    -c "read -P 1 -s 3 -l 2 x 4" -c "read -P 1 -s 3 -l 2 0 3G" -c "read -P 1 -s x 0 4" \
    -c "read -P 1 -l x 0 4" -c "read -P 1 -s 1 -l 1 0 x" -c "read -P 1 -s 3 0 4 5" \
    -c "read -s 3 x 4" -c "read -s 3 0 3G" -c "read -P 0 -s 3 -l 2 0 4" -c "read -P 0 -s 5 0 4" \
    -c "read -P 1 -s 101 -l 0 0 100" -c "read -P 1 -s 1 0 0" -c "read -P 1 -l 200 0 100" \
    -c "read -P 1 -s 1E -l 1E 0 1" \
    -c "write -z -P 1 0 1" -c "write -z -u -P 1 0 1" -c "write -u -s x -P 1 0 1" \
    -c "write -P 1 -s x -u 0 1" -c "write -P 1 -s x -n 0 1" -c "write -n -u 0 1" \
    -c "write -u 0 1" -c "write -n 0 1" -c "aio_write -u 0 3" -c "aio_write -z 0 3 4" \
    -c "write -s /nonexistent 0 1" -c "write -s empty 0 3" -c "write -s . 0 1" \
    -c "write -s /nonexistent -c 1 1" -c "write -s /nonexistent 0 3G" \
    -c "write -s /nonexistent x 1" -c "truncate -m bogus 2M" -c "truncate x" \
    -c "alloc x 1" -c "alloc 0 x" -c "alloc -1 1" -c "break x y" -c "remove_break x" \
    -c "resume x"
IO_EXTRA=empty IO_NAME=ranges-extra io_compare a.qcow2 -c "write -s empty 0 3"

# Without an image, and with a read-only one.
IO_NAME=no-image io_compare - \
    -c "read 0 1" -c "read 0" -c "info 0 1" -c "length" -c "map" -c "alloc 0" -c "flush" \
    -c "aio_flush" -c "close" -c "discard 0 1" -c "readv 0 1" -c "writev 0 1" -c "write 0 1" \
    -c "aio_read 0 1" -c "truncate 0 1" -c "break 1 2" -c "reopen" -c "wait_break 1" \
    -c "remove_break 1" -c "resume 1" -c "sleep 0 1" -c "help 0 1" -c "sleep 1" -c "help"
IO_NAME=read-only io_compare a.qcow2 -r \
    -c "write 0 1" -c "write -z 0 512" -c "discard 0 64k" -c "writev 0 1" -c "aio_write 0 1" \
    -c "aio_flush" -c "flush" -c "read 0 1" -c "write" -c "write -Z 0 1" -c "truncate" \
    -c "truncate 1M" -c "discard x" -c "write x y"

# The exit status: 0 when every command succeeded, 1 otherwise, including a
# failed pattern check; an aio request never fails its command.
for c in "read 0 1" "read -P 1 0 1" "read -q -P 1 0 1" "readv -P 1 0 1" "aio_read -P 1 0 1" \
    "aio_read 5M 1" "aio_write 5M 1" "read 0 5M" "foo" "help foo" "sleep x" "quit 1 2 3"; do
    IO_NAME="exit status of '$c'" io_compare a.qcow2 -c "$c"
done
