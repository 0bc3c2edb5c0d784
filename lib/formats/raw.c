// SPDX-License-Identifier: MIT
/* The raw format: guest offset == file offset.  Zeroing and discard map to
 * hole punching where the backend can; block status comes from the file's
 * holes (SEEK_DATA/SEEK_HOLE). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "minmax.h"
#include "error.h"
#include "image.h"

static int
raw_probe(const uint8_t *buf, size_t len)
{
    (void)buf;
    (void)len;
    return 1;
}

/* The virtual size is the file size rounded up to whole 512-byte sectors,
 * as QEMU sees raw files; the tail past the end of the file reads as zeros. */
static int
raw_open(struct topcow_image *img)
{
    int r = io_get_size(img->file, &img->size);
    img->size = ALIGN_UP(img->size, 512);
    return r;
}

static void
raw_close(struct topcow_image *img)
{
    (void)img;
}

static int
raw_create(const char *path, const struct topcow_create_opts *o)
{
    RETURN_ERR_IF(o->backing_file, -ENOTSUP, "raw images cannot have a backing file");
    struct io *f;
    int r = io_file_open(path, IO_CREATE, &f);
    if (r < 0)
        return r;
    uint64_t size = ALIGN_UP(o->size, 512); /* qemu-img sizes images in sectors */
    r = io_truncate(f, size);
    if (r == 0 && o->preallocation == TOPCOW_PREALLOC_FALLOC)
        r = io_preallocate(f, 0, size);
    else if (r == 0 && o->preallocation == TOPCOW_PREALLOC_FULL)
        r = io_write_zeroes(f, 0, size, 0);
    if (r == 0 && o->preallocation != TOPCOW_PREALLOC_OFF)
        r = io_flush(f);
    io_close(f);
    return r;
}

static int
raw_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    return io_pread(img->file, buf, len, off);
}

static int
raw_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off, unsigned flags)
{
    int r = io_pwrite(img->file, buf, len, off);
    if (r == 0 && (flags & TOPCOW_WRITE_FUA))
        r = io_flush(img->file);
    return r;
}

static int
raw_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    unsigned ioflags = 0;
    if (flags & TOPCOW_ZERO_MAY_UNMAP)
        ioflags |= IO_ZERO_MAY_UNMAP;
    if (flags & TOPCOW_ZERO_FAST)
        ioflags |= IO_ZERO_FAST;
    int r = io_write_zeroes(img->file, off, len, ioflags);
    if (r == -ENOTSUP)
        return err_set(r, "%s: fast zeroing is not possible here", img->filename);
    if (r == 0 && (flags & TOPCOW_WRITE_FUA))
        r = io_flush(img->file);
    return r;
}

static int
raw_discard(struct topcow_image *img, uint64_t off, uint64_t len)
{
    return io_discard(img->file, off, len);
}

static int
raw_flush(struct topcow_image *img)
{
    if (img->flags & TOPCOW_OPEN_UNSAFE)
        return 0; /* cache=unsafe: nothing is made durable, not even at close */
    return io_flush(img->file);
}

/* The first offset in [@from, @to) holding a non-zero byte, or @to. */
static int
first_nonzero(struct topcow_image *img, uint64_t from, uint64_t to, uint64_t *found)
{
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = NULL;
    int r = 0;
    *found = to;
    for (uint64_t pos = from; pos < to && r == 0 && *found == to;) {
        bool is_data;
        uint64_t n;
        r = io_block_status(img->file, pos, to - pos, &is_data, &n);
        for (uint64_t p = pos; r == 0 && is_data && p < pos + n;) {
            size_t len = (size_t)MIN((uint64_t)CHUNK, pos + n - p);
            if (!buf && !(buf = malloc(CHUNK)))
                r = err_set(-ENOMEM, "out of memory");
            if (r == 0)
                r = io_pread(img->file, buf, len, p);
            for (size_t i = 0; r == 0 && i < len; i++)
                if (buf[i]) {
                    *found = p + i;
                    break;
                }
            if (*found != to)
                break;
            p += len;
        }
        pos += n;
    }
    free(buf);
    return r;
}

static int
raw_resize(struct topcow_image *img, uint64_t size, unsigned flags, enum topcow_prealloc prealloc)
{
    (void)flags;
    int r = 0;
    if (size < img->size) {
        uint64_t found;
        r = first_nonzero(img, size, img->size, &found);
        if (r == 0 && found < img->size)
            return err_set(-ENOTEMPTY,
                           "%s: cannot shrink to %llu bytes: guest data at offset %llu would "
                           "be cut off (discard it first)", img->filename,
                           (unsigned long long)size, (unsigned long long)found);
    }
    uint64_t old = img->size;
    if (r == 0)
        r = io_truncate(img->file, size);
    if (r == 0 && size > old && prealloc == TOPCOW_PREALLOC_FALLOC)
        r = io_preallocate(img->file, old, size - old);
    else if (r == 0 && size > old && prealloc == TOPCOW_PREALLOC_FULL)
        r = io_write_zeroes(img->file, old, size - old, 0);
    if (r == 0 && size > old && prealloc == TOPCOW_PREALLOC_METADATA)
        r = err_set(-ENOTSUP, "%s: raw images have no metadata to preallocate", img->filename);
    if (r == 0)
        img->size = size;
    return r;
}

static int
raw_block_status(struct topcow_image *img, uint64_t off, uint64_t len, struct topcow_extent *ext)
{
    bool is_data;
    uint64_t n;
    int r = io_block_status(img->file, off, len, &is_data, &n);
    if (r < 0)
        return r;
    ext->length = n;
    ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_OFFSET_VALID |
                 (is_data ? TOPCOW_EXTENT_DATA : TOPCOW_EXTENT_ZERO);
    ext->host_offset = off;
    ext->file = img->filename;
    return 0;
}

const struct format_ops raw_format = {
    .struct_size = sizeof(struct format_ops),
    .name = "raw",
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .create = raw_create,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .write_zeroes = raw_write_zeroes,
    .discard = raw_discard,
    .flush = raw_flush,
    .block_status = raw_block_status,
    .resize = raw_resize,
};
