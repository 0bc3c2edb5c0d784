// SPDX-License-Identifier: MIT
/* The VHDX driver's shared state and internal interfaces.  Layout and field
 * names follow Microsoft's [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File
 * Format" specification: section 2.1 (file layout), 2.2 (header, region
 * table), 2.3 (log), 2.5 (BAT), 2.6 (metadata region).  All on-disk
 * integers are little-endian; GUIDs are kept as their 16 on-disk bytes. */
#ifndef TOPCOW_VHDX_INTERNAL_H
#define TOPCOW_VHDX_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

#define VHDX_KiB 1024ull
#define VHDX_MiB (1024ull * 1024)
#define VHDX_TiB (1024ull * 1024 * 1024 * 1024)

/* 2.1: the header section is five 64 KiB structures in the first 1 MiB. */
#define VHDX_FILE_ID_OFF 0
#define VHDX_HEADER1_OFF (64 * VHDX_KiB)
#define VHDX_HEADER2_OFF (128 * VHDX_KiB)
#define VHDX_REGION1_OFF (192 * VHDX_KiB)
#define VHDX_REGION2_OFF (256 * VHDX_KiB)
#define VHDX_HEADER_SIZE 4096             /* checksummed part of a header */
#define VHDX_REGION_SIZE (64 * VHDX_KiB)  /* checksummed region table */
#define VHDX_METADATA_TABLE_SIZE (64 * VHDX_KiB)
#define VHDX_LOG_SECTOR 4096
#define VHDX_SECTOR_BITMAP_SIZE VHDX_MiB  /* one sector bitmap block */
#define VHDX_MAX_SIZE (64 * VHDX_TiB)     /* 2.6.2.2: largest virtual disk */
#define VHDX_MAX_FILE_OFFSET (1ull << 48) /* sanity bound for offsets named by
                                           * the log (44-bit MB offsets in the BAT) */
#define VHDX_MAX_LOG (256 * VHDX_MiB)     /* largest log we read into memory */

/* 2.5.1: BAT entry states (bits 0..2); FileOffsetMB in bits 20..63. */
enum vhdx_block_state {
    VHDX_PAYLOAD_NOT_PRESENT = 0,
    VHDX_PAYLOAD_UNDEFINED = 1,
    VHDX_PAYLOAD_ZERO = 2,
    VHDX_PAYLOAD_UNMAPPED = 3,
    VHDX_PAYLOAD_FULLY_PRESENT = 6,
    VHDX_PAYLOAD_PARTIALLY_PRESENT = 7,
};
#define VHDX_SB_BLOCK_PRESENT 6
#define VHDX_BAT_STATE(e) ((unsigned)((e) & 7))
#define VHDX_BAT_OFFSET(e) ((e) & ~(VHDX_MiB - 1)) /* FileOffsetMB << 20 */

/* The GUIDs the driver recognises, in on-disk byte order. */
extern const uint8_t vhdx_guid_bat[16];
extern const uint8_t vhdx_guid_metadata[16];
extern const uint8_t vhdx_guid_file_parameters[16];
extern const uint8_t vhdx_guid_virtual_disk_size[16];
extern const uint8_t vhdx_guid_page83[16];
extern const uint8_t vhdx_guid_logical_sector[16];
extern const uint8_t vhdx_guid_physical_sector[16];
extern const uint8_t vhdx_guid_parent_locator[16];
extern const uint8_t vhdx_guid_vhdx_locator_type[16];

/* 2.2.2: one header, decoded. */
struct vhdx_header {
    uint64_t seq;
    uint8_t file_write_guid[16];
    uint8_t data_write_guid[16];
    uint8_t log_guid[16];
    uint16_t log_version;
    uint16_t version;
    uint32_t log_length;
    uint64_t log_offset;
};

/* One range of the file as the log says it must read after replay. */
struct vhdx_patch {
    uint64_t off;
    uint64_t len;
    uint8_t *data; /* len bytes, or NULL: zeros */
};

struct vhdx_state {
    pthread_mutex_t lock;     /* BAT, header and allocation updates */
    struct vhdx_header hdr;   /* the current header */
    unsigned hdr_slot;        /* 0 or 1: which copy hdr came from */
    bool session_started;     /* FileWriteGuid/DataWriteGuid renewed for this open */
    uint64_t bat_off;         /* BAT region */
    uint32_t bat_len;
    uint64_t meta_off;        /* metadata region */
    uint32_t meta_len;
    /* 2.6.2: metadata items. */
    uint32_t block_size;
    bool leave_blocks_allocated;
    bool has_parent;
    uint64_t disk_size;
    uint32_t logical_sector;
    uint32_t physical_sector;
    uint8_t page83[16];
    /* 2.5: BAT geometry and the table itself (bat_entries entries). */
    uint64_t chunk_ratio;
    uint64_t data_blocks;
    uint64_t bat_entries;
    uint64_t *bat;
    uint64_t alloc_end;       /* next free 1 MiB-aligned offset for a new block */
    /* Read-only opens of an image with a pending log: the replayed writes,
     * in log order, consulted over the file on every read. */
    struct vhdx_patch *patches;
    size_t npatches;
};

/* vhdx-crc32c.c: CRC-32C (Castagnoli) as 2.2.2 defines the checksums. */
uint32_t vhdx_crc32c(const void *buf, size_t len);
/* The CRC-32C of @buf[0..len) with its 4-byte checksum field at @crc_off
 * taken as zero, compared with the stored value / stored into it. */
bool vhdx_checksum_ok(const uint8_t *buf, size_t len, size_t crc_off);
void vhdx_checksum_set(uint8_t *buf, size_t len, size_t crc_off);

/* vhdx-header.c: the header section and the metadata region. */
/* Choose the current header (2.2.2), read the region table (2.2.3) and the
 * metadata items (2.6), and fill the geometry fields of @s.  For images
 * with a parent, sets img->backing_* from the parent locator (2.6.2.6). */
int vhdx_headers_load(struct topcow_image *img, struct vhdx_state *s);
int vhdx_metadata_load(struct topcow_image *img, struct vhdx_state *s);
/* Encode @h into the 4 KiB @buf with its checksum. */
void vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf);
/* Write @s->hdr, with the next sequence number, over the copy that is not
 * current, and make it durable: the header update of 2.2.2.1.  Needs the
 * lock (or exclusive use of @s). */
int vhdx_header_update(struct topcow_image *img, struct vhdx_state *s);
/* A new random GUID (version 4). */
void vhdx_guid_generate(uint8_t guid[16]);
bool vhdx_guid_is_zero(const uint8_t guid[16]);

/* vhdx-log.c: 2.3.  If the current header names a log (non-zero LogGuid),
 * find its active sequence and replay it: read-write images are written,
 * flushed and get a header with LogGuid cleared; read-only images get the
 * replayed writes as @s->patches and the file stays untouched.  Must run
 * before anything but the headers is read. */
int vhdx_log_replay(struct topcow_image *img, struct vhdx_state *s);
void vhdx_patches_free(struct vhdx_state *s);

/* vhdx.c: read @len bytes of the file at @off as the replayed log says
 * they are (the file itself when no patches are pending). */
int vhdx_file_pread(struct topcow_image *img, struct vhdx_state *s, void *buf, size_t len,
                    uint64_t off);

/* vhdx-data.c: the BAT and the guest data path. */
int vhdx_bat_load(struct topcow_image *img, struct vhdx_state *s);
int vhdx_data_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off);
int vhdx_data_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                     unsigned flags);
int vhdx_data_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len,
                           unsigned flags);
int vhdx_data_block_status(struct topcow_image *img, uint64_t off, uint64_t len,
                           struct topcow_extent *ext);

/* vhdx-create.c */
int vhdx_create(const char *path, const struct topcow_create_opts *opts);

#endif
