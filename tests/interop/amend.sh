#!/bin/bash
# topcow amend against qemu-img amend, on copies of the same images:
# compat 1.1 -> 0.10 (zero clusters with and without a backing file, which
# must stay zeros), 0.10 -> 1.1, lazy_refcounts on/off, every refcount_bits,
# size, backing_file/backing_fmt.  After each: qemu-img check clean, the
# options qemu-img info reports are the ones asked for, and the guest
# content is unchanged (and equal to qemu-img's amended copy).  Options fixed
# at creation and impossible downgrades are refused with a clear message and
# leave the image untouched.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
cd "$SCRATCH"

clean() {
    qemu_check_clean "$1"
    case "$out" in *"No errors"*) ;; *) fail "$2: $out" ;; esac
    case "$out" in *leaked*) fail "$2: leaks: $out" ;; esac
}
key() { # FILE KEY: a value of qemu-img info --output=json
    qemu-img info --output=json "$1" | sed -n "s/^ *\"$2\": \"*\([^\",]*\)\"*,*$/\1/p" | head -1
}
content() { qemu-img convert -O raw "$1" c.raw && sha c.raw; }
n=0

qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c "write -P 0x5a 0 4M" base.qcow2 >/dev/null

# amend_both CREATE_OPTS AMEND_OPTS [-b]: make the image, amend a copy with
# each tool, compare.
amend_both() {
    local copts=$1 aopts=$2 extra=()
    [ "${3:-}" = -b ] && extra=(-b base.qcow2 -F qcow2)
    qemu-img create -q -f qcow2 -o "$copts" "${extra[@]}" a.qcow2 4M
    qemu-io -c "write -P 0x11 0 256k" -c "write -z 256k 256k" -c "write -z -u 1M 128k" \
        -c "write -P 0x22 2M 64k" -c "discard 3M 64k" a.qcow2 >/dev/null
    local want
    want=$(content a.qcow2)
    cp a.qcow2 q.qcow2
    ok "$TOPCOW" amend -o "$aopts" a.qcow2
    qemu-img amend -o "$aopts" q.qcow2
    clean a.qcow2 "amend $copts -> $aopts ${3:-}"
    case $aopts in
    size=*) ok qemu-img compare -f qcow2 -F raw a.qcow2 c.raw ;; # grown: zeros after
    *) [ "$(content a.qcow2)" = "$want" ] || fail "amend $copts -> $aopts changed the content" ;;
    esac
    ok qemu-img compare a.qcow2 q.qcow2
    for k in compat lazy-refcounts refcount-bits virtual-size; do
        [ "$(key a.qcow2 $k)" = "$(key q.qcow2 $k)" ] ||
            fail "amend $aopts: $k is $(key a.qcow2 $k), qemu-img says $(key q.qcow2 $k)"
    done
    n=$((n + 1))
}

amend_both compat=1.1 compat=0.10
amend_both compat=1.1 compat=0.10 -b
amend_both compat=1.1,cluster_size=4k compat=0.10
amend_both compat=0.10 compat=1.1
amend_both compat=0.10 compat=1.1 -b
amend_both compat=1.1 lazy_refcounts=on
amend_both compat=1.1,lazy_refcounts=on lazy_refcounts=off
amend_both compat=1.1,lazy_refcounts=on compat=0.10,lazy_refcounts=off
for bits in 1 2 4 8 32 64; do
    amend_both compat=1.1 refcount_bits=$bits
done
amend_both compat=1.1,refcount_bits=64,cluster_size=512 refcount_bits=2
amend_both compat=1.1 size=64M
amend_both compat=1.1,refcount_bits=4 compat=0.10,refcount_bits=16

# A snapshot shares clusters (refcount 2): one bit cannot count that.
qemu-img create -q -f qcow2 s.qcow2 4M
qemu-io -c "write -P 0x11 0 1M" s.qcow2 >/dev/null
qemu-img snapshot -c snap s.qcow2
must_fail "$TOPCOW" amend -o refcount_bits=1 s.qcow2
case $ERR in *refcount*) ;; *) fail "refcount_bits=1 with a snapshot: $ERR" ;; esac
clean s.qcow2 "refused refcount_bits"
[ "$(key s.qcow2 refcount-bits)" = 16 ] || fail "refused amend changed refcount_bits"
ok "$TOPCOW" amend -o refcount_bits=8 s.qcow2
clean s.qcow2 "refcount_bits=8 with a snapshot"
qemu-img convert -l snapshot.name=snap -O raw s.qcow2 snap.raw
ok qemu-io -f raw -c "read -P 0x11 0 1M" snap.raw

# backing_file / backing_fmt (qemu-img refuses these; topcow records them).
qemu-img create -q -f qcow2 top.qcow2 4M
ok "$TOPCOW" amend -o backing_file=base.qcow2,backing_fmt=qcow2 top.qcow2
[ "$(key top.qcow2 backing-filename)" = base.qcow2 ] || fail "backing_file not recorded"
[ "$(key top.qcow2 backing-filename-format)" = qcow2 ] || fail "backing_fmt not recorded"
clean top.qcow2 "backing_file"
ok qemu-img compare top.qcow2 base.qcow2
ok "$TOPCOW" amend -o backing_file= top.qcow2
[ -z "$(key top.qcow2 backing-filename)" ] || fail "backing file not removed"

# Refusals leave the image as it was.
qemu-img create -q -f qcow2 -o extended_l2=on e.qcow2 4M
qemu-io -c "write -P 0x11 0 1M" e.qcow2 >/dev/null
want=$(sha e.qcow2)
for o in cluster_size=4096 extended_l2=off compression_type=zstd preallocation=full bogus=1; do
    must_fail "$TOPCOW" amend -o "$o" e.qcow2
    case $ERR in *"Invalid parameter '${o%%=*}'"*) ;; *) fail "amend $o: $ERR" ;; esac
done
must_fail "$TOPCOW" amend -o compat=0.10 e.qcow2
case $ERR in *"extended L2"*) ;; *) fail "downgrade with extended L2: $ERR" ;; esac
must_fail "$TOPCOW" amend -o compat=0.10,lazy_refcounts=on e.qcow2
must_fail "$TOPCOW" amend e.qcow2
case $ERR in *"-o"*) ;; *) fail "no options: $ERR" ;; esac
[ "$(sha e.qcow2)" = "$want" ] || fail "a refused amend changed the file"
must_fail "$TOPCOW" amend -o compat=1.1 -f raw base.qcow2
case $ERR in *"does not support option amendment"*) ;; *) fail "raw: $ERR" ;; esac
qemu-img create -q -f qcow2 nb.qcow2 4M
must_fail "$TOPCOW" amend -o backing_fmt=qcow2 nb.qcow2
case $ERR in *"backing_fmt needs a backing file"*) ;; *) fail "backing_fmt alone: $ERR" ;; esac
must_fail "$TOPCOW" amend -o refcount_bits=3 nb.qcow2
case $ERR in *"power of two"*) ;; *) fail "refcount_bits=3: $ERR" ;; esac
echo "ok: $n amends compared with qemu-img, refusals"
