// SPDX-License-Identifier: MIT
/* The VHD driver ("vpc"): probe, open (footer, dynamic header and BAT
 * validated), close, info and flush.  Fixed disks are their data followed
 * by a footer; dynamic and differencing disks map each block of the guest
 * through the BAT to a sector bitmap followed by the block's data.  The
 * data path lives in vhd-io.c, creation in vhd-create.c. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "error.h"
#include "minmax.h"
#include "vhd-internal.h"

/* qemu-img probes VHD by the footer copy at offset 0 only, so a fixed disk
 * (footer at the end alone) probes as raw; so does ours. */
static int
vhd_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && memcmp(buf, VHD_FOOTER_COOKIE, 8) == 0 ? 100 : 0;
}

static void
free_state(struct vhd_state *s)
{
    if (!s)
        return;
    free(s->bat);
    free(s->full);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Read the footer: the copy at offset 0 when there is one (dynamic and
 * differencing disks have it, and QEMU reads it in preference to the one
 * at the end), else the last 512 bytes of the file (a fixed disk). */
static int
read_footer(struct topcow_image *img, struct vhd_state *s, uint64_t fsize,
            struct vhd_footer *f)
{
    const char *fn = img->filename;
    RETURN_ERR_IF(fsize < VHD_FOOTER_SIZE, -EUCLEAN,
                  "%s: vpc: file of %" PRIu64 " bytes is too small for a VHD footer", fn, fsize);
    int r = io_pread(img->file, s->footer, VHD_FOOTER_SIZE, 0);
    if (r < 0)
        return r;
    bool at_start = memcmp(s->footer, VHD_FOOTER_COOKIE, 8) == 0;
    if (!at_start) {
        r = io_pread(img->file, s->footer, VHD_FOOTER_SIZE, fsize - VHD_FOOTER_SIZE);
        if (r < 0)
            return r;
    }
    r = vhd_footer_decode(fn, s->footer, f);
    if (r < 0)
        return r;
    RETURN_ERR_IF(f->type != VHD_TYPE_FIXED && f->type != VHD_TYPE_DYNAMIC &&
                  f->type != VHD_TYPE_DIFF, -ENOTSUP,
                  "%s: vpc: unsupported disk type %" PRIu32, fn, f->type);
    RETURN_ERR_IF(f->type != VHD_TYPE_FIXED && !at_start, -EUCLEAN,
                  "%s: vpc: dynamic disk without the footer copy at offset 0", fn);
    return 0;
}

/* Decode and validate the dynamic disk header and read the BAT.  The
 * checks on the block size and the table size come first, in QEMU's order,
 * so that damaged images get the same diagnosis from both. */
static int
open_dynamic(struct topcow_image *img, struct vhd_state *s, const struct vhd_footer *f,
             uint64_t fsize)
{
    const char *fn = img->filename;
    uint8_t hdr[VHD_DYN_HEADER_SIZE];
    uint64_t hdr_end;
    RETURN_ERR_IF(ADD_OVERFLOW(f->data_offset, (uint64_t)VHD_DYN_HEADER_SIZE, &hdr_end) ||
                  f->data_offset >= fsize, -EUCLEAN,
                  "%s: vpc: dynamic header offset %" PRIu64 " is outside the file", fn,
                  f->data_offset);
    int r = io_pread(img->file, hdr, sizeof hdr, f->data_offset); /* zeros past the end */
    if (r < 0)
        return r;
    RETURN_ERR_IF(memcmp(hdr + VHD_H_COOKIE, VHD_DYN_COOKIE, 8) != 0, -EUCLEAN,
                  "%s: vpc: no dynamic disk header (cookie \"cxsparse\" missing) at offset %"
                  PRIu64, fn, f->data_offset);
    s->block_size = be32_get(hdr + VHD_H_BLOCK_SIZE);
    uint32_t max_entries = be32_get(hdr + VHD_H_MAX_ENTRIES);
    s->bat_offset = be64_get(hdr + VHD_H_TABLE_OFFSET);
    RETURN_ERR_IF(s->block_size < VHD_SECTOR || (s->block_size & (s->block_size - 1)), -EUCLEAN,
                  "%s: vpc: invalid block size %" PRIu32, fn, s->block_size);
    RETURN_ERR_IF(max_entries > INT32_MAX / 4, -EUCLEAN,
                  "%s: vpc: Max Table Entries too large (%" PRIu32 ")", fn, max_entries);
    uint32_t stored = be32_get(hdr + VHD_H_CHECKSUM);
    uint32_t computed = vhd_checksum(hdr, sizeof hdr, VHD_H_CHECKSUM);
    RETURN_ERR_IF(stored != computed, -EUCLEAN,
                  "%s: vpc: incorrect dynamic header checksum (stored 0x%08x, computed 0x%08x)",
                  fn, stored, computed);
    uint64_t nb_blocks = DIV_ROUND_UP(img->size, s->block_size);
    RETURN_ERR_IF(nb_blocks > max_entries, -EUCLEAN,
                  "%s: vpc: Page table too small: %" PRIu32 " blocks of %" PRIu32
                  " bytes for a disk of %" PRIu64 " bytes", fn, max_entries, s->block_size,
                  img->size);
    s->nb_blocks = (uint32_t)nb_blocks;
    /* One bit per sector, in whole sectors ("Block Allocation Table and
     * Data Blocks"). */
    s->bitmap_size = (uint32_t)ALIGN_UP(DIV_ROUND_UP(s->block_size / VHD_SECTOR, 8), VHD_SECTOR);

    /* Only the entries the disk uses are read; they must lie in the file,
     * which also bounds the memory they take. */
    uint64_t bat_end;
    RETURN_ERR_IF(ADD_OVERFLOW(s->bat_offset, nb_blocks * 4, &bat_end) || bat_end > fsize,
                  -EUCLEAN, "%s: vpc: block allocation table (%" PRIu64 " entries at offset %"
                  PRIu64 ") lies outside the file", fn, nb_blocks, s->bat_offset);
    s->bat = malloc(MAX(nb_blocks, 1) * sizeof *s->bat);
    uint8_t *raw = malloc(MAX(nb_blocks, 1) * 4);
    if (!s->bat || !raw) {
        free(raw);
        return err_set(-ENOMEM, "out of memory");
    }
    r = nb_blocks ? io_pread(img->file, raw, nb_blocks * 4, s->bat_offset) : 0;
    for (uint64_t i = 0; r == 0 && i < nb_blocks; i++)
        s->bat[i] = be32_get(raw + 4 * i);
    free(raw);
    if (r < 0)
        return r;

    /* New blocks go after everything: the whole table (as sized in the
     * header), the header, every block, and the footer at the end. */
    uint64_t bat_full_end, meta_end;
    if (ADD_OVERFLOW(s->bat_offset, (uint64_t)max_entries * 4 + VHD_SECTOR - 1, &bat_full_end))
        bat_full_end = UINT64_MAX;
    meta_end = MAX(ALIGN_DOWN(bat_full_end, VHD_SECTOR), hdr_end);
    RETURN_ERR_IF(!img->read_only && meta_end > fsize, -EUCLEAN,
                  "%s: vpc: the headers and block allocation table (up to offset %" PRIu64
                  ") run past the end of the file", fn, meta_end);
    uint64_t end = MAX(meta_end, ALIGN_UP(fsize - VHD_FOOTER_SIZE, VHD_SECTOR));
    for (uint32_t i = 0; i < s->nb_blocks; i++) {
        if (s->bat[i] == VHD_BAT_UNUSED)
            continue;
        uint64_t start = (uint64_t)s->bat[i] * VHD_SECTOR;
        uint64_t block_end = start + s->bitmap_size + s->block_size;
        RETURN_ERR_IF(block_end > fsize, -EUCLEAN,
                      "%s: vpc: block %" PRIu32 " at offset %" PRIu64 " ends after the end of "
                      "the file (%" PRIu64 " bytes): the image has been truncated", fn, i, start,
                      fsize);
        /* A block over the metadata would be overwritten by our updates. */
        RETURN_ERR_IF(!img->read_only && start < meta_end, -EUCLEAN,
                      "%s: vpc: block %" PRIu32 " at offset %" PRIu64 " overlaps the headers or "
                      "the block allocation table", fn, i, start);
        end = MAX(end, block_end);
    }
    s->next_block = end;
    if (s->type == VHD_TYPE_DIFF) {
        s->full = calloc(MAX(nb_blocks, 1), 1);
        if (!s->full)
            return err_set(-ENOMEM, "out of memory");
        return vhd_parent_resolve(img, hdr);
    }
    return 0;
}

static int
vhd_open(struct topcow_image *img)
{
    struct vhd_state *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    uint64_t fsize;
    struct vhd_footer f;
    int r = io_get_size(img->file, &fsize);
    if (r == 0)
        r = read_footer(img, s, fsize, &f);
    if (r == 0) {
        s->type = (enum vhd_type)f.type;
        img->size = vhd_footer_size(&f);
        if (img->size / VHD_SECTOR > VHD_MAX_SECTORS)
            r = err_set(-EFBIG, "%s: vpc: disk size %" PRIu64 " is beyond the format's limit "
                        "of 2040 GiB", img->filename, img->size);
    }
    /* A fixed disk's data must not run into its footer if we are to write. */
    if (r == 0 && s->type == VHD_TYPE_FIXED && !img->read_only &&
        img->size > fsize - VHD_FOOTER_SIZE)
        r = err_set(-EUCLEAN, "%s: vpc: fixed disk of %" PRIu64 " bytes does not fit in a "
                    "file of %" PRIu64 " bytes", img->filename, img->size, fsize);
    if (r == 0 && s->type != VHD_TYPE_FIXED)
        r = open_dynamic(img, s, &f, fsize);
    if (r < 0) {
        free_state(s);
        return r;
    }
    img->priv = s;
    return 0;
}

static void
vhd_close(struct topcow_image *img)
{
    free_state(img->priv);
    img->priv = NULL;
}

static int
vhd_flush(struct topcow_image *img)
{
    if (img->flags & TOPCOW_OPEN_UNSAFE)
        return 0;
    return io_flush(img->file);
}

static int
vhd_get_info(struct topcow_image *img, struct topcow_info *info)
{
    const struct vhd_state *s = img->priv;
    /* qemu-img shows the block size as the cluster size of block-mapped disks. */
    info->cluster_size = s->type == VHD_TYPE_FIXED ? 0 : s->block_size;
    return 0;
}

/* Discarding is advisory, and VHD has no way to give a block back short of
 * rewriting the file: the request is accepted and nothing changes (QEMU's
 * driver does the same by having no discard). */
static int
vhd_discard(struct topcow_image *img, uint64_t off, uint64_t len)
{
    (void)img;
    (void)off;
    (void)len;
    return 0;
}

const struct format_ops vpc_format = {
    .struct_size = sizeof(struct format_ops),
    .name = "vpc",
    .probe = vhd_probe,
    .open = vhd_open,
    .close = vhd_close,
    .create = vhd_create,
    .pread = vhd_pread,
    .pwrite = vhd_pwrite,
    .write_zeroes = vhd_write_zeroes,
    .discard = vhd_discard,
    .flush = vhd_flush,
    .block_status = vhd_block_status,
    .get_info = vhd_get_info,
};
