// SPDX-License-Identifier: MIT
/* The internal snapshot table (spec: "Snapshots"): reading and validating
 * it.  Every entry is kept whole, unknown extra data included, so that a
 * later rewrite of the table preserves what other tools stored. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

#define SNAPSHOT_TABLE_MAX (64u << 20)
#define SNAPSHOT_EXTRA_MAX 1024u

void
qcow2_snapshot_table_free(struct qcow2_state *s)
{
    for (unsigned i = 0; i < s->nb_snapshots; i++) {
        free(s->snapshots[i].id_str);
        free(s->snapshots[i].name);
        free(s->snapshots[i].extra_data);
    }
    free(s->snapshots);
    s->snapshots = NULL;
    s->nb_snapshots = 0;
}

static char *
dup_bytes(const uint8_t *p, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, p, n);
        r[n] = '\0';
    }
    return r;
}

/* The part of the snapshot table read so far. */
struct table_buf {
    uint64_t off;    /* file offset of the table */
    uint64_t avail;  /* bytes that may be read */
    uint64_t loaded; /* bytes in data */
    uint8_t *data;
};

/* Make the first @need bytes (<= tb->avail) of the table available, reading
 * in growing steps. */
static int
table_load(struct qcow2_state *s, struct table_buf *tb, uint64_t need)
{
    if (need <= tb->loaded)
        return 0;
    uint64_t want = MIN(tb->avail, MAX(need, MAX(2 * tb->loaded, (uint64_t)65536)));
    uint8_t *d = realloc(tb->data, want);
    if (!d)
        return err_set(-ENOMEM, "out of memory");
    tb->data = d;
    int r = io_pread(s->file, d + tb->loaded, want - tb->loaded, tb->off + tb->loaded);
    if (r == 0)
        tb->loaded = want;
    return r;
}

int
qcow2_snapshot_table_read(struct qcow2_state *s)
{
    uint32_t n = s->h.nb_snapshots;
    if (n == 0)
        return 0;
    uint64_t file_size;
    int r = io_get_size(s->file, &file_size);
    if (r < 0)
        return r;
    uint64_t off = s->h.snapshots_offset;
    RETURN_ERR_IF(off >= file_size, -EUCLEAN,
                  "%s: qcow2: snapshot table offset 0x%" PRIx64 " is past the end of the file",
                  s->img->filename, off);

    s->snapshots = calloc(n, sizeof *s->snapshots);
    if (!s->snapshots)
        return err_set(-ENOMEM, "out of memory");

    /* Read the table as far as parsing gets, bounded by the limit and the
     * file: the end is only known once every entry is parsed. */
    uint64_t avail = MIN(file_size - off, SNAPSHOT_TABLE_MAX);
    struct table_buf tb = { .off = off, .avail = avail };
    uint8_t *buf = NULL;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        if (pos > avail || avail - pos < 40 || (r = table_load(s, &tb, pos + 40)) < 0) {
            if (r < 0)
                break;
            r = err_set(-EUCLEAN, "%s: qcow2: snapshot table entry %u is past the end of the "
                                  "file or table limit", s->img->filename, i);
            break;
        }
        buf = tb.data;
        const uint8_t *p = buf + pos;
        sn->l1_table_offset = be64_get(p);
        sn->l1_size = be32_get(p + 8);
        uint16_t id_len = be16_get(p + 12), name_len = be16_get(p + 14);
        sn->date_sec = be32_get(p + 16);
        sn->date_nsec = be32_get(p + 20);
        sn->vm_clock_nsec = be64_get(p + 24);
        sn->vm_state_size = be32_get(p + 32);
        sn->extra_data_size = be32_get(p + 36);
        sn->icount = -1;
        uint64_t need = 40ull + sn->extra_data_size + id_len + name_len;
        if (sn->extra_data_size > SNAPSHOT_EXTRA_MAX || need > avail - pos) {
            r = err_set(-EUCLEAN, "%s: qcow2: snapshot table entry %u is truncated or too large",
                        s->img->filename, i);
            break;
        }
        if ((r = table_load(s, &tb, pos + need)) < 0)
            break;
        buf = tb.data;
        p = buf + pos;
        const uint8_t *extra = p + 40;
        if (sn->extra_data_size >= 8)
            sn->vm_state_size = be64_get(extra);
        if (sn->extra_data_size >= 16)
            sn->disk_size = be64_get(extra + 8);
        else
            sn->disk_size = s->h.size;
        if (sn->extra_data_size >= 24)
            sn->icount = (int64_t)be64_get(extra + 16);
        sn->extra_data = malloc(sn->extra_data_size ? sn->extra_data_size : 1);
        sn->id_str = dup_bytes(extra + sn->extra_data_size, id_len);
        sn->name = dup_bytes(extra + sn->extra_data_size + id_len, name_len);
        s->nb_snapshots = i + 1;
        if (!sn->extra_data || !sn->id_str || !sn->name) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        memcpy(sn->extra_data, extra, sn->extra_data_size);
        uint64_t l1_bytes = (uint64_t)sn->l1_size * 8, l1_end;
        if (sn->l1_size && (!IS_ALIGNED(sn->l1_table_offset, s->cluster_size) ||
                            l1_bytes > QCOW2_MAX_L1_BYTES ||
                            ADD_OVERFLOW(sn->l1_table_offset, l1_bytes, &l1_end) ||
                            l1_end > file_size)) {
            r = err_set(-EUCLEAN, "%s: qcow2: snapshot '%s' has an invalid L1 table "
                                  "(offset 0x%" PRIx64 ", %u entries)",
                        s->img->filename, sn->name, sn->l1_table_offset, sn->l1_size);
            break;
        }
        pos += ALIGN_UP(need, 8);
    }
    free(tb.data);
    return r;
}

/* ---- snapshot operations ---------------------------------------------------
 *
 * Crash ordering (docs/internals/qcow2-write-ordering.md): references are
 * counted before anything durable points at them, the snapshot table is
 * written to new clusters and durable before the header switches to it, and
 * decrements are queued (applied once the unlinking metadata is durable).
 * A crash between steps leaves leaks at worst. */

#define SNAPSHOT_EXTRA_WRITTEN 24 /* vm_state_size_large, disk_size, icount */

int
qcow2_snapshot_find(const struct qcow2_state *s, const char *id_or_name)
{
    for (unsigned i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snapshots[i].id_str, id_or_name))
            return (int)i;
    for (unsigned i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snapshots[i].name, id_or_name))
            return (int)i;
    return -1;
}

/* Apply @delta to the refcount of every cluster the tree under @l1 uses: L2
 * tables and data clusters (each cluster a compressed stream overlaps, once
 * per stream).  Increments are immediate; decrements are queued.  Stops
 * after @limit single-cluster updates (UINT64_MAX: all) and counts them in
 * *@steps, so a failed increment pass can be undone exactly. */
static int
tree_refcounts(struct qcow2_state *s, const uint64_t *l1, uint32_t l1_size, int delta,
               uint64_t limit, uint64_t *steps)
{
    *steps = 0;
#define STEP(off)                                                                                 \
    do {                                                                                           \
        if (*steps >= limit)                                                                       \
            goto done;                                                                             \
        r = delta > 0 ? qcow2_refcount_update(s, (off), 1, delta)                                 \
                      : delta < 0 ? qcow2_free_clusters(s, (off), 1, false)                        \
                                  : 0;                                                             \
        if (r < 0)                                                                                 \
            goto done;                                                                             \
        (*steps)++;                                                                                \
    } while (0)
    int r = 0;
    uint8_t *l2 = NULL;
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2off = l1[i] & L1E_OFFSET_MASK;
        if (!l2off)
            continue;
        if (!IS_ALIGNED(l2off, s->cluster_size)) {
            r = qcow2_signal_corruption(s, "L2 table offset 0x%" PRIx64 " is not aligned",
                                        l2off);
            goto done;
        }
        r = qcow2_cache_get(s->l2_cache, l2off, false, &l2);
        if (r < 0)
            goto done;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2e_get(s, l2, j);
            if (e & QCOW_OFLAG_COMPRESSED) {
                uint64_t off, len;
                qcow2_compressed_range(s, e, &off, &len);
                for (uint64_t c = off >> s->cluster_bits; c <= (off + len - 1) >> s->cluster_bits;
                     c++)
                    STEP(c << s->cluster_bits);
            } else if ((e & L2E_OFFSET_MASK) && !s->external_data) {
                STEP(e & L2E_OFFSET_MASK);
            }
        }
        qcow2_cache_put(s->l2_cache, l2);
        l2 = NULL;
        STEP(l2off);
    }
done:
    qcow2_cache_put(s->l2_cache, l2);
    return r;
#undef STEP
}

int
qcow2_recompute_copied(struct qcow2_state *s)
{
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2off = s->l1[i] & L1E_OFFSET_MASK, rc;
        if (!l2off)
            continue;
        int r = qcow2_refcount_get(s, l2off >> s->cluster_bits, &rc);
        if (r < 0)
            return r;
        uint64_t want = rc == 1 ? QCOW_OFLAG_COPIED : 0;
        if ((s->l1[i] & QCOW_OFLAG_COPIED) != want) {
            s->l1[i] = (s->l1[i] & ~QCOW_OFLAG_COPIED) | want;
            qcow2_mark_chunk_dirty(s->l1_dirty, i);
        }
        /* Entries are fixed even in a table shared with a snapshot: only
         * the COPIED bits change, which inactive trees ignore, and the
         * active tree's writes rely on them. */
        uint8_t *l2;
        r = qcow2_cache_get(s->l2_cache, l2off, false, &l2);
        if (r < 0)
            return r;
        bool changed = false;
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t e = qcow2_l2e_get(s, l2, j), host = e & L2E_OFFSET_MASK, ne = e;
            if (e & QCOW_OFLAG_COMPRESSED)
                ne = e & ~QCOW_OFLAG_COPIED;
            else if (host && !s->external_data) {
                r = qcow2_refcount_get(s, host >> s->cluster_bits, &rc);
                ne = (e & ~QCOW_OFLAG_COPIED) | (rc == 1 ? QCOW_OFLAG_COPIED : 0);
            }
            if (ne != e) {
                qcow2_l2e_set(s, l2, j, ne, qcow2_l2_bitmap_get(s, l2, j));
                changed = true;
            }
        }
        if (changed)
            qcow2_cache_mark_dirty(s->l2_cache, l2);
        qcow2_cache_put(s->l2_cache, l2);
        if (r < 0)
            return r;
    }
    return 0;
}

static size_t
entry_size(const struct qcow2_snapshot *sn)
{
    return ALIGN_UP(40 + sn->extra_data_size + strlen(sn->id_str) + strlen(sn->name), 8);
}

/* Write @list as the new snapshot table (in new clusters), make it durable,
 * switch the header to it, and queue the old table's clusters for freeing.
 * Needs the lock and durable metadata (a flush) for what the entries name. */
static int
write_table(struct qcow2_state *s, struct qcow2_snapshot *list, unsigned n)
{
    uint64_t size = 0;
    for (unsigned i = 0; i < n; i++)
        size += entry_size(&list[i]);
    RETURN_ERR_IF(size > SNAPSHOT_TABLE_MAX, -EFBIG, "%s: qcow2: snapshot table too large",
                  s->img->filename);
    uint64_t off = 0;
    int r = 0;
    if (n) {
        uint8_t *buf = calloc(1, size);
        if (!buf)
            return err_set(-ENOMEM, "out of memory");
        uint64_t pos = 0;
        for (unsigned i = 0; i < n; i++) {
            const struct qcow2_snapshot *sn = &list[i];
            uint8_t *p = buf + pos;
            size_t idl = strlen(sn->id_str), nl = strlen(sn->name);
            be64_put(p, sn->l1_table_offset);
            be32_put(p + 8, sn->l1_size);
            be16_put(p + 12, (uint16_t)idl);
            be16_put(p + 14, (uint16_t)nl);
            be32_put(p + 16, sn->date_sec);
            be32_put(p + 20, sn->date_nsec);
            be64_put(p + 24, sn->vm_clock_nsec);
            be32_put(p + 32, (uint32_t)sn->vm_state_size);
            be32_put(p + 36, sn->extra_data_size);
            memcpy(p + 40, sn->extra_data, sn->extra_data_size);
            memcpy(p + 40 + sn->extra_data_size, sn->id_str, idl);
            memcpy(p + 40 + sn->extra_data_size + idl, sn->name, nl);
            pos += entry_size(sn);
        }
        bool fresh;
        r = qcow2_alloc_clusters(s, DIV_ROUND_UP(size, s->cluster_size), &off, NULL, &fresh);
        if (r == 0)
            r = io_pwrite(s->file, buf, size, off);
        free(buf);
        s->deps_unsynced = true;
    }
    /* The table, its refcounts and everything it names durable ... */
    if (r == 0)
        r = qcow2_flush_locked(s);
    if (r < 0) {
        if (off)
            qcow2_free_clusters(s, off, DIV_ROUND_UP(size, s->cluster_size), false);
        return r;
    }
    /* ... then the header switches to it (12 bytes within one sector). */
    uint64_t old_off = s->h.snapshots_offset, old_size = 0;
    for (unsigned i = 0; i < s->nb_snapshots; i++)
        old_size += entry_size(&s->snapshots[i]);
    uint32_t old_n = s->h.nb_snapshots;
    s->h.nb_snapshots = n;
    s->h.snapshots_offset = off;
    r = qcow2_header_write_field(s, QCOW2_HDR_SNAPSHOTS, 12);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        s->h.nb_snapshots = old_n;
        s->h.snapshots_offset = old_off;
        return r;
    }
    if (old_n && old_size)
        r = qcow2_free_clusters(s, old_off, DIV_ROUND_UP(old_size, s->cluster_size), false);
    return r;
}

/* Write the active L1 (all of it) to new clusters; *@off receives where. */
static int
copy_active_l1(struct qcow2_state *s, uint64_t *off)
{
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    *off = 0;
    if (!bytes)
        return 0;
    uint8_t *buf = malloc(bytes);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    for (uint32_t i = 0; i < s->l1_size; i++)
        be64_put(buf + 8 * i, s->l1[i]);
    bool fresh;
    int r = qcow2_alloc_clusters(s, DIV_ROUND_UP(bytes, s->cluster_size), off, NULL, &fresh);
    if (r == 0)
        r = io_pwrite(s->file, buf, bytes, *off);
    s->deps_unsynced = true;
    free(buf);
    return r;
}

unsigned
qcow2_snapshot_count(struct topcow_image *img)
{
    return qcow2_state(img)->nb_snapshots;
}

int
qcow2_snapshot_get(struct topcow_image *img, unsigned index, struct topcow_snapshot *out)
{
    const struct qcow2_snapshot *sn = &qcow2_state(img)->snapshots[index];
    out->id = sn->id_str;
    out->name = sn->name;
    out->vm_state_size = sn->vm_state_size;
    out->date_sec = sn->date_sec;
    out->date_nsec = sn->date_nsec;
    out->vm_clock_nsec = sn->vm_clock_nsec;
    out->icount = sn->icount;
    out->disk_size = sn->disk_size;
    return 0;
}

static int
snapshots_allowed(struct qcow2_state *s)
{
    RETURN_ERR_IF(s->external_data, -ENOTSUP,
                  "%s: qcow2: internal snapshots are not possible with an external data file",
                  s->img->filename);
    RETURN_ERR_IF(s->corrupt, -EIO, "%s: qcow2: image is marked corrupt", s->img->filename);
    return 0;
}

/* The start of every snapshot operation: the checks, @id_or_name looked up
 * into *@idx (unless NULL), durable metadata, and the dirty bit.
 *
 * Snapshot operations change refcounts and COPIED flags in separate writes;
 * a crash between them leaves flags that disagree with the refcounts (a
 * leak or an extra copy-on-write at worst, but check calls it corruption).
 * On v3 images the dirty bit covers that window: an image left dirty gets
 * its refcounts and COPIED flags rebuilt at the next read-write open, by
 * topcow and by QEMU alike.  Needs the lock. */
static int
op_begin(struct qcow2_state *s, const char *id_or_name, int *idx)
{
    int r = snapshots_allowed(s);
    if (r == 0 && id_or_name && (*idx = qcow2_snapshot_find(s, id_or_name)) < 0)
        r = QERR(s, -ENOENT, "snapshot '%s' not found", id_or_name);
    if (r == 0)
        r = qcow2_flush_locked(s);
    if (r == 0)
        r = qcow2_mark_dirty(s);
    return r;
}

/* Clear the dirty bit op_begin set (lazy-refcount images keep it until
 * close), once the operation's metadata is durable.  Returns @r. */
static int
op_end(struct qcow2_state *s, int r)
{
    return r < 0 || s->lazy_refcounts ? r : qcow2_mark_clean(s);
}

int
qcow2_snapshot_create(struct topcow_image *img, const char *name)
{
    struct qcow2_state *s = qcow2_state(img);
    RETURN_ERR_IF(strlen(name) > 65535 || !*name, -EINVAL,
                  "%s: snapshot name must be 1 to 65535 bytes", img->filename);
    pthread_mutex_lock(&s->lock);
    int r = s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS
                ? QERR(s, -EFBIG, "qcow2: too many snapshots")
                : op_begin(s, NULL, NULL);
    if (r < 0)
        goto out;

    /* Count the new tree's references; undo exactly on overflow. */
    uint64_t steps, undone;
    r = tree_refcounts(s, s->l1, s->l1_size, 1, UINT64_MAX, &steps);
    if (r < 0) {
        int e = r;
        if (tree_refcounts(s, s->l1, s->l1_size, -1, steps, &undone) == 0)
            qcow2_apply_pending_frees(s); /* never referenced: drop at once */
        r = e;
        goto out;
    }
    r = qcow2_recompute_copied(s); /* everything is shared now: COPIED clears */
    uint64_t l1off = 0;
    if (r == 0)
        r = copy_active_l1(s, &l1off);
    if (r < 0)
        goto out;

    struct qcow2_snapshot *list = calloc(s->nb_snapshots + 1, sizeof *list);
    struct qcow2_snapshot *sn = list ? &list[s->nb_snapshots] : NULL;
    uint64_t max_id = 0;
    for (unsigned i = 0; i < s->nb_snapshots; i++) {
        uint64_t id = strtoull(s->snapshots[i].id_str, NULL, 10);
        max_id = MAX(max_id, id);
    }
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%" PRIu64, max_id + 1);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (sn) {
        if (s->nb_snapshots)
            memcpy(list, s->snapshots, s->nb_snapshots * sizeof *list);
        sn->l1_table_offset = l1off;
        sn->l1_size = s->l1_size;
        sn->id_str = strdup(idbuf);
        sn->name = strdup(name);
        sn->date_sec = (uint32_t)now.tv_sec;
        sn->date_nsec = (uint32_t)(now.tv_nsec / 1000 * 1000); /* microseconds, as QEMU */
        sn->disk_size = s->h.size;
        sn->icount = 0; /* what qemu-img writes */
        sn->extra_data_size = SNAPSHOT_EXTRA_WRITTEN;
        sn->extra_data = calloc(1, SNAPSHOT_EXTRA_WRITTEN);
    }
    if (!sn || !sn->id_str || !sn->name || !sn->extra_data) {
        if (sn) {
            free(sn->id_str);
            free(sn->name);
            free(sn->extra_data);
        }
        free(list);
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    be64_put(sn->extra_data + 8, sn->disk_size);
    be64_put(sn->extra_data + 16, 0);
    r = write_table(s, list, s->nb_snapshots + 1);
    if (r < 0) {
        free(sn->id_str);
        free(sn->name);
        free(sn->extra_data);
        free(list);
        goto out;
    }
    free(s->snapshots);
    s->snapshots = list;
    s->nb_snapshots++;
    r = qcow2_flush_locked(s);
out:
    r = op_end(s, r);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Grow the active L1 table to @n entries: a new table in new clusters, then
 * the header (size and offset: 12 bytes in one sector), then the old one is
 * freed.  Needs the lock and durable metadata. */
int
qcow2_l1_grow(struct qcow2_state *s, uint32_t n)
{
    if (n <= s->l1_size)
        return 0;
    RETURN_ERR_IF((uint64_t)n * 8 > QCOW2_MAX_L1_BYTES, -EFBIG,
                  "%s: qcow2: L1 table would exceed %u bytes", s->img->filename,
                  QCOW2_MAX_L1_BYTES);
    uint64_t *l1 = calloc(n, sizeof *l1);
    uint8_t *dirty = calloc(DIV_ROUND_UP(n, 64) + 1, 1);
    uint8_t *buf = calloc(n, 8);
    int r = 0;
    uint64_t off = 0;
    bool fresh;
    if (!l1 || !dirty || !buf)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0) {
        memcpy(l1, s->l1, s->l1_size * sizeof *l1);
        for (uint32_t i = 0; i < n; i++)
            be64_put(buf + 8 * i, l1[i]);
        r = qcow2_alloc_clusters(s, DIV_ROUND_UP((uint64_t)n * 8, s->cluster_size), &off, NULL,
                                 &fresh);
    }
    if (r == 0)
        r = io_pwrite(s->file, buf, (uint64_t)n * 8, off);
    s->deps_unsynced = true;
    if (r == 0)
        r = qcow2_flush_locked(s);
    uint64_t old_off = s->h.l1_table_offset;
    uint32_t old_n = s->h.l1_size;
    if (r == 0) {
        s->h.l1_size = n;
        s->h.l1_table_offset = off;
        r = qcow2_header_write_field(s, QCOW2_HDR_L1, 12);
        if (r == 0)
            r = qcow2_sync(s);
        if (r < 0) {
            s->h.l1_size = old_n;
            s->h.l1_table_offset = old_off;
        }
    }
    if (r < 0) {
        free(l1);
        free(dirty);
        free(buf);
        return r;
    }
    free(s->l1);
    free(s->l1_dirty);
    s->l1 = l1;
    s->l1_dirty = dirty;
    s->l1_size = n;
    free(buf);
    return old_n ? qcow2_free_clusters(s, old_off,
                                       DIV_ROUND_UP((uint64_t)old_n * 8, s->cluster_size), false)
                 : 0;
}

/* Read snapshot @sn's L1 table (host endian). */
static int
read_snapshot_l1(struct qcow2_state *s, const struct qcow2_snapshot *sn, uint64_t **out)
{
    uint64_t *l1 = calloc(sn->l1_size ? sn->l1_size : 1, sizeof *l1);
    uint8_t *buf = malloc((uint64_t)sn->l1_size * 8 + 1);
    int r = 0;
    if (!l1 || !buf)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0 && sn->l1_size)
        r = io_pread(s->file, buf, (uint64_t)sn->l1_size * 8, sn->l1_table_offset);
    for (uint32_t i = 0; r == 0 && i < sn->l1_size; i++)
        l1[i] = be64_get(buf + 8 * i);
    free(buf);
    if (r < 0) {
        free(l1);
        return r;
    }
    *out = l1;
    return 0;
}

int
qcow2_snapshot_apply(struct topcow_image *img, const char *id_or_name)
{
    struct qcow2_state *s = qcow2_state(img);
    pthread_mutex_lock(&s->lock);
    uint64_t *snap_l1 = NULL, *old_l1 = NULL, steps, undone;
    int idx;
    int r = op_begin(s, id_or_name, &idx);
    if (r < 0)
        goto out;
    const struct qcow2_snapshot *sn = &s->snapshots[idx];
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    if (DIV_ROUND_UP(sn->disk_size, l2_span) > sn->l1_size) {
        r = QERR(s, -EUCLEAN, "qcow2: snapshot '%s' has an L1 table too small for its disk size",
                 sn->name);
        goto out;
    }
    r = read_snapshot_l1(s, sn, &snap_l1);
    if (r == 0)
        r = qcow2_l1_grow(s, sn->l1_size);
    if (r < 0)
        goto out;

    /* 1. The snapshot's tree gains the active table's references. */
    r = tree_refcounts(s, snap_l1, sn->l1_size, 1, UINT64_MAX, &steps);
    if (r < 0) {
        int e = r;
        if (tree_refcounts(s, snap_l1, sn->l1_size, -1, steps, &undone) == 0)
            qcow2_apply_pending_frees(s);
        r = e;
        goto out;
    }
    /* 2. The active L1 takes the snapshot's entries (none of them COPIED:
     *    they are shared with the snapshot). */
    old_l1 = malloc(s->l1_size * sizeof *old_l1);
    if (!old_l1) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    memcpy(old_l1, s->l1, s->l1_size * sizeof *old_l1);
    for (uint32_t i = 0; i < s->l1_size; i++) {
        s->l1[i] = i < sn->l1_size ? snap_l1[i] & ~QCOW_OFLAG_COPIED : 0;
        qcow2_mark_chunk_dirty(s->l1_dirty, i);
    }
    /* 3. The old tree loses its references (once the new L1 is durable). */
    r = tree_refcounts(s, old_l1, s->l1_size, -1, UINT64_MAX, &steps);
    if (r == 0 && sn->disk_size != s->h.size) {
        s->h.size = sn->disk_size;
        r = qcow2_header_write_field(s, QCOW2_HDR_SIZE, 8);
        img->size = sn->disk_size;
    }
    /* 4. Exact refcounts, then COPIED flags from them. */
    if (r == 0)
        r = qcow2_flush_locked(s);
    if (r == 0)
        r = qcow2_recompute_copied(s);
    if (r == 0)
        r = qcow2_flush_locked(s);
out:
    r = op_end(s, r);
    free(snap_l1);
    free(old_l1);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int
qcow2_snapshot_delete(struct topcow_image *img, const char *id_or_name)
{
    struct qcow2_state *s = qcow2_state(img);
    pthread_mutex_lock(&s->lock);
    uint64_t *snap_l1 = NULL, steps;
    int idx;
    int r = op_begin(s, id_or_name, &idx);
    if (r < 0)
        goto out;
    struct qcow2_snapshot gone = s->snapshots[idx];
    r = read_snapshot_l1(s, &gone, &snap_l1);
    if (r < 0)
        goto out;

    /* 1. The table without it, durable and in the header. */
    struct qcow2_snapshot *list = calloc(s->nb_snapshots, sizeof *list);
    if (!list) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    unsigned n = 0;
    for (unsigned i = 0; i < s->nb_snapshots; i++)
        if ((int)i != idx)
            list[n++] = s->snapshots[i];
    r = write_table(s, list, n);
    if (r < 0) {
        free(list);
        goto out;
    }
    free(s->snapshots);
    s->snapshots = list;
    s->nb_snapshots = n;

    /* 2. What it referenced loses a reference; its L1 copy is freed. */
    r = tree_refcounts(s, snap_l1, gone.l1_size, -1, UINT64_MAX, &steps);
    if (r == 0 && gone.l1_size)
        r = qcow2_free_clusters(s, gone.l1_table_offset,
                                DIV_ROUND_UP((uint64_t)gone.l1_size * 8, s->cluster_size), false);
    free(gone.id_str);
    free(gone.name);
    free(gone.extra_data);
    /* 3. Exact refcounts, then COPIED flags (unshared clusters get it back). */
    if (r == 0)
        r = qcow2_flush_locked(s);
    if (r == 0)
        r = qcow2_recompute_copied(s);
    if (r == 0)
        r = qcow2_flush_locked(s);
out:
    r = op_end(s, r);
    free(snap_l1);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int
qcow2_snapshot_open_at(struct qcow2_state *s, const char *id_or_name)
{
    int idx = qcow2_snapshot_find(s, id_or_name);
    RETURN_ERR_IF(idx < 0, -ENOENT, "%s: snapshot '%s' not found", s->img->filename, id_or_name);
    const struct qcow2_snapshot *sn = &s->snapshots[idx];
    uint64_t l2_span = s->cluster_size << s->l2_bits;
    RETURN_ERR_IF(DIV_ROUND_UP(sn->disk_size, l2_span) > sn->l1_size, -EUCLEAN,
                  "%s: qcow2: snapshot '%s' has an L1 table too small for its disk size",
                  s->img->filename, sn->name);
    uint64_t *l1;
    int r = read_snapshot_l1(s, sn, &l1);
    if (r < 0)
        return r;
    uint8_t *dirty = calloc(DIV_ROUND_UP(sn->l1_size, 64) + 1, 1);
    if (!dirty) {
        free(l1);
        return err_set(-ENOMEM, "out of memory");
    }
    free(s->l1);
    free(s->l1_dirty);
    s->l1 = l1;
    s->l1_dirty = dirty;
    s->l1_size = sn->l1_size;
    s->img->size = sn->disk_size;
    return 0;
}
