// SPDX-License-Identifier: MIT
/* The streamOptimized writer: a new stream-optimized extent is written
 * front to back, the way VMware's tools (and OVA consumers) expect it.
 * Each grain is deflated and appended with its grain marker {lba, size}
 * as soon as it is complete; grains that are all zeros are not stored.
 * When the stream ends the grain tables follow (each after a GT marker, only
 * tables that map something), then the grain directory (after a GD marker),
 * the footer marker, the footer (the header with the directory's offset)
 * and the end-of-stream marker, so the last three sectors are what readers
 * look for.  The header at sector 0 keeps gdOffset = GD_AT_END. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "cleanup.h"
#include "error.h"
#include "minmax.h"
#include "vmdk-internal.h"

#define NO_GRAIN UINT64_MAX

struct vmdk_stream {
    uint8_t *grain_buf;   /* the grain being filled */
    uint64_t open_grain;  /* its extent offset, or NO_GRAIN */
    uint8_t *out;         /* marker + deflate stream, sector padded */
    size_t out_cap;
    bool finished;
};

void
vmdk_stream_free(struct vmdk_stream *st)
{
    if (!st)
        return;
    free(st->grain_buf);
    free(st->out);
    free(st);
}

int
vmdk_stream_start(struct vmdk_sparse *sp)
{
    struct vmdk_stream *st = calloc(1, sizeof *st);
    if (!st)
        return err_set(-ENOMEM, "out of memory");
    st->open_grain = NO_GRAIN;
    st->out_cap = ALIGN_UP(12 + (size_t)sp->grain * 2 + 1024, VMDK_SECTOR);
    st->grain_buf = malloc((size_t)sp->grain);
    st->out = malloc(st->out_cap);
    if (!st->grain_buf || !st->out) {
        vmdk_stream_free(st);
        return err_set(-ENOMEM, "out of memory");
    }
    sp->stream = st;
    sp->alloc_at = ALIGN_UP(sp->h.overhead * VMDK_SECTOR, VMDK_SECTOR);
    return 0;
}

static bool
all_zero(const uint8_t *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Compress and append the open grain; mark it in its grain table. */
static int
emit_grain(struct vmdk_sparse *sp, struct io *file, const char *name)
{
    struct vmdk_stream *st = sp->stream;
    uint64_t g = st->open_grain;
    st->open_grain = NO_GRAIN;
    if (all_zero(st->grain_buf, (size_t)sp->grain))
        return 0;
    uint32_t idx = (uint32_t)(g / sp->gt_span);
    uint32_t j = (uint32_t)((g % sp->gt_span) / sp->grain);
    if (!sp->gts[idx] && !(sp->gts[idx] = calloc(sp->h.gtes_per_gt, 4)))
        return err_set(-ENOMEM, "out of memory");
    size_t clen;
    int r = vmdk_deflate(st->grain_buf, (size_t)sp->grain, st->out + 12, st->out_cap - 12, &clen);
    if (r < 0)
        return err_set(r, "%s: vmdk: cannot compress a grain", name);
    le64_put(st->out, g / VMDK_SECTOR);
    le32_put(st->out + 8, (uint32_t)clen);
    size_t total = ALIGN_UP(12 + clen, VMDK_SECTOR);
    memset(st->out + 12 + clen, 0, total - 12 - clen);
    RETURN_ERR_IF((st->out_cap + sp->alloc_at) / VMDK_SECTOR > UINT32_MAX, -ENOSPC,
                  "%s: vmdk: stream-optimized extent is full", name);
    r = io_pwrite(file, st->out, total, sp->alloc_at);
    if (r < 0)
        return r;
    sp->gts[idx][j] = (uint32_t)(sp->alloc_at / VMDK_SECTOR);
    sp->alloc_at += total;
    return 0;
}

int
vmdk_stream_pwrite(struct vmdk_sparse *sp, struct io *file, const char *name,
                   const uint8_t *buf, size_t len, uint64_t off)
{
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&sp->lock);
    struct vmdk_stream *st = sp->stream;
    RETURN_ERR_IF(!st || st->finished, -ENOTSUP,
                  "%s: vmdk: a stream-optimized image can only be written right after it is "
                  "created", name);
    while (len > 0) {
        uint64_t g = ALIGN_DOWN(off, sp->grain);
        size_t in = (size_t)(off - g);
        size_t n = (size_t)MIN((uint64_t)len, sp->grain - in);
        if (st->open_grain != g) {
            uint32_t idx = (uint32_t)(g / sp->gt_span);
            uint32_t j = (uint32_t)((g % sp->gt_span) / sp->grain);
            RETURN_ERR_IF(sp->gts[idx] && sp->gts[idx][j], -ENOTSUP,
                          "%s: vmdk: the grain at offset %" PRIu64 " of a stream-optimized "
                          "image is already written", name, g);
            if (st->open_grain != NO_GRAIN) {
                int r = emit_grain(sp, file, name);
                if (r < 0)
                    return r;
            }
            st->open_grain = g;
            memset(st->grain_buf, 0, (size_t)sp->grain);
        }
        memcpy(st->grain_buf + in, buf, n);
        /* A grain whose last byte (or the extent's) is written is complete:
         * writers go front to back, and convert writes whole grains. */
        if (in + n == sp->grain || g + in + n >= sp->capacity) {
            int r = emit_grain(sp, file, name);
            if (r < 0)
                return r;
        }
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int
write_marker(struct io *file, uint64_t pos, uint64_t sectors, enum vmdk_marker type)
{
    uint8_t m[VMDK_SECTOR] = { 0 };
    le64_put(m, sectors);
    le32_put(m + 12, type);
    return io_pwrite(file, m, sizeof m, pos);
}

int
vmdk_stream_finish(struct vmdk_sparse *sp, struct io *file, const char *name)
{
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&sp->lock);
    struct vmdk_stream *st = sp->stream;
    if (!st || st->finished)
        return 0;
    int r = 0;
    if (st->open_grain != NO_GRAIN)
        r = emit_grain(sp, file, name);
    st->finished = true;
    uint32_t *gd = calloc(MAX(sp->gd_entries, 1u), 4);
    size_t gt_bytes = ALIGN_UP((size_t)sp->h.gtes_per_gt * 4, VMDK_SECTOR);
    uint8_t *tbuf = malloc(MAX(gt_bytes, ALIGN_UP((size_t)sp->gd_entries * 4, VMDK_SECTOR)));
    if (r == 0 && (!gd || !tbuf))
        r = err_set(-ENOMEM, "out of memory");
    for (uint32_t i = 0; r == 0 && i < sp->gd_entries; i++) {
        if (!sp->gts[i])
            continue;
        r = write_marker(file, sp->alloc_at, gt_bytes / VMDK_SECTOR, VMDK_MARKER_GT);
        sp->alloc_at += VMDK_SECTOR;
        memset(tbuf, 0, gt_bytes);
        for (uint32_t k = 0; k < sp->h.gtes_per_gt; k++)
            le32_put(tbuf + 4 * k, sp->gts[i][k]);
        gd[i] = (uint32_t)(sp->alloc_at / VMDK_SECTOR);
        if (r == 0)
            r = io_pwrite(file, tbuf, gt_bytes, sp->alloc_at);
        sp->alloc_at += gt_bytes;
    }
    size_t gd_bytes = ALIGN_UP((size_t)sp->gd_entries * 4, VMDK_SECTOR);
    struct vmdk_header footer = sp->h;
    if (r == 0)
        r = write_marker(file, sp->alloc_at, gd_bytes / VMDK_SECTOR, VMDK_MARKER_GD);
    sp->alloc_at += VMDK_SECTOR;
    footer.gd_offset = sp->alloc_at / VMDK_SECTOR;
    if (r == 0 && gd_bytes) {
        memset(tbuf, 0, gd_bytes);
        for (uint32_t i = 0; i < sp->gd_entries; i++)
            le32_put(tbuf + 4 * i, gd[i]);
        r = io_pwrite(file, tbuf, gd_bytes, sp->alloc_at);
    }
    sp->alloc_at += gd_bytes;
    if (r == 0)
        r = write_marker(file, sp->alloc_at, 1, VMDK_MARKER_FOOTER);
    uint8_t sec[VMDK_SECTOR];
    vmdk_header_encode(&footer, sec);
    if (r == 0)
        r = io_pwrite(file, sec, sizeof sec, sp->alloc_at + VMDK_SECTOR);
    if (r == 0)
        r = write_marker(file, sp->alloc_at + 2 * VMDK_SECTOR, 0, VMDK_MARKER_EOS);
    sp->alloc_at += 3 * VMDK_SECTOR;
    /* A file longer than what was written would hide the footer. */
    if (r == 0)
        r = io_truncate(file, sp->alloc_at);
    free(tbuf);
    if (r == 0) {
        sp->h.gd_offset = footer.gd_offset;
        free(sp->gd);
        sp->gd = gd;
        sp->file_size = sp->alloc_at;
    } else {
        free(gd);
    }
    return r;
}
