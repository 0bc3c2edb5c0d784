// SPDX-License-Identifier: MIT
/* The VirtualBox VDI format, shared between the driver's files: the on-disk
 * header (VDI 1.x, as VirtualBox's format description lays it out), its
 * decoding and validation, the parent lookup of differencing images, and
 * image creation.
 *
 * On disk (all integers little-endian):
 *   0x000  pre-header: 64 bytes of text, signature 0xbeda107f, version 1.x
 *   0x048  header: size, type, flags, comment, block map and data offsets,
 *          legacy geometry, disk size, block size, per-block extra bytes,
 *          block counts, four UUIDs, (1.1 with a 400-byte header) LCHS geometry
 *   offset_bmap  one 32-bit entry per block: the block's index in the data
 *          area, VDI_BLOCK_FREE or VDI_BLOCK_ZERO
 *   offset_data  the allocated blocks, each block_extra + block_size bytes */
#ifndef TOPCOW_VDI_INTERNAL_H
#define TOPCOW_VDI_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "image.h"

#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_PREHEADER_SIZE 0x48u   /* text + signature + version */
#define VDI_HEADER1_SIZE 0x180u    /* header_size of a 1.0 header (no LCHS geometry) */
#define VDI_HEADER_END 0x1c8u      /* end of the fields a 1.0 header has */

/* Image types. */
enum vdi_type {
    VDI_TYPE_NORMAL = 1, /* dynamic: blocks allocated on first write */
    VDI_TYPE_FIXED = 2,  /* every block allocated at creation */
    VDI_TYPE_UNDO = 3,   /* treated as normal */
    VDI_TYPE_DIFF = 4,   /* differencing: free blocks read from the parent */
};

/* Block map entries that are not an index into the data area. */
#define VDI_BLOCK_FREE 0xffffffffu /* not allocated: the parent's data, or zeros */
#define VDI_BLOCK_ZERO 0xfffffffeu /* reads as zeros, whatever the parent holds */
#define VDI_BLOCK_IS_ALLOCATED(e) ((e) < VDI_BLOCK_ZERO)

/* Limits topcow puts on headers, far above what VirtualBox or QEMU write
 * (1 MiB blocks, no extra data): they bound the buffers a write needs. */
#define VDI_BLOCK_SIZE_MIN 512u
#define VDI_BLOCK_SIZE_MAX (64u << 20)
#define VDI_BLOCK_EXTRA_MAX (64u << 20)

#define VDI_DEFAULT_BLOCK_SIZE (1u << 20)

/* Byte offsets of the header fields in the file. */
enum vdi_field {
    VDI_OFF_SIGNATURE = 0x40,
    VDI_OFF_VERSION = 0x44,
    VDI_OFF_HEADER_SIZE = 0x48,
    VDI_OFF_TYPE = 0x4c,
    VDI_OFF_FLAGS = 0x50,
    VDI_OFF_COMMENT = 0x54, /* 256 bytes */
    VDI_OFF_BMAP = 0x154,
    VDI_OFF_DATA = 0x158,
    VDI_OFF_CYLINDERS = 0x15c,
    VDI_OFF_HEADS = 0x160,
    VDI_OFF_SECTORS = 0x164,
    VDI_OFF_SECTOR_SIZE = 0x168,
    VDI_OFF_DISK_SIZE = 0x170,
    VDI_OFF_BLOCK_SIZE = 0x178,
    VDI_OFF_BLOCK_EXTRA = 0x17c,
    VDI_OFF_BLOCKS = 0x180,
    VDI_OFF_BLOCKS_ALLOCATED = 0x184,
    VDI_OFF_UUID_IMAGE = 0x188,
    VDI_OFF_UUID_MODIFY = 0x198,
    VDI_OFF_UUID_LINK = 0x1a8,
    VDI_OFF_UUID_PARENT_MODIFY = 0x1b8,
};

/* The decoded header. */
struct vdi_header {
    uint32_t version;
    uint32_t header_size;
    uint32_t type;
    uint32_t offset_bmap;
    uint32_t offset_data;
    uint64_t disk_size;
    uint32_t block_size;
    uint32_t block_extra;
    uint32_t blocks;           /* entries in the block map */
    uint32_t blocks_allocated; /* blocks in the data area */
    uint8_t uuid_image[16];
    uint8_t uuid_modify[16];
    uint8_t uuid_link[16];     /* a differencing image's parent: its uuid_image */
    uint8_t uuid_parent_modify[16];
};

/* The driver's state (img->priv). */
struct vdi_state {
    struct vdi_header h;
    /* The block map; entries are read and written with atomics, so that
     * reads and writes of allocated blocks need no lock. */
    uint32_t *bmap;
    /* Serializes allocation: new blocks, map entries, blocks_allocated. */
    pthread_mutex_t lock;
    uint64_t block_stride; /* block_extra + block_size */
};

/* Whether @buf (@len bytes from the start of a file) holds the VDI
 * signature (of any version: the header decoder names the ones topcow does
 * not read). */
bool vdi_has_signature(const uint8_t *buf, size_t len);

/* Decode the header from the first VDI_HEADER_END bytes of a file (@buf)
 * into *@h and validate it against @file_size, the size of @name: the block
 * map must lie in the file after the header, the data area after the map,
 * the blocks must cover the disk.  Returns 0, -ENOTSUP (a VDI version topcow
 * does not read) or -EUCLEAN, with a message naming @name. */
int vdi_header_decode(const uint8_t *buf, const char *name, uint64_t file_size,
                      struct vdi_header *h);

/* Format @uuid as VirtualBox prints it (the first three groups stored
 * little-endian) into @out (37 bytes). */
void vdi_uuid_format(const uint8_t uuid[16], char out[37]);

/* Find the parent of the differencing image @child: the VDI image whose
 * uuid_image equals @link, looked for in the child's directory and then in
 * its parent directory (VirtualBox keeps differencing images in the VM's
 * "Snapshots" folder, the base disk in the VM folder).  On success store in
 * *@backing the name relative to the child's directory ("base.vdi" or
 * "../base.vdi") and in *@full the path to open (both to be freed by the
 * caller), and return 0; -ENOENT naming the UUID if there is none. */
int vdi_find_parent(const char *child, const uint8_t link[16], char **backing, char **full);

/* Create a VDI image (format_ops.create). */
int vdi_create(const char *path, const struct topcow_create_opts *opts);

#endif
