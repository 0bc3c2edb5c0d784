// SPDX-License-Identifier: MIT
/* The VMDK format: an image is a list of extents (flat, zero or hosted
 * sparse), described by a text descriptor that is either a file of its own
 * (monolithicFlat, twoGbMaxExtent*, vmfs) or embedded in a single sparse
 * extent (monolithicSparse, streamOptimized).  This file opens the extents,
 * maps guest offsets onto them and answers reads, writes, block status and
 * info; the sparse metadata lives in vmdk-sparse.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "error.h"
#include "minmax.h"
#include "vmdk-internal.h"

#define COWD_MAGIC 0x44574f43u    /* "COWD": ESX vmfsSparse, not supported */
#define MAX_DESCRIPTOR (1u << 20) /* a descriptor file larger than this is not one */

static bool
looks_like_descriptor(const uint8_t *buf, size_t len)
{
    static const char sig[] = "# Disk DescriptorFile";
    if (!buf)
        return false;
    if (len >= sizeof sig - 1 && !memcmp(buf, sig, sizeof sig - 1))
        return true;
    /* Hand-written descriptors may lack the comment: a version line and a
     * createType key within the first sector, all of it text. */
    size_t n = strnlen((const char *)buf, len);
    for (size_t i = 0; i < n; i++)
        if (buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\r' && buf[i] != '\t')
            return false;
    return n > 0 && memmem(buf, n, "version=", 8) && memmem(buf, n, "createType", 10);
}

static int
vmdk_probe(const uint8_t *buf, size_t len)
{
    if (len >= 4 && (le32_get(buf) == VMDK_SPARSE_MAGIC || le32_get(buf) == COWD_MAGIC))
        return 100;
    return looks_like_descriptor(buf, len) ? 100 : 0;
}

static void
free_state(struct vmdk_state *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nextents; i++) {
        struct vmdk_extent *e = &s->extents[i];
        vmdk_sparse_close(e->sp);
        if (e->own_file)
            io_close(e->file);
        free(e->path);
    }
    free(s->extents);
    free(s->info);
    vmdk_descriptor_free(&s->desc);
    free(s);
}

/* The io flags extents are opened with: those of the image file. */
static unsigned
extent_io_flags(struct topcow_image *img)
{
    return img->file->flags & (IO_RDONLY | IO_NOLOCK | IO_DIRECT);
}

/* Read the descriptor embedded in the sparse extent at the start of
 * img->file (if any) for CID, createType and the parent. */
static int
read_embedded_descriptor(struct topcow_image *img, struct vmdk_state *s,
                         const struct vmdk_header *h)
{
    if (h->desc_offset == 0 || h->desc_size == 0)
        return 0;
    RETURN_ERR_IF(h->desc_size > MAX_DESCRIPTOR / VMDK_SECTOR ||
                      h->desc_offset > UINT64_MAX / VMDK_SECTOR - h->desc_size,
                  -EUCLEAN, "%s: vmdk: embedded descriptor of %" PRIu64 " sectors is invalid",
                  img->filename, h->desc_size);
    size_t len = (size_t)h->desc_size * VMDK_SECTOR;
    char *text = malloc(len);
    if (!text)
        return err_set(-ENOMEM, "out of memory");
    int r = io_pread(img->file, text, len, h->desc_offset * VMDK_SECTOR);
    if (r == 0)
        r = vmdk_descriptor_parse(text, len, img->filename, &s->desc);
    free(text);
    return r;
}

static int
open_sparse_extent(struct topcow_image *img, struct vmdk_extent *e, const char *name)
{
    uint8_t hdr[VMDK_SECTOR];
    int r = io_pread(e->file, hdr, sizeof hdr, 0);
    if (r < 0)
        return r;
    RETURN_ERR_IF(le32_get(hdr) == COWD_MAGIC, -ENOTSUP,
                  "%s: vmdk: vmfsSparse (COWD) extents are not supported", name);
    RETURN_ERR_IF(le32_get(hdr) != VMDK_SPARSE_MAGIC, -EUCLEAN,
                  "%s: vmdk: sparse extent has no KDMV header", name);
    return vmdk_sparse_open(e->file, name, hdr, !img->read_only, &e->sp);
}

/* A monolithic sparse file: one extent, the file itself. */
static int
open_monolithic(struct topcow_image *img, struct vmdk_state *s)
{
    s->extents = calloc(1, sizeof *s->extents);
    if (!s->extents)
        return err_set(-ENOMEM, "out of memory");
    s->nextents = 1;
    struct vmdk_extent *e = &s->extents[0];
    e->type = VMDK_EXTENT_SPARSE;
    e->file = img->file;
    if (!(e->path = strdup(img->filename)))
        return err_set(-ENOMEM, "out of memory");
    int r = open_sparse_extent(img, e, img->filename);
    if (r < 0)
        return r;
    e->length = e->sp->capacity;
    r = read_embedded_descriptor(img, s, &e->sp->h);
    if (r < 0)
        return r;
    e->format = "";
    return 0;
}

/* A descriptor file: open every extent it lists, relative to its directory. */
static int
open_described(struct topcow_image *img, struct vmdk_state *s)
{
    uint64_t size;
    int r = io_get_size(img->file, &size);
    if (r < 0)
        return r;
    RETURN_ERR_IF(size > MAX_DESCRIPTOR, -EUCLEAN,
                  "%s: vmdk: not a sparse extent, and too big for a descriptor file",
                  img->filename);
    char *text = malloc((size_t)size + 1);
    if (!text)
        return err_set(-ENOMEM, "out of memory");
    r = io_pread(img->file, text, (size_t)size, 0);
    if (r == 0)
        r = vmdk_descriptor_parse(text, (size_t)size, img->filename, &s->desc);
    free(text);
    if (r < 0)
        return r;
    s->extents = calloc(s->desc.nextents, sizeof *s->extents);
    if (!s->extents)
        return err_set(-ENOMEM, "out of memory");
    uint64_t start = 0;
    for (size_t i = 0; i < s->desc.nextents; i++) {
        const struct vmdk_desc_extent *d = &s->desc.extents[i];
        struct vmdk_extent *e = &s->extents[i];
        s->nextents = i + 1;
        e->type = d->type;
        e->read_only = d->read_only;
        e->start = start;
        RETURN_ERR_IF(MUL_OVERFLOW(d->sectors, (uint64_t)VMDK_SECTOR, &e->length) ||
                          ADD_OVERFLOW(start, e->length, &start) || start > INT64_MAX,
                      -EUCLEAN, "%s: vmdk: extent %zu: size of %" PRIu64 " sectors is too big",
                      img->filename, i, d->sectors);
        e->format = d->type_name;
        if (d->type == VMDK_EXTENT_ZERO)
            continue;
        e->path = image_resolve_relative(img->filename, d->filename);
        if (!e->path)
            return err_set(-ENOMEM, "out of memory");
        r = io_file_open(e->path, extent_io_flags(img), &e->file);
        if (r < 0)
            return r;
        e->own_file = true;
        if (d->type == VMDK_EXTENT_FLAT) {
            RETURN_ERR_IF(MUL_OVERFLOW(d->offset, (uint64_t)VMDK_SECTOR, &e->flat_offset) ||
                              e->flat_offset > INT64_MAX - e->length,
                          -EUCLEAN, "%s: vmdk: extent %zu: offset %" PRIu64 " is too big",
                          img->filename, i, d->offset);
        } else {
            r = open_sparse_extent(img, e, e->path);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

static int
vmdk_open(struct topcow_image *img)
{
    uint8_t first[VMDK_SECTOR];
    int r = io_pread(img->file, first, sizeof first, 0);
    if (r < 0)
        return r;
    struct vmdk_state *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    s->desc.parent_cid = UINT32_MAX;
    bool sparse = le32_get(first) == VMDK_SPARSE_MAGIC;
    if (le32_get(first) == COWD_MAGIC) {
        r = err_set(-ENOTSUP, "%s: vmdk: vmfsSparse (COWD) images are not supported",
                    img->filename);
    } else if (!sparse && !looks_like_descriptor(first, sizeof first)) {
        r = err_set(-EUCLEAN, "%s: vmdk: neither a sparse extent nor a descriptor file",
                    img->filename);
    }
    if (r == 0)
        r = sparse ? open_monolithic(img, s) : open_described(img, s);
    if (r == 0 && !(s->info = calloc(s->nextents, sizeof *s->info)))
        r = err_set(-ENOMEM, "out of memory");
    if (r == 0) {
        img->size = 0;
        for (size_t i = 0; i < s->nextents; i++) {
            struct vmdk_extent *e = &s->extents[i];
            struct topcow_vmdk_extent *x = &s->info[i];
            x->filename = e->path ? e->path : "";
            x->format = e->format;
            x->virtual_size = e->length;
            if (e->sp) {
                x->cluster_size = (uint32_t)e->sp->grain;
                x->compressed = e->sp->compressed;
            }
            img->size += e->length;
        }
        if (s->desc.parent_hint) {
            img->backing_file = strdup(s->desc.parent_hint);
            img->backing_format = strdup("vmdk");
            if (!img->backing_file || !img->backing_format)
                r = err_set(-ENOMEM, "out of memory");
        }
    }
    if (r < 0) {
        free_state(s);
        return r;
    }
    img->priv = s;
    return 0;
}

static void
vmdk_close(struct topcow_image *img)
{
    free_state(img->priv);
    img->priv = NULL;
}

/* The extent holding guest offset @off (< img->size). */
static struct vmdk_extent *
find_extent(struct vmdk_state *s, uint64_t off)
{
    size_t lo = 0, hi = s->nextents;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->extents[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    return &s->extents[lo];
}

static const char *
extent_name(struct topcow_image *img, const struct vmdk_extent *e)
{
    return e->path ? e->path : img->filename;
}

static int
read_sparse(struct topcow_image *img, struct vmdk_extent *e, uint8_t *buf, size_t len,
            uint64_t rel)
{
    struct vmdk_sparse *sp = e->sp;
    uint8_t *grain_buf = NULL;
    int r = 0;
    while (len > 0 && r == 0) {
        uint64_t in = rel % sp->grain;
        size_t n = (size_t)MIN((uint64_t)len, sp->grain - in);
        enum vmdk_grain_kind kind;
        uint64_t sector;
        r = vmdk_sparse_lookup(sp, e->file, extent_name(img, e), rel, &kind, &sector);
        if (r < 0)
            break;
        switch (kind) {
        case VMDK_GRAIN_UNALLOCATED:
            r = image_backing_pread(img, buf, n, e->start + rel);
            break;
        case VMDK_GRAIN_ZERO:
            memset(buf, 0, n);
            break;
        case VMDK_GRAIN_DATA:
            r = io_pread(e->file, buf, n, sector * VMDK_SECTOR + in);
            break;
        case VMDK_GRAIN_COMPRESSED:
            if (!grain_buf && !(grain_buf = malloc((size_t)sp->grain))) {
                r = err_set(-ENOMEM, "out of memory");
                break;
            }
            r = vmdk_sparse_read_compressed(sp, e->file, extent_name(img, e), sector,
                                            grain_buf);
            if (r == 0)
                memcpy(buf, grain_buf + in, n);
            break;
        }
        buf += n;
        rel += n;
        len -= n;
    }
    free(grain_buf);
    return r;
}

static int
vmdk_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    struct vmdk_state *s = img->priv;
    uint8_t *p = buf;
    while (len > 0) {
        struct vmdk_extent *e = find_extent(s, off);
        uint64_t rel = off - e->start;
        size_t n = (size_t)MIN((uint64_t)len, e->length - rel);
        int r = 0;
        if (e->type == VMDK_EXTENT_ZERO)
            memset(p, 0, n);
        else if (e->type == VMDK_EXTENT_FLAT)
            r = io_pread(e->file, p, n, e->flat_offset + rel);
        else
            r = read_sparse(img, e, p, n, rel);
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Write part of one grain that has no data cluster yet (unallocated or
 * zeroed): build the whole grain from what it reads as now, then store it.
 * @data NULL writes zeros. */
static int
allocate_grain(struct topcow_image *img, struct vmdk_extent *e, const uint8_t *data, size_t n,
               uint64_t rel)
{
    struct vmdk_sparse *sp = e->sp;
    const char *name = extent_name(img, e);
    uint64_t g = ALIGN_DOWN(rel, sp->grain);
    size_t in = (size_t)(rel - g);
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&sp->lock);
    /* Another writer may have allocated it since the caller looked. */
    enum vmdk_grain_kind kind;
    uint64_t sector;
    int r = vmdk_sparse_lookup_locked(sp, e->file, name, g, &kind, &sector);
    if (r < 0)
        return r;
    if (kind == VMDK_GRAIN_DATA) {
        if (!data)
            return io_write_zeroes(e->file, sector * VMDK_SECTOR + in, n, 0);
        return io_pwrite(e->file, data, n, sector * VMDK_SECTOR + in);
    }
    uint8_t *grain = malloc((size_t)sp->grain);
    if (!grain)
        return err_set(-ENOMEM, "out of memory");
    if (kind == VMDK_GRAIN_ZERO || n == sp->grain)
        memset(grain, 0, (size_t)sp->grain);
    else
        r = image_backing_copy(img, grain, (size_t)sp->grain, e->start + g);
    if (r == 0) {
        if (data)
            memcpy(grain + in, data, n);
        else
            memset(grain + in, 0, n);
        r = vmdk_sparse_store_grain(sp, e->file, name, g, grain);
    }
    free(grain);
    return r;
}

static int
write_sparse(struct topcow_image *img, struct vmdk_extent *e, const uint8_t *buf, size_t len,
             uint64_t rel)
{
    struct vmdk_sparse *sp = e->sp;
    const char *name = extent_name(img, e);
    if (sp->stream || sp->compressed)
        return vmdk_stream_pwrite(sp, e->file, name, buf, len, rel);
    while (len > 0) {
        size_t n = (size_t)MIN((uint64_t)len, sp->grain - rel % sp->grain);
        enum vmdk_grain_kind kind;
        uint64_t sector;
        RETURN_ERR_IF(rel >= sp->capacity, -EINVAL,
                      "%s: vmdk: write beyond the sparse extent's capacity", name);
        int r = vmdk_sparse_lookup(sp, e->file, name, rel, &kind, &sector);
        if (r == 0 && kind == VMDK_GRAIN_DATA)
            r = io_pwrite(e->file, buf, n, sector * VMDK_SECTOR + rel % sp->grain);
        else if (r == 0)
            r = allocate_grain(img, e, buf, n, rel);
        if (r < 0)
            return r;
        buf += n;
        rel += n;
        len -= n;
    }
    return 0;
}

static int
flush_files(struct topcow_image *img)
{
    struct vmdk_state *s = img->priv;
    int r = 0;
    for (size_t i = 0; i < s->nextents && r == 0; i++)
        if (s->extents[i].own_file)
            r = io_flush(s->extents[i].file);
    return r == 0 ? io_flush(img->file) : r;
}

static int
vmdk_flush(struct topcow_image *img)
{
    if (img->flags & TOPCOW_OPEN_UNSAFE)
        return 0;
    return flush_files(img);
}

static int
check_writable(struct topcow_image *img, const struct vmdk_extent *e)
{
    RETURN_ERR_IF(e->read_only, -EROFS, "%s: vmdk: extent is read-only in the descriptor",
                  extent_name(img, e));
    RETURN_ERR_IF(e->type == VMDK_EXTENT_ZERO, -EROFS, "%s: vmdk: a ZERO extent cannot be "
                  "written", img->filename);
    return 0;
}

static int
vmdk_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off, unsigned flags)
{
    struct vmdk_state *s = img->priv;
    const uint8_t *p = buf;
    while (len > 0) {
        struct vmdk_extent *e = find_extent(s, off);
        uint64_t rel = off - e->start;
        size_t n = (size_t)MIN((uint64_t)len, e->length - rel);
        int r = check_writable(img, e);
        if (r == 0 && e->type == VMDK_EXTENT_FLAT)
            r = io_pwrite(e->file, p, n, e->flat_offset + rel);
        else if (r == 0)
            r = write_sparse(img, e, p, n, rel);
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return (flags & TOPCOW_WRITE_FUA) ? flush_files(img) : 0;
}

static int
zero_sparse(struct topcow_image *img, struct vmdk_extent *e, uint64_t len, uint64_t rel,
            unsigned flags)
{
    struct vmdk_sparse *sp = e->sp;
    const char *name = extent_name(img, e);
    static const uint8_t zeros[65536];
    if (sp->stream || sp->compressed) {
        RETURN_ERR_IF(flags & TOPCOW_ZERO_FAST, -ENOTSUP, "%s: fast zeroing is not possible "
                      "here", img->filename);
        while (len > 0) { /* zero grains are not stored at all */
            size_t n = (size_t)MIN(len, (uint64_t)sizeof zeros);
            int r = vmdk_stream_pwrite(sp, e->file, name, zeros, n, rel);
            if (r < 0)
                return r;
            rel += n;
            len -= n;
        }
        return 0;
    }
    while (len > 0) {
        uint64_t in = rel % sp->grain;
        size_t n = (size_t)MIN(len, sp->grain - in);
        enum vmdk_grain_kind kind;
        uint64_t sector;
        int r = vmdk_sparse_lookup(sp, e->file, name, rel, &kind, &sector);
        if (r < 0)
            return r;
        bool whole = n == sp->grain;
        if (kind == VMDK_GRAIN_ZERO) {
            /* already reads as zeros */
        } else if (whole && sp->zeroed_grain) {
            /* As QEMU does: the zeroed-grain GTE replaces whatever was
             * there (a data grain it pointed at is left unused). */
            ACQUIRE_LOCK_FOR_CURRENT_SCOPE(&sp->lock);
            r = vmdk_sparse_store_grain(sp, e->file, name, rel, NULL);
        } else if (kind == VMDK_GRAIN_UNALLOCATED && !img->backing) {
            /* already reads as zeros */
        } else if (kind == VMDK_GRAIN_DATA) {
            r = io_write_zeroes(e->file, sector * VMDK_SECTOR + in, n, 0);
        } else if (flags & TOPCOW_ZERO_FAST) {
            r = err_set(-ENOTSUP, "%s: fast zeroing is not possible here", img->filename);
        } else {
            r = allocate_grain(img, e, NULL, n, rel);
        }
        if (r < 0)
            return r;
        rel += n;
        len -= n;
    }
    return 0;
}

static int
vmdk_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags)
{
    struct vmdk_state *s = img->priv;
    while (len > 0) {
        struct vmdk_extent *e = find_extent(s, off);
        uint64_t rel = off - e->start;
        uint64_t n = MIN(len, e->length - rel);
        int r = 0;
        if (e->type != VMDK_EXTENT_ZERO)
            r = check_writable(img, e);
        if (r == 0 && e->type == VMDK_EXTENT_FLAT) {
            unsigned ioflags = 0;
            if (flags & TOPCOW_ZERO_MAY_UNMAP)
                ioflags |= IO_ZERO_MAY_UNMAP;
            if (flags & TOPCOW_ZERO_FAST)
                ioflags |= IO_ZERO_FAST;
            r = io_write_zeroes(e->file, e->flat_offset + rel, n, ioflags);
            if (r == -ENOTSUP)
                r = err_set(r, "%s: fast zeroing is not possible here", img->filename);
        } else if (r == 0 && e->type == VMDK_EXTENT_SPARSE) {
            r = zero_sparse(img, e, n, rel, flags);
        }
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return (flags & TOPCOW_WRITE_FUA) ? flush_files(img) : 0;
}

/* Discard is advisory; VMDK has no way to give a grain back. */
static int
vmdk_discard(struct topcow_image *img, uint64_t off, uint64_t len)
{
    (void)img;
    (void)off;
    (void)len;
    return 0;
}

static int
sparse_status(struct topcow_image *img, struct vmdk_extent *e, uint64_t rel, uint64_t len,
              struct topcow_extent *ext)
{
    struct vmdk_sparse *sp = e->sp;
    const char *name = extent_name(img, e);
    enum vmdk_grain_kind first = VMDK_GRAIN_UNALLOCATED;
    uint64_t first_sector = 0, done = 0;
    /* Runs of one kind, a grain table at a time (a missing table is one
     * run), joined while kind and (for data) host position continue. */
    while (done < len) {
        enum vmdk_grain_kind kind;
        uint64_t sector, run;
        uint64_t pos = rel + done;
        int r = vmdk_sparse_run(sp, e->file, name, pos, len - done, &kind, &sector, &run);
        if (r < 0)
            return r;
        uint64_t in = pos % sp->grain;
        if (done == 0) {
            first = kind;
            first_sector = sector * VMDK_SECTOR + in;
        } else if (kind != first ||
                   (kind == VMDK_GRAIN_DATA && sector * VMDK_SECTOR + in != first_sector + done)) {
            break;
        }
        done += run;
    }
    ext->length = done;
    ext->file = name;
    switch (first) {
    case VMDK_GRAIN_UNALLOCATED:
        ext->flags = 0;
        break;
    case VMDK_GRAIN_ZERO:
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO;
        break;
    case VMDK_GRAIN_DATA:
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_OFFSET_VALID;
        ext->host_offset = first_sector;
        break;
    case VMDK_GRAIN_COMPRESSED:
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_COMPRESSED;
        break;
    }
    return 0;
}

static int
vmdk_block_status(struct topcow_image *img, uint64_t off, uint64_t len, struct topcow_extent *ext)
{
    struct vmdk_extent *e = find_extent(img->priv, off);
    uint64_t rel = off - e->start;
    len = MIN(len, e->length - rel);
    if (e->type == VMDK_EXTENT_ZERO) {
        ext->length = len;
        ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO;
        return 0;
    }
    if (e->type == VMDK_EXTENT_SPARSE)
        return sparse_status(img, e, rel, len, ext);
    bool is_data;
    uint64_t n;
    int r = io_block_status(e->file, e->flat_offset + rel, len, &is_data, &n);
    if (r < 0)
        return r;
    ext->length = MIN(n, len);
    /* A hole in a flat extent is still its data, which reads as zeros (as
     * qemu-img map shows it). */
    ext->flags = TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_OFFSET_VALID | TOPCOW_EXTENT_DATA |
                 (is_data ? 0 : TOPCOW_EXTENT_ZERO);
    ext->host_offset = e->flat_offset + rel;
    ext->file = e->path;
    return 0;
}

static int
vmdk_get_info(struct topcow_image *img, struct topcow_info *info)
{
    struct vmdk_state *s = img->priv;
    info->vmdk_cid = s->desc.cid;
    info->vmdk_parent_cid = s->desc.parent_cid;
    info->vmdk_create_type = s->desc.create_type;
    info->vmdk_nextents = s->nextents;
    info->vmdk_extents = s->info;
    if (s->extents[0].sp)
        info->cluster_size = (uint32_t)s->extents[0].sp->grain;
    /* Disk usage counts every file of the image, as du would. */
    for (size_t i = 0; i < s->nextents; i++) {
        uint64_t bytes;
        if (s->extents[i].own_file && io_allocated_size(s->extents[i].file, &bytes) == 0)
            info->actual_size += bytes;
    }
    return 0;
}

/* A new streamOptimized image gets its tables, footer and end marker. */
static int
vmdk_close_clean(struct topcow_image *img)
{
    struct vmdk_state *s = img->priv;
    int r = 0;
    for (size_t i = 0; i < s->nextents && r == 0; i++)
        if (s->extents[i].sp && s->extents[i].sp->stream)
            r = vmdk_stream_finish(s->extents[i].sp, s->extents[i].file,
                                   extent_name(img, &s->extents[i]));
    return r;
}

const struct format_ops vmdk_format = {
    .struct_size = sizeof(struct format_ops),
    .name = "vmdk",
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .create = vmdk_create,
    .pread = vmdk_pread,
    .pwrite = vmdk_pwrite,
    .write_zeroes = vmdk_write_zeroes,
    .discard = vmdk_discard,
    .flush = vmdk_flush,
    .block_status = vmdk_block_status,
    .get_info = vmdk_get_info,
    .check = vmdk_check,
    .close_clean = vmdk_close_clean,
};
