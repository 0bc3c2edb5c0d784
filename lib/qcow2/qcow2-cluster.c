// SPDX-License-Identifier: MIT
/* Guest-to-host mapping (spec: "Cluster mapping", "Extended L2 Entries"):
 * L1/L2 lookup, entry classification per (sub)cluster exactly in QEMU's
 * precedence, and making an L2 table writable (allocating it, or copying one
 * shared with a snapshot).  Everything here needs s->lock. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "byteorder.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

uint64_t
qcow2_l2e_get(const struct qcow2_state *s, const uint8_t *l2, uint64_t i)
{
    return be64_get(l2 + i * s->l2_entry_size);
}

uint64_t
qcow2_l2_bitmap_get(const struct qcow2_state *s, const uint8_t *l2, uint64_t i)
{
    return s->ext_l2 ? be64_get(l2 + i * 16 + 8) : 0;
}

void
qcow2_l2e_set(const struct qcow2_state *s, uint8_t *l2, uint64_t i, uint64_t e, uint64_t bm)
{
    be64_put(l2 + i * s->l2_entry_size, e);
    if (s->ext_l2)
        be64_put(l2 + i * 16 + 8, bm);
}

/* Whether the entry has a host cluster (offset 0 is valid with an external
 * data file when COPIED is set: guest cluster 0 at data-file offset 0). */
static bool
has_host(const struct qcow2_state *s, uint64_t l2e)
{
    return (l2e & L2E_OFFSET_MASK) != 0 || (s->external_data && (l2e & QCOW_OFLAG_COPIED));
}

int
qcow2_entry_type(const struct qcow2_state *s, uint64_t l2e, uint64_t bitmap, unsigned sc)
{
    if (l2e & QCOW_OFLAG_COMPRESSED)
        return QCOW2_COMPRESSED;
    bool host = has_host(s, l2e);
    if (!s->ext_l2) {
        if (l2e & QCOW_OFLAG_ZERO)
            return host ? QCOW2_ZERO_ALLOC : QCOW2_ZERO_PLAIN;
        return host ? QCOW2_NORMAL : QCOW2_UNALLOCATED;
    }
    bool alloc = bitmap & (1ull << sc);
    bool zero = bitmap & (1ull << (32 + sc));
    if (alloc && zero)
        return -1;
    if (!host) {
        if (alloc)
            return -1;
        return zero ? QCOW2_ZERO_PLAIN : QCOW2_UNALLOCATED;
    }
    if (alloc)
        return QCOW2_NORMAL;
    return zero ? QCOW2_ZERO_ALLOC : QCOW2_UNALLOCATED_ALLOC;
}

int
qcow2_validate_l2e(struct qcow2_state *s, uint64_t l2e, uint64_t guest_off)
{
    if (l2e & QCOW_OFLAG_COMPRESSED) {
        uint64_t off = l2e & s->cluster_offset_mask;
        if (off >> 56)
            return qcow2_signal_corruption(
                s, "compressed cluster for guest offset 0x%" PRIx64
                   " has host offset 0x%" PRIx64 " past the 64 PiB limit",
                guest_off, off);
        return 0;
    }
    uint64_t host = l2e & L2E_OFFSET_MASK;
    if (!IS_ALIGNED(host, s->cluster_size))
        return qcow2_signal_corruption(s, "L2 entry for guest offset 0x%" PRIx64
                                          " points to unaligned host offset 0x%" PRIx64,
                                       guest_off, host);
    /* An external data file maps every cluster to its own guest offset. */
    uint64_t guest_cluster = guest_off & ~(s->cluster_size - 1);
    if (s->external_data && (host || (l2e & QCOW_OFLAG_COPIED)) && host != guest_cluster)
        return qcow2_signal_corruption(s, "external data file host cluster offset 0x%" PRIx64
                                          " does not match guest cluster offset 0x%" PRIx64,
                                       host, guest_cluster);
    return 0;
}

int
qcow2_get_l2(struct qcow2_state *s, uint64_t l1i, bool alloc, uint8_t **data)
{
    *data = NULL;
    if (l1i >= s->l1_size)
        return QERR(s, -EINVAL, "qcow2: L1 index %" PRIu64 " out of range", l1i);
    uint64_t l1e = s->l1[l1i];
    uint64_t l2off = l1e & L1E_OFFSET_MASK;
    int r;

    if (l2off && !IS_ALIGNED(l2off, s->cluster_size))
        return qcow2_signal_corruption(s, "L2 table offset 0x%" PRIx64 " in L1 entry %" PRIu64
                                          " is not cluster aligned",
                                       l2off, l1i);
    if (l2off && (!alloc || (l1e & QCOW_OFLAG_COPIED)))
        return qcow2_cache_get(s->l2_cache, l2off, false, data);
    if (!alloc)
        return 0;

    if (s->lazy_refcounts && (r = qcow2_mark_dirty(s)) < 0)
        return r;
    uint64_t noff;
    bool fresh;
    r = qcow2_alloc_clusters(s, 1, &noff, NULL, &fresh);
    if (r < 0)
        return r;
    uint8_t *old = NULL;
    if (l2off) { /* shared with a snapshot: copy it */
        r = qcow2_cache_get(s->l2_cache, l2off, false, &old);
        if (r < 0)
            return r;
    }
    uint8_t *nl2;
    r = qcow2_cache_get(s->l2_cache, noff, true, &nl2);
    if (r < 0) {
        qcow2_cache_put(s->l2_cache, old);
        return r;
    }
    if (old) {
        memcpy(nl2, old, s->cluster_size);
        qcow2_cache_put(s->l2_cache, old);
        r = qcow2_free_clusters(s, l2off, 1, false);
        if (r < 0) {
            qcow2_cache_put(s->l2_cache, nl2);
            return r;
        }
    }
    qcow2_cache_mark_dirty(s->l2_cache, nl2);
    s->l1[l1i] = noff | QCOW_OFLAG_COPIED;
    qcow2_mark_chunk_dirty(s->l1_dirty, l1i);
    *data = nl2;
    return 0;
}

/* Host offset of guest byte @off within a NORMAL entry. */
static uint64_t
host_of(const struct qcow2_state *s, uint64_t l2e, uint64_t off)
{
    return (l2e & L2E_OFFSET_MASK) + qcow2_offset_into_cluster(s, off);
}

int
qcow2_map(struct qcow2_state *s, uint64_t off, uint64_t len, struct qcow2_extent *ext)
{
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    len = MIN(len, l2_span - (off & (l2_span - 1)));
    memset(ext, 0, sizeof *ext);

    uint8_t *l2;
    int r = qcow2_get_l2(s, qcow2_l1_index(s, off), false, &l2);
    if (r < 0)
        return r;
    if (!l2) {
        ext->type = QCOW2_UNALLOCATED;
        ext->len = len;
        return 0;
    }

    uint64_t i = qcow2_l2_index(s, off);
    uint64_t l2e = qcow2_l2e_get(s, l2, i), bm = qcow2_l2_bitmap_get(s, l2, i);
    unsigned sc = (unsigned)(qcow2_offset_into_cluster(s, off) >> s->subcluster_bits);
    int t = qcow2_entry_type(s, l2e, bm, sc);
    if (t < 0) {
        qcow2_cache_put(s->l2_cache, l2);
        return qcow2_signal_corruption(s, "invalid extended L2 entry %016" PRIx64
                                          " bitmap %016" PRIx64 " for guest offset 0x%" PRIx64,
                                       l2e, bm, off);
    }
    if (t == QCOW2_NORMAL || t == QCOW2_COMPRESSED || t == QCOW2_ZERO_ALLOC) {
        r = qcow2_validate_l2e(s, l2e, off);
        if (r < 0) {
            qcow2_cache_put(s->l2_cache, l2);
            return r;
        }
    }
    ext->type = (enum qcow2_type)t;
    ext->copied = (l2e & QCOW_OFLAG_COPIED) != 0;
    bool hosted = t == QCOW2_NORMAL || t == QCOW2_ZERO_ALLOC || t == QCOW2_UNALLOCATED_ALLOC;
    if (hosted)
        ext->host = host_of(s, l2e, off);
    if (t == QCOW2_COMPRESSED) {
        /* One descriptor per cluster: never merged. */
        ext->l2e = l2e;
        ext->len = MIN(len, s->cluster_size - qcow2_offset_into_cluster(s, off));
        qcow2_cache_put(s->l2_cache, l2);
        return 0;
    }

    /* Extend the run over following subclusters of the same kind. */
    uint64_t pos = (off & ~(s->subcluster_size - 1)) + s->subcluster_size;
    uint64_t end = off + len;
    uint64_t expect_host = hosted ? ext->host + (pos - off) : 0;
    while (pos < end) {
        uint64_t j = qcow2_l2_index(s, pos);
        if (j != i) {
            i = j;
            l2e = qcow2_l2e_get(s, l2, i);
            bm = qcow2_l2_bitmap_get(s, l2, i);
        }
        unsigned k = (unsigned)(qcow2_offset_into_cluster(s, pos) >> s->subcluster_bits);
        if (qcow2_entry_type(s, l2e, bm, k) != t ||
            ((l2e & QCOW_OFLAG_COPIED) != 0) != ext->copied)
            break;
        if (hosted) {
            if (host_of(s, l2e, pos) != expect_host ||
                !IS_ALIGNED(l2e & L2E_OFFSET_MASK, s->cluster_size))
                break;
            expect_host += s->subcluster_size;
        }
        pos += s->subcluster_size;
    }
    ext->len = MIN(pos, end) - off;
    qcow2_cache_put(s->l2_cache, l2);
    return 0;
}
