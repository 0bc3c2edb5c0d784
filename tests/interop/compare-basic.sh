#!/bin/bash
# SPDX-License-Identifier: MIT
# topcow compare against qemu-img compare on equal, different,
# size-mismatched and strict cases: same exit status and same output
# (stdout and stderr, after the program name).
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

# mk NAME SIZE [qemu-io commands...]: a qcow2 image.
mk() {
    local name=$1 size=$2 cmds=()
    shift 2
    for c in "$@"; do cmds+=(-c "$c"); done
    ok qemu-img create -f qcow2 "$name" "$size"
    [ $# = 0 ] || ok qemu-io -f qcow2 "${cmds[@]}" "$name"
}

mk a.qcow2 4M 'write -P 1 1M 64k'
mk b.qcow2 4M 'write -P 1 1M 64k'
mk c.qcow2 8M 'write -P 1 1M 64k'
mk bz.qcow2 4M 'write -P 1 1M 64k' 'write -z 0 64k'
mk bd.qcow2 4M 'write -P 1 1M 64k' 'write -P 2 1126403 1'
mk cd.qcow2 8M 'write -P 1 1M 64k' 'write -P 2 7340037 1'
ok qemu-img convert -O raw a.qcow2 a.raw
ok qemu-img convert -c -O qcow2 a.qcow2 ac.qcow2
ok qemu-img create -f qcow2 -b a.qcow2 -F qcow2 ov.qcow2
# Strict mode also compares whether a run reaches the end of the image.
mk x.qcow2 8M 'write -P 1 0 64k'
mk y.qcow2 8M 'write -P 1 0 64k' 'write -z 7M 64k'
mk p.qcow2 8M 'write -P 1 0 64k' 'write -P 1 4M 64k'
mk q.qcow2 8M 'write -P 1 0 64k' 'write -P 1 4M 64k' 'write -P 1 6M 64k'
# Same data, different layout (host clusters out of order, split runs).
mk l1.qcow2 8M 'write -P 1 0 128k' 'write -P 2 1M 64k'
mk l2.qcow2 8M 'write -P 1 0 64k' 'write -P 2 1M 64k' 'write -P 1 64k 64k'
mk z1.qcow2 8M 'write -z 0 128k'
mk z2.qcow2 8M 'write -z 0 64k' 'write -z 64k 64k'
# Images larger than the work units, with several differences: the lowest
# offset must be reported, as a front-to-back scan finds it.
mk big1.qcow2 64M 'write -P 3 0 64M'
mk big2.qcow2 64M 'write -P 3 0 64M' 'write -P 4 50M 1' 'write -P 4 33554944 1' \
    'write -P 4 60M 1M'
mk big3.qcow2 2G 'write -P 3 1G 64k'
mk big4.qcow2 2G 'write -P 3 1G 64k' 'write -z 1536M 64k'
# Raw images whose sizes are not sector multiples.
head -c 1000 /dev/urandom >odd1.raw
cp odd1.raw odd2.raw
truncate -s 1024 odd2.raw
head -c 1000 /dev/urandom >odd3.raw

pairs=("a.qcow2 b.qcow2" "a.qcow2 c.qcow2" "c.qcow2 a.qcow2" "a.qcow2 bz.qcow2"
    "a.qcow2 bd.qcow2" "c.qcow2 cd.qcow2" "cd.qcow2 a.qcow2" "a.qcow2 a.raw" "a.raw a.qcow2"
    "a.qcow2 ac.qcow2" "ov.qcow2 a.qcow2" "ov.qcow2 a.raw" "x.qcow2 y.qcow2" "p.qcow2 q.qcow2"
    "l1.qcow2 l2.qcow2" "z1.qcow2 z2.qcow2" "big1.qcow2 big2.qcow2" "big2.qcow2 big1.qcow2"
    "big3.qcow2 big4.qcow2" "odd1.raw odd2.raw" "odd1.raw odd3.raw" "-f raw a.qcow2 a.qcow2"
    "-F raw a.raw a.qcow2" "-f qcow2 -F raw a.qcow2 a.raw")
n=0
for opts in "" "-s" "-q" "-s -q" "-U"; do
    for pair in "${pairs[@]}"; do
        # The strict odd-size raw case depends on qemu's sector padding.
        [ "$opts" != "-s" ] || [ "$pair" != "odd1.raw odd2.raw" ] || continue
        erc=0 trc=0
        e=$(qemu-img compare $opts $pair 2>&1) || erc=$?
        t=$("$TOPCOW" compare $opts $pair 2>&1) || trc=$?
        [ "$erc" = "$trc" ] || fail "compare $opts $pair: exit $trc, qemu-img $erc"
        [ "${t//topcow: /}" = "${e//qemu-img: /}" ] ||
            fail "compare $opts $pair: '$t', qemu-img '$e'"
        n=$((n + 1))
    done
done
echo "$n cases agree"

# -p: progress lines, then the verdict.
out=$("$TOPCOW" compare -p big1.qcow2 big1.qcow2) || fail "compare -p failed"
case $out in *"(100.00/100%)"*"Images are identical."*) ;; *) fail "compare -p: $out" ;; esac
exit 0
