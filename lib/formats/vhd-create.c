// SPDX-License-Identifier: MIT
/* Creating VHD images as qemu-img 7.2 lays them out: a fixed disk is its
 * data followed by the footer; a dynamic disk is a footer copy, the dynamic
 * header, an empty BAT for 2 MiB blocks and the footer.  The size is
 * rounded up to a CHS geometry unless force_size asks for the exact size. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "byteorder.h"
#include "error.h"
#include "minmax.h"
#include "vhd-internal.h"

#define CREATOR_VERSION 0x00000001u /* topcow's own numbering of what it writes */

static uint64_t
geo_sectors(struct vhd_geometry g)
{
    return (uint64_t)g.cyls * g.heads * g.spt;
}

static bool
geo_is_max(struct vhd_geometry g)
{
    return g.cyls == VHD_MAX_CYLS && g.heads == VHD_MAX_HEADS && g.spt == VHD_MAX_SPT;
}

/* The geometry and byte size of a new disk of at least @sectors.  Without
 * @force, the smallest geometry (per the specification's algorithm) that
 * covers the request, and its size; when only the largest geometry covers
 * it, that geometry with the exact size (readers then go by the byte
 * count).  With @force, the largest geometry and the exact size. */
static void
size_disk(uint64_t sectors, bool force, struct vhd_geometry *g, uint64_t *bytes)
{
    const struct vhd_geometry max = { VHD_MAX_CYLS, VHD_MAX_HEADS, VHD_MAX_SPT };
    *g = max;
    *bytes = sectors * VHD_SECTOR;
    if (force)
        return;
    /* The algorithm rounds down by less than heads * sectors-per-track
     * cylinders' worth (at most 16 * 255), so this ends within that many
     * steps. */
    for (uint64_t t = sectors;; t++) {
        struct vhd_geometry c = vhd_chs_for(t);
        if (geo_is_max(c))
            return;
        if (geo_sectors(c) >= sectors) {
            *g = c;
            *bytes = geo_sectors(c) * VHD_SECTOR;
            return;
        }
    }
}

static void
put_checksum(uint8_t *buf, size_t len, size_t at)
{
    be32_put(buf + at, 0);
    be32_put(buf + at, vhd_checksum(buf, len, at));
}

static void
make_footer(uint8_t *f, enum vhd_type type, bool force, struct vhd_geometry g, uint64_t bytes)
{
    memset(f, 0, VHD_FOOTER_SIZE);
    memcpy(f + VHD_F_COOKIE, VHD_FOOTER_COOKIE, 8);
    be32_put(f + VHD_F_FEATURES, 2); /* the "reserved" bit the specification says is always set */
    be32_put(f + VHD_F_VERSION, 0x00010000);
    be64_put(f + VHD_F_DATA_OFFSET, type == VHD_TYPE_FIXED ? VHD_NO_OFFSET : VHD_SECTOR);
    be32_put(f + VHD_F_TIMESTAMP, vhd_timestamp_now());
    /* The creator code tells readers how to size the disk: "qemu" images by
     * their geometry, "qem2" ones by their byte count.  Our images follow
     * exactly those two rules, so they carry the codes that name them. */
    memcpy(f + VHD_F_CREATOR_APP, force ? "qem2" : "qemu", 4);
    be32_put(f + VHD_F_CREATOR_VER, CREATOR_VERSION);
    memcpy(f + VHD_F_CREATOR_OS, "Wi2k", 4);
    be64_put(f + VHD_F_ORIG_SIZE, bytes);
    be64_put(f + VHD_F_CUR_SIZE, bytes);
    be16_put(f + VHD_F_CYLS, g.cyls);
    f[VHD_F_HEADS] = g.heads;
    f[VHD_F_SPT] = g.spt;
    be32_put(f + VHD_F_TYPE, type);
    uint8_t *uuid = f + VHD_F_UUID;
    if (getrandom(uuid, 16, 0) != 16) { /* no entropy yet: unique enough from the clock */
        uint64_t t[2] = { (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull, (uint64_t)clock() };
        memcpy(uuid, t, 16);
    }
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40); /* a version 4 (random) UUID */
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
    put_checksum(f, VHD_FOOTER_SIZE, VHD_F_CHECKSUM);
}

static int
write_dynamic(struct io *f, const uint8_t *footer, uint64_t bytes)
{
    uint64_t entries = DIV_ROUND_UP(bytes, VHD_DEFAULT_BLOCK);
    uint64_t bat_off = VHD_SECTOR + VHD_DYN_HEADER_SIZE;
    uint64_t bat_len = ALIGN_UP(entries * 4, VHD_SECTOR);
    uint8_t hdr[VHD_DYN_HEADER_SIZE] = { 0 };
    memcpy(hdr + VHD_H_COOKIE, VHD_DYN_COOKIE, 8);
    be64_put(hdr + VHD_H_DATA_OFFSET, VHD_NO_OFFSET);
    be64_put(hdr + VHD_H_TABLE_OFFSET, bat_off);
    be32_put(hdr + VHD_H_VERSION, 0x00010000);
    be32_put(hdr + VHD_H_MAX_ENTRIES, (uint32_t)entries);
    be32_put(hdr + VHD_H_BLOCK_SIZE, VHD_DEFAULT_BLOCK);
    put_checksum(hdr, sizeof hdr, VHD_H_CHECKSUM);
    uint8_t *bat = malloc(MAX(bat_len, 1));
    if (!bat)
        return err_set(-ENOMEM, "out of memory");
    memset(bat, 0xff, bat_len);
    int r = io_pwrite(f, footer, VHD_FOOTER_SIZE, 0);
    if (r == 0)
        r = io_pwrite(f, hdr, sizeof hdr, VHD_SECTOR);
    if (r == 0 && bat_len)
        r = io_pwrite(f, bat, bat_len, bat_off);
    if (r == 0)
        r = io_pwrite(f, footer, VHD_FOOTER_SIZE, bat_off + bat_len);
    free(bat);
    return r;
}

int
vhd_create(const char *path, const struct topcow_create_opts *o)
{
    RETURN_ERR_IF(o->backing_file, -ENOTSUP, "%s: Backing file not supported for file format 'vpc'",
                  path);
    enum vhd_type type = VHD_TYPE_DYNAMIC;
    if (o->subformat && !strcmp(o->subformat, "fixed"))
        type = VHD_TYPE_FIXED;
    else if (o->subformat && strcmp(o->subformat, "dynamic"))
        return err_set(-EINVAL, "%s: Parameter 'subformat' does not accept value '%s'", path,
                       o->subformat);
    RETURN_ERR_IF(o->preallocation == TOPCOW_PREALLOC_METADATA, -EINVAL,
                  "%s: Parameter 'preallocation' does not accept value 'metadata'", path);
    uint64_t sectors = DIV_ROUND_UP(o->size, VHD_SECTOR);
    RETURN_ERR_IF(sectors > VHD_MAX_SECTORS, -EFBIG,
                  "%s: The image size is too large for file format 'vpc'", path);
    struct vhd_geometry g;
    uint64_t bytes;
    size_disk(sectors, o->vpc_force_size, &g, &bytes);
    uint8_t footer[VHD_FOOTER_SIZE];
    make_footer(footer, type, o->vpc_force_size, g, bytes);

    struct io *f;
    int r = io_file_open(path, IO_CREATE, &f);
    if (r < 0)
        return r;
    if (type == VHD_TYPE_DYNAMIC) {
        r = write_dynamic(f, footer, bytes);
    } else {
        r = io_truncate(f, bytes);
        if (r == 0 && o->preallocation == TOPCOW_PREALLOC_FALLOC && bytes)
            r = io_preallocate(f, 0, bytes);
        else if (r == 0 && o->preallocation == TOPCOW_PREALLOC_FULL && bytes)
            r = io_write_zeroes(f, 0, bytes, 0);
        if (r == 0)
            r = io_pwrite(f, footer, VHD_FOOTER_SIZE, bytes);
    }
    if (r == 0)
        r = io_flush(f);
    io_close(f);
    return r;
}
