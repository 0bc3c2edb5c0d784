// SPDX-License-Identifier: MIT
/* The VHD footer: checksum, decoding, the CHS geometry of the
 * specification's appendix, and the rule that turns a footer into a
 * guest-visible size (the one place readers disagree about). */
#include <string.h>
#include <time.h>

#include "byteorder.h"
#include "error.h"
#include "vhd-internal.h"

uint32_t
vhd_checksum(const uint8_t *buf, size_t len, size_t skip)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < skip || i >= skip + 4)
            sum += buf[i];
    return ~sum;
}

int
vhd_footer_decode(const char *fn, const uint8_t *buf, struct vhd_footer *f)
{
    RETURN_ERR_IF(memcmp(buf + VHD_F_COOKIE, VHD_FOOTER_COOKIE, 8) != 0, -EUCLEAN,
                  "%s: vpc: no VHD footer (cookie \"conectix\" missing)", fn);
    uint32_t stored = be32_get(buf + VHD_F_CHECKSUM);
    uint32_t computed = vhd_checksum(buf, VHD_FOOTER_SIZE, VHD_F_CHECKSUM);
    RETURN_ERR_IF(stored != computed, -EUCLEAN,
                  "%s: vpc: incorrect footer checksum (stored 0x%08x, computed 0x%08x)", fn,
                  stored, computed);
    f->data_offset = be64_get(buf + VHD_F_DATA_OFFSET);
    memcpy(f->creator_app, buf + VHD_F_CREATOR_APP, 4);
    f->current_size = be64_get(buf + VHD_F_CUR_SIZE);
    f->geo.cyls = be16_get(buf + VHD_F_CYLS);
    f->geo.heads = buf[VHD_F_HEADS];
    f->geo.spt = buf[VHD_F_SPT];
    f->type = be32_get(buf + VHD_F_TYPE);
    return 0;
}

/* The footer holds the size twice, as "current size" and as a CHS
 * geometry, and the two usually disagree: a geometry can only express
 * multiples of heads * sectors-per-track, and Virtual PC rounded the disk
 * down to its geometry while Hyper-V and its tools honour the byte count.
 * We size disks as qemu-img 7.2 does, checked against images crafted for
 * each case and the sample images of Virtual PC, Hyper-V and Disk2VHD:
 *   - the byte count (current size, rounded down to whole sectors) when the
 *     geometry is the largest one (65535/16/255: "the size did not fit the
 *     geometry"), or when the creator application is one known to size
 *     disks by bytes: "win " (Hyper-V), "d2v " (Disk2VHD), "tap\0"
 *     (XenServer), "CTXS" (XenConverter) and "qem2" (qemu-img's
 *     force_size=on images);
 *   - the geometry (cylinders * heads * sectors * 512) for everyone else,
 *     notably "vpc " (Virtual PC) and "qemu" (qemu-img's default). */
uint64_t
vhd_footer_size(const struct vhd_footer *f)
{
    static const char by_bytes[][4] = { "win ", "d2v ", { 't', 'a', 'p', 0 }, "CTXS", "qem2" };
    bool bytes = f->geo.cyls == VHD_MAX_CYLS && f->geo.heads == VHD_MAX_HEADS &&
                 f->geo.spt == VHD_MAX_SPT;
    for (size_t i = 0; i < sizeof by_bytes / sizeof by_bytes[0]; i++)
        bytes |= memcmp(f->creator_app, by_bytes[i], 4) == 0;
    if (bytes)
        return f->current_size / VHD_SECTOR * VHD_SECTOR;
    return (uint64_t)f->geo.cyls * f->geo.heads * f->geo.spt * VHD_SECTOR;
}

/* The specification's appendix, step for step: the fewest heads that keep
 * the cylinder count within 1024 for 17, then 31, then 63 sectors per
 * track; 255 sectors and 16 heads for large disks. */
struct vhd_geometry
vhd_chs_for(uint64_t sectors)
{
    const uint64_t max = (uint64_t)VHD_MAX_CYLS * VHD_MAX_HEADS * VHD_MAX_SPT;
    uint64_t spt, heads, cyl_heads;
    if (sectors > max)
        sectors = max;
    if (sectors >= (uint64_t)VHD_MAX_CYLS * 16 * 63) {
        spt = 255;
        heads = 16;
        cyl_heads = sectors / spt;
    } else {
        spt = 17;
        cyl_heads = sectors / spt;
        heads = (cyl_heads + 1023) / 1024;
        if (heads < 4)
            heads = 4;
        if (cyl_heads >= heads * 1024 || heads > 16) {
            spt = 31;
            heads = 16;
            cyl_heads = sectors / spt;
        }
        if (cyl_heads >= heads * 1024) {
            spt = 63;
            heads = 16;
            cyl_heads = sectors / spt;
        }
    }
    return (struct vhd_geometry){ .cyls = (uint16_t)(cyl_heads / heads),
                                  .heads = (uint8_t)heads,
                                  .spt = (uint8_t)spt };
}

uint32_t
vhd_timestamp_now(void)
{
    const time_t epoch2000 = 946684800; /* 2000-01-01T00:00:00Z in Unix time */
    time_t now = time(NULL);
    return now > epoch2000 ? (uint32_t)(now - epoch2000) : 0;
}
