// SPDX-License-Identifier: MIT
/* Zero writes and discard, with QEMU 7.2's semantics (checked against
 * qemu-io; notes §1a "Zero clusters, discard"):
 * - The unit is the granule: the cluster, or the subcluster with extended L2.
 * - v3: whole granules get the zero flag (zero bits with extended L2); the
 *   host cluster is kept unless unmapping is allowed or it is shared.
 * - v2 has no zero flag: without a backing file whole clusters are simply
 *   deallocated (they read as zeros); with one, zeros are written.  Fast
 *   zeroing (TOPCOW_ZERO_FAST) is never possible on v2.
 * - A partial granule becomes a zero granule when the rest of it already
 *   reads as zeros and it holds no data (unallocated or zero); otherwise its
 *   bytes are written as explicit zeros (or -ENOTSUP with TOPCOW_ZERO_FAST).
 * - discard touches whole clusters only; v3: an allocated or backed cluster
 *   becomes a zero cluster; v2 without a backing file: unallocated; v2 with a
 *   backing file: nothing (the backing data must not re-appear).
 * Freed clusters are punched in the host file once the change is durable. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

static bool
has_host(const struct qcow2_state *s, uint64_t e)
{
    return !(e & QCOW_OFLAG_COMPRESSED) &&
           ((e & L2E_OFFSET_MASK) != 0 || (s->external_data && (e & QCOW_OFLAG_COPIED)));
}

/* Write explicit zeros over [off, off+len) through the write path.  Needs the
 * lock and the range held exclusive. */
static int
write_zero_bytes(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    size_t chunk = (size_t)MIN(len, 1u << 20);
    uint8_t *zeros = calloc(1, chunk);
    if (!zeros)
        return err_set(-ENOMEM, "out of memory");
    int r = 0;
    while (len > 0 && r == 0) {
        size_t n = (size_t)MIN(len, chunk);
        r = qcow2_write_locked(s, zeros, n, off);
        off += n;
        len -= n;
    }
    free(zeros);
    return r;
}

/* Keep a raw external data file equal to the guest view. */
static int
zero_raw_data(struct qcow2_state *s, uint64_t host, uint64_t len)
{
    if (!s->data_file_raw)
        return 0;
    return io_write_zeroes(s->data_file, host, len, IO_ZERO_MAY_UNMAP);
}

/* Zero the granules [a, b) of one cluster's entry *e / *bm (v3).  Returns 0,
 * -errno, or 1 when the cluster needs explicit zeros instead (a compressed
 * cluster partly zeroed). */
static int
zero_entry(struct qcow2_state *s, uint64_t *e, uint64_t *bm, uint64_t a, uint64_t b,
           unsigned flags)
{
    const uint64_t cs = s->cluster_size;
    bool unmap = flags & TOPCOW_ZERO_MAY_UNMAP;
    uint64_t old = *e;
    int r = 0;

    if (!s->ext_l2) {
        if (has_host(s, old) && (old & QCOW_OFLAG_COPIED) && !unmap) {
            *e = old | QCOW_OFLAG_ZERO; /* keep the host cluster */
            return zero_raw_data(s, old & L2E_OFFSET_MASK, cs);
        }
        if (has_host(s, old) && s->external_data)
            r = zero_raw_data(s, old & L2E_OFFSET_MASK, cs);
        if (r == 0)
            r = qcow2_free_l2_entry(s, old, unmap);
        *e = QCOW_OFLAG_ZERO;
        return r;
    }

    if (old & QCOW_OFLAG_COMPRESSED) {
        if (a != 0 || b != cs)
            return 1;
        r = qcow2_free_l2_entry(s, old, unmap);
        *e = 0;
        *bm = SC_ZERO_MASK;
        return r;
    }
    uint64_t nbm = *bm;
    for (uint64_t sc = a >> s->subcluster_bits; sc < b >> s->subcluster_bits; sc++) {
        nbm &= ~(1ull << sc);
        nbm |= 1ull << (32 + sc);
    }
    if (has_host(s, old))
        r = zero_raw_data(s, (old & L2E_OFFSET_MASK) + a, b - a);
    if (r == 0 && nbm == SC_ZERO_MASK && has_host(s, old) &&
        (unmap || !(old & QCOW_OFLAG_COPIED))) {
        r = qcow2_free_l2_entry(s, old, unmap);
        *e = 0;
    }
    *bm = nbm;
    return r;
}

/* v3: set zero flags on the granule-aligned range [off, off+len).  Needs the
 * lock and the range held exclusive. */
static int
zero_granules_v3(struct qcow2_state *s, uint64_t off, uint64_t len, unsigned flags)
{
    const uint64_t cs = s->cluster_size;
    uint64_t end = off + len, pos = off;
    int r;
    if (s->lazy_refcounts && (r = qcow2_mark_dirty(s)) < 0)
        return r;
    while (pos < end) {
        uint64_t l2_span = cs << s->l2_bits;
        uint64_t table_end = MIN(end, (pos & ~(l2_span - 1)) + l2_span);
        uint8_t *l2;
        r = qcow2_get_l2(s, qcow2_l1_index(s, pos), true, &l2);
        if (r < 0)
            return r;
        uint64_t fallback_off = 0, fallback_len = 0;
        while (pos < table_end && r == 0) {
            uint64_t i = qcow2_l2_index(s, pos), g = pos & ~(cs - 1);
            uint64_t a = pos - g, b = MIN(table_end - g, cs);
            uint64_t e = qcow2_l2e_get(s, l2, i), bm = qcow2_l2_bitmap_get(s, l2, i);
            r = qcow2_validate_l2e(s, e, g);
            if (r == 0)
                r = zero_entry(s, &e, &bm, a, b, flags);
            pos = g + b;
            if (r == 1) { /* written after the table is released */
                fallback_off = g + a;
                fallback_len = b - a;
                r = 0;
                break;
            }
            if (r == 0) {
                qcow2_l2e_set(s, l2, i, e, bm);
                qcow2_cache_mark_dirty(s->l2_cache, l2);
            }
        }
        qcow2_cache_put(s->l2_cache, l2);
        if (r == 0 && fallback_len) {
            if (flags & TOPCOW_ZERO_FAST)
                return QERR(s, -ENOTSUP, "qcow2: zeroing part of a compressed cluster is slow");
            r = write_zero_bytes(s, fallback_off, fallback_len);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

int
qcow2_deallocate(struct qcow2_state *s, uint64_t off, uint64_t len, bool punch)
{
    const uint64_t cs = s->cluster_size;
    uint64_t end = off + len, pos = off;
    while (pos < end) {
        uint64_t l2_span = cs << s->l2_bits;
        uint64_t table_end = MIN(end, (pos & ~(l2_span - 1)) + l2_span);
        uint8_t *l2;
        int r = qcow2_get_l2(s, qcow2_l1_index(s, pos), false, &l2);
        if (r < 0)
            return r;
        if (l2) { /* writable: it may be shared with a snapshot */
            qcow2_cache_put(s->l2_cache, l2);
            r = qcow2_get_l2(s, qcow2_l1_index(s, pos), true, &l2);
            if (r < 0)
                return r;
        }
        for (; l2 && pos < table_end && r == 0; pos += cs) {
            uint64_t i = qcow2_l2_index(s, pos), e = qcow2_l2e_get(s, l2, i);
            if (e == 0 && qcow2_l2_bitmap_get(s, l2, i) == 0)
                continue; /* unallocated (with extended L2: every subcluster) */
            r = qcow2_validate_l2e(s, e, pos);
            if (r == 0)
                r = qcow2_free_l2_entry(s, e, punch);
            if (r == 0) {
                qcow2_l2e_set(s, l2, i, 0, 0);
                qcow2_cache_mark_dirty(s->l2_cache, l2);
            }
        }
        qcow2_cache_put(s->l2_cache, l2);
        if (r < 0)
            return r;
        pos = table_end;
    }
    return 0;
}

/* Zero whole granules [off, off+len) the way the image version allows. */
static int
zero_granules(struct qcow2_state *s, uint64_t off, uint64_t len, unsigned flags)
{
    if (s->h.version >= 3)
        return zero_granules_v3(s, off, len, flags);
    if (!s->img->backing)
        return qcow2_deallocate(s, off, len, flags & TOPCOW_ZERO_MAY_UNMAP);
    return write_zero_bytes(s, off, len);
}

/* Whether guest [off, off+len) is known to read as zeros (QEMU's cheap
 * test: zero and unallocated clusters, the backing chain's block status). */
static int
reads_zero(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    len = off < s->img->size ? MIN(len, s->img->size - off) : 0;
    while (len > 0) {
        struct qcow2_extent e;
        int r = qcow2_map(s, off, len, &e);
        if (r < 0)
            return r;
        if (e.type == QCOW2_NORMAL || e.type == QCOW2_COMPRESSED)
            return 0;
        if ((e.type == QCOW2_UNALLOCATED || e.type == QCOW2_UNALLOCATED_ALLOC) &&
            s->img->backing) {
            r = image_reads_zero(s->img->backing, off, e.len);
            if (r <= 0)
                return r;
        }
        off += e.len;
        len -= e.len;
    }
    return 1;
}

/* Zero [off, off+len), which lies within one granule and does not cover it. */
static int
zero_partial(struct qcow2_state *s, uint64_t off, uint64_t len, unsigned flags)
{
    const uint64_t gran = s->subcluster_size;
    uint64_t g = ALIGN_DOWN(off, gran), gend = g + gran;
    struct qcow2_extent e;
    int r = qcow2_map(s, g, gran, &e);
    if (r < 0)
        return r;
    /* A granule without data whose other bytes read as zeros can simply
     * become a zero granule. */
    bool empty = e.len >= gran && (e.type == QCOW2_UNALLOCATED || e.type == QCOW2_ZERO_PLAIN ||
                                   e.type == QCOW2_ZERO_ALLOC);
    if (empty && (r = reads_zero(s, g, off - g)) == 1 &&
        (r = reads_zero(s, off + len, gend - (off + len))) == 1)
        return zero_granules(s, g, gran, flags);
    if (r < 0)
        return r;
    if (flags & TOPCOW_ZERO_FAST)
        return QERR(s, -ENOTSUP, "qcow2: zeroing part of a cluster needs a data write");
    return write_zero_bytes(s, off, len);
}

int
qcow2_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct qcow2_state *s = qcow2_state(img);
    const uint64_t gran = s->subcluster_size, end = off + len;
    if (s->h.version < 3 && (flags & TOPCOW_ZERO_FAST))
        return QERR(s, -ENOTSUP, "qcow2: compat=0.10 images have no zero clusters: zeroing "
                                 "needs data writes");
    /* The end of the disk counts as a granule boundary. */
    uint64_t a = ALIGN_UP(off, gran);
    uint64_t b = end == img->size ? ALIGN_UP(end, gran) : ALIGN_DOWN(end, gran);
    struct range_req req;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    if (s->corrupt) {
        pthread_mutex_unlock(&s->lock);
        return QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused");
    }
    range_lock_acquire(&s->ranges, &req, off >> s->cluster_bits,
                       ((MAX(end, b) - 1) >> s->cluster_bits) + 1, true);
    if (s->h.version < 3 && img->backing) {
        r = write_zero_bytes(s, off, len); /* no zero flag, data must hide the backing */
    } else if (a > b) { /* strictly inside one granule */
        r = zero_partial(s, off, len, flags);
    } else {
        if (off < a)
            r = zero_partial(s, off, a - off, flags);
        if (r == 0 && a < b)
            r = zero_granules(s, a, b - a, flags);
        if (r == 0 && b < end)
            r = zero_partial(s, b, end - b, flags);
    }
    range_lock_release(&s->ranges, &req);
    if (r == 0 && (flags & TOPCOW_WRITE_FUA))
        r = qcow2_flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int
qcow2_discard(struct topcow_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    const uint64_t cs = s->cluster_size;
    uint64_t end = off + len;
    uint64_t a = ALIGN_UP(off, cs);
    uint64_t b = end == img->size ? ALIGN_UP(end, cs) : ALIGN_DOWN(end, cs);
    bool backing = s->img->backing != NULL;
    if (a >= b || (s->h.version < 3 && backing))
        return 0; /* parts of clusters, or v2 over a backing file: nothing to do */
    struct range_req req;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    if (s->corrupt) {
        pthread_mutex_unlock(&s->lock);
        return QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused");
    }
    range_lock_acquire(&s->ranges, &req, a >> s->cluster_bits, b >> s->cluster_bits, true);
    if (s->h.version < 3) {
        r = qcow2_deallocate(s, a, b - a, true);
        goto out;
    }
    for (uint64_t pos = a; pos < b && r == 0;) {
        uint64_t l2_span = cs << s->l2_bits;
        uint64_t table_end = MIN(b, (pos & ~(l2_span - 1)) + l2_span);
        uint8_t *l2;
        /* An absent table needs zero flags only to hide a backing file. */
        r = qcow2_get_l2(s, qcow2_l1_index(s, pos), backing, &l2);
        if (r == 0 && l2 && !backing) { /* writable: it may be shared */
            qcow2_cache_put(s->l2_cache, l2);
            r = qcow2_get_l2(s, qcow2_l1_index(s, pos), true, &l2);
        }
        if (r < 0 || !l2) {
            pos = table_end;
            continue;
        }
        for (; pos < table_end && r == 0; pos += cs) {
            uint64_t i = qcow2_l2_index(s, pos);
            uint64_t e = qcow2_l2e_get(s, l2, i), bm = qcow2_l2_bitmap_get(s, l2, i);
            bool allocated = has_host(s, e) || (e & QCOW_OFLAG_COMPRESSED);
            if (!allocated && !backing)
                continue;
            uint64_t ne = s->ext_l2 ? 0 : QCOW_OFLAG_ZERO;
            uint64_t nbm = s->ext_l2 ? SC_ZERO_MASK : 0;
            if (ne == e && nbm == bm)
                continue;
            r = qcow2_validate_l2e(s, e, pos);
            if (r == 0 && allocated && s->external_data)
                r = s->data_file_raw ? zero_raw_data(s, e & L2E_OFFSET_MASK, cs)
                                     : io_discard(s->data_file, e & L2E_OFFSET_MASK, cs);
            if (r == 0)
                r = qcow2_free_l2_entry(s, e, true);
            if (r == 0) {
                qcow2_l2e_set(s, l2, i, ne, nbm);
                qcow2_cache_mark_dirty(s->l2_cache, l2);
                if (allocated)
                    STATS_ADD(s->img->stats, discard_bytes, cs);
            }
        }
        qcow2_cache_put(s->l2_cache, l2);
    }
out:
    range_lock_release(&s->ranges, &req);
    pthread_mutex_unlock(&s->lock);
    return r;
}
