// SPDX-License-Identifier: MIT
/* Creating VHDX images ([MS-VHDX] 2.1 layout): the file identifier, two
 * headers, two region tables, an empty log at 1 MiB, then the BAT and the
 * metadata regions, then (fixed images) every payload block.  Options and
 * their limits are qemu-img 7.2's: block_size (0 picks by size), log_size,
 * subformat dynamic|fixed, block_state_zero. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "cleanup.h"
#include "error.h"
#include "minmax.h"
#include "vhdx-internal.h"

#define CREATOR "topcow " TOPCOW_VERSION_STRING

/* qemu-img's automatic block size: larger disks get larger blocks. */
static uint32_t
default_block_size(uint64_t size)
{
    if (size > 32 * VHDX_TiB)
        return 64 * VHDX_MiB;
    if (size > 100 * 1024 * VHDX_MiB)
        return 32 * VHDX_MiB;
    if (size > 1024 * VHDX_MiB)
        return 16 * VHDX_MiB;
    return 8 * VHDX_MiB;
}

/* The metadata region: its table and the five items (2.6.1, 2.6.2). */
static void
metadata_encode(uint8_t *m, uint32_t block_size, bool fixed, uint64_t size)
{
    static const uint32_t sizes[] = { 8, 8, 16, 4, 4 };
    const uint8_t *const ids[] = {
        vhdx_guid_file_parameters, vhdx_guid_virtual_disk_size, vhdx_guid_page83,
        vhdx_guid_logical_sector, vhdx_guid_physical_sector,
    };
    memcpy(m, "metadata", 8);
    m[10] = ARRAY_SIZE(ids);
    uint32_t off = VHDX_METADATA_TABLE_SIZE;
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        uint8_t *e = m + 32 + 32 * i;
        memcpy(e, ids[i], 16);
        le32_put(e + 16, off);
        le32_put(e + 20, sizes[i]);
        /* IsRequired; every item but the file parameters is IsVirtualDisk. */
        le32_put(e + 24, i == 0 ? 4 : 6);
        uint8_t *v = m + off;
        switch (i) {
        case 0:
            le32_put(v, block_size);
            v[4] = fixed; /* LeaveBlockAllocated */
            break;
        case 1: le64_put(v, size); break;
        case 2: vhdx_guid_generate(v); break;
        default: le32_put(v, 512); break;
        }
        off += sizes[i];
    }
}

static void
region_table_encode(uint8_t *rt, uint64_t bat_off, uint32_t bat_len, uint64_t meta_off)
{
    memcpy(rt, "regi", 4);
    le32_put(rt + 8, 2);
    uint8_t *e = rt + 16;
    memcpy(e, vhdx_guid_bat, 16);
    le64_put(e + 16, bat_off);
    le32_put(e + 24, bat_len);
    le32_put(e + 28, 1); /* Required */
    e += 32;
    memcpy(e, vhdx_guid_metadata, 16);
    le64_put(e + 16, meta_off);
    le32_put(e + 24, (uint32_t)VHDX_MiB);
    le32_put(e + 28, 1);
    vhdx_checksum_set(rt, VHDX_REGION_SIZE, 4);
}

/* Write the whole header section (the first 1 MiB). */
static int
header_section_write(struct io *f, uint64_t log_size, uint64_t bat_off, uint32_t bat_len,
                     uint64_t meta_off)
{
    CLEANUP_FREE uint8_t *buf = calloc(1, VHDX_MiB);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    memcpy(buf, "vhdxfile", 8);
    const char *creator = CREATOR;
    for (size_t i = 0; creator[i]; i++)
        buf[8 + 2 * i] = (uint8_t)creator[i];
    struct vhdx_header h = { .version = 1, .log_length = (uint32_t)log_size,
                             .log_offset = VHDX_MiB };
    vhdx_guid_generate(h.file_write_guid);
    vhdx_guid_generate(h.data_write_guid);
    h.seq = 1;
    vhdx_header_encode(&h, buf + VHDX_HEADER1_OFF);
    h.seq = 2;
    vhdx_header_encode(&h, buf + VHDX_HEADER2_OFF);
    region_table_encode(buf + VHDX_REGION1_OFF, bat_off, bat_len, meta_off);
    memcpy(buf + VHDX_REGION2_OFF, buf + VHDX_REGION1_OFF, VHDX_REGION_SIZE);
    return io_pwrite(f, buf, VHDX_MiB, 0);
}

int
vhdx_create(const char *path, const struct topcow_create_opts *o)
{
    RETURN_ERR_IF(o->backing_file, -ENOTSUP, "%s: Backing file not supported for file format 'vhdx'", path);
    bool fixed = false;
    if (o->subformat && !strcmp(o->subformat, "fixed"))
        fixed = true;
    else
        RETURN_ERR_IF(o->subformat && strcmp(o->subformat, "dynamic"), -EINVAL,
                      "%s: Parameter 'subformat' does not accept value '%s'", path, o->subformat);
    RETURN_ERR_IF(o->size > VHDX_MAX_SIZE, -EINVAL, "%s: Image size too large; max of 64TB", path);
    uint64_t size = ALIGN_UP(o->size, 512);
    uint64_t block_size = o->vhdx_block_size ? o->vhdx_block_size : default_block_size(size);
    block_size = MIN(MAX(block_size, VHDX_MiB), 256 * VHDX_MiB);
    RETURN_ERR_IF(!is_power_of_2(block_size), -EINVAL, "%s: Block size must be a power of two", path);
    uint64_t log_size = ALIGN_UP(o->vhdx_log_size_given ? o->vhdx_log_size : VHDX_MiB, VHDX_MiB);
    RETURN_ERR_IF(log_size == 0, -EINVAL, "%s: Log size must be a multiple of 1 MB", path);
    RETURN_ERR_IF(log_size > VHDX_MAX_LOG, -EINVAL, "%s: Log size must be at most %llu MB",
                  path, (unsigned long long)(VHDX_MAX_LOG / VHDX_MiB));
    bool zero_state = o->vhdx_block_state_zero >= 0;

    uint64_t chunk_ratio = ((uint64_t)1 << 23) * 512 / block_size;
    uint64_t blocks = DIV_ROUND_UP(size, block_size);
    uint64_t entries = blocks ? blocks + (blocks - 1) / chunk_ratio : 0;
    uint64_t bat_off = VHDX_MiB + log_size;
    uint64_t bat_len = ALIGN_UP(MAX(entries * 8, 1), VHDX_MiB);
    uint64_t meta_off = bat_off + bat_len;
    uint64_t data_off = meta_off + VHDX_MiB;
    RETURN_ERR_IF(bat_len > UINT32_MAX, -EINVAL, "%s: Image size too large for its block size", path);

    CLEANUP_FREE uint64_t *bat = calloc(1, bat_len);
    CLEANUP_FREE uint8_t *meta = calloc(1, VHDX_MiB);
    if (!bat || !meta)
        return err_set(-ENOMEM, "out of memory");
    for (uint64_t b = 0; b < blocks; b++) {
        uint64_t e = fixed ? (data_off + b * block_size) | VHDX_PAYLOAD_FULLY_PRESENT
                           : zero_state ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_NOT_PRESENT;
        le64_put(&bat[b + b / chunk_ratio], e);
    }
    metadata_encode(meta, (uint32_t)block_size, fixed, size);

    struct io *f;
    int r = io_file_open(path, IO_CREATE, &f);
    if (r < 0)
        return r;
    uint64_t end = fixed ? data_off + blocks * block_size : data_off;
    r = io_truncate(f, end);
    if (r == 0)
        r = header_section_write(f, log_size, bat_off, (uint32_t)bat_len, meta_off);
    if (r == 0)
        r = io_pwrite(f, bat, (size_t)bat_len, bat_off);
    if (r == 0)
        r = io_pwrite(f, meta, VHDX_MiB, meta_off);
    if (r == 0 && fixed && blocks && o->preallocation == TOPCOW_PREALLOC_FALLOC)
        r = io_preallocate(f, data_off, end - data_off);
    else if (r == 0 && fixed && blocks && o->preallocation == TOPCOW_PREALLOC_FULL)
        r = io_write_zeroes(f, data_off, end - data_off, 0);
    if (r == 0)
        r = io_flush(f);
    io_close(f);
    return r;
}
