// SPDX-License-Identifier: MIT
/* Changing how much of the guest disk the active layer maps: resize (grow,
 * shrink) and make_empty.
 *
 * Grow: a larger L1 table first (qcow2_l1_grow makes it durable), then the
 * size field; the new range reads as zeros because nothing maps it.  The
 * bytes between the old end and the end of its last cluster are zeroed, so
 * nothing written past an earlier, unaligned end shows up again.
 *
 * Shrink: refused while the range cut off holds guest data in this layer;
 * otherwise the clusters past the new end are deallocated, L2 tables wholly
 * past it are unlinked from the L1 table (whose size stays), and the size
 * field is written last.  The flush ordering of qcow2-flush.c makes every
 * step crash safe: at worst clusters leak. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "error.h"
#include "minmax.h"
#include "qcow2-internal.h"

/* The first guest offset in [@from, @to) where this layer holds data (a
 * normal or compressed cluster), or @to.  Needs s->lock. */
static int
find_data(struct qcow2_state *s, uint64_t from, uint64_t to, uint64_t *found)
{
    for (uint64_t pos = from; pos < to;) {
        struct qcow2_extent ext;
        int r = qcow2_map(s, pos, to - pos, &ext);
        if (r < 0)
            return r;
        if (ext.type == QCOW2_NORMAL || ext.type == QCOW2_COMPRESSED) {
            *found = pos;
            return 0;
        }
        pos += ext.len;
    }
    *found = to;
    return 0;
}

/* Whether guest bytes [@off, @off+@len), within one cluster, read as zeros
 * in this layer (not consulting the backing file). */
static int
tail_is_zero(struct qcow2_state *s, uint64_t off, uint64_t len, bool *zero)
{
    struct qcow2_extent ext;
    int r = qcow2_map(s, off, len, &ext);
    *zero = true;
    if (r < 0 || (ext.type != QCOW2_NORMAL && ext.type != QCOW2_COMPRESSED))
        return r;
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    uint64_t in = qcow2_offset_into_cluster(s, off);
    if (ext.type == QCOW2_COMPRESSED)
        r = qcow2_read_compressed(s, ext.l2e, buf);
    else
        r = qcow2_read_cluster_part(s, &ext, off, buf + in, len, false);
    for (uint64_t i = 0; r == 0 && i < len; i++)
        if (buf[in + i]) {
            *zero = false;
            break;
        }
    free(buf);
    return r;
}

/* Unlink and free the L2 tables of L1 entries [@first, l1_size). */
static int
drop_l2_tables(struct qcow2_state *s, uint64_t first)
{
    for (uint64_t i = first; i < s->l1_size; i++) {
        uint64_t off = s->l1[i] & L1E_OFFSET_MASK;
        if (!off)
            continue;
        qcow2_cache_discard(s->l2_cache, off);
        s->l1[i] = 0;
        qcow2_mark_chunk_dirty(s->l1_dirty, i);
        s->tables_unsynced = true;
        int r = qcow2_free_clusters(s, off, 1, true);
        if (r < 0)
            return r;
    }
    return 0;
}

static int
shrink(struct qcow2_state *s, uint64_t size)
{
    const uint64_t cs = s->cluster_size;
    const uint64_t old = s->h.size;
    const char *fn = s->img->filename;
    uint64_t cut = ALIGN_UP(size, cs), found;
    int r = find_data(s, cut, ALIGN_UP(old, cs), &found);
    if (r == 0 && found < ALIGN_UP(old, cs))
        return err_set(-ENOTEMPTY,
                       "%s: cannot shrink to %" PRIu64 " bytes: guest data at offset %" PRIu64
                       " would be cut off (discard it first)", fn, size, found);
    if (r == 0 && cut > size) {
        bool zero;
        r = tail_is_zero(s, size, MIN(cut, old) - size, &zero);
        if (r == 0 && !zero)
            return err_set(-ENOTEMPTY,
                           "%s: cannot shrink to %" PRIu64 " bytes: guest data in the "
                           "last cluster past the new end (zero it first)", fn, size);
    }
    if (r == 0 && cut < ALIGN_UP(old, cs))
        r = qcow2_deallocate(s, cut, ALIGN_UP(old, cs) - cut, true);
    if (r == 0)
        r = drop_l2_tables(s, DIV_ROUND_UP(size, cs << s->l2_bits));
    if (r == 0 && s->external_data && s->data_file_raw)
        r = io_truncate(s->data_file, size);
    if (r == 0)
        r = qcow2_flush_locked(s);
    return r;
}

static int
grow(struct qcow2_state *s, uint64_t size)
{
    const uint64_t cs = s->cluster_size;
    const uint64_t old = s->h.size;
    uint64_t need = DIV_ROUND_UP(size, cs << s->l2_bits);
    RETURN_ERR_IF(need > UINT32_MAX, -EFBIG, "%s: qcow2: size %" PRIu64 " is too large",
                  s->img->filename, size);
    int r = qcow2_flush_locked(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0)
        r = qcow2_l1_grow(s, (uint32_t)need);
    /* Stale bytes past an unaligned old end (left by another tool). */
    if (r == 0 && old % cs) {
        bool zero;
        uint64_t tail = MIN(ALIGN_UP(old, cs), size) - old;
        r = tail_is_zero(s, old, tail, &zero);
        if (r == 0 && !zero) {
            uint8_t *z = calloc(1, tail);
            r = z ? qcow2_write_locked(s, z, tail, old) : err_set(-ENOMEM, "out of memory");
            free(z);
        }
    }
    if (r == 0 && s->external_data && s->data_file_raw)
        r = io_truncate(s->data_file, size);
    if (r == 0)
        r = qcow2_flush_locked(s);
    return r;
}

int
qcow2_resize(struct topcow_image *img, uint64_t size, unsigned flags,
             enum topcow_prealloc prealloc)
{
    (void)flags; /* the core checked TOPCOW_RESIZE_SHRINK */
    struct qcow2_state *s = qcow2_state(img);
    const uint64_t old = s->h.size;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (s->corrupt)
        r = QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused");
    else if (s->h.version < 3 && s->nb_snapshots > 0)
        r = QERR(s, -ENOTSUP, "qcow2: a compat=0.10 image with internal snapshots cannot "
                              "be resized");
    if (r == 0)
        r = size < old ? shrink(s, size) : grow(s, size);
    if (r == 0) {
        s->h.size = size;
        r = qcow2_header_write_field(s, QCOW2_HDR_SIZE, 8);
        if (r == 0)
            r = qcow2_sync(s);
        if (r == 0)
            img->size = size;
        else
            s->h.size = old;
    }
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && size > old && prealloc != TOPCOW_PREALLOC_OFF)
        r = qcow2_preallocate(s, prealloc, ALIGN_UP(old, s->cluster_size));
    return r;
}

int
qcow2_make_empty(struct topcow_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (s->corrupt)
        r = QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused");
    else if (s->external_data)
        r = QERR(s, -ENOTSUP, "qcow2: an image with an external data file cannot be emptied");
    if (r == 0)
        r = qcow2_deallocate(s, 0, ALIGN_UP(s->h.size, s->cluster_size), true);
    if (r == 0)
        r = qcow2_flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}
