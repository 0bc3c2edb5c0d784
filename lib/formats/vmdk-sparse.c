// SPDX-License-Identifier: MIT
/* Hosted sparse extents ("KDMV"): the header (or, for stream-optimized
 * extents whose header says GD_AT_END, the footer), the grain directory and
 * the grain tables, grain lookup, compressed grains, and grain allocation
 * for writes.  Spec: VMware "Virtual Disk Format 1.1", "Hosted Sparse
 * Extent Header" and "Stream-Optimized Compressed Sparse Extents"; the
 * zeroed-grain GTE (value 1, flag bit 2) is from version 5.0 of the note. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "error.h"
#include "minmax.h"
#include "vmdk-internal.h"

/* Limits that keep hostile headers from asking for unbounded memory. */
#define MAX_GRAIN_SECTORS (1u << 15)  /* 16 MiB grains */
#define MAX_GTES_PER_GT (1u << 20)    /* 4 MiB grain tables */
#define MAX_GD_ENTRIES (1u << 24)     /* 64 MiB grain directory */

void
vmdk_header_decode(const uint8_t b[VMDK_SECTOR], struct vmdk_header *h)
{
    h->version = le32_get(b + 4);
    h->flags = le32_get(b + 8);
    h->capacity = le64_get(b + 12);
    h->grain_size = le64_get(b + 20);
    h->desc_offset = le64_get(b + 28);
    h->desc_size = le64_get(b + 36);
    h->gtes_per_gt = le32_get(b + 44);
    h->rgd_offset = le64_get(b + 48);
    h->gd_offset = le64_get(b + 56);
    h->overhead = le64_get(b + 64);
    h->unclean = b[72];
    h->compress_algorithm = le16_get(b + 77);
}

void
vmdk_header_encode(const struct vmdk_header *h, uint8_t b[VMDK_SECTOR])
{
    memset(b, 0, VMDK_SECTOR);
    le32_put(b, VMDK_SPARSE_MAGIC);
    le32_put(b + 4, h->version);
    le32_put(b + 8, h->flags);
    le64_put(b + 12, h->capacity);
    le64_put(b + 20, h->grain_size);
    le64_put(b + 28, h->desc_offset);
    le64_put(b + 36, h->desc_size);
    le32_put(b + 44, h->gtes_per_gt);
    le64_put(b + 48, h->rgd_offset);
    le64_put(b + 56, h->gd_offset);
    le64_put(b + 64, h->overhead);
    b[72] = h->unclean;
    /* The newline-detection characters: a file that went through a text
     * mode transfer is recognisable by them. */
    b[73] = '\n';
    b[74] = ' ';
    b[75] = '\r';
    b[76] = '\n';
    b[77] = (uint8_t)h->compress_algorithm;
    b[78] = (uint8_t)(h->compress_algorithm >> 8);
}

int
vmdk_inflate(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen, size_t *produced)
{
    z_stream z = { 0 };
    if (inflateInit(&z) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)MIN(inlen, (size_t)UINT32_MAX);
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    int ret = inflate(&z, Z_FINISH);
    *produced = outlen - z.avail_out;
    inflateEnd(&z);
    /* A full output buffer is enough even if the stream goes on. */
    return ret == Z_STREAM_END || (ret == Z_BUF_ERROR && z.avail_out == 0) ? 0 : -EUCLEAN;
}

int
vmdk_deflate(const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap, size_t *produced)
{
    uLongf n = outcap;
    int ret = compress2(out, &n, in, inlen, Z_DEFAULT_COMPRESSION);
    if (ret == Z_MEM_ERROR)
        return -ENOMEM;
    if (ret != Z_OK)
        return -ENOSPC; /* does not fit in @outcap */
    *produced = n;
    return 0;
}

/* Read a grain directory of @n entries at sector @sector into a new array. */
static int
load_gd(struct io *file, const char *name, const char *what, uint64_t sector, uint32_t n,
        uint64_t file_size, uint32_t **out)
{
    uint64_t pos, end;
    RETURN_ERR_IF(MUL_OVERFLOW(sector, (uint64_t)VMDK_SECTOR, &pos) ||
                      ADD_OVERFLOW(pos, (uint64_t)n * 4, &end) || end > file_size || sector == 0,
                  -EUCLEAN, "%s: vmdk: %s of %" PRIu32 " entries at sector %" PRIu64
                  " lies outside the file", name, what, n, sector);
    uint32_t *gd = malloc((size_t)n * 4);
    if (!gd)
        return err_set(-ENOMEM, "out of memory");
    int r = io_pread(file, gd, (size_t)n * 4, pos);
    if (r < 0) {
        free(gd);
        return r;
    }
    for (uint32_t i = 0; i < n; i++)
        gd[i] = le32_get(&gd[i]);
    *out = gd;
    return 0;
}

/* Find the footer of a stream-optimized extent: the last three sectors are
 * a footer marker, the footer (a header whose gdOffset is valid) and the
 * end-of-stream marker.  Returns 1 and fills *@footer, 0 if there is none. */
static int
read_footer(struct io *file, uint64_t file_size, struct vmdk_header *footer)
{
    uint8_t buf[3 * VMDK_SECTOR];
    if (file_size < 4 * VMDK_SECTOR)
        return 0;
    int r = io_pread(file, buf, sizeof buf, file_size - sizeof buf);
    if (r < 0)
        return r;
    if (le32_get(buf + 8) != 0 || le32_get(buf + 12) != VMDK_MARKER_FOOTER ||
        le32_get(buf + VMDK_SECTOR) != VMDK_SPARSE_MAGIC)
        return 0;
    vmdk_header_decode(buf + VMDK_SECTOR, footer);
    return 1;
}

static int
check_header(const struct vmdk_header *h, const char *name, uint32_t *gd_entries)
{
    RETURN_ERR_IF(h->version < 1 || h->version > 3, -ENOTSUP,
                  "%s: vmdk: sparse extent version %" PRIu32 " is not supported", name,
                  h->version);
    RETURN_ERR_IF((h->flags & VMDK_FLAG_COMPRESSED) && h->compress_algorithm != 1, -ENOTSUP,
                  "%s: vmdk: compression algorithm %u is not supported", name,
                  h->compress_algorithm);
    RETURN_ERR_IF(h->grain_size == 0 || h->grain_size > MAX_GRAIN_SECTORS ||
                      (h->grain_size & (h->grain_size - 1)),
                  -EUCLEAN, "%s: vmdk: grain size of %" PRIu64 " sectors is invalid", name,
                  h->grain_size);
    RETURN_ERR_IF(h->gtes_per_gt == 0 || h->gtes_per_gt > MAX_GTES_PER_GT, -EUCLEAN,
                  "%s: vmdk: %" PRIu32 " entries per grain table is invalid", name,
                  h->gtes_per_gt);
    uint64_t span = h->grain_size * h->gtes_per_gt; /* sectors; < 2^35 */
    uint64_t n = h->capacity / span + (h->capacity % span != 0);
    RETURN_ERR_IF(n > MAX_GD_ENTRIES, -EUCLEAN,
                  "%s: vmdk: grain directory of %" PRIu64 " entries is too big "
                  "(L1 size too big)", name, n);
    RETURN_ERR_IF(h->capacity > INT64_MAX / VMDK_SECTOR, -EUCLEAN,
                  "%s: vmdk: capacity of %" PRIu64 " sectors is too big", name, h->capacity);
    *gd_entries = (uint32_t)n;
    return 0;
}

void
vmdk_sparse_close(struct vmdk_sparse *sp)
{
    if (!sp)
        return;
    vmdk_stream_free(sp->stream);
    for (uint32_t i = 0; sp->gts && i < sp->gd_entries; i++)
        free(sp->gts[i]);
    free(sp->gts);
    free(sp->gd);
    free(sp->rgd);
    pthread_mutex_destroy(&sp->lock);
    free(sp);
}

int
vmdk_sparse_open(struct io *file, const char *name, const uint8_t hdr[VMDK_SECTOR],
                 bool writable, struct vmdk_sparse **out)
{
    *out = NULL;
    struct vmdk_sparse *sp = calloc(1, sizeof *sp);
    if (!sp)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&sp->lock, NULL);
    struct vmdk_header *h = &sp->h;
    vmdk_header_decode(hdr, h);
    int r = io_get_size(file, &sp->file_size);
    /* A stream-optimized extent keeps its directory at the end, found
     * through the footer, which then replaces the header.  One being
     * created (header and descriptor only) has no footer yet: it is
     * written when the stream ends. */
    bool fresh_stream = false;
    if (r == 0 && h->gd_offset == VMDK_GD_AT_END) {
        struct vmdk_header footer;
        r = read_footer(file, sp->file_size, &footer);
        if (r == 1) {
            *h = footer;
            r = 0;
            if (h->gd_offset == VMDK_GD_AT_END)
                r = err_set(-EUCLEAN, "%s: vmdk: the footer does not locate the grain "
                            "directory", name);
        } else if (r == 0 && writable && (h->flags & VMDK_FLAG_COMPRESSED) &&
                   sp->file_size <= h->overhead * VMDK_SECTOR) {
            fresh_stream = true;
        } else if (r == 0) {
            r = err_set(-EUCLEAN, "%s: vmdk: the grain directory is at the end of the file "
                        "but the footer is missing", name);
        }
    }
    if (r == 0)
        r = check_header(h, name, &sp->gd_entries);
    if (r < 0)
        goto fail;
    sp->capacity = h->capacity * VMDK_SECTOR;
    sp->grain = h->grain_size * VMDK_SECTOR;
    sp->gt_span = sp->grain * h->gtes_per_gt;
    sp->compressed = (h->flags & VMDK_FLAG_COMPRESSED) != 0;
    sp->markers = (h->flags & VMDK_FLAG_MARKERS) != 0;
    sp->zeroed_grain = (h->flags & VMDK_FLAG_ZEROED_GRAIN) != 0;
    sp->alloc_at = ALIGN_UP(sp->file_size, VMDK_SECTOR);
    sp->gts = calloc(MAX(sp->gd_entries, 1u), sizeof *sp->gts);
    if (!sp->gts) {
        r = err_set(-ENOMEM, "out of memory");
        goto fail;
    }
    if (fresh_stream) {
        r = vmdk_stream_start(sp);
    } else if (sp->gd_entries) {
        r = load_gd(file, name, "grain directory", h->gd_offset, sp->gd_entries,
                    sp->file_size, &sp->gd);
        if (r == 0 && (h->flags & VMDK_FLAG_REDUNDANT_GT) && h->rgd_offset && writable)
            r = load_gd(file, name, "redundant grain directory", h->rgd_offset,
                        sp->gd_entries, sp->file_size, &sp->rgd);
        /* A stream that maps nothing yet (as created) may still be written:
         * the writer starts again after the header. */
        bool empty = true;
        for (uint32_t i = 0; r == 0 && i < sp->gd_entries && empty; i++)
            empty = sp->gd[i] == 0;
        if (r == 0 && empty && writable && sp->compressed) {
            sp->alloc_at = h->overhead * VMDK_SECTOR;
            r = vmdk_stream_start(sp);
        }
    }
    if (r < 0)
        goto fail;
    *out = sp;
    return 0;
fail:
    vmdk_sparse_close(sp);
    return r;
}

/* The grain table @idx, loaded on first use.  Caller holds sp->lock. */
static int
get_gt(struct vmdk_sparse *sp, struct io *file, const char *name, uint32_t idx, uint32_t **gtp)
{
    *gtp = sp->gts[idx];
    if (*gtp || !sp->gd || sp->gd[idx] == 0)
        return 0;
    size_t bytes = (size_t)sp->h.gtes_per_gt * 4;
    uint64_t pos = (uint64_t)sp->gd[idx] * VMDK_SECTOR;
    RETURN_ERR_IF(pos + bytes > sp->file_size, -EUCLEAN,
                  "%s: vmdk: grain table %" PRIu32 " at sector %" PRIu32
                  " lies outside the file", name, idx, sp->gd[idx]);
    uint32_t *gt = malloc(bytes);
    if (!gt)
        return err_set(-ENOMEM, "out of memory");
    int r = io_pread(file, gt, bytes, pos);
    if (r < 0) {
        free(gt);
        return r;
    }
    for (uint32_t i = 0; i < sp->h.gtes_per_gt; i++)
        gt[i] = le32_get(&gt[i]);
    sp->gts[idx] = *gtp = gt;
    return 0;
}

/* The kind of an entry (0: unallocated; 1 with zeroed grains: zero). */
static enum vmdk_grain_kind
gte_kind(const struct vmdk_sparse *sp, uint32_t gte)
{
    if (gte == 0)
        return VMDK_GRAIN_UNALLOCATED;
    if (gte == 1 && sp->zeroed_grain)
        return VMDK_GRAIN_ZERO;
    return sp->compressed ? VMDK_GRAIN_COMPRESSED : VMDK_GRAIN_DATA;
}

int
vmdk_sparse_lookup_locked(struct vmdk_sparse *sp, struct io *file, const char *name,
                          uint64_t off, enum vmdk_grain_kind *kind, uint64_t *sector)
{
    uint32_t idx = (uint32_t)(off / sp->gt_span);
    uint32_t *gt;
    *kind = VMDK_GRAIN_UNALLOCATED;
    *sector = 0;
    if (off / sp->gt_span >= sp->gd_entries)
        return 0;
    int r = get_gt(sp, file, name, idx, &gt);
    uint32_t gte = r == 0 && gt ? gt[(off % sp->gt_span) / sp->grain] : 0;
    if (r < 0)
        return r;
    *kind = gte_kind(sp, gte);
    if (*kind == VMDK_GRAIN_DATA || *kind == VMDK_GRAIN_COMPRESSED)
        *sector = gte;
    return 0;
}

int
vmdk_sparse_run(struct vmdk_sparse *sp, struct io *file, const char *name, uint64_t off,
                uint64_t max_len, enum vmdk_grain_kind *kind, uint64_t *sector, uint64_t *len)
{
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&sp->lock);
    int r = vmdk_sparse_lookup_locked(sp, file, name, off, kind, sector);
    if (r < 0)
        return r;
    uint64_t in_gt = off % sp->gt_span;
    uint64_t idx = off / sp->gt_span;
    uint64_t run = MIN(max_len, sp->grain - off % sp->grain);
    uint32_t *gt = idx < sp->gd_entries ? sp->gts[idx] : NULL;
    if (!gt) {
        /* No table (or past the directory): unallocated to the table's end. */
        *len = idx < sp->gd_entries ? MIN(max_len, sp->gt_span - in_gt) : max_len;
        return 0;
    }
    /* Further grains of this table of the same kind (data: contiguous). */
    uint64_t g = in_gt / sp->grain + 1, ngt = sp->gt_span / sp->grain;
    for (; g < ngt && run < max_len; g++) {
        uint32_t gte = gt[g];
        if (gte_kind(sp, gte) != *kind ||
            (*kind == VMDK_GRAIN_DATA && gte != *sector + (run + off % sp->grain) / VMDK_SECTOR))
            break;
        run = MIN(max_len, run + sp->grain);
    }
    *len = run;
    return 0;
}

int
vmdk_sparse_lookup(struct vmdk_sparse *sp, struct io *file, const char *name, uint64_t off,
                   enum vmdk_grain_kind *kind, uint64_t *sector)
{
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&sp->lock);
    return vmdk_sparse_lookup_locked(sp, file, name, off, kind, sector);
}

int
vmdk_sparse_read_compressed(struct vmdk_sparse *sp, struct io *file, const char *name,
                            uint64_t sector, uint8_t *grain_buf)
{
    uint64_t pos = sector * VMDK_SECTOR;
    /* A stream that does not fit in twice the grain (plus its marker) is
     * not one a writer produced. */
    size_t cap = (size_t)sp->grain * 2 + 12;
    size_t len = cap;
    size_t skip = 0;
    if (sp->markers) {
        uint8_t m[12];
        int r = io_pread(file, m, sizeof m, pos);
        if (r < 0)
            return r;
        uint32_t size = le32_get(m + 8);
        RETURN_ERR_IF(size == 0 || size > cap - 12, -EUCLEAN,
                      "%s: vmdk: compressed grain at sector %" PRIu64 " has a bad size %" PRIu32,
                      name, sector, size);
        len = size;
        skip = 12;
    }
    RETURN_ERR_IF(pos + skip >= sp->file_size, -EUCLEAN,
                  "%s: vmdk: compressed grain at sector %" PRIu64 " lies outside the file",
                  name, sector);
    len = (size_t)MIN((uint64_t)len, sp->file_size - pos - skip);
    uint8_t *in = malloc(len);
    if (!in)
        return err_set(-ENOMEM, "out of memory");
    int r = io_pread(file, in, len, pos + skip);
    size_t produced = 0;
    if (r == 0) {
        r = vmdk_inflate(in, len, grain_buf, sp->grain, &produced);
        if (r == -ENOMEM)
            r = err_set(r, "out of memory");
        else if (r < 0)
            r = err_set(r, "%s: vmdk: compressed grain at sector %" PRIu64 " is corrupt", name,
                        sector);
    }
    free(in);
    if (r == 0)
        memset(grain_buf + produced, 0, sp->grain - produced); /* a short last grain */
    return r;
}

static int
put_le32(struct io *file, uint64_t pos, uint32_t v)
{
    uint8_t b[4];
    le32_put(b, v);
    return io_pwrite(file, b, 4, pos);
}

/* A new zeroed grain table at the end of the file; returns its sector. */
static int
append_table(struct vmdk_sparse *sp, struct io *file, uint32_t *sector)
{
    uint64_t bytes = ALIGN_UP((uint64_t)sp->h.gtes_per_gt * 4, VMDK_SECTOR);
    RETURN_ERR_IF(sp->alloc_at / VMDK_SECTOR + bytes / VMDK_SECTOR > UINT32_MAX, -ENOSPC,
                  "vmdk: sparse extent is full (2 TiB)");
    int r = io_write_zeroes(file, sp->alloc_at, bytes, 0);
    if (r < 0)
        return r;
    *sector = (uint32_t)(sp->alloc_at / VMDK_SECTOR);
    sp->alloc_at += bytes;
    sp->file_size = MAX(sp->file_size, sp->alloc_at);
    return 0;
}

int
vmdk_sparse_store_grain(struct vmdk_sparse *sp, struct io *file, const char *name,
                        uint64_t grain_off, const uint8_t *data)
{
    uint32_t idx = (uint32_t)(grain_off / sp->gt_span);
    uint32_t j = (uint32_t)((grain_off % sp->gt_span) / sp->grain);
    RETURN_ERR_IF(idx >= sp->gd_entries, -EINVAL, "%s: vmdk: write beyond the extent", name);
    RETURN_ERR_IF(!sp->gd, -ENOTSUP, "%s: vmdk: extent has no grain directory", name);
    uint32_t *gt;
    int r = get_gt(sp, file, name, idx, &gt);
    if (r < 0)
        return r;
    if (!gt) {
        /* No table yet: append one (and its redundant copy), then point the
         * directories at them; a crash in between leaks a table only. */
        uint32_t s, rs = 0;
        r = append_table(sp, file, &s);
        if (r == 0 && sp->rgd)
            r = append_table(sp, file, &rs);
        if (r == 0)
            r = put_le32(file, sp->h.gd_offset * VMDK_SECTOR + idx * 4ull, s);
        if (r == 0 && sp->rgd)
            r = put_le32(file, sp->h.rgd_offset * VMDK_SECTOR + idx * 4ull, rs);
        if (r < 0)
            return r;
        sp->gd[idx] = s;
        if (sp->rgd)
            sp->rgd[idx] = rs;
        if (!(gt = calloc(sp->h.gtes_per_gt, 4)))
            return err_set(-ENOMEM, "out of memory");
        sp->gts[idx] = gt;
    }
    uint32_t gte = 1;
    if (data) {
        RETURN_ERR_IF((sp->alloc_at + sp->grain) / VMDK_SECTOR > UINT32_MAX, -ENOSPC,
                      "%s: vmdk: sparse extent is full (2 TiB)", name);
        r = io_pwrite(file, data, (size_t)sp->grain, sp->alloc_at);
        if (r < 0)
            return r;
        gte = (uint32_t)(sp->alloc_at / VMDK_SECTOR);
        sp->alloc_at += sp->grain;
        sp->file_size = MAX(sp->file_size, sp->alloc_at);
    }
    /* The grain is written before the entries that point at it. */
    r = put_le32(file, (uint64_t)sp->gd[idx] * VMDK_SECTOR + j * 4ull, gte);
    if (r == 0 && sp->rgd && sp->rgd[idx])
        r = put_le32(file, (uint64_t)sp->rgd[idx] * VMDK_SECTOR + j * 4ull, gte);
    if (r == 0)
        gt[j] = gte;
    return r;
}
