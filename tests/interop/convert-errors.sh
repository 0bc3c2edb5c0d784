#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow convert refuses what qemu-img convert refuses, with the same
# message and exit status 1, and creates no output then; -c and -l are
# refused clearly until they are implemented.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

ok qemu-img create -f qcow2 src.qcow2 1M
ok qemu-img create -f qcow2 -b src.qcow2 -F qcow2 top.qcow2

# Arguments for both tools; their messages must match after the prefix.
same_error() {
    rm -f out.img
    local e t rc=0
    e=$(qemu-img convert "$@" 2>&1) && fail "qemu-img accepted: $*"
    rm -f out.img
    t=$("$TOPCOW" convert "$@" 2>&1) || rc=$?
    [ $rc = 1 ] || fail "exit status $rc for: $*"
    [ "${t#topcow: }" = "${e#qemu-img: }" ] || fail "message for '$*': '$t' vs qemu-img '$e'"
    [ ! -e out.img ] || fail "output created for: $*"
}
same_error -m 0 -O qcow2 src.qcow2 out.img
same_error -m 17 -O qcow2 src.qcow2 out.img
same_error -m x -O qcow2 src.qcow2 out.img
same_error -S 1000 -O qcow2 src.qcow2 out.img
same_error -S 17M -O qcow2 src.qcow2 out.img
same_error -O foo src.qcow2 out.img
same_error -O qcow2 src.qcow2
same_error -O qcow2
same_error --target-is-zero -O qcow2 src.qcow2 out.img
same_error -O raw -B src.qcow2 -F qcow2 top.qcow2 out.img
same_error -O qcow2 -B src.qcow2 top.qcow2 out.img
same_error -t foo -O qcow2 src.qcow2 out.img
same_error -T foo -O qcow2 src.qcow2 out.img
same_error -O qcow2 -B src.qcow2 -F qcow2 src.qcow2 top.qcow2 out.img
same_error -n -o cluster_size=4k -O qcow2 src.qcow2 top.qcow2

# Creation errors name the output and the reason, as qemu-img does.
must_fail "$TOPCOW" convert -O qcow2 -o cluster_size=3k src.qcow2 out.img
case $ERR in *"out.img: error while converting qcow2: Cluster size must be a power of two"*) ;;
*) fail "bad cluster size: $ERR" ;; esac
must_fail "$TOPCOW" convert -O qcow2 -o foo=bar src.qcow2 out.img
case $ERR in *"Invalid parameter 'foo'"*) ;; *) fail "unknown option: $ERR" ;; esac
must_fail "$TOPCOW" convert -O raw -o cluster_size=4k src.qcow2 out.img
case $ERR in *"Invalid parameter 'cluster_size'"*) ;; *) fail "raw cluster_size: $ERR" ;; esac
must_fail "$TOPCOW" convert -O qcow2 -F qcow2 src.qcow2 out.img
case $ERR in *"Backing format cannot be used without backing file"*) ;;
*) fail "-F without -B: $ERR" ;; esac

# A source in the wrong format, and an unknown source format.
must_fail "$TOPCOW" convert -f raw -O qcow2 nope.img out.img
case $ERR in *"Could not open 'nope.img'"*) ;; *) fail "missing source: $ERR" ;; esac
must_fail "$TOPCOW" convert -f foo -O qcow2 src.qcow2 out.img
case $ERR in *"Could not open 'src.qcow2'"*) ;; *) fail "unknown format: $ERR" ;; esac

# Compressed raw output, and a snapshot the source lacks, are refused with
# qemu-img's messages.
must_fail "$TOPCOW" convert -c -O raw src.qcow2 out.img
case $ERR in *"Compression not supported for this file format"*) ;; *) fail "-c: $ERR" ;; esac
must_fail "$TOPCOW" convert -l snap -O qcow2 src.qcow2 out.img
case $ERR in *"Failed to load snapshot: Can't find snapshot"*) ;; *) fail "-l: $ERR" ;; esac
[ ! -e out.img ] || fail "output created by a refused conversion"

# A read error stops the conversion with qemu-img's message: a compressed
# cluster whose data is garbage (the one L2 table of a 1M image is found
# through the L1 table, whose offset is at byte 40 of the header).
be64() { echo $((16#$(od -A n -t x1 -j "$2" -N 8 "$1" | tr -d ' \n'))); }
ok qemu-img create -f qcow2 comp.qcow2 1M
ok qemu-io -f qcow2 -c 'write -c -P 7 192k 64k' -c 'write -P 5 0 192k' -c 'write -P 5 256k 768k' \
    comp.qcow2
l2=$(($(be64 comp.qcow2 $(($(be64 comp.qcow2 40) & 0xfffffffffe00))) & 0xfffffffffe00))
data=$(($(be64 comp.qcow2 $((l2 + 3 * 8))) & ((1 << 54) - 1)))
head -c 256 /dev/zero | tr '\0' '\377' | dd of=comp.qcow2 bs=1 seek=$data conv=notrunc status=none
for opts in "-O raw" "-O qcow2" "-W -O qcow2"; do
    rm -f out.img
    must_fail "$TOPCOW" convert $opts comp.qcow2 out.img
    case $ERR in *"error while reading at byte 196608: "*"comp.qcow2"*) ;;
    *) fail "read error ($opts): $ERR" ;; esac
done

# A source that is in use by a writer is refused unless -U.
ok qemu-img create -f qcow2 busy.qcow2 1M
qemu-io -f qcow2 -c 'sleep 120000' busy.qcow2 >writer.log 2>&1 &
writer=$!
trap 'kill $writer 2>/dev/null || true; cleanup_scratch' EXIT
locked=no
for _ in $(seq 600); do
    qemu-img info busy.qcow2 >/dev/null 2>&1 || { locked=yes; break; }
    sleep 0.1
done
[ $locked = yes ] || fail "qemu-io did not lock busy.qcow2 within a minute: $(cat writer.log)"
must_fail "$TOPCOW" convert -O raw busy.qcow2 out.img
ok "$TOPCOW" convert -U -O raw busy.qcow2 out.img
kill $writer
wait $writer || true
exit 0
