#!/bin/bash
# `topcow check` on damaged images: the problem lines on stderr, the summary
# on stdout and the exit status (2 corruptions, 3 leaks only) are qemu-img's.
# Damage: leaked clusters, a referenced cluster with refcount 0, refcount 2
# under a COPIED entry, two L2 entries sharing a cluster, reserved bits, a
# compressed entry with COPIED set, an L1 entry without COPIED, a refcount-0
# L2 table, a crashed lazy-refcounts image; and the corrupt bit, which alone
# is no finding.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io python3
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

# Layout of fresh(): cluster 0 header, 1 refcount table, 2 refcount block,
# 3 L1, 4 L2, 5-7 data (guest clusters 0-2), 8 the compressed guest cluster 16.
fresh() {
    rm -f "$1"
    qemu-img create -q -f qcow2 "$1" 4M
    qio "$1" "write -P 1 0 192k" "write -c -P 2 1M 64k"
}
damaged() { # label, then the pokes as "cmd args" strings
    local f=$1.qcow2
    shift
    fresh "$f"
    local p
    for p in "$@"; do
        # shellcheck disable=SC2086
        poke ${p%% *} "$f" ${p#* }
    done
    if qemu-img check "$f" >/dev/null 2>&1; then fail "$f: the damage went unnoticed"; fi
    compare check "$f"
    compare check --output=json "$f"
    compare check -q "$f"
}

truncate_to() { truncate -s $(($2 * 65536)) "$1"; }
fresh leaks.qcow2
truncate_to leaks.qcow2 12
poke refcount leaks.qcow2 10 1
poke refcount leaks.qcow2 9 2
compare check leaks.qcow2
compare check --output=json leaks.qcow2
rc=0; "$TOPCOW" check leaks.qcow2 >/dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "leaks only: exit $rc"
poke refcount leaks.qcow2 5 0
compare check leaks.qcow2
compare check --output=json leaks.qcow2

damaged unreferenced "refcount 6 0"
damaged shared-refcount "refcount 6 2"
damaged double-ref "l2 2 0x8000000000060000"
damaged reserved "l2 1 0x8000000000060002"
damaged compressed-copied "l2 16 0xc000000000080000"
damaged l1-copied "l1 0 0x40000"
damaged l2-unref "refcount 4 0"
damaged copied-missing "l2 2 0x70000"
# The corrupt bit alone is no finding.
fresh corrupt-bit.qcow2
poke incompat corrupt-bit.qcow2 2
compare check corrupt-bit.qcow2
compare check --output=json corrupt-bit.qcow2

qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k crash.qcow2 4M
sh -c 'qemu-io -c "write -P 1 0 256k" -c "write -z 1M 64k" -c abort crash.qcow2' \
    >/dev/null 2>&1 || true
compare check crash.qcow2
compare check --output=json crash.qcow2
rc=0; "$TOPCOW" check crash.qcow2 >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "crashed image: exit $rc"
echo "ok: $COMPARED comparisons"
