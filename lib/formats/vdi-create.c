// SPDX-License-Identifier: MIT
/* Creating VDI images: a 1.1 header, the block map and (static images) the
 * data area, laid out as VirtualBox and qemu-img expect: 1 MiB blocks, the
 * block map at 512 bytes, the data area right after it on a 512-byte
 * boundary.  A dynamic image starts with every block free; a static one
 * has every block allocated in order, its data area a sparse hole. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "byteorder.h"
#include "minmax.h"
#include "error.h"
#include "vdi-internal.h"

#define VDI_TEXT "<<< topcow VDI Disk Image >>>\n"
#define VDI_BMAP_OFFSET 512u

/* Largest disk: the block map offsets are 32-bit, and qemu-img refuses
 * more than 0x3fffffff blocks. */
#define VDI_MAX_BLOCKS 0x3fffffffu

/* A random (version 4) UUID in VirtualBox's byte order. */
static int
random_uuid(uint8_t u[16])
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(u + got, 16 - got, 0);
        if (n < 0 && errno != EINTR)
            return err_set_errno(-errno, "getrandom");
        if (n > 0)
            got += (size_t)n;
    }
    u[7] = (uint8_t)((u[7] & 0x0f) | 0x40); /* time_hi_and_version, stored little-endian */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return 0;
}

int
vdi_create(const char *path, const struct topcow_create_opts *o)
{
    RETURN_ERR_IF(o->backing_file, -ENOTSUP, "%s: vdi images cannot have a backing file",
                  path);
    RETURN_ERR_IF(o->preallocation == TOPCOW_PREALLOC_METADATA, -ENOTSUP,
                  "%s: Unsupported preallocation mode: metadata", path);
    const uint32_t bs = VDI_DEFAULT_BLOCK_SIZE;
    const uint64_t size = ALIGN_UP(o->size, 512); /* qemu-img sizes images in sectors */
    const uint64_t blocks = DIV_ROUND_UP(size, bs);
    RETURN_ERR_IF(blocks > VDI_MAX_BLOCKS, -EINVAL,
                  "%s: vdi: size %llu is too large (at most %llu bytes)", path,
                  (unsigned long long)size, (unsigned long long)VDI_MAX_BLOCKS * bs);
    const uint64_t bmap_size = ALIGN_UP(blocks * 4, 512);
    const uint64_t data_off = VDI_BMAP_OFFSET + bmap_size;
    const bool fixed = o->vdi_static;

    uint8_t hdr[VDI_BMAP_OFFSET] = { 0 };
    memcpy(hdr, VDI_TEXT, sizeof VDI_TEXT - 1);
    le32_put(hdr + VDI_OFF_SIGNATURE, VDI_SIGNATURE);
    le32_put(hdr + VDI_OFF_VERSION, VDI_VERSION_1_1);
    le32_put(hdr + VDI_OFF_HEADER_SIZE, VDI_HEADER1_SIZE);
    le32_put(hdr + VDI_OFF_TYPE, fixed ? VDI_TYPE_FIXED : VDI_TYPE_NORMAL);
    le32_put(hdr + VDI_OFF_BMAP, VDI_BMAP_OFFSET);
    le32_put(hdr + VDI_OFF_DATA, (uint32_t)data_off);
    le32_put(hdr + VDI_OFF_SECTOR_SIZE, 512);
    le64_put(hdr + VDI_OFF_DISK_SIZE, size);
    le32_put(hdr + VDI_OFF_BLOCK_SIZE, bs);
    le32_put(hdr + VDI_OFF_BLOCKS, (uint32_t)blocks);
    le32_put(hdr + VDI_OFF_BLOCKS_ALLOCATED, fixed ? (uint32_t)blocks : 0);
    int r = random_uuid(hdr + VDI_OFF_UUID_IMAGE);
    if (r == 0)
        r = random_uuid(hdr + VDI_OFF_UUID_MODIFY);
    if (r < 0)
        return r;

    uint8_t *bmap = calloc(1, (size_t)bmap_size);
    if (!bmap)
        return err_set(-ENOMEM, "out of memory");
    for (uint64_t i = 0; i < blocks; i++)
        le32_put(bmap + 4 * i, fixed ? (uint32_t)i : VDI_BLOCK_FREE);

    struct io *f;
    r = io_file_open(path, IO_CREATE, &f);
    if (r < 0) {
        free(bmap);
        return r;
    }
    r = io_pwrite(f, hdr, sizeof hdr, 0);
    if (r == 0 && bmap_size)
        r = io_pwrite(f, bmap, (size_t)bmap_size, VDI_BMAP_OFFSET);
    free(bmap);
    const uint64_t end = data_off + (fixed ? blocks * bs : 0);
    if (r == 0)
        r = io_truncate(f, end);
    if (r == 0 && fixed && o->preallocation == TOPCOW_PREALLOC_FALLOC)
        r = io_preallocate(f, data_off, end - data_off);
    else if (r == 0 && fixed && o->preallocation == TOPCOW_PREALLOC_FULL)
        r = io_write_zeroes(f, data_off, end - data_off, 0);
    if (r == 0)
        r = io_flush(f);
    io_close(f);
    return r;
}
