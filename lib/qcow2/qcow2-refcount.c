// SPDX-License-Identifier: MIT
/* Refcounts and cluster allocation (spec: "Host cluster management").
 *
 * - Entries of 1..64 bits; sub-byte widths are packed LSB first.
 * - Allocation scans upward from free_hint for a contiguous run of free
 *   clusters.  A missing refcount block is created inside the range it
 *   covers (self-describing), and the refcount table grows by allocating a
 *   bigger table plus the blocks that describe it in a fresh area.
 * - Decrements are deferred: qcow2_free_clusters() queues them and
 *   qcow2_apply_pending_frees() applies them once the metadata that stopped
 *   referencing the clusters is durable.  So a cluster is never reused, nor
 *   its refcount dropped on disk, while a durable L2 entry still points at it.
 *
 * Everything here needs s->lock. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

uint64_t
qcow2_rb_get(const struct qcow2_state *s, const uint8_t *block, uint64_t i)
{
    switch (s->refcount_order) {
    case 0:
        return (block[i / 8] >> (i % 8)) & 1;
    case 1:
        return (block[i / 4] >> (2 * (i % 4))) & 3;
    case 2:
        return (block[i / 2] >> (4 * (i % 2))) & 15;
    case 3:
        return block[i];
    case 4:
        return be16_get(block + 2 * i);
    case 5:
        return be32_get(block + 4 * i);
    default:
        return be64_get(block + 8 * i);
    }
}

void
qcow2_rb_set(const struct qcow2_state *s, uint8_t *block, uint64_t i, uint64_t v)
{
    unsigned w = s->refcount_bits;
    if (w < 8) {
        unsigned per = 8 / w;
        unsigned shift = (unsigned)(i % per) * w;
        uint8_t mask = (uint8_t)(((1u << w) - 1) << shift);
        block[i / per] = (uint8_t)((block[i / per] & ~mask) | ((v << shift) & mask));
        return;
    }
    switch (w) {
    case 8:
        block[i] = (uint8_t)v;
        break;
    case 16:
        be16_put(block + 2 * i, (uint16_t)v);
        break;
    case 32:
        be32_put(block + 4 * i, (uint32_t)v);
        break;
    default:
        be64_put(block + 8 * i, v);
        break;
    }
}

void
qcow2_compressed_range(const struct qcow2_state *s, uint64_t l2e, uint64_t *off, uint64_t *len)
{
    uint64_t o = l2e & s->cluster_offset_mask;
    uint64_t sectors = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
    *off = o;
    *len = sectors * 512 - (o & 511);
}

/* The refcount block for table index @ti, or NULL when none exists. */
static int
get_block(struct qcow2_state *s, uint64_t ti, uint8_t **block)
{
    *block = NULL;
    if (ti >= s->rt_entries || (s->rt[ti] & RT_OFFSET_MASK) == 0)
        return 0;
    uint64_t off = s->rt[ti] & RT_OFFSET_MASK;
    if (!IS_ALIGNED(off, s->cluster_size))
        return qcow2_signal_corruption(s, "refcount block offset 0x%" PRIx64
                                          " (table entry %" PRIu64 ") is not cluster aligned",
                                       off, ti);
    return qcow2_cache_get(s->rb_cache, off, false, block);
}

int
qcow2_refcount_get(struct qcow2_state *s, uint64_t idx, uint64_t *rc)
{
    uint8_t *block;
    int r = get_block(s, idx >> s->rb_bits, &block);
    if (r < 0)
        return r;
    *rc = block ? qcow2_rb_get(s, block, idx & (s->rb_entries - 1)) : 0;
    qcow2_cache_put(s->rb_cache, block);
    return 0;
}

void
qcow2_mark_chunk_dirty(uint8_t *dirty, uint64_t i)
{
    dirty[i / 64] = 1; /* 64 eight-byte entries per 512-byte chunk */
}

int
qcow2_refcount_table_write(struct qcow2_state *s)
{
    uint64_t chunks = DIV_ROUND_UP(s->rt_entries, 64);
    uint8_t buf[512];
    for (uint64_t c = 0; c < chunks; c++) {
        if (!s->rt_dirty[c])
            continue;
        uint64_t n = MIN(64, s->rt_entries - c * 64);
        for (uint64_t j = 0; j < n; j++)
            be64_put(buf + 8 * j, s->rt[c * 64 + j]);
        s->deps_unsynced = true;
        int r = io_pwrite(s->file, buf, n * 8, s->h.refcount_table_offset + c * 512);
        if (r < 0)
            return r;
        s->rt_dirty[c] = 0;
    }
    return 0;
}

/* Grow the refcount table to at least @min_entries, placing the new table
 * and the refcount blocks that describe it at cluster index @area (every
 * cluster from @area on is beyond the old table's coverage, hence free). */
static int
grow_refcount_table(struct qcow2_state *s, uint64_t area, uint64_t min_entries)
{
    const uint64_t per_cluster = s->cluster_size / 8;
    uint64_t entries = MAX(min_entries, s->rt_entries + s->rt_entries / 2);
    uint64_t nblocks = 0, tclusters, area_end;

    for (;;) {
        entries = ALIGN_UP(entries, per_cluster);
        tclusters = entries / per_cluster;
        /* Blocks needed to cover the area itself: a fixed point. */
        for (;;) {
            area_end = area + nblocks + tclusters;
            uint64_t need = ((area_end - 1) >> s->rb_bits) - (area >> s->rb_bits) + 1;
            if (need == nblocks)
                break;
            nblocks = need;
        }
        if (((area_end - 1) >> s->rb_bits) < entries)
            break;
        entries = ((area_end - 1) >> s->rb_bits) + 1;
    }
    RETURN_ERR_IF(entries * 8 > QCOW2_MAX_REFTABLE_BYTES, -EFBIG,
                  "%s: qcow2: image too large: the refcount table would exceed %u bytes",
                  s->img->filename, QCOW2_MAX_REFTABLE_BYTES);

    uint64_t *nrt = calloc(entries, sizeof *nrt);
    uint8_t *ndirty = calloc(DIV_ROUND_UP(entries, 64), 1);
    uint8_t *block = malloc(s->cluster_size);
    uint8_t *tbuf = calloc(tclusters, s->cluster_size);
    int r = -ENOMEM;
    if (!nrt || !ndirty || !block || !tbuf) {
        err_set(-ENOMEM, "out of memory");
        goto out;
    }
    memcpy(nrt, s->rt, s->rt_entries * sizeof *nrt);

    /* Blocks at area .. area+nblocks-1, the table right after them. */
    uint64_t first_ti = area >> s->rb_bits;
    for (uint64_t k = 0; k < nblocks; k++) {
        uint64_t ti = first_ti + k;
        memset(block, 0, s->cluster_size);
        uint64_t lo = MAX(area, ti << s->rb_bits);
        uint64_t hi = MIN(area_end, (ti + 1) << s->rb_bits);
        for (uint64_t x = lo; x < hi; x++)
            qcow2_rb_set(s, block, x & (s->rb_entries - 1), 1);
        r = io_pwrite(s->file, block, s->cluster_size, (area + k) << s->cluster_bits);
        if (r < 0)
            goto out;
        nrt[ti] = (area + k) << s->cluster_bits;
    }
    for (uint64_t i = 0; i < entries; i++)
        be64_put(tbuf + 8 * i, nrt[i]);
    uint64_t toff = (area + nblocks) << s->cluster_bits;
    s->deps_unsynced = true;
    r = io_pwrite(s->file, tbuf, tclusters * s->cluster_size, toff);
    if (r < 0)
        goto out;
    /* New blocks and table durable, then the header switches to them. */
    r = qcow2_sync(s);
    if (r < 0)
        goto out;
    uint64_t old_off = s->h.refcount_table_offset;
    uint64_t old_clusters = s->h.refcount_table_clusters;
    s->h.refcount_table_offset = toff;
    s->h.refcount_table_clusters = (uint32_t)tclusters;
    r = qcow2_header_write_field(s, QCOW2_HDR_REFTABLE, 12);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        s->h.refcount_table_offset = old_off;
        s->h.refcount_table_clusters = (uint32_t)old_clusters;
        goto out;
    }
    free(s->rt);
    free(s->rt_dirty);
    s->rt = nrt;
    s->rt_dirty = ndirty;
    s->rt_entries = entries;
    nrt = NULL;
    ndirty = NULL;
    s->fresh_from = MAX(s->fresh_from, area_end);
    r = qcow2_free_clusters(s, old_off, old_clusters, false);
out:
    free(nrt);
    free(ndirty);
    free(block);
    free(tbuf);
    return r;
}

/* Create the refcount block for table index @ti in cluster @c, which lies
 * in the block's own range and is free. */
static int
create_block(struct qcow2_state *s, uint64_t ti, uint64_t c)
{
    if (ti >= s->rt_entries)
        return grow_refcount_table(s, c, ti + 1);
    uint8_t *block;
    int r = qcow2_cache_get(s->rb_cache, c << s->cluster_bits, true, &block);
    if (r < 0)
        return r;
    qcow2_rb_set(s, block, c & (s->rb_entries - 1), 1);
    qcow2_cache_mark_dirty(s->rb_cache, block);
    qcow2_cache_put(s->rb_cache, block);
    s->rt[ti] = c << s->cluster_bits;
    qcow2_mark_chunk_dirty(s->rt_dirty, ti);
    s->fresh_from = MAX(s->fresh_from, c + 1);
    STATS_ADD(s->img->stats, clusters_allocated, 1);
    return 0;
}

/* Create the refcount block for table index @ti in the free cluster @c of
 * another block's range (that block exists). */
static int
create_block_at(struct qcow2_state *s, uint64_t ti, uint64_t c)
{
    uint8_t *block;
    int r = qcow2_cache_get(s->rb_cache, c << s->cluster_bits, true, &block);
    if (r < 0)
        return r;
    qcow2_cache_mark_dirty(s->rb_cache, block);
    qcow2_cache_put(s->rb_cache, block);
    s->rt[ti] = c << s->cluster_bits;
    qcow2_mark_chunk_dirty(s->rt_dirty, ti);
    s->fresh_from = MAX(s->fresh_from, c + 1);
    STATS_ADD(s->img->stats, clusters_allocated, 1);
    return qcow2_refcount_update(s, c << s->cluster_bits, 1, 1);
}

/* Give table index @ti a refcount block placed wherever the allocator finds
 * room (for increments outside the allocator, which creates its blocks
 * in place). */
static int
ensure_block(struct qcow2_state *s, uint64_t ti)
{
    if (ti >= s->rt_entries) /* everything past the table's coverage is free */
        return grow_refcount_table(s, s->rt_entries << s->rb_bits, ti + 1);
    uint64_t off;
    bool fresh;
    int r = qcow2_alloc_clusters(s, 1, &off, NULL, &fresh);
    if (r < 0)
        return r;
    if (s->rt[ti] & RT_OFFSET_MASK) /* the allocation created it */
        return qcow2_free_clusters(s, off, 1, false);
    uint8_t *block;
    r = qcow2_cache_get(s->rb_cache, off, true, &block);
    if (r < 0)
        return r;
    qcow2_cache_mark_dirty(s->rb_cache, block);
    qcow2_cache_put(s->rb_cache, block);
    s->rt[ti] = off;
    qcow2_mark_chunk_dirty(s->rt_dirty, ti);
    return 0;
}

int
qcow2_refcount_update(struct qcow2_state *s, uint64_t offset, uint64_t n, int64_t delta)
{
    uint64_t idx = offset >> s->cluster_bits;
    /* A cluster losing references may become free and be reused for
     * something else: stop packing compressed streams into it. */
    if (delta < 0 && s->cpack && (s->cpack >> s->cluster_bits) - idx < n)
        s->cpack = 0;
    while (n > 0) {
        uint64_t ti = idx >> s->rb_bits;
        uint64_t i = idx & (s->rb_entries - 1);
        uint64_t chunk = MIN(n, s->rb_entries - i);
        uint8_t *block;
        int r = get_block(s, ti, &block);
        if (r < 0)
            return r;
        if (!block) {
            if (delta < 0)
                return qcow2_signal_corruption(
                    s, "freeing cluster %" PRIu64 " whose refcount block is missing", idx);
            r = ensure_block(s, ti);
            if (r < 0)
                return r;
            continue;
        }
        for (uint64_t k = 0; k < chunk; k++) {
            uint64_t old = qcow2_rb_get(s, block, i + k), v;
            /* The magnitude of @delta, computed unsigned: -INT64_MIN overflows. */
            if (delta < 0 && old < (uint64_t)0 - (uint64_t)delta) {
                qcow2_cache_put(s->rb_cache, block);
                return qcow2_signal_corruption(s, "refcount of cluster %" PRIu64
                                                  " would drop below zero",
                                               idx + k);
            }
            v = old + (uint64_t)delta;
            if (delta > 0 && (v > s->refcount_max || v < old)) {
                qcow2_cache_put(s->rb_cache, block);
                return QERR(s, -ERANGE,
                            "qcow2: refcount of cluster %" PRIu64 " would exceed %" PRIu64
                            " (refcount_bits=%u)",
                            idx + k, s->refcount_max, s->refcount_bits);
            }
            qcow2_rb_set(s, block, i + k, v);
            if (v == 0 && idx + k < s->free_hint)
                s->free_hint = idx + k;
        }
        qcow2_cache_mark_dirty(s->rb_cache, block);
        qcow2_cache_put(s->rb_cache, block);
        idx += chunk;
        n -= chunk;
    }
    return 0;
}

/* Clusters that must never be handed out, whatever the refcounts say: the
 * header and the active tables (QEMU's "constant" overlap check). */
static bool
overlaps_fixed_metadata(const struct qcow2_state *s, uint64_t start, uint64_t n)
{
    uint64_t a = start << s->cluster_bits, b = (start + n) << s->cluster_bits;
    uint64_t l1a = s->h.l1_table_offset, l1b = l1a + (uint64_t)s->l1_size * 8;
    uint64_t rta = s->h.refcount_table_offset,
             rtb = rta + ((uint64_t)s->h.refcount_table_clusters << s->cluster_bits);
    return start == 0 || (s->l1_size && a < l1b && l1a < b) || (a < rtb && rta < b);
}

/* How far past free_hint a scan looks for a full contiguous run before it
 * settles for a shorter one (when the caller accepts that). */
#define SCAN_WINDOW 4096

int
qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n, uint64_t *offset, uint64_t *got,
                     bool *fresh)
{
    uint64_t max_idx = (1ull << 56) >> s->cluster_bits;
    for (;;) {
        uint64_t idx = s->free_hint, run_start = idx, run_len = 0, first_free = UINT64_MAX;
        uint64_t best_start = 0, best_len = 0;
        uint64_t window_end = idx + MAX(SCAN_WINDOW, 4 * n);
        while (run_len < n) {
            RETURN_ERR_IF(idx >= max_idx, -EFBIG, "%s: qcow2: image file would exceed 64 PiB",
                          s->img->filename);
            if (got && idx >= window_end && best_len > 0)
                break; /* settle for the longest run seen */
            uint64_t ti = idx >> s->rb_bits;
            uint8_t *block;
            int r = get_block(s, ti, &block);
            if (r < 0)
                return r;
            uint64_t block_end = (ti + 1) << s->rb_bits;
            if (!block) { /* no block: the whole range is free */
                uint64_t take = MIN(block_end - idx, n - run_len);
                if (first_free == UINT64_MAX)
                    first_free = idx;
                run_len += take;
                idx += take;
            } else {
                while (run_len < n && idx < block_end) {
                    if (qcow2_rb_get(s, block, idx & (s->rb_entries - 1)) == 0) {
                        if (first_free == UINT64_MAX)
                            first_free = idx;
                        run_len++;
                    } else {
                        run_start = idx + 1;
                        run_len = 0;
                    }
                    idx++;
                    if (run_len > best_len) {
                        best_start = run_start;
                        best_len = run_len;
                    }
                }
                qcow2_cache_put(s->rb_cache, block);
            }
            if (run_len > best_len) {
                best_start = run_start;
                best_len = run_len;
            }
        }
        if (first_free != UINT64_MAX && first_free > s->free_hint)
            s->free_hint = first_free;
        if (run_len < n) {
            run_start = best_start;
            run_len = best_len;
        }
        uint64_t count = MIN(run_len, n);

        /* Refcounts of 0 on the header or the active tables mean the refcount
         * structure is damaged: allocating there (data or a new refcount
         * block) would overwrite live metadata. */
        if (overlaps_fixed_metadata(s, run_start, count))
            return qcow2_signal_corruption(s, "allocator chose clusters %" PRIu64 "..%" PRIu64
                                              " that hold the header or active tables "
                                              "(their refcount is 0)",
                                           run_start, run_start + count - 1);

        /* Every block covering the run must exist.  The missing ones go
         * together at the start of the run (each new one placed where an
         * earlier one, or itself, describes it), so a run spanning many
         * blocks is not cut into pieces by them; then scan again. */
        bool created = false;
        uint64_t place = run_start;
        for (uint64_t ti = run_start >> s->rb_bits; ti <= (run_start + count - 1) >> s->rb_bits;
             ti++) {
            if (ti < s->rt_entries && (s->rt[ti] & RT_OFFSET_MASK))
                continue;
            if (ti >= s->rt_entries) { /* the table grows: it places its own blocks */
                if (!created) {
                    int r = create_block(s, ti, MAX(run_start, ti << s->rb_bits));
                    if (r < 0)
                        return r;
                    created = true;
                }
                break;
            }
            uint64_t c = place, pti = place >> s->rb_bits;
            if (pti != ti && !(s->rt[pti] & RT_OFFSET_MASK))
                c = MAX(run_start, ti << s->rb_bits); /* nothing describes @place */
            int r = (c >> s->rb_bits) == ti ? create_block(s, ti, c) : create_block_at(s, ti, c);
            if (r < 0)
                return r;
            created = true;
            if (c == place)
                place++;
        }
        if (created)
            continue;

        int r = qcow2_refcount_update(s, run_start << s->cluster_bits, count, 1);
        if (r < 0)
            return r;
        *fresh = run_start >= s->fresh_from;
        s->fresh_from = MAX(s->fresh_from, run_start + count);
        if (run_start == s->free_hint)
            s->free_hint = run_start + count;
        *offset = run_start << s->cluster_bits;
        if (got)
            *got = count;
        STATS_ADD(s->img->stats, clusters_allocated, count);
        return 0;
    }
}

int
qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t n, bool punch)
{
    if (n == 0)
        return 0;
    if (s->nb_pending > 0) {
        struct qcow2_pending_free *last = &s->pending[s->nb_pending - 1];
        if (last->punch == punch && last->offset + (last->nclusters << s->cluster_bits) == offset) {
            last->nclusters += n;
            return 0;
        }
    }
    if (s->nb_pending == s->cap_pending) {
        size_t cap = s->cap_pending ? s->cap_pending * 2 : 64;
        struct qcow2_pending_free *p = realloc(s->pending, cap * sizeof *p);
        if (!p)
            return err_set(-ENOMEM, "out of memory");
        s->pending = p;
        s->cap_pending = cap;
    }
    s->pending[s->nb_pending++] = (struct qcow2_pending_free){ offset, n, punch };
    return 0;
}

int
qcow2_free_l2_entry(struct qcow2_state *s, uint64_t l2e, bool punch)
{
    if (l2e & QCOW_OFLAG_COMPRESSED) {
        uint64_t off, len;
        qcow2_compressed_range(s, l2e, &off, &len);
        uint64_t first = off >> s->cluster_bits;
        uint64_t last = (off + len - 1) >> s->cluster_bits;
        /* One reference per host cluster the stream overlaps. */
        return qcow2_free_clusters(s, first << s->cluster_bits, last - first + 1, false);
    }
    uint64_t host = l2e & L2E_OFFSET_MASK;
    if (host == 0 || s->external_data)
        return 0;
    return qcow2_free_clusters(s, host, 1, punch);
}

static int
cmp_pending(const void *a, const void *b)
{
    uint64_t x = ((const struct qcow2_pending_free *)a)->offset;
    uint64_t y = ((const struct qcow2_pending_free *)b)->offset;
    return x < y ? -1 : x > y;
}

/* Sort the queue by offset and merge neighbours, so that frees scattered
 * over the file (emptying a fragmented image) take few refcount block
 * visits and few hole punches.  Two entries for one cluster (freed twice)
 * stay separate: each is one decrement. */
static void
sort_pending(struct qcow2_state *s)
{
    if (s->nb_pending < 2)
        return;
    qsort(s->pending, s->nb_pending, sizeof *s->pending, cmp_pending);
    size_t n = 0;
    for (size_t i = 0; i < s->nb_pending; i++) {
        struct qcow2_pending_free *last = n ? &s->pending[n - 1] : NULL;
        const struct qcow2_pending_free *p = &s->pending[i];
        if (last && last->punch == p->punch &&
            last->offset + (last->nclusters << s->cluster_bits) == p->offset)
            last->nclusters += p->nclusters;
        else
            s->pending[n++] = *p;
    }
    s->nb_pending = n;
}

int
qcow2_apply_pending_frees(struct qcow2_state *s)
{
    int r = 0;
    size_t i;
    sort_pending(s);
    for (i = 0; i < s->nb_pending; i++) {
        struct qcow2_pending_free *p = &s->pending[i];
        /* One refcount block at a time: each step is all or nothing, so on
         * failure the entry keeps exactly the clusters not yet decremented. */
        while (p->nclusters > 0) {
            uint64_t idx = p->offset >> s->cluster_bits;
            uint64_t n = MIN(p->nclusters, s->rb_entries - (idx & (s->rb_entries - 1)));
            r = qcow2_refcount_update(s, p->offset, n, -1);
            if (r < 0)
                goto out;
            /* Punch only clusters nobody references any more, a run of them
             * per call.  Punching is advisory: a failure leaves the space
             * allocated, nothing else. */
            uint64_t run = 0;
            for (uint64_t k = 0; p->punch && k <= n; k++) {
                uint64_t rc = 1;
                if (k < n && qcow2_refcount_get(s, idx + k, &rc) < 0)
                    err_clear();
                if (k < n && rc == 0) {
                    run++;
                    continue;
                }
                if (run && io_discard(s->file, (idx + k - run) << s->cluster_bits,
                                      run << s->cluster_bits) < 0)
                    err_clear();
                run = 0;
            }
            p->offset += n << s->cluster_bits;
            p->nclusters -= n;
        }
    }
out:
    /* Drop the fully applied entries; keep the rest for the next attempt. */
    if (i > 0 && i < s->nb_pending)
        memmove(s->pending, s->pending + i, (s->nb_pending - i) * sizeof *s->pending);
    s->nb_pending -= i;
    return r;
}
