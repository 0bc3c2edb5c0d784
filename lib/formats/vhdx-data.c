// SPDX-License-Identifier: MIT
/* The VHDX block allocation table ([MS-VHDX] 2.5) and the guest data path:
 * reads by payload block state, sector bitmaps of differencing images
 * (2.5.2), block status, and writes that allocate whole blocks at the end
 * of the file.  BAT entries are read lock-free (atomic loads); allocation
 * and BAT updates hold s->lock. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "error.h"
#include "minmax.h"
#include "vhdx-internal.h"

/* BAT index of payload block @blk: a sector bitmap entry follows every
 * chunk_ratio payload entries (2.5). */
static uint64_t
payload_index(const struct vhdx_state *s, uint64_t blk)
{
    return blk + blk / s->chunk_ratio;
}

static uint64_t
bat_get(const struct vhdx_state *s, uint64_t index)
{
    return __atomic_load_n(&s->bat[index], __ATOMIC_ACQUIRE);
}

int
vhdx_bat_load(struct topcow_image *img, struct vhdx_state *s)
{
    uint64_t file_size;
    int r = io_get_size(img->file, &file_size);
    if (r < 0)
        return r;
    /* 2.5: chunk ratio = 2^23 * logical sector size / block size; both are
     * validated powers of two, so it is a whole number >= 16. */
    s->chunk_ratio = ((uint64_t)1 << 23) * s->logical_sector / s->block_size;
    s->data_blocks = (s->disk_size + s->block_size - 1) / s->block_size;
    if (s->has_parent)
        s->bat_entries = (s->data_blocks + s->chunk_ratio - 1) / s->chunk_ratio *
                         (s->chunk_ratio + 1);
    else
        s->bat_entries = s->data_blocks ? s->data_blocks + (s->data_blocks - 1) / s->chunk_ratio
                                        : 0;
    uint64_t bytes = s->bat_entries * 8;
    RETURN_ERR_IF(bytes > s->bat_len, -EUCLEAN,
                  "%s: vhdx: BAT region of %" PRIu32 " bytes is too small for %" PRIu64
                  " entries", img->filename, s->bat_len, s->bat_entries);
    RETURN_ERR_IF(s->bat_off + bytes > file_size, -EUCLEAN,
                  "%s: vhdx: BAT at offset %" PRIu64 " lies past the end of the file (%" PRIu64
                  " bytes)", img->filename, s->bat_off, file_size);
    s->bat = malloc(bytes ? bytes : 8);
    if (!s->bat)
        return err_set(-ENOMEM, "out of memory");
    if (bytes && (r = vhdx_file_pread(img, s, s->bat, bytes, s->bat_off)) < 0)
        return r;

    uint64_t end = MAX(file_size, MAX(s->bat_off + s->bat_len, s->meta_off + s->meta_len));
    end = MAX(end, s->hdr.log_offset + s->hdr.log_length);
    for (uint64_t i = 0; i < s->bat_entries; i++) {
        uint64_t e = le64_get(&s->bat[i]);
        s->bat[i] = e;
        unsigned st = VHDX_BAT_STATE(e);
        uint64_t off = VHDX_BAT_OFFSET(e);
        bool sb = (i + 1) % (s->chunk_ratio + 1) == 0;
        uint64_t size = sb ? VHDX_SECTOR_BITMAP_SIZE : s->block_size;
        bool present = sb ? st == VHDX_SB_BLOCK_PRESENT
                          : st == VHDX_PAYLOAD_FULLY_PRESENT ||
                                st == VHDX_PAYLOAD_PARTIALLY_PRESENT;
        bool known = sb ? st == 0 || present
                        : st <= VHDX_PAYLOAD_UNMAPPED || st == VHDX_PAYLOAD_FULLY_PRESENT ||
                              (st == VHDX_PAYLOAD_PARTIALLY_PRESENT && s->has_parent);
        RETURN_ERR_IF(!known, -EUCLEAN, "%s: vhdx: BAT entry %" PRIu64 " has invalid state %u",
                      img->filename, i, st);
        if (!present)
            continue;
        RETURN_ERR_IF(off < VHDX_MiB || off + size > VHDX_MAX_FILE_OFFSET, -EUCLEAN,
                      "%s: vhdx: BAT entry %" PRIu64 " points at invalid offset %" PRIu64,
                      img->filename, i, off);
        end = MAX(end, off + size);
    }
    s->alloc_end = ALIGN_UP(end, VHDX_MiB);
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

/* Read the sector bitmap bits of sectors [@first, @first+@count) of chunk
 * @chunk into @bits (bit i = sector first+i), or all clear when the chunk
 * has no sector bitmap block. */
static int
bitmap_read(struct topcow_image *img, struct vhdx_state *s, uint64_t chunk, uint64_t first,
            uint64_t count, uint8_t *bits, size_t bits_size)
{
    uint64_t sb = bat_get(s, chunk * (s->chunk_ratio + 1) + s->chunk_ratio);
    uint64_t byte0 = first / 8, nbytes = (first + count + 7) / 8 - byte0;
    if (nbytes > bits_size)
        return err_set(-EINVAL, "vhdx: internal: bitmap buffer too small");
    if (VHDX_BAT_STATE(sb) != VHDX_SB_BLOCK_PRESENT) {
        memset(bits, 0, (size_t)nbytes);
        return 0;
    }
    return vhdx_file_pread(img, s, bits, (size_t)nbytes, VHDX_BAT_OFFSET(sb) + byte0);
}

/* A run of a partially present block, from @off: whether its sectors are
 * in this image, and its length (up to @len). */
static int
partial_run(struct topcow_image *img, struct vhdx_state *s, uint64_t off, uint64_t len,
            bool *present, uint64_t *run)
{
    uint64_t chunk_bytes = s->chunk_ratio * s->block_size;
    uint64_t chunk = off / chunk_bytes;
    uint64_t first = off % chunk_bytes / s->logical_sector;
    uint64_t last = (off % chunk_bytes + len - 1) / s->logical_sector;
    uint64_t count = MIN(last - first + 1, (uint64_t)8 * 4096);
    uint8_t bits[4096 + 1];
    int r = bitmap_read(img, s, chunk, first, count, bits, sizeof bits);
    if (r < 0)
        return r;
    uint64_t shift = first % 8, i = 0;
    bool want = bits[0] >> shift & 1;
    while (i < count && ((bits[(shift + i) / 8] >> ((shift + i) % 8)) & 1) == want)
        i++;
    *present = want;
    /* End of the run in bytes, from the start of sector first+i; i >= 1,
     * since sector first always matches itself. */
    assert(i >= 1);
    uint64_t end = (off / s->logical_sector + i) * s->logical_sector;
    *run = MIN(len, end - off);
    return 0;
}

int
vhdx_data_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    struct vhdx_state *s = img->priv;
    uint8_t *p = buf;
    while (len > 0) {
        uint64_t blk = off / s->block_size, in = off % s->block_size;
        size_t n = (size_t)MIN((uint64_t)len, s->block_size - in);
        uint64_t e = bat_get(s, payload_index(s, blk));
        int r = 0;
        switch (VHDX_BAT_STATE(e)) {
        case VHDX_PAYLOAD_FULLY_PRESENT:
            r = vhdx_file_pread(img, s, p, n, VHDX_BAT_OFFSET(e) + in);
            break;
        case VHDX_PAYLOAD_PARTIALLY_PRESENT:
            for (size_t done = 0; done < n && r == 0;) {
                bool present;
                uint64_t run;
                r = partial_run(img, s, off + done, n - done, &present, &run);
                if (r == 0 && present)
                    r = vhdx_file_pread(img, s, p + done, (size_t)run,
                                        VHDX_BAT_OFFSET(e) + in + done);
                else if (r == 0)
                    r = image_backing_pread(img, p + done, (size_t)run, off + done);
                done += (size_t)run;
            }
            break;
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
            if (s->has_parent) {
                r = image_backing_pread(img, p, n, off);
                break;
            }
            memset(p, 0, n); /* no parent: the block reads as zeros */
            break;
        default: /* ZERO, UNMAPPED */
            memset(p, 0, n);
            break;
        }
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* The extent of block piece [@off, +@len) in one block, as this layer sees it. */
static int
piece_status(struct topcow_image *img, struct vhdx_state *s, uint64_t off, uint64_t len,
             struct topcow_extent *ext)
{
    uint64_t blk = off / s->block_size, in = off % s->block_size;
    uint64_t e = bat_get(s, payload_index(s, blk));
    ext->length = len;
    switch (VHDX_BAT_STATE(e)) {
    case VHDX_PAYLOAD_FULLY_PRESENT:
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_OFFSET_VALID;
        ext->host_offset = VHDX_BAT_OFFSET(e) + in;
        ext->file = img->filename;
        return 0;
    case VHDX_PAYLOAD_PARTIALLY_PRESENT: {
        bool present;
        int r = partial_run(img, s, off, len, &present, &ext->length);
        if (r == 0 && present) {
            ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA |
                         TOPCOW_EXTENT_OFFSET_VALID;
            ext->host_offset = VHDX_BAT_OFFSET(e) + in;
            ext->file = img->filename;
        }
        return r;
    }
    case VHDX_PAYLOAD_NOT_PRESENT:
    case VHDX_PAYLOAD_UNDEFINED:
        ext->flags = 0; /* the parent's, or zeros without one */
        return 0;
    default:
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO;
        return 0;
    }
}

int
vhdx_data_block_status(struct topcow_image *img, uint64_t off, uint64_t len,
                       struct topcow_extent *ext)
{
    struct vhdx_state *s = img->priv;
    uint64_t first = MIN(len, s->block_size - off % s->block_size);
    int r = piece_status(img, s, off, first, ext);
    if (r < 0 || ext->length < first)
        return r;
    /* Extend over following blocks that look the same (and, for data,
     * continue the same host run), so holes come back as one extent. */
    while (ext->length < len) {
        struct topcow_extent next = { 0 };
        uint64_t pos = off + ext->length;
        r = piece_status(img, s, pos, MIN(len - ext->length, s->block_size), &next);
        if (r < 0)
            return r;
        if (next.flags != ext->flags ||
            ((ext->flags & TOPCOW_EXTENT_OFFSET_VALID) &&
             next.host_offset != ext->host_offset + ext->length))
            break;
        ext->length += next.length;
        if (next.length < MIN(len - (pos - off), s->block_size))
            break;
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

/* The first change of a session renews FileWriteGuid and DataWriteGuid
 * (2.2.2), so readers can tell the file changed.  Needs s->lock. */
static int
session_start(struct topcow_image *img, struct vhdx_state *s)
{
    if (s->session_started)
        return 0;
    vhdx_guid_generate(s->hdr.file_write_guid);
    vhdx_guid_generate(s->hdr.data_write_guid);
    int r = vhdx_header_update(img, s);
    if (r == 0)
        __atomic_store_n(&s->session_started, true, __ATOMIC_RELEASE);
    return r;
}

/* Reserve a new block's space at the end of the file.  The space reads as
 * zeros (the file is grown over it), as every state but FULLY_PRESENT
 * reads in an image without a parent.  Needs s->lock. */
static int
block_reserve(struct topcow_image *img, struct vhdx_state *s, uint64_t *host)
{
    uint64_t end;
    RETURN_ERR_IF(ADD_OVERFLOW(s->alloc_end, (uint64_t)s->block_size, &end) ||
                      end > VHDX_MAX_FILE_OFFSET,
                  -EFBIG, "%s: vhdx: the file cannot grow any further", img->filename);
    int r = io_truncate(img->file, end);
    if (r < 0)
        return r;
    *host = s->alloc_end;
    s->alloc_end = end;
    return 0;
}

/* Point payload block @blk's BAT entry at @host, once its data is written.
 * Without a log the update is one 8-byte write; a crash before it leaves
 * the block unreferenced (leaked), never pointing at unwritten space.
 * Needs s->lock. */
static int
bat_commit(struct topcow_image *img, struct vhdx_state *s, uint64_t blk, uint64_t host)
{
    uint64_t index = payload_index(s, blk);
    uint64_t e = host | VHDX_PAYLOAD_FULLY_PRESENT;
    uint8_t le[8];
    le64_put(le, e);
    int r = io_pwrite(img->file, le, sizeof le, s->bat_off + index * 8);
    if (r == 0)
        __atomic_store_n(&s->bat[index], e, __ATOMIC_RELEASE);
    return r;
}

int
vhdx_data_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                 unsigned flags)
{
    struct vhdx_state *s = img->priv;
    RETURN_ERR_IF(s->has_parent, -ENOTSUP,
                  "%s: vhdx: writing to differencing images is not supported", img->filename);
    const uint8_t *p = buf;
    while (len > 0) {
        uint64_t blk = off / s->block_size, in = off % s->block_size;
        size_t n = (size_t)MIN((uint64_t)len, s->block_size - in);
        uint64_t e = bat_get(s, payload_index(s, blk));
        uint64_t host = VHDX_BAT_OFFSET(e);
        int r = 0;
        if (!__atomic_load_n(&s->session_started, __ATOMIC_ACQUIRE) ||
            VHDX_BAT_STATE(e) != VHDX_PAYLOAD_FULLY_PRESENT) {
            pthread_mutex_lock(&s->lock);
            r = session_start(img, s);
            e = bat_get(s, payload_index(s, blk)); /* another writer may have allocated it */
            host = VHDX_BAT_OFFSET(e);
            if (r == 0 && VHDX_BAT_STATE(e) != VHDX_PAYLOAD_FULLY_PRESENT) {
                /* Data first, then the BAT entry, so that no reader and no
                 * crash sees the entry before the data it points at. */
                r = block_reserve(img, s, &host);
                if (r == 0)
                    r = io_pwrite(img->file, p, n, host + in);
                if (r == 0)
                    r = bat_commit(img, s, blk, host);
                pthread_mutex_unlock(&s->lock);
                if (r < 0)
                    return r;
                goto next;
            }
            pthread_mutex_unlock(&s->lock);
        }
        if (r == 0)
            r = io_pwrite(img->file, p, n, host + in);
        if (r < 0)
            return r;
    next:
        p += n;
        off += n;
        len -= n;
    }
    if ((flags & TOPCOW_WRITE_FUA) && !(img->flags & TOPCOW_OPEN_UNSAFE))
        return io_flush(img->file);
    return 0;
}

int
vhdx_data_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vhdx_state *s = img->priv;
    RETURN_ERR_IF(s->has_parent, -ENOTSUP,
                  "%s: vhdx: writing to differencing images is not supported", img->filename);
    unsigned ioflags = (flags & TOPCOW_ZERO_MAY_UNMAP ? IO_ZERO_MAY_UNMAP : 0) |
                       (flags & TOPCOW_ZERO_FAST ? IO_ZERO_FAST : 0);
    while (len > 0) {
        uint64_t blk = off / s->block_size, in = off % s->block_size;
        uint64_t n = MIN(len, s->block_size - in);
        uint64_t e = bat_get(s, payload_index(s, blk));
        /* Only allocated blocks hold anything but zeros. */
        if (VHDX_BAT_STATE(e) == VHDX_PAYLOAD_FULLY_PRESENT) {
            int r = 0;
            if (!__atomic_load_n(&s->session_started, __ATOMIC_ACQUIRE)) {
                pthread_mutex_lock(&s->lock);
                r = session_start(img, s);
                pthread_mutex_unlock(&s->lock);
            }
            if (r == 0)
                r = io_write_zeroes(img->file, VHDX_BAT_OFFSET(e) + in, n, ioflags);
            if (r == -ENOTSUP)
                return err_set(r, "%s: fast zeroing is not possible here", img->filename);
            if (r < 0)
                return r;
        }
        off += n;
        len -= n;
    }
    if ((flags & TOPCOW_WRITE_FUA) && !(img->flags & TOPCOW_OPEN_UNSAFE))
        return io_flush(img->file);
    return 0;
}
