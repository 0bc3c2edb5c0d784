// SPDX-License-Identifier: MIT
/* The VMDK driver's shared state, split by concern: the text descriptor
 * (vmdk-descriptor.c), hosted sparse extents and their grain tables
 * (vmdk-sparse.c), the streamOptimized writer (vmdk-stream.c), image
 * creation (vmdk-create.c) and the format glue that maps guest offsets onto
 * extents (vmdk.c).  Written from VMware's "Virtual Disk Format" 1.1/5.0
 * technical notes; every number read from an image is untrusted. */
#ifndef TOPCOW_VMDK_INTERNAL_H
#define TOPCOW_VMDK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

#define VMDK_SECTOR 512u
#define VMDK_SPARSE_MAGIC 0x564d444bu /* "KDMV" little-endian */
#define VMDK_GD_AT_END UINT64_MAX     /* header gdOffset: the footer holds it */

/* SparseExtentHeader.flags bits (spec "Hosted Sparse Extent Header"). */
#define VMDK_FLAG_NL_DETECT (1u << 0)
#define VMDK_FLAG_REDUNDANT_GT (1u << 1)
#define VMDK_FLAG_ZEROED_GRAIN (1u << 2)
#define VMDK_FLAG_COMPRESSED (1u << 16)
#define VMDK_FLAG_MARKERS (1u << 17)

/* Stream-optimized marker types (spec "Stream-Optimized Compressed Sparse
 * Extents"): a marker sector is {u64 numSectors, u32 size = 0, u32 type}. */
enum vmdk_marker {
    VMDK_MARKER_EOS = 0,
    VMDK_MARKER_GT = 1,
    VMDK_MARKER_GD = 2,
    VMDK_MARKER_FOOTER = 3,
};

/* The decoded SparseExtentHeader (512 bytes on disk, little-endian).
 * Offsets and sizes are in sectors, as stored. */
struct vmdk_header {
    uint32_t version;
    uint32_t flags;
    uint64_t capacity;
    uint64_t grain_size;
    uint64_t desc_offset;
    uint64_t desc_size;
    uint32_t gtes_per_gt;
    uint64_t rgd_offset;
    uint64_t gd_offset;
    uint64_t overhead;
    uint8_t unclean;
    uint16_t compress_algorithm;
};

void vmdk_header_decode(const uint8_t buf[VMDK_SECTOR], struct vmdk_header *h);
void vmdk_header_encode(const struct vmdk_header *h, uint8_t buf[VMDK_SECTOR]);

/* ---- descriptor ---------------------------------------------------------- */

enum vmdk_extent_type {
    VMDK_EXTENT_FLAT,   /* FLAT and VMFS: raw bytes at an offset of a file */
    VMDK_EXTENT_ZERO,   /* reads as zeros, stores nothing */
    VMDK_EXTENT_SPARSE, /* a hosted sparse extent ("KDMV") */
};

/* One extent line: ACCESS SECTORS TYPE ["FILE" [OFFSET]]. */
struct vmdk_desc_extent {
    bool read_only;         /* RDONLY or NOACCESS */
    uint64_t sectors;
    enum vmdk_extent_type type;
    char type_name[16];     /* as written: "FLAT", "SPARSE", "VMFS", "ZERO" */
    char *filename;         /* NULL for ZERO */
    uint64_t offset;        /* FLAT: sectors into the file */
};

struct vmdk_descriptor {
    uint32_t cid;
    uint32_t parent_cid;
    char *create_type;      /* NULL when absent */
    char *parent_hint;      /* parentFileNameHint, or NULL */
    struct vmdk_desc_extent *extents;
    size_t nextents;
};

/* Parse descriptor text @text (@len bytes, need not be NUL-terminated;
 * parsing stops at the first NUL).  @where names the file in messages.
 * Returns 0 or -EUCLEAN / -ENOTSUP / -ENOMEM; on failure *@d is empty. */
int vmdk_descriptor_parse(const char *text, size_t len, const char *where,
                          struct vmdk_descriptor *d);
void vmdk_descriptor_free(struct vmdk_descriptor *d);

/* What a new image's descriptor says (vmdk-create.c builds it). */
struct vmdk_desc_spec {
    uint32_t cid;
    uint32_t parent_cid;
    const char *create_type;
    const char *parent_hint;   /* or NULL */
    const char *extent_lines;  /* the extent description, lines ending in '\n' */
    const char *hw_version;
    const char *adapter_type;
    const char *tools_version;
    uint64_t sectors;          /* virtual size, for the geometry */
};

/* The descriptor text for @s, NUL-terminated, malloc'd; NULL on ENOMEM. */
char *vmdk_descriptor_format(const struct vmdk_desc_spec *s);

/* ---- sparse extents ------------------------------------------------------ */

struct vmdk_stream;

/* A hosted sparse extent: the header, the grain directory in memory and the
 * grain tables loaded on first use.  @lock guards gts, the allocation point
 * and the stream writer; data transfers run outside it. */
struct vmdk_sparse {
    struct vmdk_header h;     /* as effective (the footer's when GD_AT_END) */
    uint64_t capacity;        /* bytes */
    uint64_t grain;           /* bytes per grain */
    uint64_t gt_span;         /* guest bytes one grain table covers */
    uint32_t gd_entries;
    uint32_t *gd;             /* sector of each grain table, 0: none */
    uint32_t *rgd;            /* the redundant directory, or NULL */
    uint32_t **gts;           /* gd_entries loaded tables (gtes_per_gt each) or NULL */
    bool compressed;          /* grains are deflate streams */
    bool markers;             /* compressed grains carry {lba, size} */
    bool zeroed_grain;        /* GTE 1 means a zero grain */
    uint64_t file_size;
    uint64_t alloc_at;        /* where the next grain or table goes (bytes) */
    struct vmdk_stream *stream; /* set while writing a new streamOptimized image */
    pthread_mutex_t lock;
};

/* Grain lookup results. */
enum vmdk_grain_kind {
    VMDK_GRAIN_UNALLOCATED, /* read from the backing file (or zeros) */
    VMDK_GRAIN_ZERO,        /* zeroed-grain GTE */
    VMDK_GRAIN_DATA,        /* at the returned sector */
    VMDK_GRAIN_COMPRESSED,  /* a compressed grain (with marker) at the sector */
};

/* Open the sparse extent whose header sector is @hdr on @file (@name for
 * messages).  @writable: the image is open read-write.  On success
 * *@out is a new extent state. */
int vmdk_sparse_open(struct io *file, const char *name, const uint8_t hdr[VMDK_SECTOR],
                     bool writable, struct vmdk_sparse **out);
void vmdk_sparse_close(struct vmdk_sparse *sp);

/* Look up the grain holding extent offset @off (< capacity): its kind and,
 * for data, the sector of the grain. */
int vmdk_sparse_lookup(struct vmdk_sparse *sp, struct io *file, const char *name, uint64_t off,
                       enum vmdk_grain_kind *kind, uint64_t *sector);

/* The kind (and, for data, the grain's sector) at extent offset @off, and
 * in *@len how far from @off (at most @max_len) grains of that kind run on
 * within its grain table, data grains contiguous in the file; a missing
 * table is one run to its end. */
int vmdk_sparse_run(struct vmdk_sparse *sp, struct io *file, const char *name, uint64_t off,
                    uint64_t max_len, enum vmdk_grain_kind *kind, uint64_t *sector,
                    uint64_t *len);

/* The same with sp->lock held by the caller. */
int vmdk_sparse_lookup_locked(struct vmdk_sparse *sp, struct io *file, const char *name,
                              uint64_t off, enum vmdk_grain_kind *kind, uint64_t *sector);

/* Read a compressed grain at @sector into @grain_buf (sp->grain bytes). */
int vmdk_sparse_read_compressed(struct vmdk_sparse *sp, struct io *file, const char *name,
                                uint64_t sector, uint8_t *grain_buf);

/* Store the grain at extent offset @grain_off (grain aligned) as @data
 * (sp->grain bytes, or NULL to mark it zeroed), allocating it at the end of
 * the file and updating both grain tables.  The caller holds sp->lock. */
int vmdk_sparse_store_grain(struct vmdk_sparse *sp, struct io *file, const char *name,
                            uint64_t grain_off, const uint8_t *data);

/* ---- streamOptimized writer (vmdk-stream.c) ------------------------------- */

/* Start writing a freshly created streamOptimized extent: grains are
 * appended compressed from sp->alloc_at. */
int vmdk_stream_start(struct vmdk_sparse *sp);
/* Write guest bytes of the extent; a grain already stored cannot be
 * rewritten (-ENOTSUP).  Serialized on sp->lock. */
int vmdk_stream_pwrite(struct vmdk_sparse *sp, struct io *file, const char *name,
                       const uint8_t *buf, size_t len, uint64_t off);
/* Store the open grain, then the grain tables, directory, footer and
 * end-of-stream marker.  The stream ends; further writes fail. */
int vmdk_stream_finish(struct vmdk_sparse *sp, struct io *file, const char *name);
void vmdk_stream_free(struct vmdk_stream *st);

/* Deflate (zlib format, RFC 1950) as VMDK grains use it. */
int vmdk_inflate(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen, size_t *produced);
int vmdk_deflate(const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap, size_t *produced);

/* ---- the image ----------------------------------------------------------- */

struct vmdk_extent {
    enum vmdk_extent_type type;
    char *path;               /* the file as opened (resolved), or NULL */
    struct io *file;          /* NULL for ZERO extents */
    bool own_file;            /* false when it is img->file */
    bool read_only;           /* RDONLY / NOACCESS in the descriptor */
    uint64_t start;           /* guest offset of the first byte */
    uint64_t length;          /* guest bytes */
    uint64_t flat_offset;     /* FLAT: bytes into the file */
    struct vmdk_sparse *sp;   /* SPARSE */
    const char *format;       /* for info: the descriptor's type, "" for a bare sparse file */
};

struct vmdk_state {
    struct vmdk_extent *extents;
    size_t nextents;
    struct vmdk_descriptor desc;
    struct topcow_vmdk_extent *info; /* for topcow_info, one per extent */
};

/* Check every sparse extent's grains lie inside its file (vmdk-check.c). */
int vmdk_check(struct topcow_image *img, unsigned flags, struct topcow_check_result *res,
               topcow_report_fn report, void *opaque);

/* Create a VMDK image (every subformat qemu-img writes). */
int vmdk_create(const char *path, const struct topcow_create_opts *o);

#endif
