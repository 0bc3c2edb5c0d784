// SPDX-License-Identifier: MIT
/* The image handle and the format-driver vtable.  A format driver turns guest
 * offsets into host offsets through its metadata; the core (image.c) owns
 * argument checking, the backing chain and the public entry points, so each
 * driver only handles requests that are already in range. */
#ifndef TOPCOW_IMAGE_H
#define TOPCOW_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "topcow.h"
#include "io.h"
#include "stats.h"

struct topcow_image;

struct format_ops {
    size_t struct_size;
    const char *name;
    /* Score 0..100 for how sure the format is that @buf (the first @len
     * bytes of the file) is one of its images. */
    int (*probe)(const uint8_t *buf, size_t len);
    /* Parse the image on img->file and set img->size, img->priv and the
     * backing_* fields.  On failure leave nothing allocated in img->priv. */
    int (*open)(struct topcow_image *img);
    /* Release img->priv.  The core flushes before calling it. */
    void (*close)(struct topcow_image *img);
    int (*create)(const char *path, const struct topcow_create_opts *opts);
    /* Requests are within [0, img->size) and non-empty. */
    int (*pread)(struct topcow_image *img, void *buf, size_t len, uint64_t off);
    int (*pwrite)(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                  unsigned flags);
    int (*write_zeroes)(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags);
    int (*discard)(struct topcow_image *img, uint64_t off, uint64_t len);
    int (*flush)(struct topcow_image *img);
    /* Status of this layer only: TOPCOW_EXTENT_ALLOCATED when this layer
     * defines the data; otherwise the core consults the backing chain.
     * Must set ext->length (1..len). */
    int (*block_status)(struct topcow_image *img, uint64_t off, uint64_t len,
                        struct topcow_extent *ext);
    /* Fill the format-specific fields of *info; the core fills the rest. */
    int (*get_info)(struct topcow_image *img, struct topcow_info *info);
    int (*check)(struct topcow_image *img, unsigned flags, struct topcow_check_result *res,
                 topcow_report_fn report, void *opaque); /* optional */
    /* Called on a dirty/closing image after the final flush (optional). */
    int (*close_clean)(struct topcow_image *img);
    /* Internal snapshots (optional; NULL: the format has none). */
    unsigned (*snapshot_count)(struct topcow_image *img);
    int (*snapshot_get)(struct topcow_image *img, unsigned index, struct topcow_snapshot *sn);
    int (*snapshot_create)(struct topcow_image *img, const char *name);
    int (*snapshot_apply)(struct topcow_image *img, const char *id_or_name);
    int (*snapshot_delete)(struct topcow_image *img, const char *id_or_name);
    /* Lifecycle (optional; see topcow.h).  Called on read-write images with
     * arguments checked; resize gets a size rounded to 512 bytes that
     * differs from img->size. */
    int (*set_backing)(struct topcow_image *img, const char *file, const char *format);
    int (*make_empty)(struct topcow_image *img);
    int (*resize)(struct topcow_image *img, uint64_t size, unsigned flags,
                  enum topcow_prealloc prealloc);
    int (*amend)(struct topcow_image *img, const struct topcow_amend_opts *opts);
    /* Compressed writes (optional): compress prepares, without touching the
     * image and on any thread; write_compressed stores.  Requests are within
     * the image; the image is writable. */
    int (*compress)(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                    struct topcow_compressed **out);
    int (*write_compressed)(struct topcow_image *img, const struct topcow_compressed *c);
    /* Encryption details (optional; NULL: never encrypted). */
    int (*get_encryption)(struct topcow_image *img, struct topcow_encryption *enc);
    /* append only */
};

/* One cluster of a topcow_compressed: arena[pos, pos+len) holds its stream,
 * or with @raw its data as it is (it did not compress). */
struct topcow_compressed_cluster {
    size_t pos;
    size_t len;
    bool raw;
};

/* Clusters compressed by a format's compress method, ready to be stored. */
struct topcow_compressed {
    uint64_t off;          /* guest offset of the first cluster */
    uint64_t len;          /* guest bytes covered */
    uint64_t cluster_size;
    size_t n;
    struct topcow_compressed_cluster *clusters;
    uint8_t *arena;
};

struct topcow_image {
    const struct format_ops *ops;
    void *priv;                  /* the driver's state */
    struct io *file;             /* the image file */
    char *filename;              /* as given to open */
    unsigned flags;              /* TOPCOW_OPEN_* as effective */
    bool read_only;
    uint64_t size;               /* virtual size */
    uint64_t l2_cache_size;      /* from the open options */
    const char *snapshot;        /* open at this snapshot (borrowed for the duration of
                                  * open only) */
    const void *secret;          /* passphrase (borrowed for the duration of open only) */
    size_t secret_len;
    unsigned chain_depth;        /* 0 for the top image */
    /* Set by the driver's open when the image names a backing file: */
    char *backing_file;          /* as stored */
    char *backing_format;        /* as stored, or NULL */
    char *full_backing_filename; /* resolved against the image's directory */
    struct topcow_image *backing;/* opened by the core; NULL if none */
    /* Statistics (stats.h): the region of a top image, and the layer every
     * image of the chain counts into; NULL when not counted. */
    struct stats_region *stats_region;
    struct stats_layer *stats;
};

/* Formats, in probe order. */
extern const struct format_ops qcow2_format;
extern const struct format_ops raw_format;
extern const struct format_ops vdi_format;
extern const struct format_ops vpc_format;
extern const struct format_ops vhdx_format;
extern const struct format_ops vmdk_format;

/* The format called @name, or NULL. */
const struct format_ops *format_lookup(const char *name);

/* The format whose probe scores @buf highest (raw scores 1). */
const struct format_ops *format_probe(const uint8_t *buf, size_t len);

/* Open an image on an already-open @file (ownership passes to the image,
 * even on failure).  @name labels the image in messages; the backing chain is
 * opened from the host filesystem relative to @name.  For tests and for
 * formats that stack on other backends. */
int image_open_io(struct topcow_image **imgp, struct io *file, const char *name,
                  const struct topcow_open_opts *opts);

/* Read guest range [@off, @off+@len) of @img's backing chain into @buf:
 * zeros where there is no backing file or the backing file is shorter.
 * image_backing_pread is for guest reads (the statistics count them as
 * passed down to the backing layer); image_backing_copy for the old
 * contents a copy-on-write needs. */
int image_backing_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off);
int image_backing_copy(struct topcow_image *img, void *buf, size_t len, uint64_t off);

/* topcow_image_block_status without argument checks or a new error
 * context, for drivers consulting another image (their backing file). */
int image_block_status(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags,
                       struct topcow_extent *ext);

/* Whether [@off, @off+@len) of @img (through its chain) is known to read as
 * zeros: 1 yes, 0 not known, -errno.  Bytes past the end count as zeros. */
int image_reads_zero(struct topcow_image *img, uint64_t off, uint64_t len);

/* Resolve @name relative to the directory of @base (unless absolute).
 * Returns a new string or NULL on ENOMEM. */
char *image_resolve_relative(const char *base, const char *name);

#endif
