// SPDX-License-Identifier: MIT
/* The VHD format ("vpc" in QEMU's vocabulary), shared by the driver's files:
 * on-disk layout from Microsoft's "Virtual Hard Disk Image Format
 * Specification" (version 1.0, 2006), the decoded structures, and the
 * driver's state.  All on-disk integers are big-endian. */
#ifndef TOPCOW_VHD_INTERNAL_H
#define TOPCOW_VHD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "image.h"

#define VHD_SECTOR 512u
#define VHD_FOOTER_SIZE 512u      /* "Hard Disk Footer Format" */
#define VHD_DYN_HEADER_SIZE 1024u /* "Dynamic Disk Header Format" */
#define VHD_FOOTER_COOKIE "conectix"
#define VHD_DYN_COOKIE "cxsparse"
#define VHD_NO_OFFSET UINT64_MAX  /* footer data offset of a fixed disk */
#define VHD_BAT_UNUSED 0xffffffffu
#define VHD_DEFAULT_BLOCK (2u << 20)

/* The largest disk QEMU opens or creates: 2040 GiB (in sectors). */
#define VHD_MAX_SECTORS 0xff000000ull
/* The largest CHS geometry the footer can hold; a footer carrying it says
 * "my size is current_size, not the geometry". */
#define VHD_MAX_CYLS 65535u
#define VHD_MAX_HEADS 16u
#define VHD_MAX_SPT 255u

enum vhd_type {
    VHD_TYPE_FIXED = 2,
    VHD_TYPE_DYNAMIC = 3,
    VHD_TYPE_DIFF = 4,
};

/* Footer field offsets ("Hard Disk Footer Format"). */
enum {
    VHD_F_COOKIE = 0,
    VHD_F_FEATURES = 8,
    VHD_F_VERSION = 12,
    VHD_F_DATA_OFFSET = 16,
    VHD_F_TIMESTAMP = 24,
    VHD_F_CREATOR_APP = 28,
    VHD_F_CREATOR_VER = 32,
    VHD_F_CREATOR_OS = 36,
    VHD_F_ORIG_SIZE = 40,
    VHD_F_CUR_SIZE = 48,
    VHD_F_CYLS = 56,
    VHD_F_HEADS = 58,
    VHD_F_SPT = 59,
    VHD_F_TYPE = 60,
    VHD_F_CHECKSUM = 64,
    VHD_F_UUID = 68,
    VHD_F_SAVED_STATE = 84,
};

/* Dynamic disk header field offsets ("Dynamic Disk Header Format"). */
enum {
    VHD_H_COOKIE = 0,
    VHD_H_DATA_OFFSET = 8,
    VHD_H_TABLE_OFFSET = 16,
    VHD_H_VERSION = 24,
    VHD_H_MAX_ENTRIES = 28,
    VHD_H_BLOCK_SIZE = 32,
    VHD_H_CHECKSUM = 36,
    VHD_H_PARENT_UUID = 40,
    VHD_H_PARENT_TIME = 56,
    VHD_H_PARENT_NAME = 64,   /* 512 bytes of UTF-16BE */
    VHD_H_LOCATORS = 576,     /* 8 entries of 24 bytes */
    VHD_LOCATOR_SIZE = 24,
    VHD_LOCATOR_COUNT = 8,
};

struct vhd_geometry {
    uint16_t cyls;
    uint8_t heads;
    uint8_t spt; /* sectors per track */
};

/* A decoded footer. */
struct vhd_footer {
    uint64_t data_offset;
    char creator_app[4];
    uint64_t current_size;
    struct vhd_geometry geo;
    uint32_t type;
};

/* The driver's state (img->priv). */
struct vhd_state {
    enum vhd_type type;
    uint8_t footer[VHD_FOOTER_SIZE]; /* as read; rewritten at the end when the file grows */
    /* Dynamic and differencing disks: */
    uint32_t block_size;   /* bytes, a power of two >= 512 */
    uint32_t bitmap_size;  /* bytes of sector bitmap before each block, a multiple of 512 */
    uint32_t nb_blocks;    /* BAT entries in use: the virtual size in blocks */
    uint64_t bat_offset;
    /* Protects bat[] and next_block (allocation); data I/O runs unlocked. */
    pthread_mutex_t lock;
    uint32_t *bat;         /* sector number of each block, or VHD_BAT_UNUSED */
    uint64_t next_block;   /* file offset of the next new block (where the footer is) */
    /* Differencing disks: full[i] != 0 once block i is known to hold every
     * sector (bitmap all ones), so writes no longer consult the parent. */
    uint8_t *full;
};

/* One's complement of the byte sum of @len bytes, skipping the 4-byte
 * checksum field at @skip ("Checksum" in the footer and header sections). */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t skip);

/* Decode the 512-byte footer @buf of @fn: cookie and checksum checked. */
int vhd_footer_decode(const char *fn, const uint8_t *buf, struct vhd_footer *f);

/* The guest-visible size of a disk with footer @f, in bytes (see the
 * comment at its definition for the rule). */
uint64_t vhd_footer_size(const struct vhd_footer *f);

/* The CHS geometry for a disk of @sectors, per the specification's appendix
 * "CHS Calculation"; sizes beyond the largest geometry get the largest. */
struct vhd_geometry vhd_chs_for(uint64_t sectors);

/* Seconds since 2000-01-01 00:00:00 UTC, the footer's time base. */
uint32_t vhd_timestamp_now(void);

/* Resolve the parent of differencing disk @img from its dynamic header
 * @hdr: set img->backing_file (a host path, relative to the image's
 * directory or absolute) and img->backing_format ("vpc"). */
int vhd_parent_resolve(struct topcow_image *img, const uint8_t *hdr);

/* The data path (vhd-io.c), with the contracts of struct format_ops. */
int vhd_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off);
int vhd_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
               unsigned flags);
int vhd_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags);
int vhd_block_status(struct topcow_image *img, uint64_t off, uint64_t len,
                     struct topcow_extent *ext);

/* Create an image as @o says (vhd-create.c). */
int vhd_create(const char *path, const struct topcow_create_opts *o);

#endif
