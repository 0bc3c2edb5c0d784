// SPDX-License-Identifier: MIT
/* The qcow2 format driver: probe, open (validation of every table, dirty
 * image repair, autoclear hygiene), close, flush, block status and info.
 * The data path lives in qcow2-read.c, qcow2-write.c and qcow2-zero.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

#define L2_CACHE_MAX (32ull << 20) /* as QEMU on Linux */
#define RB_CACHE_BYTES (1ull << 20)

static int
qcow2_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && be32_get(buf) == QCOW2_MAGIC && be32_get(buf + 4) >= 2 ? 100 : 0;
}

static void
free_state(struct qcow2_state *s)
{
    if (!s)
        return;
    qcow2_crypto_close(s);
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->rb_cache);
    qcow2_snapshot_table_free(s);
    if (s->data_file && s->data_file != s->file)
        io_close(s->data_file);
    for (unsigned i = 0; i < s->nb_exts; i++)
        free(s->exts[i].data);
    free(s->exts);
    free(s->features);
    free(s->unknown_header_fields);
    free(s->data_file_name);
    free(s->l1);
    free(s->l1_dirty);
    free(s->rt);
    free(s->rt_dirty);
    free(s->pending);
    range_lock_destroy(&s->ranges);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Read a table of big-endian u64 entries. */
static int
read_u64_table(struct qcow2_state *s, uint64_t off, uint64_t n, uint64_t **out, uint8_t **dirty)
{
    *out = calloc(n ? n : 1, sizeof **out);
    *dirty = calloc(DIV_ROUND_UP(n, 64) + 1, 1);
    if (!*out || !*dirty)
        return err_set(-ENOMEM, "out of memory");
    if (n == 0)
        return 0;
    uint8_t *buf = malloc(n * 8);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    int r = io_pread(s->file, buf, n * 8, off);
    for (uint64_t i = 0; r == 0 && i < n; i++)
        (*out)[i] = be64_get(buf + 8 * i);
    free(buf);
    return r;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Refcount blocks must be cluster aligned, inside the file, clear of the
 * header and the refcount table, and each used once (a block shared by two
 * table entries would make updates of one range corrupt another). */
static int
validate_refcount_table(struct qcow2_state *s, uint64_t file_size)
{
    uint64_t *sorted = malloc(s->rt_entries * sizeof *sorted);
    if (!sorted)
        return err_set(-ENOMEM, "out of memory");
    uint64_t n = 0;
    uint64_t rta = s->h.refcount_table_offset;
    uint64_t rtb = rta + ((uint64_t)s->h.refcount_table_clusters << s->cluster_bits);
    int r = 0;
    for (uint64_t i = 0; i < s->rt_entries && r == 0; i++) {
        uint64_t off = s->rt[i] & RT_OFFSET_MASK;
        if (!off)
            continue;
        if (!IS_ALIGNED(off, s->cluster_size) || off + s->cluster_size > ALIGN_UP(file_size, s->cluster_size) ||
            (off >= rta && off < rtb))
            r = err_set(-EUCLEAN, "%s: qcow2: refcount table entry %" PRIu64
                                  " points to invalid refcount block offset 0x%" PRIx64,
                        s->img->filename, i, off);
        sorted[n++] = off;
    }
    if (r == 0) {
        qsort(sorted, n, sizeof *sorted, cmp_u64);
        for (uint64_t i = 1; i < n; i++)
            if (sorted[i] == sorted[i - 1]) {
                r = err_set(-EUCLEAN, "%s: qcow2: refcount block 0x%" PRIx64
                                      " is used by two refcount table entries (a loop)",
                            s->img->filename, sorted[i]);
                break;
            }
    }
    free(sorted);
    return r;
}

static int
open_data_file(struct qcow2_state *s)
{
    struct topcow_image *img = s->img;
    char *path = image_resolve_relative(img->filename, s->data_file_name);
    if (!path)
        return err_set(-ENOMEM, "out of memory");
    unsigned ioflags = 0;
    if (img->read_only)
        ioflags |= IO_RDONLY;
    if (img->flags & TOPCOW_OPEN_FORCE_SHARE)
        ioflags |= IO_NOLOCK;
    if (img->flags & TOPCOW_OPEN_DIRECT)
        ioflags |= IO_DIRECT;
    if (img->flags & TOPCOW_OPEN_IO_URING)
        ioflags |= IO_URING;
    int r = io_file_open(path, ioflags, &s->data_file);
    free(path);
    return r;
}

static int
qcow2_open(struct topcow_image *img)
{
    struct qcow2_state *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    s->img = img;
    s->file = img->file;
    s->data_file = img->file;
    s->read_only = img->read_only;
    s->unsafe = img->flags & TOPCOW_OPEN_UNSAFE;
    /* Held for a few hundred nanoseconds at a time on the data path:
     * spinning briefly beats sleeping in the kernel when threads collide. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&s->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    range_lock_init(&s->ranges, &s->lock);
    img->priv = s;

    uint64_t file_size;
    uint8_t *buf = NULL;
    int r = io_get_size(s->file, &file_size);
    if (r < 0)
        goto fail;
    s->file_size_at_open = file_size;
    /* Cluster 0 plus room for a backing name that crosses its end. */
    uint8_t probe[QCOW2_V3_HEADER_LEN] = { 0 };
    size_t plen = (size_t)MIN(file_size, sizeof probe);
    if (plen && (r = io_pread(s->file, probe, plen, 0)) < 0)
        goto fail;
    uint32_t cbits = plen >= 24 ? be32_get(probe + 20) : 0;
    size_t want = (cbits >= QCOW2_MIN_CLUSTER_BITS && cbits <= QCOW2_MAX_CLUSTER_BITS)
                      ? (1u << cbits) + QCOW2_MAX_BACKING_NAME + 1
                      : sizeof probe;
    size_t len = (size_t)MIN(file_size, want);
    buf = calloc(1, MAX(len, 1));
    if (!buf) {
        r = err_set(-ENOMEM, "out of memory");
        goto fail;
    }
    if (len && (r = io_pread(s->file, buf, len, 0)) < 0)
        goto fail;
    r = qcow2_header_parse(s, buf, len, file_size);
    if (r < 0)
        goto fail;
    free(buf);
    buf = NULL;

    r = qcow2_crypto_open(s, img->secret, img->secret_len);
    if (r < 0)
        goto fail;
    if ((s->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)) {
        if (!s->read_only && !(img->flags & TOPCOW_OPEN_ALLOW_CORRUPT)) {
            r = QERR(s, -EACCES, "qcow2: image is corrupt; cannot be opened read/write "
                                 "(run 'check -r all' to repair it)");
            goto fail;
        }
        s->corrupt = !(img->flags & TOPCOW_OPEN_ALLOW_CORRUPT);
    }
    if (s->external_data && (r = open_data_file(s)) < 0)
        goto fail;

    s->l1_size = s->h.l1_size;
    r = read_u64_table(s, s->h.l1_table_offset, s->l1_size, &s->l1, &s->l1_dirty);
    if (r < 0)
        goto fail;
    s->rt_entries = ((uint64_t)s->h.refcount_table_clusters << s->cluster_bits) / 8;
    r = read_u64_table(s, s->h.refcount_table_offset, s->rt_entries, &s->rt, &s->rt_dirty);
    if (r == 0)
        r = validate_refcount_table(s, file_size);
    if (r == 0)
        r = qcow2_snapshot_table_read(s);
    if (r == 0 && img->snapshot)
        r = qcow2_snapshot_open_at(s, img->snapshot);
    if (r < 0)
        goto fail;

    uint64_t l2_span = s->cluster_size << s->l2_bits;
    uint64_t tables = DIV_ROUND_UP(s->h.size, l2_span);
    uint64_t cache_bytes = img->l2_cache_size ? img->l2_cache_size
                                              : MIN((tables + 2) * s->cluster_size, L2_CACHE_MAX);
    r = qcow2_cache_new(s, QCOW2_CACHE_L2, (size_t)MAX(2, cache_bytes / s->cluster_size),
                        &s->l2_cache);
    if (r == 0)
        r = qcow2_cache_new(s, QCOW2_CACHE_REFBLOCK,
                            (size_t)MAX(4, RB_CACHE_BYTES / s->cluster_size), &s->rb_cache);
    if (r < 0)
        goto fail;
    s->fresh_from = ALIGN_UP(file_size, s->cluster_size) >> s->cluster_bits;
    s->prealloc_detected = -1;
    if (!img->snapshot)
        img->size = s->h.size;

    if (!s->read_only) {
        if ((s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
            !(img->flags & TOPCOW_OPEN_NO_REPAIR)) {
            /* Refcounts from the metadata, then COPIED flags from them
             * (a crash inside a snapshot operation leaves both stale). */
            r = qcow2_rebuild_refcounts(s, false, false);
            if (r == 0)
                r = qcow2_recompute_copied(s);
            if (r == 0)
                r = qcow2_flush_locked(s);
            if (r < 0)
                goto fail;
            s->h.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
            r = qcow2_header_write_field(s, QCOW2_HDR_INCOMPAT, 8);
            if (r == 0)
                r = qcow2_sync(s);
            if (r < 0)
                goto fail;
        }
        s->dirty_bit_set = s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;
        /* Clear autoclear bits for features we do not maintain (bitmaps
         * would go stale under our writes); keep "raw external data". */
        uint64_t keep = s->external_data ? QCOW2_AUTOCLEAR_DATA_FILE_RAW : 0;
        if (s->h.autoclear_features & ~keep) {
            s->h.autoclear_features &= keep;
            r = qcow2_header_write_field(s, QCOW2_HDR_AUTOCLEAR, 8);
            if (r == 0)
                r = qcow2_sync(s);
            if (r < 0)
                goto fail;
        }
    }
    return 0;

fail:
    free(buf);
    free_state(s);
    img->priv = NULL;
    return r;
}

static int
qcow2_flush(struct topcow_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    pthread_mutex_lock(&s->lock);
    int r = qcow2_flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* After the final flush: the refcounts are exact, so clear the dirty bit. */
static int
qcow2_close_clean(struct topcow_image *img)
{
    struct qcow2_state *s = qcow2_state(img);
    if (!s->dirty_bit_set || s->corrupt)
        return 0;
    if (img->flags & TOPCOW_OPEN_NO_REPAIR)
        return 0; /* refcounts were never rebuilt: leave the image marked */
    return qcow2_mark_clean(s);
}

static void
qcow2_close(struct topcow_image *img)
{
    free_state(qcow2_state(img));
    img->priv = NULL;
}

/* Whether the image looks metadata-preallocated: clearly more clusters are
 * refcounted than the host file really stores.  Then mapped clusters may be
 * holes in the file, and block status asks the file, as QEMU does.  Needs
 * s->lock; computed once. */
static int
detect_prealloc(struct qcow2_state *s)
{
    if (s->prealloc_detected >= 0)
        return s->prealloc_detected;
    uint64_t flen, alloc;
    s->prealloc_detected = 0;
    if (io_get_size(s->file, &flen) < 0 || io_allocated_size(s->file, &alloc) < 0)
        return 0;
    uint64_t real = alloc >> s->cluster_bits;
    uint64_t threshold = MAX(real * 10 / 9, real + 2), count = 0;
    uint64_t end = DIV_ROUND_UP(flen, s->cluster_size);
    for (uint64_t i = 0; i < end && count < threshold; i++) {
        uint64_t rc;
        if (qcow2_refcount_get(s, i, &rc) < 0)
            return 0;
        count += rc != 0;
    }
    s->prealloc_detected = count >= threshold;
    return s->prealloc_detected;
}

static unsigned
extent_class(const struct qcow2_extent *e, uint64_t *host)
{
    *host = e->host;
    switch (e->type) {
    case QCOW2_UNALLOCATED:
        return 0;
    case QCOW2_UNALLOCATED_ALLOC:
        return TOPCOW_EXTENT_OFFSET_VALID;
    case QCOW2_ZERO_PLAIN:
        return TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO;
    case QCOW2_ZERO_ALLOC:
        return TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO | TOPCOW_EXTENT_OFFSET_VALID;
    case QCOW2_NORMAL:
        return TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_OFFSET_VALID;
    case QCOW2_COMPRESSED:
        return TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_COMPRESSED;
    }
    return 0;
}

static int
qcow2_block_status(struct topcow_image *img, uint64_t off, uint64_t len, struct topcow_extent *ext)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_extent e;
    uint64_t host, h2;
    pthread_mutex_lock(&s->lock);
    int r = qcow2_map(s, off, len, &e);
    if (r == 0) {
        ext->flags = extent_class(&e, &host);
        ext->host_offset = host;
        ext->length = e.len;
        /* Merge following runs of the same class (across L2 tables). */
        while (r == 0 && ext->length < len && e.type != QCOW2_COMPRESSED) {
            r = qcow2_map(s, off + ext->length, len - ext->length, &e);
            if (r < 0 || extent_class(&e, &h2) != ext->flags || e.type == QCOW2_COMPRESSED ||
                ((ext->flags & TOPCOW_EXTENT_OFFSET_VALID) && h2 != host + ext->length))
                break;
            ext->length += e.len;
        }
        r = r < 0 && ext->length ? 0 : r;
    }
    bool ask_file = r == 0 && (ext->flags & TOPCOW_EXTENT_OFFSET_VALID) &&
                    !(ext->flags & TOPCOW_EXTENT_ZERO) &&
                    !s->external_data && !s->h.crypt_method && detect_prealloc(s);
    pthread_mutex_unlock(&s->lock);
    if (ask_file) {
        /* A hole in the file under mapped clusters reads as zeros. */
        bool is_data;
        uint64_t n;
        r = io_block_status(s->data_file, ext->host_offset, ext->length, &is_data, &n);
        if (r == 0) {
            ext->length = n;
            if (!is_data)
                ext->flags |= TOPCOW_EXTENT_ZERO;
        }
    }
    /* Encrypted data is not readable at its host offset. */
    if (s->h.crypt_method && (ext->flags & TOPCOW_EXTENT_DATA))
        ext->flags &= ~TOPCOW_EXTENT_OFFSET_VALID;
    if (ext->flags & TOPCOW_EXTENT_OFFSET_VALID)
        ext->file = s->data_file->name;
    return r;
}

static int
qcow2_get_info(struct topcow_image *img, struct topcow_info *info)
{
    struct qcow2_state *s = qcow2_state(img);
    info->cluster_size = (uint32_t)s->cluster_size;
    info->dirty = s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;
    info->corrupt = s->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT;
    info->encrypted = s->h.crypt_method != 0;
    info->compat = s->h.version == 2 ? 2 : 3;
    info->refcount_bits = s->refcount_bits;
    info->lazy_refcounts = s->lazy_refcounts;
    info->extended_l2 = s->ext_l2;
    info->compression_type = (enum topcow_compression)s->h.compression_type;
    info->data_file = s->data_file_name;
    info->data_file_raw = s->data_file_raw;
    info->nb_snapshots = s->nb_snapshots;
    info->vm_state_offset = DIV_ROUND_UP(s->h.size, s->cluster_size << s->l2_bits)
                            << (s->cluster_bits + s->l2_bits);
    return 0;
}

const struct format_ops qcow2_format = {
    .struct_size = sizeof(struct format_ops),
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .close = qcow2_close,
    .create = qcow2_create,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .write_zeroes = qcow2_write_zeroes,
    .discard = qcow2_discard,
    .flush = qcow2_flush,
    .block_status = qcow2_block_status,
    .get_info = qcow2_get_info,
    .check = qcow2_check,
    .close_clean = qcow2_close_clean,
    .snapshot_count = qcow2_snapshot_count,
    .snapshot_get = qcow2_snapshot_get,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .set_backing = qcow2_set_backing,
    .make_empty = qcow2_make_empty,
    .resize = qcow2_resize,
    .amend = qcow2_amend,
    .get_encryption = qcow2_get_encryption,
    .compress = qcow2_compress,
    .write_compressed = qcow2_write_compressed,
};
