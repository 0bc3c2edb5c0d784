// SPDX-License-Identifier: MIT
/* The VDI format driver (VirtualBox): open with the block map in memory,
 * reads, writes with block allocation at the end of the data area, block
 * status and info.  Differencing images get their parent as backing image
 * (found by UUID, vdi-parent.c); free blocks read through it.
 *
 * Concurrency: reads and writes of allocated blocks take no lock; they load
 * the block map entry atomically.  Allocation (a new block, a new zero
 * entry) holds s->lock and publishes the entry only once the block's data
 * and the on-disk metadata are written, so a concurrent reader sees either
 * the old state or the complete new block. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "cleanup.h"
#include "minmax.h"
#include "error.h"
#include "vdi-internal.h"

static int
vdi_probe(const uint8_t *buf, size_t len)
{
    return vdi_has_signature(buf, len) ? 100 : 0;
}

static uint32_t
entry_get(const struct vdi_state *s, uint64_t blk)
{
    return __atomic_load_n(&s->bmap[blk], __ATOMIC_ACQUIRE);
}

static void
entry_publish(struct vdi_state *s, uint64_t blk, uint32_t e)
{
    __atomic_store_n(&s->bmap[blk], e, __ATOMIC_RELEASE);
}

/* Host offset of the first data byte of allocated block index @e (checked
 * against overflow by vdi_header_decode for every e < blocks). */
static uint64_t
block_host_offset(const struct vdi_state *s, uint32_t e)
{
    return s->h.offset_data + (uint64_t)e * s->block_stride + s->h.block_extra;
}

static bool
is_diff(const struct vdi_state *s)
{
    return s->h.type == VDI_TYPE_DIFF;
}

/* Load the block map and check that every allocated entry names its own
 * block of the data area (no index past blocks_allocated, none twice). */
static int
load_bmap(struct topcow_image *img, struct vdi_state *s)
{
    const uint32_t n = s->h.blocks;
    s->bmap = malloc(MAX((size_t)n, 1) * sizeof *s->bmap);
    uint8_t *seen = calloc((size_t)s->h.blocks_allocated / 8 + 1, 1);
    int r = 0;
    if (!s->bmap || !seen)
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0 && n > 0)
        r = io_pread(img->file, s->bmap, (size_t)n * 4, s->h.offset_bmap);
    for (uint32_t i = 0; r == 0 && i < n; i++) {
        uint32_t e = le32_get(&s->bmap[i]);
        s->bmap[i] = e;
        if (!VDI_BLOCK_IS_ALLOCATED(e))
            continue;
        if (e >= s->h.blocks_allocated)
            r = err_set(-EUCLEAN,
                        "%s: vdi: block map entry %u points at block %u of only %u allocated",
                        img->filename, i, e, s->h.blocks_allocated);
        else if (seen[e / 8] & (1u << (e % 8)))
            r = err_set(-EUCLEAN, "%s: vdi: block map entry %u points at block %u, as an "
                        "earlier entry does", img->filename, i, e);
        else
            seen[e / 8] |= (uint8_t)(1u << (e % 8));
    }
    free(seen);
    return r;
}

/* Set the backing fields of a differencing image to its parent.  Without
 * a parent the open fails, unless the chain is not to be opened. */
static int
link_parent(struct topcow_image *img, const struct vdi_state *s)
{
    static const uint8_t nil[16];
    RETURN_ERR_IF(memcmp(s->h.uuid_link, nil, 16) == 0, -EUCLEAN,
                  "%s: vdi: differencing image without a parent UUID", img->filename);
    RETURN_ERR_IF(memcmp(s->h.uuid_link, s->h.uuid_image, 16) == 0, -EUCLEAN,
                  "%s: vdi: differencing image names itself as its parent", img->filename);
    char *backing, *full;
    int r = vdi_find_parent(img->filename, s->h.uuid_link, &backing, &full);
    if (r == -ENOENT && (img->flags & TOPCOW_OPEN_NO_BACKING)) {
        err_clear();
        return 0;
    }
    if (r < 0)
        return r;
    img->backing_file = backing;
    img->full_backing_filename = full;
    img->backing_format = strdup("vdi");
    RETURN_ERR_IF(!img->backing_format, -ENOMEM, "out of memory");
    return 0;
}

static void
vdi_close(struct topcow_image *img)
{
    struct vdi_state *s = img->priv;
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->bmap);
    free(s);
    img->priv = NULL;
}

static int
vdi_open(struct topcow_image *img)
{
    uint64_t fsize;
    uint8_t buf[VDI_HEADER_END];
    int r = io_get_size(img->file, &fsize);
    if (r == 0)
        r = io_pread(img->file, buf, sizeof buf, 0);
    if (r < 0)
        return r;
    struct vdi_state *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    img->priv = s;
    r = vdi_header_decode(buf, img->filename, fsize, &s->h);
    if (r == 0) {
        s->block_stride = (uint64_t)s->h.block_extra + s->h.block_size;
        img->size = s->h.disk_size;
        r = load_bmap(img, s);
    }
    if (r == 0 && is_diff(s))
        r = link_parent(img, s);
    if (r < 0)
        vdi_close(img);
    return r;
}

static int
vdi_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    struct vdi_state *s = img->priv;
    const uint32_t bs = s->h.block_size;
    uint8_t *p = buf;
    while (len > 0) {
        uint64_t blk = off / bs, in = off % bs;
        size_t n = (size_t)MIN((uint64_t)len, bs - in);
        uint32_t e = entry_get(s, blk);
        int r = 0;
        if (VDI_BLOCK_IS_ALLOCATED(e))
            r = io_pread(img->file, p, n, block_host_offset(s, e) + in);
        else if (e == VDI_BLOCK_FREE && is_diff(s))
            r = image_backing_pread(img, p, n, off);
        else
            memset(p, 0, n);
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Write the block count and then map entry @blk = @e to the file (the
 * count first: a crash in between leaks a block, never points an entry
 * past the count).  Needs s->lock. */
static int
write_metadata(struct topcow_image *img, struct vdi_state *s, uint64_t blk, uint32_t e,
               uint32_t allocated)
{
    uint8_t b[4];
    int r = 0;
    if (allocated != s->h.blocks_allocated) {
        le32_put(b, allocated);
        r = io_pwrite(img->file, b, 4, VDI_OFF_BLOCKS_ALLOCATED);
    }
    le32_put(b, e);
    if (r == 0)
        r = io_pwrite(img->file, b, 4, s->h.offset_bmap + 4 * blk);
    return r;
}

/* Write [@in, @in+@n) of block @blk, allocating the block if no other
 * writer did first; @buf NULL writes zeros.  The rest of a new block gets
 * what the block read as before (the parent's data in a differencing image,
 * zeros otherwise).  Allocated blocks are written without the lock. */
static int
write_block(struct topcow_image *img, uint64_t blk, uint64_t in, const void *buf, size_t n)
{
    struct vdi_state *s = img->priv;
    const uint32_t bs = s->h.block_size;
    uint32_t e = entry_get(s, blk);
    if (!VDI_BLOCK_IS_ALLOCATED(e)) {
        pthread_mutex_lock(&s->lock);
        e = entry_get(s, blk);
        if (VDI_BLOCK_IS_ALLOCATED(e)) {
            pthread_mutex_unlock(&s->lock);
        } else {
            uint32_t idx = s->h.blocks_allocated;
            uint8_t *block = NULL;
            int r = 0;
            if (idx >= s->h.blocks) /* load_bmap rules this out; the count is untrusted */
                r = err_set(-EUCLEAN, "%s: vdi: no room for another block", img->filename);
            else if (!(block = malloc(bs)))
                r = err_set(-ENOMEM, "out of memory");
            if (r == 0 && e == VDI_BLOCK_FREE && is_diff(s))
                r = image_backing_copy(img, block, bs, blk * bs);
            else if (r == 0)
                memset(block, 0, bs);
            if (r == 0) {
                if (buf)
                    memcpy(block + in, buf, n);
                else
                    memset(block + in, 0, n);
                uint64_t host = block_host_offset(s, idx);
                if (s->h.block_extra)
                    r = io_write_zeroes(img->file, host - s->h.block_extra, s->h.block_extra, 0);
                if (r == 0)
                    r = io_pwrite(img->file, block, bs, host);
            }
            free(block);
            if (r == 0)
                r = write_metadata(img, s, blk, idx, idx + 1);
            if (r == 0) {
                s->h.blocks_allocated = idx + 1;
                entry_publish(s, blk, idx);
            }
            pthread_mutex_unlock(&s->lock);
            return r;
        }
    }
    uint64_t host = block_host_offset(s, e) + in;
    return buf ? io_pwrite(img->file, buf, n, host) : io_write_zeroes(img->file, host, n, 0);
}

static int
vdi_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off, unsigned flags)
{
    struct vdi_state *s = img->priv;
    const uint32_t bs = s->h.block_size;
    const uint8_t *p = buf;
    while (len > 0) {
        uint64_t blk = off / bs, in = off % bs;
        size_t n = (size_t)MIN((uint64_t)len, bs - in);
        int r = write_block(img, blk, in, p, n);
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return (flags & TOPCOW_WRITE_FUA) ? img->ops->flush(img) : 0;
}

/* Mark free block @blk of a differencing image as a zero block. */
static int
set_zero_block(struct topcow_image *img, uint64_t blk)
{
    struct vdi_state *s = img->priv;
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&s->lock);
    if (entry_get(s, blk) != VDI_BLOCK_FREE)
        return 1; /* allocated meanwhile: the caller zeroes its data */
    int r = write_metadata(img, s, blk, VDI_BLOCK_ZERO, s->h.blocks_allocated);
    if (r == 0)
        entry_publish(s, blk, VDI_BLOCK_ZERO);
    return r;
}

/* Zeroing keeps allocated blocks allocated (the data area has no holes a
 * block could be returned to): their bytes are zeroed in place.  Free blocks
 * already read as zeros, except in a differencing image, where a whole one
 * becomes a zero block and a part of one is allocated. */
static int
vdi_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vdi_state *s = img->priv;
    const uint32_t bs = s->h.block_size;
    unsigned ioflags = 0;
    if (flags & TOPCOW_ZERO_MAY_UNMAP)
        ioflags |= IO_ZERO_MAY_UNMAP;
    if (flags & TOPCOW_ZERO_FAST)
        ioflags |= IO_ZERO_FAST;
    while (len > 0) {
        uint64_t blk = off / bs, in = off % bs;
        uint64_t n = MIN(len, bs - in);
        uint32_t e = entry_get(s, blk);
        int r = 0;
        bool whole = n == bs || (in == 0 && off + n >= img->size);
        if (e == VDI_BLOCK_FREE && is_diff(s) && whole)
            r = set_zero_block(img, blk);
        if (r == 1)
            e = entry_get(s, blk);
        if (VDI_BLOCK_IS_ALLOCATED(e)) {
            r = io_write_zeroes(img->file, block_host_offset(s, e) + in, n, ioflags);
        } else if (e == VDI_BLOCK_FREE && is_diff(s) && !whole) {
            r = (flags & TOPCOW_ZERO_FAST)
                    ? err_set(-ENOTSUP, "%s: fast zeroing is not possible here", img->filename)
                    : write_block(img, blk, in, NULL, (size_t)n);
        }
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return (flags & TOPCOW_WRITE_FUA) ? img->ops->flush(img) : 0;
}

/* Discard is advisory, and VDI cannot give a block back without moving
 * others: nothing changes. */
static int
vdi_discard(struct topcow_image *img, uint64_t off, uint64_t len)
{
    (void)img;
    (void)off;
    (void)len;
    return 0;
}

static int
vdi_flush(struct topcow_image *img)
{
    if (img->flags & TOPCOW_OPEN_UNSAFE)
        return 0;
    return io_flush(img->file);
}

enum block_class { BC_DATA, BC_ZERO, BC_PARENT };

static enum block_class
classify(const struct vdi_state *s, uint32_t e)
{
    if (VDI_BLOCK_IS_ALLOCATED(e))
        return BC_DATA;
    return e == VDI_BLOCK_FREE && is_diff(s) ? BC_PARENT : BC_ZERO;
}

/* Blocks that read as zeros are reported allocated: a free block of an
 * image without a parent is defined by this image (as zeros), which is
 * also how qemu-img map shows them.  Runs of data blocks that lie one
 * after the other in the file are one extent. */
static int
vdi_block_status(struct topcow_image *img, uint64_t off, uint64_t len,
                 struct topcow_extent *ext)
{
    struct vdi_state *s = img->priv;
    const uint32_t bs = s->h.block_size;
    uint64_t blk = off / bs;
    uint32_t e = entry_get(s, blk);
    enum block_class c = classify(s, e);
    uint64_t end = MIN(off + len, (blk + 1) * bs);
    for (uint64_t b = blk + 1; end < off + len; b++) {
        uint32_t f = entry_get(s, b);
        if (classify(s, f) != c || (c == BC_DATA && (f != e + (b - blk) || s->h.block_extra)))
            break;
        end = MIN(off + len, (b + 1) * bs);
    }
    ext->length = end - off;
    switch (c) {
    case BC_DATA: {
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_OFFSET_VALID;
        ext->host_offset = block_host_offset(s, e) + off % bs;
        ext->file = img->filename;
        /* A hole in the file under an allocated block (a static image's
         * untouched blocks) reads as zeros, as qemu-img map shows. */
        bool is_data;
        uint64_t n;
        int r = io_block_status(img->file, ext->host_offset, ext->length, &is_data, &n);
        if (r < 0)
            return r;
        ext->length = MIN(ext->length, n);
        if (!is_data)
            ext->flags |= TOPCOW_EXTENT_ZERO;
        break;
    }
    case BC_ZERO:
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO;
        break;
    case BC_PARENT:
        ext->flags = 0;
        break;
    }
    return 0;
}

static int
vdi_get_info(struct topcow_image *img, struct topcow_info *info)
{
    const struct vdi_state *s = img->priv;
    info->cluster_size = s->h.block_size;
    return 0;
}

const struct format_ops vdi_format = {
    .struct_size = sizeof(struct format_ops),
    .name = "vdi",
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .create = vdi_create,
    .pread = vdi_pread,
    .pwrite = vdi_pwrite,
    .write_zeroes = vdi_write_zeroes,
    .discard = vdi_discard,
    .flush = vdi_flush,
    .block_status = vdi_block_status,
    .get_info = vdi_get_info,
};
