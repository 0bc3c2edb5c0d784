// SPDX-License-Identifier: MIT
/* Write ordering of the qcow2 driver (docs/internals/qcow2-write-ordering.md).
 *
 * A crash may leak clusters but must never leave durable metadata pointing at
 * something that is not durable.  The ordered stages of a flush are:
 *   1. refcount blocks (increments only; decrements are deferred), then the
 *      refcount table chunks that point at new blocks (after an fsync);
 *   2. fsync: refcounts, and guest data written into new clusters, are durable;
 *   3. L2 tables, fsync;  4. L1 chunks, fsync;
 *   5. the deferred decrements (nothing durable references those clusters
 *      now), then a final fsync.
 * Evicting a dirty L2 table runs stages 1-2 first (qcow2_prepare_l2_write). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "byteorder.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

int
qcow2_sync(struct qcow2_state *s)
{
    int r = 0;
    if (!s->unsafe && s->data_file != s->file)
        r = io_flush(s->data_file);
    if (!s->unsafe && r == 0)
        r = io_flush(s->file);
    /* After a failed fsync nothing is known to be durable: keep the flags so
     * the next flush still orders its writes. */
    if (r == 0) {
        s->deps_unsynced = false;
        s->tables_unsynced = false;
    }
    return r;
}

bool
qcow2_metadata_dirty(struct qcow2_state *s)
{
    if (s->deps_unsynced || s->tables_unsynced || s->nb_pending ||
        qcow2_cache_has_dirty(s->l2_cache) || qcow2_cache_has_dirty(s->rb_cache))
        return true;
    for (uint64_t c = 0; c < DIV_ROUND_UP(s->l1_size, 64); c++)
        if (s->l1_dirty[c])
            return true;
    for (uint64_t c = 0; c < DIV_ROUND_UP(s->rt_entries, 64); c++)
        if (s->rt_dirty[c])
            return true;
    return false;
}

int
qcow2_prepare_l2_write(struct qcow2_state *s)
{
    int r = qcow2_cache_flush(s->rb_cache);
    if (r < 0)
        return r;
    bool rt_dirty = false;
    for (uint64_t c = 0; c < DIV_ROUND_UP(s->rt_entries, 64) && !rt_dirty; c++)
        rt_dirty = s->rt_dirty[c];
    if (rt_dirty) {
        /* New refcount blocks durable before the table points at them. */
        if (s->deps_unsynced && (r = qcow2_sync(s)) < 0)
            return r;
        r = qcow2_refcount_table_write(s);
        if (r < 0)
            return r;
    }
    if (s->deps_unsynced)
        r = qcow2_sync(s);
    return r;
}

int
qcow2_l1_write(struct qcow2_state *s)
{
    uint8_t buf[512];
    for (uint64_t c = 0; c < DIV_ROUND_UP(s->l1_size, 64); c++) {
        if (!s->l1_dirty[c])
            continue;
        uint64_t n = MIN(64, s->l1_size - c * 64);
        for (uint64_t j = 0; j < n; j++)
            be64_put(buf + 8 * j, s->l1[c * 64 + j]);
        s->tables_unsynced = true;
        int r = io_pwrite(s->file, buf, n * 8, s->h.l1_table_offset + c * 512);
        if (r < 0)
            return r;
        s->l1_dirty[c] = 0;
    }
    return 0;
}

static bool
l1_has_dirty(const struct qcow2_state *s)
{
    for (uint64_t c = 0; c < DIV_ROUND_UP(s->l1_size, 64); c++)
        if (s->l1_dirty[c])
            return true;
    return false;
}

int
qcow2_flush_locked(struct qcow2_state *s)
{
    if (s->read_only)
        return 0;
    int r = qcow2_prepare_l2_write(s);
    if (r == 0)
        r = qcow2_cache_flush(s->l2_cache);
    if (r == 0 && l1_has_dirty(s)) {
        if (s->tables_unsynced)
            r = qcow2_sync(s);
        if (r == 0)
            r = qcow2_l1_write(s);
    }
    if (r == 0 && s->nb_pending > 0) {
        if (s->tables_unsynced || s->deps_unsynced)
            r = qcow2_sync(s);
        if (r == 0)
            r = qcow2_apply_pending_frees(s);
        if (r == 0)
            r = qcow2_cache_flush(s->rb_cache);
    }
    /* Also covers in-place data writes, which set no flag. */
    if (r == 0)
        r = qcow2_sync(s);
    return r;
}

int
qcow2_mark_dirty(struct qcow2_state *s)
{
    if (s->dirty_bit_set || s->h.version < 3)
        return 0;
    /* Durable before any allocation whose refcounts may then lag behind. */
    int r = qcow2_sync(s);
    if (r < 0)
        return r;
    s->h.incompatible_features |= QCOW2_INCOMPAT_DIRTY;
    r = qcow2_header_write_field(s, QCOW2_HDR_INCOMPAT, 8);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        s->h.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
        return r;
    }
    s->dirty_bit_set = true;
    return 0;
}

int
qcow2_mark_clean(struct qcow2_state *s)
{
    if (!s->dirty_bit_set)
        return 0;
    s->h.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    int r = qcow2_header_write_field(s, QCOW2_HDR_INCOMPAT, 8);
    bool unsafe = s->unsafe;
    s->unsafe = false; /* the clean mark itself is always made durable */
    if (r == 0)
        r = qcow2_sync(s);
    s->unsafe = unsafe;
    if (r < 0) {
        s->h.incompatible_features |= QCOW2_INCOMPAT_DIRTY;
        return r;
    }
    s->dirty_bit_set = false;
    return 0;
}

int
qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bool mark = !s->read_only && !s->corrupt && s->h.version >= 3;
    if (mark) {
        /* Mark the image so QEMU (and we) refuse to write it until repaired. */
        s->h.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
        if (qcow2_header_write_field(s, QCOW2_HDR_INCOMPAT, 8) == 0)
            qcow2_sync(s);
    }
    s->corrupt = true;
    return err_set(-EUCLEAN, "%s: qcow2: %s%s", s->img->filename, msg,
                   mark ? "; image marked corrupt" : "");
}
