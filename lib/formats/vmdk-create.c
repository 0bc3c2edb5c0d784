// SPDX-License-Identifier: MIT
/* Creating VMDK images in every subformat qemu-img writes: monolithicSparse
 * (the default: one sparse extent with its descriptor embedded),
 * monolithicFlat and twoGbMaxExtentFlat (a descriptor file plus raw extent
 * files), twoGbMaxExtentSparse (a descriptor file plus sparse extents of at
 * most 2 GiB) and streamOptimized (one compressed sparse extent, written
 * front to back by vmdk-stream.c).  Sparse extents get 64 KiB grains, 512
 * entries per grain table, and every grain table preallocated after the
 * redundant and the primary directory, as VMware's tools lay them out. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "byteorder.h"
#include "error.h"
#include "minmax.h"
#include "vmdk-internal.h"

#define GRAIN_SECTORS 128u
#define GTES_PER_GT 512u
#define DESC_SECTORS 20u                   /* room reserved for an embedded descriptor */
#define SPLIT_SECTORS (2ull << 30) / VMDK_SECTOR /* twoGbMaxExtent* extent size */
#define MAX_SECTORS (UINT32_MAX * (uint64_t)GRAIN_SECTORS) /* 32-bit grain offsets */

enum subformat { MONO_SPARSE, MONO_FLAT, TWOGB_SPARSE, TWOGB_FLAT, STREAM };
static const char *const subformat_names[] = {
    "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
    "streamOptimized",
};

static int
write_le32_table(struct io *f, uint64_t sector, uint32_t n, uint32_t first, uint32_t step)
{
    size_t bytes = ALIGN_UP((size_t)n * 4, VMDK_SECTOR);
    uint8_t *t = calloc(1, bytes);
    if (!t)
        return err_set(-ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++)
        le32_put(t + 4 * i, first + i * step);
    int r = io_pwrite(f, t, bytes, sector * VMDK_SECTOR);
    free(t);
    return r;
}

/* Write a sparse extent of @sectors into the new file @f, with @desc
 * embedded when not NULL. */
static int
write_sparse_extent(struct io *f, const char *name, uint64_t sectors, const char *desc,
                    bool stream, bool zeroed_grain)
{
    struct vmdk_header h = {
        .version = 1,
        .flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_REDUNDANT_GT,
        .capacity = sectors,
        .grain_size = GRAIN_SECTORS,
        .desc_offset = desc ? 1 : 0,
        .desc_size = desc ? DESC_SECTORS : 0,
        .gtes_per_gt = GTES_PER_GT,
    };
    uint64_t span = GRAIN_SECTORS * GTES_PER_GT;
    uint32_t gt_count = (uint32_t)DIV_ROUND_UP(sectors, span);
    uint32_t gd_sectors = (uint32_t)DIV_ROUND_UP((uint64_t)gt_count * 4, VMDK_SECTOR);
    uint32_t gt_sectors = GTES_PER_GT * 4 / VMDK_SECTOR;
    uint64_t base = 1 + h.desc_size;
    if (stream) {
        h.version = 3;
        h.flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESSED | VMDK_FLAG_MARKERS;
        h.gd_offset = VMDK_GD_AT_END;
        h.overhead = ALIGN_UP(base, GRAIN_SECTORS);
        h.compress_algorithm = 1;
    } else {
        if (zeroed_grain) {
            h.version = 2;
            h.flags |= VMDK_FLAG_ZEROED_GRAIN;
        }
        h.rgd_offset = base;
        h.gd_offset = h.rgd_offset + gd_sectors + (uint64_t)gt_count * gt_sectors;
        h.overhead = ALIGN_UP(h.gd_offset + gd_sectors + (uint64_t)gt_count * gt_sectors,
                              GRAIN_SECTORS);
    }
    uint8_t sec[VMDK_SECTOR];
    vmdk_header_encode(&h, sec);
    int r = io_pwrite(f, sec, sizeof sec, 0);
    if (r == 0 && desc) {
        size_t len = strlen(desc);
        RETURN_ERR_IF(len > DESC_SECTORS * VMDK_SECTOR, -EINVAL,
                      "%s: vmdk: descriptor too long", name);
        r = io_pwrite(f, desc, len, VMDK_SECTOR);
    }
    if (r < 0)
        return r;
    if (stream) {
        /* An empty stream: the directory, footer and end marker only. */
        r = io_truncate(f, h.overhead * VMDK_SECTOR);
        struct vmdk_sparse *sp = NULL;
        if (r == 0)
            r = vmdk_sparse_open(f, name, sec, true, &sp);
        if (r == 0)
            r = vmdk_stream_finish(sp, f, name);
        vmdk_sparse_close(sp);
        return r;
    }
    uint32_t rgt = (uint32_t)(h.rgd_offset + gd_sectors);
    uint32_t gt = (uint32_t)(h.gd_offset + gd_sectors);
    r = write_le32_table(f, h.rgd_offset, gt_count, rgt, gt_sectors);
    if (r == 0)
        r = write_le32_table(f, h.gd_offset, gt_count, gt, gt_sectors);
    if (r == 0)
        r = io_truncate(f, h.overhead * VMDK_SECTOR);
    return r;
}

static uint32_t
random_cid(void)
{
    uint32_t v;
    if (getrandom(&v, sizeof v, 0) != sizeof v)
        v = (uint32_t)time(NULL) * 2654435761u;
    return v == UINT32_MAX ? 1 : v; /* ffffffff means "no parent" */
}

/* The CID and size of the VMDK image at @path, the backing file of @child. */
static int
parent_cid(const char *child, const char *path, const char *fmt, uint32_t *cid, uint64_t *size)
{
    struct topcow_open_opts oo = TOPCOW_OPEN_OPTS_INIT;
    oo.flags = TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_FORCE_SHARE | TOPCOW_OPEN_NO_BACKING;
    oo.format = fmt;
    struct topcow_image *b;
    int r = topcow_image_open(&b, path, &oo);
    if (r < 0)
        return r;
    struct topcow_info info = { .struct_size = sizeof info };
    r = topcow_image_get_info(b, &info);
    if (r == 0 && strcmp(info.format, "vmdk"))
        r = err_set(-EINVAL, "%s: backing_file must be a vmdk image", child);
    *cid = info.vmdk_cid;
    *size = info.virtual_size;
    topcow_image_close(b);
    return r;
}

/* @path without its extension: the stem of the extent files' names. */
static char *
path_stem(const char *path)
{
    char *stem = strdup(path);
    if (!stem)
        return NULL;
    char *slash = strrchr(stem, '/');
    char *dot = strrchr(stem, '.');
    if (dot && (!slash || dot > slash + 1))
        *dot = '\0';
    return stem;
}

static const char *
base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int
create_flat_file(const char *path, uint64_t bytes, enum topcow_prealloc prealloc)
{
    struct io *f;
    int r = io_file_open(path, IO_CREATE, &f);
    if (r < 0)
        return r;
    r = io_truncate(f, bytes);
    if (r == 0 && prealloc == TOPCOW_PREALLOC_FALLOC)
        r = io_preallocate(f, 0, bytes);
    else if (r == 0 && prealloc == TOPCOW_PREALLOC_FULL)
        r = io_write_zeroes(f, 0, bytes, 0);
    io_close(f);
    return r;
}

/* Append one extent line to @lines (a growing string). */
static int
add_line(char **lines, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int
add_line(char **lines, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return err_set(-ENOMEM, "out of memory");
    size_t old = *lines ? strlen(*lines) : 0;
    char *grown = realloc(*lines, old + (size_t)n + 1);
    if (!grown) {
        free(line);
        return err_set(-ENOMEM, "out of memory");
    }
    memcpy(grown + old, line, (size_t)n + 1);
    *lines = grown;
    free(line);
    return 0;
}

/* The extent files of a descriptor-file image, and their lines. */
static int
create_extent_files(const char *path, enum subformat sf, uint64_t sectors,
                    const struct topcow_create_opts *o, char **lines)
{
    char *stem = path_stem(path);
    if (!stem)
        return err_set(-ENOMEM, "out of memory");
    bool flat = sf == MONO_FLAT || sf == TWOGB_FLAT;
    uint64_t per = sf == MONO_FLAT ? sectors : SPLIT_SECTORS;
    int r = 0;
    for (unsigned i = 1; r == 0 && (i == 1 || (uint64_t)(i - 1) * per < sectors); i++) {
        uint64_t n = MIN(per, sectors - (uint64_t)(i - 1) * per);
        char *file = NULL;
        int len = sf == MONO_FLAT ? asprintf(&file, "%s-flat.vmdk", stem)
                                  : asprintf(&file, "%s-%c%03u.vmdk", stem, flat ? 'f' : 's', i);
        if (len < 0) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        if (flat) {
            r = create_flat_file(file, n * VMDK_SECTOR, o->preallocation);
            if (r == 0)
                r = add_line(lines, "RW %" PRIu64 " FLAT \"%s\" 0\n", n, base_name(file));
        } else {
            struct io *f;
            r = io_file_open(file, IO_CREATE, &f);
            if (r == 0) {
                r = write_sparse_extent(f, file, n, NULL, false, o->vmdk_zeroed_grain);
                io_close(f);
            }
            if (r == 0)
                r = add_line(lines, "RW %" PRIu64 " SPARSE \"%s\"\n", n, base_name(file));
        }
        free(file);
    }
    free(stem);
    return r;
}

int
vmdk_create(const char *path, const struct topcow_create_opts *o)
{
    enum subformat sf = MONO_SPARSE;
    if (o->subformat) {
        size_t i = 0;
        while (i < ARRAY_SIZE(subformat_names) && strcmp(o->subformat, subformat_names[i]))
            i++;
        RETURN_ERR_IF(i == ARRAY_SIZE(subformat_names), -EINVAL,
                      "%s: invalid parameter value: %s", path, o->subformat);
        sf = (enum subformat)i;
    }
    const char *adapter = o->vmdk_adapter_type ? o->vmdk_adapter_type : "ide";
    RETURN_ERR_IF(strcmp(adapter, "ide") && strcmp(adapter, "lsilogic") &&
                      strcmp(adapter, "buslogic") && strcmp(adapter, "legacyESX"),
                  -EINVAL, "%s: invalid parameter value: %s", path, adapter);
    RETURN_ERR_IF(o->vmdk_compat6 && o->vmdk_hwversion, -EINVAL,
                  "%s: compat6 cannot be enabled with hwversion set", path);
    bool flat = sf == MONO_FLAT || sf == TWOGB_FLAT;
    RETURN_ERR_IF(flat && o->vmdk_zeroed_grain, -EINVAL, "%s: Flat image can't enable zeroed grain",
                  path);
    RETURN_ERR_IF(o->preallocation == TOPCOW_PREALLOC_METADATA, -EINVAL,
                  "%s: Unsupported preallocation mode: metadata", path);
    RETURN_ERR_IF(o->backing_format && strcmp(o->backing_format, "vmdk"), -EINVAL,
                  "%s: backing_file must be a vmdk image", path);
    uint64_t size = o->size;
    uint32_t pcid = UINT32_MAX;
    if (o->backing_file && !o->no_backing_open) {
        char *full = image_resolve_relative(path, o->backing_file);
        if (!full)
            return err_set(-ENOMEM, "out of memory");
        uint64_t bsize;
        int r = parent_cid(path, full, o->backing_format, &pcid, &bsize);
        free(full);
        if (r < 0)
            return r;
        if (size == 0)
            size = bsize;
    }
    uint64_t sectors = DIV_ROUND_UP(size, VMDK_SECTOR);
    RETURN_ERR_IF(!flat && sectors > MAX_SECTORS, -EINVAL,
                  "%s: vmdk: a sparse extent holds at most %" PRIu64 " bytes", path,
                  MAX_SECTORS * VMDK_SECTOR);
    struct vmdk_desc_spec ds = {
        .cid = random_cid(),
        .parent_cid = pcid,
        .create_type = subformat_names[sf],
        .parent_hint = o->backing_file,
        .hw_version = o->vmdk_hwversion ? o->vmdk_hwversion : o->vmdk_compat6 ? "6" : "4",
        .adapter_type = adapter,
        .tools_version = o->vmdk_toolsversion ? o->vmdk_toolsversion : "2147483647",
        .sectors = sectors,
    };
    char *lines = NULL;
    int r;
    if (sf == MONO_SPARSE || sf == STREAM)
        r = add_line(&lines, "RW %" PRIu64 " SPARSE \"%s\"\n", sectors, base_name(path));
    else
        r = create_extent_files(path, sf, sectors, o, &lines);
    char *desc = NULL;
    if (r == 0) {
        ds.extent_lines = lines;
        desc = vmdk_descriptor_format(&ds);
        if (!desc)
            r = err_set(-ENOMEM, "out of memory");
    }
    struct io *f = NULL;
    if (r == 0)
        r = io_file_open(path, IO_CREATE, &f);
    if (r == 0 && (sf == MONO_SPARSE || sf == STREAM))
        r = write_sparse_extent(f, path, sectors, desc, sf == STREAM, o->vmdk_zeroed_grain);
    else if (r == 0)
        r = io_pwrite(f, desc, strlen(desc), 0);
    io_close(f);
    free(desc);
    free(lines);
    return r;
}
