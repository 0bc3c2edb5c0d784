// SPDX-License-Identifier: MIT
/* The public image API: open with probing, the backing chain, request
 * validation, and block status resolved through the chain.  Format drivers
 * only see in-range, non-empty requests. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checked-overflow.h"
#include "cleanup.h"
#include "clock.h"
#include "minmax.h"
#include "error.h"
#include "image.h"
#ifdef HAVE_CLOUD
#include "io-remote.h"
#endif

/* Deep enough for any real chain, shallow enough to stop a loop. */
#define MAX_CHAIN_DEPTH 256

unsigned
topcow_version_number(void)
{
    return TOPCOW_VERSION_NUMBER;
}

const char *
topcow_version_string(void)
{
    return TOPCOW_VERSION_STRING;
}

char *
image_resolve_relative(const char *base, const char *name)
{
    if (name[0] == '/' || !strchr(base, '/'))
        return strdup(name);
    size_t dirlen = (size_t)(strrchr(base, '/') - base) + 1;
    size_t n = dirlen + strlen(name) + 1;
    char *p = malloc(n);
    if (p) {
        memcpy(p, base, dirlen);
        strcpy(p + dirlen, name);
    }
    return p;
}

static void
image_free(struct topcow_image *img)
{
    if (!img)
        return;
    free(img->filename);
    free(img->backing_file);
    free(img->backing_format);
    free(img->full_backing_filename);
    free(img);
}

static int open_chain(struct topcow_image **imgp, const char *path,
                      const struct topcow_open_opts *opts, unsigned depth);
static int image_close(struct topcow_image *img);

static int
open_backing(struct topcow_image *img, const struct topcow_open_opts *top_opts)
{
    if (!img->backing_file)
        return 0;
    if (!img->full_backing_filename) {
        img->full_backing_filename = image_resolve_relative(img->filename, img->backing_file);
        if (!img->full_backing_filename)
            return err_set(-ENOMEM, "out of memory");
    }
    if (img->flags & TOPCOW_OPEN_NO_BACKING)
        return 0;
    RETURN_ERR_IF(img->chain_depth + 1 >= MAX_CHAIN_DEPTH, -ELOOP,
                  "%s: backing chain deeper than %d images (a loop?)", img->filename,
                  MAX_CHAIN_DEPTH);
    /* Backing files are opened read-only; the format named by the image is
     * used as is and never probed. */
    struct topcow_open_opts bo = TOPCOW_OPEN_OPTS_INIT;
    bo.flags = TOPCOW_OPEN_RDONLY |
               (top_opts->flags & (TOPCOW_OPEN_FORCE_SHARE | TOPCOW_OPEN_DIRECT |
                                   TOPCOW_OPEN_SHARE_BACKING));
    if (top_opts->flags & TOPCOW_OPEN_SHARE_BACKING)
        bo.flags |= TOPCOW_OPEN_FORCE_SHARE;
    bo.format = img->backing_format;
    if (img->chain_depth == 0 && top_opts->backing_format)
        bo.format = top_opts->backing_format;
    bo.l2_cache_size = top_opts->l2_cache_size;
    bo.secret = top_opts->secret;
    bo.secret_len = top_opts->secret_len;
    int r = open_chain(&img->backing, img->full_backing_filename, &bo, img->chain_depth + 1);
    if (r < 0 && r != -ENOMEM && strstr(topcow_last_error(), img->full_backing_filename) == NULL)
        err_set(r, "could not open backing file '%s' of '%s'", img->full_backing_filename,
                img->filename);
    return r;
}

static int
open_on_io(struct topcow_image **imgp, struct io *file, const char *name,
           const struct topcow_open_opts *opts, unsigned depth)
{
    *imgp = NULL;
    const struct format_ops *fmt;
    if (opts->format) {
        fmt = format_lookup(opts->format);
        if (!fmt) {
            io_close(file);
            return err_set(-ENOTSUP, "unknown image format '%s'", opts->format);
        }
    } else {
        uint8_t buf[4096];
        uint64_t fsize;
        int r = io_get_size(file, &fsize);
        if (r == 0 && fsize > 0)
            r = io_pread(file, buf, (size_t)MIN(fsize, sizeof buf), 0);
        if (r < 0) {
            io_close(file);
            return r;
        }
        fmt = format_probe(buf, (size_t)MIN(fsize, sizeof buf));
    }

    struct topcow_image *img = calloc(1, sizeof *img);
    if (!img || !(img->filename = strdup(name))) {
        free(img);
        io_close(file);
        return err_set(-ENOMEM, "out of memory");
    }
    img->ops = fmt;
    img->file = file;
    img->flags = opts->flags;
    img->read_only = (opts->flags & (TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_FORCE_SHARE)) != 0;
    img->l2_cache_size = opts->l2_cache_size;
    img->chain_depth = depth;
    if (opts->snapshot && depth == 0) {
        int r = 0;
        if (!img->read_only)
            r = err_set(-EINVAL, "%s: opening at a snapshot is read-only", name);
        else if (!fmt->snapshot_count)
            r = err_set(-ENOTSUP, "%s: format '%s' has no internal snapshots", name,
                        fmt->name);
        if (r < 0) {
            io_close(file);
            image_free(img);
            return r;
        }
        img->snapshot = opts->snapshot;
    }

    img->secret = opts->secret;
    img->secret_len = opts->secret_len;
    int r = fmt->open(img);
    img->snapshot = NULL;
    img->secret = NULL;
    img->secret_len = 0;
    if (r < 0) {
        io_close(file);
        image_free(img);
        return r;
    }
    r = open_backing(img, opts);
    if (r < 0) {
        image_close(img);
        return r;
    }
    *imgp = img;
    return 0;
}

static int
open_chain(struct topcow_image **imgp, const char *path, const struct topcow_open_opts *opts,
           unsigned depth)
{
    unsigned ioflags = 0;
    if (opts->flags & (TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_FORCE_SHARE))
        ioflags |= IO_RDONLY;
    if (opts->flags & TOPCOW_OPEN_FORCE_SHARE)
        ioflags |= IO_NOLOCK;
    if (opts->flags & TOPCOW_OPEN_DIRECT)
        ioflags |= IO_DIRECT;
    if (opts->flags & TOPCOW_OPEN_IO_URING)
        ioflags |= IO_URING;
    struct io *file;
#ifdef HAVE_CLOUD
    /* A remote's backing file resolves to a remote in the same store. */
    int r = io_is_remote_url(path) ? io_remote_open(path, ioflags, &file)
                                   : io_file_open(path, ioflags, &file);
#else
    int r = io_file_open(path, ioflags, &file);
#endif
    if (r < 0)
        return r;
    return open_on_io(imgp, file, path, opts, depth);
}

static const struct topcow_open_opts *
opts_or_default(const struct topcow_open_opts *opts, struct topcow_open_opts *dflt)
{
    *dflt = (struct topcow_open_opts)TOPCOW_OPEN_OPTS_INIT;
    if (!opts)
        return dflt;
    /* Accept older, shorter structs: copy what the caller knew about. */
    memcpy(dflt, opts, MIN(opts->struct_size, sizeof *dflt));
    dflt->struct_size = sizeof *dflt;
    return dflt;
}

int
topcow_image_open(struct topcow_image **imgp, const char *path,
                  const struct topcow_open_opts *opts)
{
    err_begin("open");
    struct topcow_open_opts o;
    if (!imgp || !path)
        return err_set(-EINVAL, "NULL argument");
    *imgp = NULL;
    int r = open_chain(imgp, path, opts_or_default(opts, &o), 0);
    if (r == 0)
        stats_publish(*imgp);
    return r;
}

int
image_open_io(struct topcow_image **imgp, struct io *file, const char *name,
              const struct topcow_open_opts *opts)
{
    struct topcow_open_opts o;
    int r = open_on_io(imgp, file, name, opts_or_default(opts, &o), 0);
    if (r == 0)
        stats_publish(*imgp);
    return r;
}

/* Close @img and its backing chain; the first failure's message stays. */
static int
image_close(struct topcow_image *img)
{
    if (!img)
        return 0;
    int r = 0;
    if (!img->read_only)
        r = img->ops->flush(img);
    if (img->ops->close_clean && r == 0 && !img->read_only)
        r = img->ops->close_clean(img);
    img->ops->close(img);
    int rb = image_close(img->backing);
    io_close(img->file);
    image_free(img);
    return r < 0 ? r : rb;
}

int
topcow_image_close(struct topcow_image *img)
{
    if (!img)
        return 0; /* a true no-op: the last error message stays */
    err_begin("close");
    struct stats_region *region = img->stats_region;
    int r = image_close(img);
    stats_unpublish(region);
    return r;
}

/* ---- creation ----------------------------------------------------------- */

int
topcow_image_create(const char *path, const struct topcow_create_opts *opts)
{
    err_begin("create");
    struct topcow_create_opts o = TOPCOW_CREATE_OPTS_INIT;
    if (!path)
        return err_set(-EINVAL, "NULL path");
    if (opts)
        memcpy(&o, opts, MIN(opts->struct_size, sizeof o));
    o.struct_size = sizeof o;
    const char *fmtname = o.format ? o.format : "qcow2";
    const struct format_ops *fmt = format_lookup(fmtname);
    RETURN_ERR_IF(!fmt, -ENOTSUP, "unknown image format '%s'", fmtname);
    RETURN_ERR_IF(!fmt->create, -ENOTSUP, "format '%s' does not support creation", fmtname);
    return fmt->create(path, &o);
}

/* ---- data path ---------------------------------------------------------- */

/* Start accounting a guest request: returns its start time, or 0 when the
 * image is not counted. */
static inline uint64_t
request_begin(struct topcow_image *img)
{
    if (!img->stats_region)
        return 0;
    stats_add(&img->stats_region->in_flight, 1);
    return clock_ns(CLOCK_MONOTONIC);
}

static inline int
request_end(struct topcow_image *img, enum topcow_stats_op op, uint64_t off, uint64_t len, int r,
            uint64_t t0)
{
    if (t0)
        stats_request_done(img->stats_region, img->stats, op, off, len, r, t0);
    return r;
}

static int
check_request(struct topcow_image *img, uint64_t off, uint64_t len, bool write)
{
    uint64_t end;
    RETURN_ERR_IF(ADD_OVERFLOW(off, len, &end) || end > img->size, -EINVAL,
                  "%s: request [%llu, +%llu) is past the end of the image (%llu bytes)",
                  img->filename, (unsigned long long)off, (unsigned long long)len,
                  (unsigned long long)img->size);
    RETURN_ERR_IF(write && img->read_only, -EROFS, "%s: image is opened read-only",
                  img->filename);
    return 0;
}

uint64_t
topcow_image_size(struct topcow_image *img)
{
    return img ? img->size : 0;
}

int
topcow_image_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    err_begin("read");
    int r = check_request(img, off, len, false);
    if (r < 0 || len == 0)
        return r;
    uint64_t t0 = request_begin(img);
    r = img->ops->pread(img, buf, len, off);
    return request_end(img, TOPCOW_STATS_READ, off, len, r, t0);
}

int
topcow_image_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                    unsigned flags)
{
    err_begin("write");
    int r = check_request(img, off, len, true);
    if (r < 0 || len == 0)
        return r;
    if (img->flags & TOPCOW_OPEN_WRITETHROUGH)
        flags |= TOPCOW_WRITE_FUA;
    uint64_t t0 = request_begin(img);
    r = img->ops->pwrite(img, buf, len, off, flags);
    return request_end(img, TOPCOW_STATS_WRITE, off, len, r, t0);
}

int
topcow_image_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    err_begin("write zeroes");
    int r = check_request(img, off, len, true);
    if (r < 0 || len == 0)
        return r;
    if (img->flags & TOPCOW_OPEN_WRITETHROUGH)
        flags |= TOPCOW_WRITE_FUA;
    uint64_t t0 = request_begin(img);
    r = img->ops->write_zeroes(img, off, len, flags);
    return request_end(img, TOPCOW_STATS_ZERO, off, len, r, t0);
}

int
topcow_image_discard(struct topcow_image *img, uint64_t off, uint64_t len)
{
    err_begin("discard");
    int r = check_request(img, off, len, true);
    if (r < 0 || len == 0)
        return r;
    uint64_t t0 = request_begin(img);
    r = img->ops->discard(img, off, len);
    return request_end(img, TOPCOW_STATS_DISCARD, off, len, r, t0);
}

int
topcow_image_flush(struct topcow_image *img)
{
    err_begin("flush");
    if (img->read_only || (img->flags & TOPCOW_OPEN_UNSAFE))
        return 0;
    uint64_t t0 = request_begin(img);
    int r = img->ops->flush(img);
    return request_end(img, TOPCOW_STATS_FLUSH, 0, 0, r, t0);
}

int
topcow_image_compress(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                      struct topcow_compressed **out)
{
    err_begin("compress");
    *out = NULL;
    int r = check_request(img, off, len, true);
    if (r < 0)
        return r;
    RETURN_ERR_IF(!img->ops->compress, -ENOTSUP, "%s: %s images have no compressed clusters",
                  img->filename, img->ops->name);
    return img->ops->compress(img, buf, len, off, out);
}

int
topcow_image_write_compressed(struct topcow_image *img, const struct topcow_compressed *c)
{
    err_begin("write compressed");
    int r = check_request(img, c->off, c->len, true);
    if (r < 0)
        return r;
    RETURN_ERR_IF(!img->ops->write_compressed, -ENOTSUP,
                  "%s: %s images have no compressed clusters", img->filename, img->ops->name);
    uint64_t t0 = request_begin(img);
    r = request_end(img, TOPCOW_STATS_WRITE, c->off, c->len, img->ops->write_compressed(img, c),
                    t0);
    if (r == 0 && (img->flags & TOPCOW_OPEN_WRITETHROUGH))
        r = topcow_image_flush(img);
    return r;
}

void
topcow_compressed_free(struct topcow_compressed *c)
{
    if (!c)
        return;
    free(c->clusters);
    free(c->arena);
    free(c);
}

int
topcow_image_pwrite_compressed(struct topcow_image *img, const void *buf, size_t len,
                               uint64_t off)
{
    struct topcow_compressed *c;
    int r = topcow_image_compress(img, buf, len, off, &c);
    if (r == 0)
        r = topcow_image_write_compressed(img, c);
    topcow_compressed_free(c);
    return r;
}

/* Read from @img's backing chain; @guest: on behalf of a guest read (counted
 * as passed down), not a copy-on-write. */
static int
backing_read(struct topcow_image *img, void *buf, size_t len, uint64_t off, bool guest)
{
    struct topcow_image *b = img->backing;
    size_t n = 0;
    if (b && off < b->size) {
        n = (size_t)MIN((uint64_t)len, b->size - off);
        int r = b->ops->pread(b, buf, n, off);
        if (guest) {
            STATS_ADD(img->stats, read_passed_down, n);
            STATS_ADD(b->stats, ops[TOPCOW_STATS_READ], 1);
            STATS_ADD(b->stats, bytes[TOPCOW_STATS_READ], r < 0 ? 0 : n);
            STATS_ADD(b->stats, errors[TOPCOW_STATS_READ], r < 0);
        }
        if (r < 0)
            return r;
    }
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

int
image_backing_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    return backing_read(img, buf, len, off, true);
}

int
image_backing_copy(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    return backing_read(img, buf, len, off, false);
}

int
image_block_status(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags,
                   struct topcow_extent *ext)
{
    struct topcow_image *cur = img;
    for (unsigned depth = 0;; depth++) {
        memset(ext, 0, sizeof *ext);
        int r = cur->ops->block_status(cur, off, len, ext);
        if (r < 0)
            return r;
        ext->offset = off;
        ext->depth = depth;
        if (ext->length == 0 || ext->length > len)
            ext->length = len;
        if (ext->flags & TOPCOW_EXTENT_ALLOCATED)
            return 0;
        len = ext->length;
        if (!cur->backing) {
            /* Unallocated everywhere: zeros, attributed to the deepest layer
             * (a host offset a layer reported stays, as qemu-img map shows). */
            ext->flags = TOPCOW_EXTENT_ZERO | (ext->flags & TOPCOW_EXTENT_OFFSET_VALID);
            return 0;
        }
        if (flags & TOPCOW_BS_TOP_ONLY) {
            ext->flags = 0;
            return 0;
        }
        if (off >= cur->backing->size) {
            /* Past the end of a shorter backing file: zeros, answered by the
             * layer whose backing file is too short (as qemu-img map shows). */
            ext->flags = TOPCOW_EXTENT_ZERO | (ext->flags & TOPCOW_EXTENT_OFFSET_VALID);
            return 0;
        }
        len = MIN(len, cur->backing->size - off);
        cur = cur->backing;
    }
}

int
image_reads_zero(struct topcow_image *img, uint64_t off, uint64_t len)
{
    while (len > 0 && off < img->size) {
        struct topcow_extent e;
        int r = image_block_status(img, off, MIN(len, img->size - off), 0, &e);
        if (r < 0)
            return r;
        if (!(e.flags & TOPCOW_EXTENT_ZERO))
            return 0;
        off += e.length;
        len -= MIN(len, e.length);
    }
    return 1;
}

int
topcow_image_block_status(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags,
                          struct topcow_extent *ext)
{
    err_begin("block status");
    int r = check_request(img, off, len, false);
    if (r < 0)
        return r;
    RETURN_ERR_IF(len == 0 || !ext, -EINVAL, "empty block status request");
    return image_block_status(img, off, len, flags, ext);
}

/* ---- information -------------------------------------------------------- */

int
topcow_image_get_encryption(struct topcow_image *img, struct topcow_encryption *enc)
{
    err_begin("info");
    RETURN_ERR_IF(!img || !enc || enc->struct_size < sizeof *enc, -EINVAL,
                  "bad encryption info argument");
    memset(enc, 0, sizeof *enc);
    enc->struct_size = sizeof *enc;
    return img->ops->get_encryption ? img->ops->get_encryption(img, enc) : 0;
}

int
topcow_image_get_info(struct topcow_image *img, struct topcow_info *info)
{
    err_begin("info");
    RETURN_ERR_IF(!img || !info || info->struct_size < sizeof *info, -EINVAL,
                  "bad info argument");
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    info->filename = img->filename;
    info->format = img->ops->name;
    info->virtual_size = img->size;
    if (io_allocated_size(img->file, &info->actual_size) < 0)
        info->actual_size = 0;
    info->backing_file = img->backing_file;
    info->backing_format = img->backing_format;
    info->full_backing_filename = img->full_backing_filename;
    return img->ops->get_info ? img->ops->get_info(img, info) : 0;
}

struct topcow_image *
topcow_image_backing(struct topcow_image *img)
{
    return img ? img->backing : NULL;
}

int
topcow_image_check(struct topcow_image *img, unsigned flags, struct topcow_check_result *res,
                   topcow_report_fn report, void *opaque)
{
    err_begin("check");
    RETURN_ERR_IF(!img || !res || res->struct_size < sizeof *res, -EINVAL,
                  "bad check argument");
    memset(res, 0, sizeof *res);
    res->struct_size = sizeof *res;
    RETURN_ERR_IF(!img->ops->check, -ENOTSUP, "format '%s' does not support checks",
                  img->ops->name);
    return img->ops->check(img, flags, res, report, opaque);
}

/* ---- internal snapshots ------------------------------------------------- */

unsigned
topcow_snapshot_count(struct topcow_image *img)
{
    return img && img->ops->snapshot_count ? img->ops->snapshot_count(img) : 0;
}

int
topcow_snapshot_get(struct topcow_image *img, unsigned index, struct topcow_snapshot *sn)
{
    err_begin("snapshot");
    RETURN_ERR_IF(!img || !sn || sn->struct_size < sizeof *sn, -EINVAL, "bad snapshot argument");
    RETURN_ERR_IF(index >= topcow_snapshot_count(img), -EINVAL,
                  "%s: no snapshot number %u", img->filename, index);
    memset(sn, 0, sizeof *sn);
    sn->struct_size = sizeof *sn;
    return img->ops->snapshot_get(img, index, sn);
}

/* The checks shared by the snapshot operations that change the image. */
static int
snapshot_op_ok(struct topcow_image *img, const char *arg)
{
    RETURN_ERR_IF(!img || !arg, -EINVAL, "NULL argument");
    RETURN_ERR_IF(!img->ops->snapshot_create, -ENOTSUP,
                  "%s: format '%s' does not support internal snapshots", img->filename,
                  img->ops->name);
    RETURN_ERR_IF(img->read_only, -EROFS, "%s: image is opened read-only", img->filename);
    return 0;
}

int
topcow_snapshot_create(struct topcow_image *img, const char *name)
{
    err_begin("snapshot create");
    int r = snapshot_op_ok(img, name);
    return r < 0 ? r : img->ops->snapshot_create(img, name);
}

int
topcow_snapshot_apply(struct topcow_image *img, const char *id_or_name)
{
    err_begin("snapshot apply");
    int r = snapshot_op_ok(img, id_or_name);
    return r < 0 ? r : img->ops->snapshot_apply(img, id_or_name);
}

int
topcow_snapshot_delete(struct topcow_image *img, const char *id_or_name)
{
    err_begin("snapshot delete");
    int r = snapshot_op_ok(img, id_or_name);
    return r < 0 ? r : img->ops->snapshot_delete(img, id_or_name);
}
