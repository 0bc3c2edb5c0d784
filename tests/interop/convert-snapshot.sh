#!/bin/bash
# topcow convert -l / -s: reading a source at an internal snapshot, against
# qemu-img convert -l as the oracle.
# - An overlay (over a qcow2 base) gets eight snapshot levels with qemu-io
#   writes between them (patterns, zeros, discards, compressed clusters, a
#   growing resize), snapshots taken alternately by qemu-img and topcow,
#   three deleted in the middle by either tool; one snapshot's name is
#   another's id.  Then the disk shrinks below the later snapshots' size.
# - Each remaining snapshot, named by ID_OR_NAME, snapshot.name=,
#   snapshot.id= and -s, reads the same through topcow and qemu-img (sha256)
#   and equals what the image held when it was taken; a qcow2 output is clean.
# - Errors (unknown snapshots, a deleted one, id and name that do not match,
#   several sources with ID_OR_NAME, a bad parameter, a raw source) fail as
#   qemu-img fails, with its message, and create no output.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# The id of the snapshot appended last (the table keeps creation order).
last_id() { qemu-img snapshot -l "$1" | tail -n 1 | awk '{ print $1 }'; }

qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -c "write -P 0xb0 0 8M" -c "write -P 0xb1 12M 2M" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 t.qcow2 16M

declare -A name id
for level in 1 2 3 4 5 6 7 8; do
    # The disk grows under the later snapshots: older ones are smaller.
    [ $level = 5 ] && qemu-img resize -q t.qcow2 24M
    qemu-io -c "write -P $level $((level * 1100))k 2M" \
        -c "write -z $((level * 3 / 2))M 192k" \
        -c "discard $((level * 2 + 1))M 128k" \
        -c "write -c -P $((level + 0x40)) $((14336 + level * 128))k 128k" t.qcow2 >/dev/null ||
        fail "qemu-io writes of level $level"
    [ $level -ge 5 ] && { qemu-io -c "write -P $((level + 0x60)) $((15 + level))M 512k" \
        t.qcow2 >/dev/null || fail "qemu-io write past 16M"; }
    qemu-img convert -O raw t.qcow2 expect-$level.raw
    name[$level]="level $level"
    # A name that is another snapshot's id: ID_OR_NAME finds the id first.
    [ $level = 8 ] && name[$level]=4
    if [ $((level % 2)) = 1 ]; then
        qemu-img snapshot -c "${name[$level]}" t.qcow2
    else
        ok "$TOPCOW" snapshot -c "${name[$level]}" t.qcow2
    fi
    id[$level]=$(last_id t.qcow2)
    case $level in
    3) ok "$TOPCOW" snapshot -d "level 2" t.qcow2 ;;
    6) qemu-img snapshot -d "level 1" t.qcow2 ;;
    7) ok "$TOPCOW" snapshot -d "${id[5]}" t.qcow2 ;;
    esac
    qemu_check_clean t.qcow2
done
remaining="3 4 6 7 8"
[ "$(qemu-img snapshot -l t.qcow2 | tail -n +3 | wc -l)" = 5 ] || fail "expected 5 snapshots"
# Shrunk below the size of the later snapshots.  qemu-img 7.2 reads a
# snapshot at the source's current size: snapshots 6 to 8 are cut, and the
# smaller ones of levels 3 and 4 read as zeros past their end.
qemu-img resize -q --shrink t.qcow2 22784k
for level in $remaining; do truncate -s 22784k expect-$level.raw; done
# The current state differs from every snapshot.
qemu-io -c "write -P 0x77 0 20M" t.qcow2 >/dev/null

# $1 label, then convert arguments (the output last): both tools, same bytes.
same() {
    local label=$1
    shift
    rm -f q.raw c.raw
    qemu-img convert -O raw "$@" q.raw || fail "$label: qemu-img convert failed"
    "$TOPCOW" convert -O raw "$@" c.raw 2>err.txt || { cat err.txt >&2; fail "$label: topcow convert failed"; }
    [ "$(sha c.raw)" = "$(sha q.raw)" ] || fail "$label: topcow and qemu-img read differently"
}

for level in $remaining; do
    n=${name[$level]} i=${id[$level]}
    [ $level = 8 ] || { same "-l '$n'" -l "$n" t.qcow2; cmp -s c.raw expect-$level.raw ||
        fail "-l '$n' does not read as taken"; }
    same "snapshot.name=$n" -l "snapshot.name=$n" t.qcow2
    cmp -s c.raw expect-$level.raw || fail "snapshot.name=$n does not read as taken"
    same "snapshot.id=$i" -l "snapshot.id=$i" t.qcow2
    cmp -s c.raw expect-$level.raw || fail "snapshot.id=$i does not read as taken"
    same "-l $i" -l "$i" t.qcow2
    cmp -s c.raw expect-$level.raw || fail "-l $i does not read as taken"
    same "id and name" -l "snapshot.id=$i,snapshot.name=$n" t.qcow2
    cmp -s c.raw expect-$level.raw || fail "id $i and name $n do not read as taken"
    # -s, the old spelling qemu-img 7.2 no longer accepts.
    rm -f c.raw
    ok "$TOPCOW" convert -O raw -s "$i" t.qcow2 c.raw
    cmp -s c.raw expect-$level.raw || fail "-s $i does not read as taken"
done
# ID_OR_NAME "4" is the id of level 4, not the name of level 8.
rm -f c.raw
ok "$TOPCOW" convert -O raw -l 4 t.qcow2 c.raw
cmp -s c.raw expect-4.raw || fail "-l 4 did not find snapshot id 4 first"
# The last option wins; a snapshot.* list wins over ID_OR_NAME.
same "two -l" -l "level 3" -l "level 6" t.qcow2
cmp -s c.raw expect-6.raw || fail "-l twice: the last should win"
same "list over plain" -l "snapshot.id=${id[3]}" -l "level 7" t.qcow2
cmp -s c.raw expect-3.raw || fail "a snapshot.* list should win over ID_OR_NAME"
# With a list, only the first of several sources is read at the snapshot.
qemu-img create -q -f qcow2 other.qcow2 3M
qemu-io -c "write -P 0x33 1M 1M" other.qcow2 >/dev/null
qemu-img convert -O raw other.qcow2 other.raw
same "concatenated" -l "snapshot.name=level 6" t.qcow2 other.qcow2
cmp -s c.raw <(cat expect-6.raw other.raw) ||
    fail "concatenation with a snapshot"

# A qcow2 output: clean, and the same as the snapshot.
for level in 3 7; do
    rm -f out.qcow2
    ok "$TOPCOW" convert -O qcow2 -l "level $level" t.qcow2 out.qcow2
    qemu_check_clean out.qcow2
    qemu-img compare -q -f qcow2 -F raw out.qcow2 expect-$level.raw ||
        fail "qcow2 output of level $level differs"
done
# -B: only the snapshot's own clusters are copied, over the same base.
rm -f q.qcow2 c.qcow2
qemu-img convert -O qcow2 -B base.qcow2 -F qcow2 -l "level 4" t.qcow2 q.qcow2
ok "$TOPCOW" convert -O qcow2 -B base.qcow2 -F qcow2 -l "level 4" t.qcow2 c.qcow2
qemu_check_clean c.qcow2
qemu-img compare -q q.qcow2 c.qcow2 || fail "-B with -l differs from qemu-img"
qemu-img compare -q -F raw c.qcow2 expect-4.raw || fail "-B with -l does not read as taken"

# Errors: qemu-img's status and message (one line, or its two for a bad key),
# and no output file.
qemu-img create -q -f raw plain.raw 1M
fails_alike() {
    rm -f q.raw c.raw
    local qerr cerr
    qerr=$(qemu-img convert -O raw "$@" q.raw 2>&1) && fail "qemu-img accepted: $*"
    must_fail "$TOPCOW" convert -O raw "$@" c.raw
    cerr=$ERR
    [ "${cerr//topcow:/qemu-img:}" = "$qerr" ] ||
        fail "convert $*: message '$cerr', qemu-img says '$qerr'"
    [ ! -e c.raw ] || fail "convert $*: output created on error"
}
fails_alike -l nope t.qcow2
fails_alike -l "level 2" t.qcow2
fails_alike -l "${id[1]}" t.qcow2
fails_alike -l snapshot.id=99 t.qcow2
fails_alike -l "snapshot.name=level 5" t.qcow2
fails_alike -l "snapshot.id=${id[3]},snapshot.name=level 4" t.qcow2
fails_alike -l "snapshot.name=level 3,bogus=1" t.qcow2
fails_alike -l "level 3" t.qcow2 other.qcow2
fails_alike -l "level 3" plain.raw
fails_alike -f raw -l "level 3" t.qcow2
fails_alike -l anything other.qcow2
must_fail "$TOPCOW" convert -O raw -s nope t.qcow2 c.raw
[ "$ERR" = "topcow: Failed to load snapshot: Can't find snapshot" ] || fail "-s nope: $ERR"
[ ! -e c.raw ] || fail "-s nope: output created on error"
# The image itself is untouched by all this.
qemu_check_clean t.qcow2
[ "$(qemu-img snapshot -l t.qcow2 | tail -n +3 | wc -l)" = 5 ] || fail "snapshots changed"
echo ok
