#!/bin/bash
# The engine-core acceptance matrix.  For every combination of compat
# {0.10, 1.1} x cluster size {512, 4K, 64K, 2M} x refcount_bits {1, 16, 64}
# x extended_l2 {off, on where valid} x {no backing, qcow2 backing shorter
# than the overlay} x lazy_refcounts {off, on}, plus data_file and
# preallocation=metadata images:
#   1. topcow creates the image and `topcow io` runs thousands of random
#      extents (512 B .. 1 MiB, patterns, zero writes, discards, flushes);
#   2. qemu-img check: no errors, no leaks; qemu-img compare against a raw
#      reference that qemu-io wrote with the same workload: identical;
#   3. qemu-img/qemu-io build the same image with the same workload; topcow
#      reads it back (convert -O raw) with the same sha256 as qemu-img, and
#      both tools' images compare identical.
# Usage: create-matrix.sh CHUNK NCHUNKS  (runs combinations i with i % NCHUNKS == CHUNK)
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
CHUNK=${1:-0}
NCHUNKS=${2:-1}
OPS=${MATRIX_OPS:-2000}
GEN="$TOPCOW_BUILDDIR/tests/tools/gen-workload"
SIZE=$((64 << 20))
BASE_SIZE=$((48 << 20))
cd "$SCRATCH"

# Run a command list (one command per line) through qemu-io or topcow io.
run_cmds() { # tool fmt image cmdfile
    local tool=$1 fmt=$2 image=$3 file=$4 args=()
    while IFS= read -r c; do args+=(-c "$c"); done <"$file"
    if [ "$tool" = qemu-io ]; then
        qemu-io -f "$fmt" "${args[@]}" "$image" >io.out 2>&1 || { cat io.out >&2; return 1; }
    else
        "$TOPCOW" io -f "$fmt" "${args[@]}" "$image" >io.out 2>&1 || { cat io.out >&2; return 1; }
    fi
}

# The backing file: a qcow2 made by QEMU, shorter than the overlays, with
# data, zero clusters and holes.
qemu-img create -q -f qcow2 base.qcow2 $BASE_SIZE
"$GEN" 4242 $BASE_SIZE 65536 300 base.cmds base-ref.cmds
run_cmds qemu-io qcow2 base.qcow2 base.cmds || fail "building the backing file"
qemu-img convert -O raw base.qcow2 base.raw
truncate -s $SIZE base.raw    # past its end the overlay reads zeros

combos=()
for compat in 0.10 1.1; do
  for cs in 512 4096 65536 2097152; do
    for rb in 1 16 64; do
      for el2 in off on; do
        for backing in no yes; do
          for lazy in off on; do
            [ $compat = 0.10 ] && { [ $rb != 16 ] || [ $el2 = on ] || [ $lazy = on ]; } && continue
            [ $el2 = on ] && [ $cs -lt 16384 ] && continue
            combos+=("compat=$compat,cluster_size=$cs,refcount_bits=$rb,extended_l2=$el2,lazy_refcounts=$lazy $backing")
          done
        done
      done
    done
  done
done
combos+=("compat=1.1,data_file=DATA no")
combos+=("compat=1.1,data_file=DATA,data_file_raw=on no")
combos+=("compat=1.1,preallocation=metadata no")
combos+=("compat=1.1,preallocation=metadata,cluster_size=4096,refcount_bits=1 no")
combos+=("compat=1.1,preallocation=metadata,extended_l2=on yes")
combos+=("compat=0.10,preallocation=metadata no")

ran=0
for i in "${!combos[@]}"; do
    [ $((i % NCHUNKS)) -eq "$CHUNK" ] || continue
    set -- ${combos[$i]}
    opts=$1 backing=$2
    cs=$(echo "$opts" | sed -n 's/.*cluster_size=\([0-9]*\).*/\1/p'); cs=${cs:-65536}
    label="[$i] $opts backing=$backing"
    rm -f t.qcow2 q.qcow2 t.data q.data ref.raw
    bargs=()
    [ "$backing" = yes ] && bargs=(-b base.qcow2 -F qcow2)
    nodiscard=()
    case "$opts" in *compat=0.10*) [ "$backing" = yes ] && nodiscard=(--no-discard) ;; esac
    "$GEN" $((1000 + i)) $SIZE "$cs" "$OPS" img.cmds ref.cmds "${nodiscard[@]}"

    # 1-2: topcow writes; QEMU judges.
    "$TOPCOW" create -q -f qcow2 -o "${opts/DATA/t.data}" "${bargs[@]}" t.qcow2 $SIZE \
        || fail "$label: topcow create"
    run_cmds topcow qcow2 t.qcow2 img.cmds || fail "$label: topcow io workload"
    if [ "$backing" = yes ]; then cp base.raw ref.raw; else truncate -s $SIZE ref.raw; fi
    run_cmds qemu-io raw ref.raw ref.cmds || fail "$label: qemu-io reference workload"
    out=$(qemu-img check t.qcow2 2>&1) || fail "$label: qemu-img check: $out"
    case "$out" in *"No errors were found"*) ;; *) fail "$label: qemu-img check: $out" ;; esac
    case "$out" in *leaked*) fail "$label: leaks: $out" ;; esac
    out=$(qemu-img compare -f qcow2 -F raw t.qcow2 ref.raw 2>&1) || fail "$label: content: $out"

    # 3: QEMU writes the same workload; topcow must read what QEMU reads.
    qemu-img create -q -f qcow2 -o "${opts/DATA/q.data}" "${bargs[@]}" q.qcow2 $SIZE \
        || fail "$label: qemu-img create"
    run_cmds qemu-io qcow2 q.qcow2 img.cmds || fail "$label: qemu-io workload"
    "$TOPCOW" convert -f qcow2 -O raw q.qcow2 q-topcow.raw || fail "$label: topcow convert"
    qemu-img convert -f qcow2 -O raw q.qcow2 q-qemu.raw
    [ "$(sha q-topcow.raw)" = "$(sha q-qemu.raw)" ] || fail "$label: topcow reads a QEMU image differently"
    out=$(qemu-img compare t.qcow2 q.qcow2 2>&1) || fail "$label: topcow and QEMU results differ: $out"
    rm -f q-topcow.raw q-qemu.raw
    ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || fail "chunk $CHUNK/$NCHUNKS ran no combinations"
echo "chunk $CHUNK/$NCHUNKS: $ran combinations passed"
