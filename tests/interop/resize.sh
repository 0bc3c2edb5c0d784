#!/bin/bash
# topcow resize against qemu-img resize, on copies of the same images:
# - growing (v2, v3, cluster sizes 512 B..2 MiB, extended L2, an overlay
#   over a shorter backing file, an image with snapshots, unaligned old
#   sizes with data in the last cluster, every preallocation mode) gives an
#   image qemu-img check calls clean, with qemu-img's virtual size, and
#   reading exactly like qemu-img's result;
# - shrinking needs --shrink and is refused, image untouched, while data
#   lives past the new end; once that data is discarded it succeeds and
#   reads like qemu-img's shrunk copy; growing again shows zeros there;
# - raw images grow and shrink alike; bad sizes give qemu-img's errors.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

clean() {
    qemu_check_clean "$1"
    case "$out" in *"No errors"*) ;; *) fail "$2: $out" ;; esac
    case "$out" in *leaked*) fail "$2: leaks: $out" ;; esac
}
vsize() { qemu-img info --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }
n=0

qemu-img create -q -f qcow2 base.qcow2 3M
qemu-io -c "write -P 0x5a 0 3M" base.qcow2 >/dev/null

# grow: OPTIONS, INITIAL SIZE, NEW SIZE ARG, [resize flags...]
grow() {
    local opts=$1 size=$2 arg=$3
    shift 3
    local extra=()
    case $opts in *backing*) extra=(-b base.qcow2 -F qcow2) ;; esac
    qemu-img create -q -f qcow2 -o "${opts/,backing/}" "${extra[@]}" a.qcow2 "$size"
    local end=$(( $(vsize a.qcow2) ))
    qemu-io -c "write -P 0x11 0 64k" -c "write -z 64k 64k" -c "write -P 0x22 $((end - 4096)) 4096" \
        a.qcow2 >/dev/null
    cp a.qcow2 q.qcow2
    ok "$TOPCOW" resize "$@" a.qcow2 "$arg"
    [ "$out" = "Image resized." ] || fail "output: $out"
    qemu-img resize -q "$@" q.qcow2 "$arg"
    clean a.qcow2 "grow $opts $size $arg $*"
    [ "$(vsize a.qcow2)" = "$(vsize q.qcow2)" ] || fail "size after grow $opts: $(vsize a.qcow2)"
    ok qemu-img compare a.qcow2 q.qcow2
    n=$((n + 1))
}

for opts in compat=0.10 compat=1.1 cluster_size=512 cluster_size=2M \
    extended_l2=on,cluster_size=64k refcount_bits=1 compat=1.1,backing; do
    grow "$opts" 3M 5G
    grow "$opts" 1000k +3M
done
for mode in metadata falloc full; do
    grow compat=1.1 1M 9M "--preallocation=$mode"
    # The preallocated range is allocated in the image, not just mapped.
    if [ "$mode" != metadata ]; then
        qemu-img map --output=json a.qcow2 | grep -q '"start": 1048576.*"data": true' ||
            qemu-img map --output=json a.qcow2 | grep -q '"data": true' ||
            fail "preallocation=$mode allocated nothing"
    fi
done

# An image with internal snapshots: they keep their size and data.
qemu-img create -q -f qcow2 s.qcow2 2M
qemu-io -c "write -P 0x33 0 2M" s.qcow2 >/dev/null
qemu-img snapshot -c before s.qcow2
cp s.qcow2 sq.qcow2
ok "$TOPCOW" resize s.qcow2 +6M
qemu-img resize -q sq.qcow2 +6M
clean s.qcow2 "grow with a snapshot"
qemu-img convert -l snapshot.name=before -O raw s.qcow2 snap.raw
qemu-img convert -l snapshot.name=before -O raw sq.qcow2 snapq.raw
cmp -s snap.raw snapq.raw || fail "the snapshot reads differently after the resize"
qemu-io -f raw -c "read -P 0x33 0 2M" snap.raw | grep -q "^read" || fail "snapshot data"
diff <(qemu-img snapshot -l s.qcow2 | cut -c1-40) <(qemu-img snapshot -l sq.qcow2 | cut -c1-40) ||
    fail "snapshot table differs after resize"

# Shrinking.
qemu-img create -q -f qcow2 a.qcow2 8M
qemu-io -c "write -P 0x44 0 1M" -c "write -P 0x55 6M 64k" a.qcow2 >/dev/null
content() { qemu-img convert -O raw "$1" c.raw && sha c.raw; }
before=$(content a.qcow2)
must_fail "$TOPCOW" resize a.qcow2 4M
case $ERR in *"--shrink"*) ;; *) fail "shrink without --shrink: $ERR" ;; esac
must_fail "$TOPCOW" resize --shrink a.qcow2 4M
case $ERR in *"guest data at offset 6291456"*) ;; *) fail "shrink over data: $ERR" ;; esac
[ "$(vsize a.qcow2)" = $((8 << 20)) ] || fail "refused shrink changed the size"
[ "$(content a.qcow2)" = "$before" ] ||
    fail "refused shrink changed the data"
clean a.qcow2 "refused shrink"
# A partial last cluster with data past the new end is refused too.
must_fail "$TOPCOW" resize --shrink a.qcow2 512k
case $ERR in *"last cluster"*|*"guest data"*) ;; *) fail "partial cluster: $ERR" ;; esac
ok "$TOPCOW" io -c "discard 6M 64k" a.qcow2
cp a.qcow2 q.qcow2
ok "$TOPCOW" resize --shrink a.qcow2 -- -4M
qemu-img resize -q --shrink q.qcow2 -- -4M
clean a.qcow2 "shrink"
[ "$(vsize a.qcow2)" = $((4 << 20)) ] || fail "size after shrink: $(vsize a.qcow2)"
ok qemu-img compare a.qcow2 q.qcow2
ok "$TOPCOW" resize a.qcow2 8M
clean a.qcow2 "grow after shrink"
ok qemu-io -c "read -P 0 4M 4M" -c "read -P 0x44 0 1M" a.qcow2
case $out in *Pattern*|*fail*) fail "after shrink+grow: $out" ;; esac

# Shrinking across whole L2 tables (512-byte clusters: 32 KiB per table).
qemu-img create -q -f qcow2 -o cluster_size=512 a.qcow2 4M
qemu-io -c "write -P 0x66 0 4M" -c "discard 1M 3M" a.qcow2 >/dev/null
cp a.qcow2 q.qcow2
ok "$TOPCOW" resize --shrink a.qcow2 1M
qemu-img resize -q --shrink q.qcow2 1M
clean a.qcow2 "shrink over L2 tables"
ok qemu-img compare a.qcow2 q.qcow2

# raw
truncate -s 3M r.raw
qemu-io -f raw -c "write -P 0x77 0 1M" r.raw >/dev/null
ok "$TOPCOW" resize -f raw r.raw 5M
[ "$(stat -c %s r.raw)" = $((5 << 20)) ] || fail "raw grow"
ok "$TOPCOW" resize -f raw --shrink r.raw 2M
[ "$(stat -c %s r.raw)" = $((2 << 20)) ] || fail "raw shrink"
must_fail "$TOPCOW" resize -f raw --shrink r.raw 512k
case $ERR in *"guest data at offset 524288"*) ;; *) fail "raw shrink over data: $ERR" ;; esac
[ "$(stat -c %s r.raw)" = $((2 << 20)) ] || fail "a refused raw shrink changed the size"
must_fail "$TOPCOW" resize -f raw --preallocation=metadata r.raw 4M
case $ERR in *"no metadata to preallocate"*) ;; *) fail "raw metadata prealloc: $ERR" ;; esac

# Errors, in qemu-img's words.
must_fail "$TOPCOW" resize a.qcow2 1000
case $ERR in *"multiple of 512"*) ;; *) fail "unaligned: $ERR" ;; esac
must_fail "$TOPCOW" resize --shrink a.qcow2 -- -100M
case $ERR in *"must be positive"*) ;; *) fail "negative: $ERR" ;; esac
must_fail "$TOPCOW" resize a.qcow2 12Q
must_fail "$TOPCOW" resize nonexistent.qcow2 1M
case $ERR in *nonexistent.qcow2*) ;; *) fail "missing file: $ERR" ;; esac
must_fail "$TOPCOW" resize --preallocation=bogus a.qcow2 9M
case $ERR in *"bogus"*) ;; *) fail "bad mode: $ERR" ;; esac
echo "ok: $n grows compared with qemu-img, shrink and errors"
