// SPDX-License-Identifier: MIT
/* The VDI header: recognizing the pre-header, decoding the 1.x header and
 * validating every field the driver relies on before anything is read
 * through it.  Header values are untrusted: sizes are bounded and every
 * offset computed from them is checked for overflow here, once, so the
 * data path can use them freely. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "error.h"
#include "vdi-internal.h"

bool
vdi_has_signature(const uint8_t *buf, size_t len)
{
    return len >= VDI_OFF_SIGNATURE + 4 && le32_get(buf + VDI_OFF_SIGNATURE) == VDI_SIGNATURE;
}

void
vdi_uuid_format(const uint8_t u[16], char out[37])
{
    snprintf(out, 37,
             "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", le32_get(u), le16_get(u + 4),
             le16_get(u + 6), u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static bool
is_pow2(uint32_t v)
{
    return v && (v & (v - 1)) == 0;
}

int
vdi_header_decode(const uint8_t *buf, const char *name, uint64_t file_size,
                  struct vdi_header *h)
{
    RETURN_ERR_IF(file_size < VDI_HEADER_END, -EUCLEAN,
                  "%s: vdi: file of %llu bytes is too short for a VDI header", name,
                  (unsigned long long)file_size);
    RETURN_ERR_IF(le32_get(buf + VDI_OFF_SIGNATURE) != VDI_SIGNATURE, -EUCLEAN,
                  "%s: vdi: no VDI signature in the pre-header (0x%08x)", name,
                  le32_get(buf + VDI_OFF_SIGNATURE));
    memset(h, 0, sizeof *h);
    h->version = le32_get(buf + VDI_OFF_VERSION);
    RETURN_ERR_IF(h->version >> 16 != 1, -ENOTSUP,
                  "%s: vdi: header version %u.%u is not supported (only 1.x)", name,
                  h->version >> 16, h->version & 0xffff);
    h->header_size = le32_get(buf + VDI_OFF_HEADER_SIZE);
    h->type = le32_get(buf + VDI_OFF_TYPE);
    h->offset_bmap = le32_get(buf + VDI_OFF_BMAP);
    h->offset_data = le32_get(buf + VDI_OFF_DATA);
    h->disk_size = le64_get(buf + VDI_OFF_DISK_SIZE);
    h->block_size = le32_get(buf + VDI_OFF_BLOCK_SIZE);
    h->block_extra = le32_get(buf + VDI_OFF_BLOCK_EXTRA);
    h->blocks = le32_get(buf + VDI_OFF_BLOCKS);
    h->blocks_allocated = le32_get(buf + VDI_OFF_BLOCKS_ALLOCATED);
    memcpy(h->uuid_image, buf + VDI_OFF_UUID_IMAGE, 16);
    memcpy(h->uuid_modify, buf + VDI_OFF_UUID_MODIFY, 16);
    memcpy(h->uuid_link, buf + VDI_OFF_UUID_LINK, 16);
    memcpy(h->uuid_parent_modify, buf + VDI_OFF_UUID_PARENT_MODIFY, 16);

    RETURN_ERR_IF(h->header_size < VDI_HEADER1_SIZE, -EUCLEAN,
                  "%s: vdi: header size %u is smaller than a 1.x header (%u)", name,
                  h->header_size, VDI_HEADER1_SIZE);
    RETURN_ERR_IF(h->type < VDI_TYPE_NORMAL || h->type > VDI_TYPE_DIFF, -EUCLEAN,
                  "%s: vdi: unknown image type %u", name, h->type);
    RETURN_ERR_IF(!is_pow2(h->block_size) || h->block_size < VDI_BLOCK_SIZE_MIN ||
                  h->block_size > VDI_BLOCK_SIZE_MAX, -EUCLEAN,
                  "%s: vdi: block size %u is not a power of two from %u to %u", name,
                  h->block_size, VDI_BLOCK_SIZE_MIN, VDI_BLOCK_SIZE_MAX);
    RETURN_ERR_IF(h->block_extra > VDI_BLOCK_EXTRA_MAX, -EUCLEAN,
                  "%s: vdi: block extra size %u is larger than %u", name, h->block_extra,
                  VDI_BLOCK_EXTRA_MAX);

    /* The blocks must cover the disk (the last one may reach past its end). */
    uint64_t covered = (uint64_t)h->blocks * h->block_size;
    RETURN_ERR_IF(covered < h->disk_size, -EUCLEAN,
                  "%s: vdi: %u blocks of %u bytes do not cover the disk size %llu", name,
                  h->blocks, h->block_size, (unsigned long long)h->disk_size);
    RETURN_ERR_IF(h->blocks_allocated > h->blocks, -EUCLEAN,
                  "%s: vdi: %u blocks allocated of only %u", name, h->blocks_allocated,
                  h->blocks);

    /* Header, block map and data area in this order, the map inside the file
     * (so that its size is bounded by the file's). */
    uint64_t header_end = (uint64_t)VDI_PREHEADER_SIZE + h->header_size;
    uint64_t bmap_end = (uint64_t)h->offset_bmap + 4 * (uint64_t)h->blocks;
    RETURN_ERR_IF(h->offset_bmap < header_end, -EUCLEAN,
                  "%s: vdi: block map offset %u overlaps the header (%llu bytes)", name,
                  h->offset_bmap, (unsigned long long)header_end);
    RETURN_ERR_IF(bmap_end > file_size, -EUCLEAN,
                  "%s: vdi: block map [%u, +%llu) lies past the end of the file (%llu bytes)",
                  name, h->offset_bmap, (unsigned long long)(4 * (uint64_t)h->blocks),
                  (unsigned long long)file_size);
    RETURN_ERR_IF(h->offset_data < bmap_end, -EUCLEAN,
                  "%s: vdi: data offset %u overlaps the block map (ending at %llu)", name,
                  h->offset_data, (unsigned long long)bmap_end);
    /* With the bounds above this cannot overflow; checked all the same, as
     * the data path relies on it. */
    uint64_t stride = (uint64_t)h->block_extra + h->block_size, data_end;
    RETURN_ERR_IF(MUL_OVERFLOW(stride, (uint64_t)h->blocks, &data_end) ||
                  ADD_OVERFLOW(data_end, (uint64_t)h->offset_data, &data_end), -EUCLEAN,
                  "%s: vdi: the data area overflows", name);
    return 0;
}
