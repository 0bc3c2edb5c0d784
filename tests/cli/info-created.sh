#!/bin/bash
# Images made by `topcow create` are described by `topcow info`, `check` and
# `map` exactly as qemu-img describes them.
. "$TOPCOW_SRCDIR/tests/lib.sh"
require qemu-img qemu-io
. "$TOPCOW_SRCDIR/tests/cli/compat-lib.sh"
cd "$SCRATCH"

n=0
for opts in "compat=0.10" "cluster_size=512" "cluster_size=2M,refcount_bits=1" \
    "refcount_bits=64,lazy_refcounts=on" "extended_l2=on,cluster_size=32k" \
    "compression_type=zstd" "data_file=ext.data" "data_file=raw.data,data_file_raw=on" \
    "preallocation=metadata"; do
    f=t$n.qcow2
    "$TOPCOW" create -q -f qcow2 -o "$opts" "$f" 6M || fail "create -o $opts"
    # Within the first L2 table even at 512-byte clusters (see check-corner).
    qio "$f" "write -P 1 0 20k" "write -z 20k 4k" "write -P 2 28k 2k"
    compare_all "$f"
    n=$((n + 1))
done
"$TOPCOW" create -q -f raw r.raw 3M
qemu-io -f raw -c "write -P 1 1M 64k" r.raw >/dev/null
compare_all r.raw
echo "ok: $COMPARED comparisons"
