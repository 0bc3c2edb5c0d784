# Helpers for the tests that hold `topcow info|check|map` against qemu-img.
# Source after tests/lib.sh, from the scratch directory:
#   . "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
# Commands run on relative file names, so the outputs are comparable byte
# for byte.

POKE="$TOPCOW_SRCDIR/tests/cli/qcow2-poke.py"
COMPARED=0

# Drop what depends on the host file system rather than on the image: the
# allocated size of the image file ("disk size:" / "actual-size").
host_filter() {
    LC_ALL=C grep -a -v -e '^disk size: ' -e '"actual-size": ' || true
}

# compare SUBCMD ARGS...: `topcow SUBCMD ARGS` and `qemu-img SUBCMD ARGS`
# must print the same stdout (through host_filter for info), exit with the
# same status, and print the same stderr once the program-name prefix of
# error lines is removed.
compare() {
    local sub=$1 trc=0 qrc=0
    shift
    "$TOPCOW" "$sub" "$@" >t.out 2>t.err || trc=$?
    qemu-img "$sub" "$@" >q.out 2>q.err || qrc=$?
    if [ "$sub" = info ]; then
        host_filter <t.out >t.cmp
        host_filter <q.out >q.cmp
    else
        cp t.out t.cmp
        cp q.out q.cmp
    fi
    sed -i 's/^topcow: //' t.err
    sed -i 's/^qemu-img: //' q.err
    local what="$sub $*"
    if ! cmp -s t.cmp q.cmp; then
        diff -u q.cmp t.cmp >&2 || true
        cat t.err >&2
        fail "stdout differs: $what"
    fi
    [ "$trc" = "$qrc" ] || { cat t.err >&2; fail "exit status $trc, qemu-img $qrc: $what"; }
    cmp -s t.err q.err || { diff -u q.err t.err >&2 || true; fail "stderr differs: $what"; }
    COMPARED=$((COMPARED + 1))
}

# compare_failure SUBCMD ARGS...: both programs fail with the same status
# and the same stdout; topcow explains why in one line on stderr (the
# wording of open errors is not qemu-img's).
compare_failure() {
    local sub=$1 trc=0 qrc=0
    shift
    "$TOPCOW" "$sub" "$@" >t.out 2>t.err || trc=$?
    qemu-img "$sub" "$@" >q.out 2>q.err || qrc=$?
    local what="$sub $*"
    [ "$qrc" != 0 ] || fail "qemu-img succeeded: $what"
    [ "$trc" = "$qrc" ] || fail "exit status $trc, qemu-img $qrc: $what"
    cmp -s t.out q.out || { diff -u q.out t.out >&2 || true; fail "stdout differs: $what"; }
    [ "$(wc -l <t.err)" = 1 ] || { cat t.err >&2; fail "not a one-line error: $what"; }
    COMPARED=$((COMPARED + 1))
}

# compare_all FILE: info, check and map, human and JSON.
compare_all() {
    local o
    for o in human json; do
        compare info --output=$o "$1"
        compare check --output=$o "$1"
        compare map --output=$o "$1"
    done
}

# poke ARGS...: edit qcow2 metadata in place (see qcow2-poke.py).
poke() {
    python3 "$POKE" "$@"
}

# qio FILE CMD...: run qemu-io commands on a qcow2 image, quietly.
qio() {
    local f=$1 c args=()
    shift
    for c in "$@"; do args+=(-c "$c"); done
    qemu-io "${args[@]}" "$f" >/dev/null
}

# make_images: create standalone images (no backing file) covering the
# qcow2 variants qemu-img knows, plus raw files; their names are appended to
# the array IMAGES.
IMAGES=()
add() {
    IMAGES+=("$@")
}
make_images() {
    local cs rb
    qemu-img create -q -f qcow2 empty.qcow2 0
    qemu-img create -q -f qcow2 plain.qcow2 64M
    qio plain.qcow2 "write -P 1 0 1M" "write -z 2M 1M" "write -P 2 5M 64k"
    add empty.qcow2 plain.qcow2
    # No data at all (check prints no percentages), and data written out of
    # order, so that neighbouring guest clusters are not neighbours on disk.
    qemu-img create -q -f qcow2 blank.qcow2 4M
    qemu-img create -q -f qcow2 order.qcow2 4M
    qio order.qcow2 "write -P 1 64k 128k" "write -P 2 0 64k" "write -P 3 192k 64k"
    add blank.qcow2 order.qcow2
    qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
    qio v2.qcow2 "write -P 1 0 256k" "write -z 64k 64k" "discard 192k 64k"
    add v2.qcow2
    for cs in 512 4k 2M; do
        qemu-img create -q -f qcow2 -o cluster_size=$cs cs$cs.qcow2 8M
        # Stays inside one L2 table: fragmentation across tables is counted
        # by the corner-case test.
        qio cs$cs.qcow2 "write -P 1 0 20k" "write -z 24k 4k"
        add cs$cs.qcow2
    done
    for rb in 1 64; do
        qemu-img create -q -f qcow2 -o refcount_bits=$rb rb$rb.qcow2 8M
        qio rb$rb.qcow2 "write -P 1 0 100k" "write -P 2 3M 1M"
        add rb$rb.qcow2
    done
    qemu-img create -q -f qcow2 -o extended_l2=on el2.qcow2 4M
    qio el2.qcow2 "write -P 1 0 4k" "write -P 2 64k 64k" "write -z 8k 4k" "write -P 3 1M 2k" \
        "discard 1M 1k" "write -z 2M 64k" "write -P 4 3M 64k" "write -z 3M 8k"
    qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 4M
    qio lazy.qcow2 "write -P 1 0 100k"
    qemu-img create -q -f qcow2 -o compression_type=zstd,cluster_size=16k zstd.qcow2 4M
    qio zstd.qcow2 "write -c -P 1 0 16k" "write -c -P 2 32k 16k" "write -P 3 64k 16k"
    add el2.qcow2 lazy.qcow2 zstd.qcow2
    # Zero clusters: plain (unmapped) and allocated ones.
    qemu-img create -q -f qcow2 zero.qcow2 4M
    qio zero.qcow2 "write -P 1 0 256k" "write -z 64k 64k" "discard 192k 64k" "write -z -u 1M 64k"
    add zero.qcow2
    # Compressed clusters, mixed with normal ones.
    qemu-img create -q -f raw src.raw 4M
    qemu-io -f raw -c "write -P 7 0 1M" -c "write -P 8 2M 300k" src.raw >/dev/null
    qemu-img convert -c -O qcow2 src.raw comp.qcow2
    qio comp.qcow2 "write -P 9 3M 64k"
    add comp.qcow2
    # External data files.
    qemu-img create -q -f qcow2 -o data_file=df.data df.qcow2 4M
    qio df.qcow2 "write -P 1 0 100k" "write -z 1M 64k"
    qemu-img create -q -f qcow2 -o data_file=dfr.data,data_file_raw=on dfr.qcow2 4M
    qio dfr.qcow2 "write -P 1 0 100k" "write -z 1M 64k"
    add df.qcow2 dfr.qcow2
    # Metadata preallocation: mapped clusters over holes read as zeros.
    qemu-img create -q -f qcow2 -o preallocation=metadata prealloc.qcow2 4M
    qio prealloc.qcow2 "write -P 1 1M 64k"
    add prealloc.qcow2
    # A dirty image: lazy refcounts, writes, then a crash.
    qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 4M
    # (through sh, so that no shell reports the abort)
    sh -c 'qemu-io -c "write -P 1 0 256k" -c abort dirty.qcow2' >/dev/null 2>&1 || true
    add dirty.qcow2
    # Raw files: with holes (written by qemu), fully sparse, empty.
    cp src.raw holes.raw
    truncate -s 10M sparse.raw
    : >empty.raw
    add holes.raw sparse.raw empty.raw
}
