// SPDX-License-Identifier: MIT
/* Image creation with qemu-img's options, refusals and layout: header in
 * cluster 0, then the refcount table, the refcount blocks covering the
 * metadata, and the (zero) L1 table; preallocation then runs through the
 * normal allocator on the open image. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

/* Check the option combination the way qemu-img 7.2 does, with its wording. */
static int
validate_options(const char *path, const struct topcow_create_opts *o, unsigned version,
                 uint64_t cs, unsigned refbits)
{
#define REFUSE(cond, ...) RETURN_ERR_IF(cond, -EINVAL, __VA_ARGS__)
    REFUSE(!is_power_of_2(cs) || cs < 512 || cs > (2u << 20),
           "%s: Cluster size must be a power of two between 512 and 2048k", path);
    REFUSE(o->extended_l2 && version < 3,
           "%s: Extended L2 entries are only supported with compatibility level 1.1 and above "
           "(use version=v3 or greater)", path);
    REFUSE(o->extended_l2 && cs < 16384,
           "%s: Extended L2 entries are only supported with cluster sizes of at least 16384 "
           "bytes", path);
    REFUSE(o->lazy_refcounts && version < 3,
           "%s: Lazy refcounts only supported with compatibility level 1.1 and above (use "
           "version=v3 or greater)", path);
    REFUSE(!is_power_of_2(refbits) || refbits > 64,
           "%s: Refcount width must be a power of two and may not exceed 64 bits", path);
    REFUSE(refbits != 16 && version < 3,
           "%s: Different refcount widths than 16 bits require compatibility level 1.1 or "
           "above (use version=v3 or greater)", path);
    REFUSE(o->data_file && version < 3,
           "%s: External data files are only supported with compatibility level 1.1 and above "
           "(use version=v3 or greater)", path);
    REFUSE(o->compression_type != TOPCOW_COMPRESSION_ZLIB && version < 3,
           "%s: Non-zlib compression type is only supported with compatibility level 1.1 and "
           "above (use version=v3 or greater)", path);
    REFUSE(o->compression_type > TOPCOW_COMPRESSION_ZSTD, "%s: unknown compression type", path);
    REFUSE(o->data_file_raw && !o->data_file, "%s: data-file-raw requires data-file", path);
    REFUSE(o->backing_format && !o->backing_file,
           "%s: Backing format cannot be used without backing file", path);
    REFUSE(o->backing_file && o->data_file_raw,
           "%s: Backing file and data-file-raw cannot be used at the same time", path);
    REFUSE(o->backing_file && o->preallocation != TOPCOW_PREALLOC_OFF && !o->extended_l2,
           "%s: Backing file and preallocation can only be used at the same time if "
           "extended_l2 is on", path);
    REFUSE(version != 2 && version != 3, "%s: compat must be 0.10 or 1.1", path);
    REFUSE(o->encrypt_format && strcmp(o->encrypt_format, "luks") != 0 &&
               strcmp(o->encrypt_format, "aes") != 0,
           "%s: Invalid parameter '%s' for encrypt.format", path, o->encrypt_format);
    RETURN_ERR_IF(o->encrypt_format && !strcmp(o->encrypt_format, "aes"), -ENOTSUP,
                  "%s: creating images with legacy AES encryption is not supported (it is "
                  "insecure; use encrypt.format=luks)", path);
    REFUSE(o->encrypt_format && !o->encrypt_secret,
           "%s: Parameter 'encrypt.key-secret' is required for cipher", path);
    RETURN_ERR_IF(o->encrypt_format && o->preallocation != TOPCOW_PREALLOC_OFF, -ENOTSUP,
                  "%s: preallocation of encrypted images is not supported (the clusters "
                  "would read as garbage until written)", path);
#undef REFUSE
    return 0;
}

/* Size and format of the backing file, which must open (unless -u). */
static int
inspect_backing(const char *path, const struct topcow_create_opts *o, uint64_t *size)
{
    char *full = image_resolve_relative(path, o->backing_file);
    if (!full)
        return err_set(-ENOMEM, "out of memory");
    struct topcow_open_opts oo = TOPCOW_OPEN_OPTS_INIT;
    oo.flags = TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_FORCE_SHARE;
    oo.format = o->backing_format;
    struct topcow_image *b;
    int r = topcow_image_open(&b, full, &oo);
    err_begin("create");
    if (r < 0) {
        r = err_set(r, "%s: could not open backing file '%s'", path, full);
        free(full);
        return r;
    }
    *size = b->size;
    const char *detected = b->ops->name;
    topcow_image_close(b);
    free(full);
    RETURN_ERR_IF(!o->backing_format, -EINVAL,
                  "%s: Backing file specified without backing format (detected format of "
                  "%s; use -F %s)", path, detected, detected);
    return 0;
}

int
qcow2_create(const char *path, const struct topcow_create_opts *o)
{
    unsigned version = o->compat ? o->compat : 3;
    uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
    unsigned refbits = o->refcount_bits ? o->refcount_bits : 16;
    struct topcow_create_opts opts = *o;
    int r = validate_options(path, o, version, cs, refbits);
    if (r < 0)
        return r;

    uint64_t size = o->size;
    if (o->backing_file && !o->no_backing_open) {
        uint64_t bsize = 0;
        r = inspect_backing(path, o, &bsize);
        if (r < 0)
            return r;
        if (!size)
            size = bsize;
    }
    size = ALIGN_UP(size, 512);
    if (o->data_file_raw)
        opts.preallocation = MAX(opts.preallocation, TOPCOW_PREALLOC_METADATA);

    /* A state just complete enough for the header encoder. */
    struct topcow_image fake = { .filename = (char *)path,
                                 .backing_file = (char *)o->backing_file,
                                 .backing_format = (char *)o->backing_format };
    struct qcow2_state st = { .img = &fake };
    struct qcow2_state *s = &st;
    s->cluster_bits = log2_u64(cs);
    s->cluster_size = cs;
    s->h.version = version;
    s->h.cluster_bits = s->cluster_bits;
    s->h.size = size;
    s->h.refcount_order = log2_u64(refbits);
    s->h.compression_type = (uint8_t)o->compression_type;
    s->data_file_name = (char *)o->data_file;
    if (o->data_file)
        s->h.incompatible_features |= QCOW2_INCOMPAT_DATA_FILE;
    if (o->compression_type != TOPCOW_COMPRESSION_ZLIB)
        s->h.incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
    if (o->extended_l2)
        s->h.incompatible_features |= QCOW2_INCOMPAT_EXTL2;
    if (o->lazy_refcounts)
        s->h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    if (o->data_file_raw)
        s->h.autoclear_features |= QCOW2_AUTOCLEAR_DATA_FILE_RAW;

    /* Geometry and layout: header, refcount table, refcount blocks, L1. */
    uint64_t l2_entries = cs / (o->extended_l2 ? 16 : 8);
    uint64_t l1_entries = DIV_ROUND_UP(size, cs * l2_entries);
    RETURN_ERR_IF(l1_entries * 8 > QCOW2_MAX_L1_BYTES, -EFBIG,
                  "%s: The image size is too large for file format 'qcow2' (try using a "
                  "larger cluster size)", path);
    uint64_t l1_clusters = DIV_ROUND_UP(l1_entries * 8, cs);
    uint64_t rb_entries = cs * 8 / refbits;
    uint64_t rt_clusters = 1, blocks = 1;
    for (;;) {
        uint64_t total = 1 + rt_clusters + blocks + l1_clusters;
        uint64_t nb = DIV_ROUND_UP(total, rb_entries);
        uint64_t nrt = DIV_ROUND_UP(nb * 8, cs);
        if (nb == blocks && nrt == rt_clusters)
            break;
        blocks = nb;
        rt_clusters = nrt;
    }
    uint64_t total = 1 + rt_clusters + blocks + l1_clusters;
    s->h.refcount_table_offset = cs;
    s->h.refcount_table_clusters = (uint32_t)rt_clusters;
    s->h.l1_size = (uint32_t)l1_entries;
    s->h.l1_table_offset = l1_entries ? (1 + rt_clusters + blocks) * cs : 0;

    uint8_t *buf = calloc(1, cs * MAX(rt_clusters, 1));
    uint8_t *block = calloc(1, cs);
    struct io *f = NULL;
    if (!buf || !block) {
        r = err_set(-ENOMEM, "out of memory");
        goto out;
    }
    r = qcow2_header_encode(s, buf);
    if (r < 0)
        goto out;
    r = io_file_open(path, IO_CREATE, &f);
    if (r < 0)
        goto out;
    r = io_pwrite(f, buf, cs, 0);
    if (r < 0)
        goto out;

    memset(buf, 0, cs * rt_clusters);
    for (uint64_t b = 0; b < blocks; b++)
        be64_put(buf + 8 * b, (1 + rt_clusters + b) * cs);
    r = io_pwrite(f, buf, cs * rt_clusters, cs);
    s->refcount_order = s->h.refcount_order;
    s->refcount_bits = refbits;
    for (uint64_t b = 0; b < blocks && r == 0; b++) {
        memset(block, 0, cs);
        for (uint64_t i = 0; i < rb_entries && b * rb_entries + i < total; i++)
            qcow2_rb_set(s, block, i, 1);
        r = io_pwrite(f, block, cs, (1 + rt_clusters + b) * cs);
    }
    if (r == 0)
        r = io_truncate(f, s->h.l1_table_offset ? s->h.l1_table_offset + l1_entries * 8
                                                : total * cs);
    if (r == 0)
        r = io_flush(f);
    io_close(f);
    f = NULL;
    if (r < 0)
        goto out;

    if (o->data_file) {
        char *dpath = image_resolve_relative(path, o->data_file);
        if (!dpath) {
            r = err_set(-ENOMEM, "out of memory");
            goto out;
        }
        struct io *df;
        r = io_file_open(dpath, IO_CREATE, &df);
        free(dpath);
        if (r < 0)
            goto out;
        r = io_truncate(df, size);
        io_close(df);
        if (r < 0)
            goto out;
    }

    /* Encryption and preallocation run on the open image, through the
     * allocator (the two never go together: validate_options). */
    if (o->encrypt_format || opts.preallocation != TOPCOW_PREALLOC_OFF) {
        struct topcow_open_opts oo = TOPCOW_OPEN_OPTS_INIT;
        oo.format = "qcow2";
        oo.flags = TOPCOW_OPEN_NO_BACKING;
        struct topcow_image *img;
        r = topcow_image_open(&img, path, &oo);
        err_begin("create");
        if (r == 0) {
            if (o->encrypt_format)
                r = qcow2_crypto_create(qcow2_state(img), o);
            else
                r = qcow2_preallocate(qcow2_state(img), opts.preallocation, 0);
            int rc = topcow_image_close(img);
            r = r < 0 ? r : rc;
        }
    }
out:
    io_close(f);
    free(buf);
    free(block);
    return r;
}

/* Make [@host, @host+@len) of the data file exist (and, for falloc/full,
 * be allocated) before any L2 entry points at it. */
static int
extend_data(struct qcow2_state *s, uint64_t host, uint64_t len, enum topcow_prealloc mode)
{
    struct io *df = s->data_file;
    uint64_t fsize;
    int r = io_get_size(df, &fsize);
    if (r == 0 && fsize < host + len)
        r = io_truncate(df, host + len);
    if (r == 0 && mode == TOPCOW_PREALLOC_FALLOC)
        r = io_preallocate(df, host, len);
    else if (r == 0 && mode == TOPCOW_PREALLOC_FULL)
        r = io_write_zeroes(df, host, len, 0);
    return r;
}

int
qcow2_preallocate(struct qcow2_state *s, enum topcow_prealloc mode, uint64_t from)
{
    const uint64_t cs = s->cluster_size;
    uint64_t nclusters = DIV_ROUND_UP(s->h.size, cs);
    int r = 0;

    RETURN_ERR_IF(s->h.crypt_method, -ENOTSUP,
                  "%s: preallocation of encrypted images is not supported (the clusters "
                  "would read as garbage until written)", s->img->filename);
    pthread_mutex_lock(&s->lock);
    for (uint64_t c = from >> s->cluster_bits; c < nclusters && r == 0;) {
        uint64_t l1i = c >> s->l2_bits, i = c & (s->l2_entries - 1);
        uint64_t n = MIN(s->l2_entries - i, nclusters - c);
        uint8_t *l2;
        r = qcow2_get_l2(s, l1i, true, &l2);
        if (r < 0)
            break;
        /* Only the run of clusters without an entry (resize keeps the rest). */
        while (n > 0 && (qcow2_l2e_get(s, l2, i) || qcow2_l2_bitmap_get(s, l2, i))) {
            i++, c++, n--;
        }
        for (uint64_t k = 0; k < n; k++)
            if (qcow2_l2e_get(s, l2, i + k) || qcow2_l2_bitmap_get(s, l2, i + k)) {
                n = k;
                break;
            }
        if (n == 0) {
            qcow2_cache_put(s->l2_cache, l2);
            continue;
        }
        uint64_t host = c << s->cluster_bits;
        bool fresh;
        if (!s->external_data)
            r = qcow2_alloc_clusters(s, n, &host, &n, &fresh);
        /* The clusters read as zeros (a hole, or allocated zeros) before the
         * L2 entries that map them exist, even in the cache. */
        if (r == 0)
            r = extend_data(s, host, n * cs, mode);
        for (uint64_t k = 0; k < n && r == 0; k++)
            qcow2_l2e_set(s, l2, i + k, (host + k * cs) | QCOW_OFLAG_COPIED, 0);
        qcow2_cache_mark_dirty(s->l2_cache, l2);
        qcow2_cache_put(s->l2_cache, l2);
        c += n;
    }
    if (r == 0)
        r = qcow2_flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}
