// SPDX-License-Identifier: MIT
/* The VHD data path: reads, writes, zeroing and block status through the
 * BAT, block allocation, and the sector bitmaps of differencing disks.
 *
 * Concurrency: s->lock serializes allocation (and the filling of a
 * differencing block from its parent); BAT entries and full[] flags are
 * published with release stores after the metadata they describe is on
 * disk, so data I/O to allocated blocks runs without the lock.
 *
 * Allocation order (a crash leaks a block at worst, never points the BAT
 * at a block without its bitmap): the footer moves past the new block,
 * the bitmap is written over the old footer, then the BAT entry. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "error.h"
#include "minmax.h"
#include "vhd-internal.h"

/* Parent data is copied into a differencing block in pieces of this size. */
#define COPY_CHUNK (1u << 20)

static unsigned
zero_ioflags(unsigned flags)
{
    return ((flags & TOPCOW_ZERO_MAY_UNMAP) ? IO_ZERO_MAY_UNMAP : 0) |
           ((flags & TOPCOW_ZERO_FAST) ? IO_ZERO_FAST : 0);
}

/* File offset of block @idx's data, or 0 when the block is unallocated (a
 * block's data never starts at 0: its bitmap comes first). */
static uint64_t
block_data(const struct vhd_state *s, uint32_t idx)
{
    uint32_t e = __atomic_load_n(&s->bat[idx], __ATOMIC_ACQUIRE);
    return e == VHD_BAT_UNUSED ? 0 : (uint64_t)e * VHD_SECTOR + s->bitmap_size;
}

static bool
block_full(const struct vhd_state *s, uint32_t idx)
{
    return s->type != VHD_TYPE_DIFF || __atomic_load_n(&s->full[idx], __ATOMIC_ACQUIRE);
}

static bool
bit_set(const uint8_t *bm, uint64_t sector)
{
    return (bm[sector / 8] >> (7 - sector % 8)) & 1; /* sector 0 is the top bit of byte 0 */
}

/* The bitmap bytes of allocated block @idx for the sectors of block bytes
 * [@in_off, @in_off+@n), in a new *@bm whose byte 0 holds sector
 * ALIGN_DOWN(@in_off / 512, 8). */
static int
read_bitmap(struct topcow_image *img, uint32_t idx, uint64_t in_off, uint64_t n, uint8_t **bm)
{
    const struct vhd_state *s = img->priv;
    uint64_t first = in_off / VHD_SECTOR / 8, last = (in_off + n - 1) / VHD_SECTOR / 8;
    *bm = malloc(last - first + 1);
    if (!*bm)
        return err_set(-ENOMEM, "out of memory");
    uint64_t at = block_data(s, idx) - s->bitmap_size + first;
    int r = io_pread(img->file, *bm, last - first + 1, at);
    if (r < 0) {
        free(*bm);
        *bm = NULL;
    }
    return r;
}

/* Within allocated differencing block @idx, the run of block bytes from
 * @in_off (at most @n) whose sectors share one bitmap bit, given the
 * bitmap @bm from read_bitmap(..., @bm_off, ...). */
static uint64_t
bitmap_run(const uint8_t *bm, uint64_t bm_off, uint64_t in_off, uint64_t n, bool *set)
{
    uint64_t base = ALIGN_DOWN(bm_off / VHD_SECTOR, 8);
    uint64_t sec = in_off / VHD_SECTOR, end = in_off + n;
    *set = bit_set(bm, sec - base);
    uint64_t pos = (sec + 1) * VHD_SECTOR;
    while (pos < end && bit_set(bm, pos / VHD_SECTOR - base) == *set)
        pos += VHD_SECTOR;
    return MIN(pos, end) - in_off;
}

/* Read part [@in_off, @in_off+@n) of block @idx of a differencing disk:
 * sectors whose bit is set from this file, the others from the parent. */
static int
read_diff_block(struct topcow_image *img, uint32_t idx, uint8_t *buf, uint64_t in_off,
                uint64_t n)
{
    const struct vhd_state *s = img->priv;
    uint64_t block_guest = (uint64_t)idx * s->block_size;
    uint8_t *bm;
    int r = read_bitmap(img, idx, in_off, n, &bm);
    for (uint64_t done = 0; r == 0 && done < n;) {
        bool set;
        uint64_t run = bitmap_run(bm, in_off, in_off + done, n - done, &set);
        if (set)
            r = io_pread(img->file, buf + done, run, block_data(s, idx) + in_off + done);
        else
            r = image_backing_pread(img, buf + done, run, block_guest + in_off + done);
        done += run;
    }
    free(bm);
    return r;
}

int
vhd_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    const struct vhd_state *s = img->priv;
    if (s->type == VHD_TYPE_FIXED)
        return io_pread(img->file, buf, len, off);
    uint8_t *p = buf;
    while (len > 0) {
        uint32_t idx = (uint32_t)(off / s->block_size);
        uint64_t in_off = off % s->block_size;
        size_t n = (size_t)MIN((uint64_t)len, s->block_size - in_off);
        uint64_t data = block_data(s, idx);
        int r;
        if (!data && s->type == VHD_TYPE_DIFF)
            r = image_backing_pread(img, p, n, off);
        else if (!data)
            r = (memset(p, 0, n), 0);
        else if (block_full(s, idx))
            r = io_pread(img->file, p, n, data + in_off);
        else
            r = read_diff_block(img, idx, p, in_off, n);
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Append a block for BAT entry @idx (s->lock held).  Dynamic disks mark
 * every sector present, as QEMU does; a differencing disk's new block
 * starts with no sector present, so it still reads from the parent. */
static int
alloc_block(struct topcow_image *img, struct vhd_state *s, uint32_t idx)
{
    uint64_t start = s->next_block;
    uint64_t end = start + s->bitmap_size + s->block_size;
    RETURN_ERR_IF(start / VHD_SECTOR >= VHD_BAT_UNUSED, -ENOSPC,
                  "%s: vpc: the file is too large for another block", img->filename);
    uint8_t *bm = malloc(s->bitmap_size);
    if (!bm)
        return err_set(-ENOMEM, "out of memory");
    memset(bm, s->type == VHD_TYPE_DIFF ? 0 : 0xff, s->bitmap_size);
    uint8_t entry[4];
    be32_put(entry, (uint32_t)(start / VHD_SECTOR));
    /* The footer moves first: the bitmap is written where it was. */
    int r = io_pwrite(img->file, s->footer, VHD_FOOTER_SIZE, end);
    if (r == 0)
        r = io_pwrite(img->file, bm, s->bitmap_size, start);
    if (r == 0)
        r = io_pwrite(img->file, entry, 4, s->bat_offset + (uint64_t)idx * 4);
    free(bm);
    if (r < 0)
        return r;
    s->next_block = end;
    __atomic_store_n(&s->bat[idx], (uint32_t)(start / VHD_SECTOR), __ATOMIC_RELEASE);
    return 0;
}

/* Copy the parent's data into every sector of differencing block @idx
 * whose bit is clear, then set every bit (s->lock held). */
static int
fill_from_parent(struct topcow_image *img, struct vhd_state *s, uint32_t idx)
{
    RETURN_ERR_IF(img->backing_file && !img->backing, -ENOTSUP,
                  "%s: vpc: writing to a differencing disk needs its parent open",
                  img->filename);
    uint64_t data = block_data(s, idx), block_guest = (uint64_t)idx * s->block_size;
    uint8_t *bm, *buf = malloc(MIN(s->block_size, COPY_CHUNK));
    int r = buf ? read_bitmap(img, idx, 0, s->block_size, &bm)
                : err_set(-ENOMEM, "out of memory");
    if (r < 0) {
        free(buf);
        return r;
    }
    for (uint64_t pos = 0; r == 0 && pos < s->block_size;) {
        bool set;
        uint64_t run = bitmap_run(bm, 0, pos, MIN(s->block_size - pos, COPY_CHUNK), &set);
        if (!set && block_guest + pos < img->size) {
            r = image_backing_copy(img, buf, run, block_guest + pos);
            if (r == 0)
                r = io_pwrite(img->file, buf, run, data + pos);
        }
        pos += run;
    }
    free(bm);
    if (r == 0 && !(bm = malloc(s->bitmap_size)))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0) {
        memset(bm, 0xff, s->bitmap_size);
        r = io_pwrite(img->file, bm, s->bitmap_size, data - s->bitmap_size);
        free(bm);
    }
    free(buf);
    if (r == 0)
        __atomic_store_n(&s->full[idx], 1, __ATOMIC_RELEASE);
    return r;
}

/* Make block @idx writable in place: allocated and, on a differencing
 * disk, holding every sector.  Stores its data offset in *@data. */
static int
prepare_block(struct topcow_image *img, uint32_t idx, uint64_t *data)
{
    struct vhd_state *s = img->priv;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (!block_data(s, idx))
        r = alloc_block(img, s, idx);
    if (r == 0 && !block_full(s, idx))
        r = fill_from_parent(img, s, idx);
    pthread_mutex_unlock(&s->lock);
    *data = block_data(s, idx);
    return r;
}

int
vhd_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off, unsigned flags)
{
    const struct vhd_state *s = img->priv;
    int r = 0;
    if (s->type == VHD_TYPE_FIXED) {
        r = io_pwrite(img->file, buf, len, off);
    } else {
        const uint8_t *p = buf;
        while (r == 0 && len > 0) {
            uint32_t idx = (uint32_t)(off / s->block_size);
            uint64_t in_off = off % s->block_size;
            size_t n = (size_t)MIN((uint64_t)len, s->block_size - in_off);
            uint64_t data = block_data(s, idx);
            if (!data || !block_full(s, idx))
                r = prepare_block(img, idx, &data);
            if (r == 0)
                r = io_pwrite(img->file, p, n, data + in_off);
            p += n;
            off += n;
            len -= n;
        }
    }
    if (r == 0 && (flags & TOPCOW_WRITE_FUA))
        r = io_flush(img->file);
    return r;
}

int
vhd_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    const struct vhd_state *s = img->priv;
    int r = 0;
    if (s->type == VHD_TYPE_FIXED) {
        r = io_write_zeroes(img->file, off, len, zero_ioflags(flags));
    } else {
        while (r == 0 && len > 0) {
            uint32_t idx = (uint32_t)(off / s->block_size);
            uint64_t in_off = off % s->block_size;
            uint64_t n = MIN(len, s->block_size - in_off);
            uint64_t data = block_data(s, idx);
            if (!data && s->type == VHD_TYPE_DYNAMIC) {
                /* Reads as zeros already. */
            } else {
                if (!data || !block_full(s, idx)) {
                    if (flags & TOPCOW_ZERO_FAST)
                        return err_set(-ENOTSUP, "%s: fast zeroing is not possible here",
                                       img->filename);
                    r = prepare_block(img, idx, &data);
                }
                if (r == 0)
                    r = io_write_zeroes(img->file, data + in_off, n, zero_ioflags(flags));
            }
            off += n;
            len -= n;
        }
    }
    if (r == -ENOTSUP)
        return err_set(r, "%s: fast zeroing is not possible here", img->filename);
    if (r == 0 && (flags & TOPCOW_WRITE_FUA))
        r = io_flush(img->file);
    return r;
}

int
vhd_block_status(struct topcow_image *img, uint64_t off, uint64_t len, struct topcow_extent *ext)
{
    const struct vhd_state *s = img->priv;
    ext->file = img->filename;
    if (s->type == VHD_TYPE_FIXED) {
        /* Data stored in place; the file's holes read as zeros (QEMU reports
         * them as data that reads as zeros, and so do we). */
        bool is_data;
        int r = io_block_status(img->file, off, len, &is_data, &ext->length);
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_OFFSET_VALID | TOPCOW_EXTENT_DATA |
                     (is_data ? 0 : TOPCOW_EXTENT_ZERO);
        ext->host_offset = off;
        return r;
    }
    uint32_t idx = (uint32_t)(off / s->block_size);
    uint64_t in_off = off % s->block_size;
    uint64_t n = MIN(len, s->block_size - in_off);
    uint64_t data = block_data(s, idx);
    if (data && !block_full(s, idx)) {
        /* A differencing block holding some sectors: one bitmap run. */
        uint8_t *bm;
        int r = read_bitmap(img, idx, in_off, n, &bm);
        if (r < 0)
            return r;
        bool set;
        ext->length = bitmap_run(bm, in_off, in_off, n, &set);
        free(bm);
        ext->flags = set ? TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA |
                           TOPCOW_EXTENT_OFFSET_VALID : 0;
        ext->host_offset = data + in_off;
        return 0;
    }
    if (data) { /* one block: the next one's data is never adjacent (its bitmap is between) */
        ext->length = n;
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_OFFSET_VALID;
        ext->host_offset = data + in_off;
        return 0;
    }
    /* A run of unallocated blocks: zeros a dynamic disk defines (as QEMU
     * reports them), or the parent's data for a differencing disk. */
    while (n < len && !block_data(s, (uint32_t)((off + n) / s->block_size)))
        n += MIN(len - n, s->block_size);
    ext->length = n;
    ext->flags = s->type == VHD_TYPE_DYNAMIC ? TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO : 0;
    return 0;
}
