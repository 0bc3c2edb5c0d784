// SPDX-License-Identifier: MIT
/*
 * topcow.h - the public API of libtopcow, a qcow2 disk-image engine.
 *
 * This header is the API reference.  Everything a program needs to create,
 * open, read, write, inspect and check disk images is declared here; nothing
 * else under include/ is public.
 *
 * Conventions
 * -----------
 * - Functions return 0 (or a non-negative count) on success and a negative
 *   errno value on failure.  topcow_last_error() then describes the failure
 *   in one line.  The errno vocabulary:
 *     -EINVAL        bad argument (unaligned request, bad option, range past the end)
 *     -ENOTSUP       feature not built in, or an image feature topcow cannot handle
 *                    (for example an unknown incompatible qcow2 feature bit)
 *     -EUCLEAN       corrupt image metadata
 *     -EROFS         write to an image opened read-only
 *     -ENOSPC        the host storage is full
 *     -EBUSY         the image is locked by another process
 *     -EKEYREJECTED  wrong passphrase (encrypted images)
 *     -ENOKEY        data of an encrypted image opened without its passphrase
 *     -ENOMEM        out of memory
 *   Other codes (EIO, EACCES, ENOENT, ...) pass through from the system.
 * - Sizes and offsets are size_t / uint64_t, in bytes.
 * - Thread-safety: an image handle may be used from several threads at once
 *   for I/O (pread, pwrite, write_zeroes, discard, flush, block_status).  Data
 *   transfers to already-allocated clusters run in parallel; allocation is
 *   serialized per image.  open/create/close are not concurrent with other
 *   calls on the same handle.
 * - The library never prints, never exits and never aborts on bad data.
 */
#ifndef TOPCOW_H
#define TOPCOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define TOPCOW_API __attribute__((visibility("default")))
#else
#define TOPCOW_API
#endif

#define TOPCOW_VERSION_MAJOR 0
#define TOPCOW_VERSION_MINOR 1
#define TOPCOW_VERSION_PATCH 0
#define TOPCOW_VERSION_STRING "0.1.0"
#define TOPCOW_VERSION_NUMBER                                                                      \
    (TOPCOW_VERSION_MAJOR * 10000 + TOPCOW_VERSION_MINOR * 100 + TOPCOW_VERSION_PATCH)

/* The version of the library actually linked, as TOPCOW_VERSION_NUMBER / "0.1.0". */
TOPCOW_API unsigned topcow_version_number(void);
TOPCOW_API const char *topcow_version_string(void);

/* A one-line description of the last failure on the calling thread, or "" if
 * none.  The pointer is valid until the next topcow call on this thread.
 * Messages never contain passphrases or key material. */
TOPCOW_API const char *topcow_last_error(void);

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                       */

struct topcow_image; /* opaque */

/* Open flags. */
#define TOPCOW_OPEN_RDONLY (1u << 0)       /* no writes; takes a shared lock */
#define TOPCOW_OPEN_FORCE_SHARE (1u << 1)  /* like qemu-img -U: read-only, take no lock */
#define TOPCOW_OPEN_DIRECT (1u << 2)       /* O_DIRECT on the image file(s) */
#define TOPCOW_OPEN_NO_BACKING (1u << 3)   /* do not open the backing chain; unallocated
                                            * regions then read as zeros */
#define TOPCOW_OPEN_UNSAFE (1u << 4)       /* cache=unsafe, as for convert targets:
                                            * never fsync, not even at close; only
                                            * qcow2's clean mark (dirty bit cleared)
                                            * is made durable */
#define TOPCOW_OPEN_WRITETHROUGH (1u << 5) /* every write is durable on return */
#define TOPCOW_OPEN_NO_REPAIR (1u << 6)    /* open a dirty image read-write without
                                            * rebuilding its refcounts (for check -r) */
#define TOPCOW_OPEN_ALLOW_CORRUPT (1u << 7) /* open read-write even if marked corrupt
                                             * (for check -r) */
#define TOPCOW_OPEN_SHARE_BACKING (1u << 8) /* open the backing chain without locks
                                             * (as -U does), so that another handle
                                             * may write one of its layers: commit */
#define TOPCOW_OPEN_IO_URING (1u << 9)     /* like --aio=io_uring: the reads of one
                                             * request that land in several places
                                             * of the file go to the kernel at once
                                             * through io_uring, where the kernel
                                             * allows it (pread otherwise) */

struct topcow_open_opts {
    size_t struct_size;         /* sizeof(struct topcow_open_opts) */
    unsigned flags;             /* TOPCOW_OPEN_* */
    const char *format;         /* "qcow2", "raw", ...; NULL probes the file */
    uint64_t l2_cache_size;     /* bytes of L2 cache; 0 = cover the whole disk up to 32 MiB */
    const char *backing_format; /* force the backing file's format; NULL: from the image */
    const char *snapshot;       /* open read-only at this internal snapshot (id or
                                 * name, as qemu-img convert -l); NULL: current */
    /* The passphrase of an encrypted image (qemu's encrypt.key-secret), also
     * tried on encrypted backing files.  Borrowed for the call; never kept
     * (the image keeps only the unlocked key).  Without it an encrypted
     * image opens for metadata work (info, check, snapshots) and its data
     * I/O fails with -ENOKEY.  A wrong one fails the open: -EKEYREJECTED. */
    const void *secret;
    size_t secret_len;
};
#define TOPCOW_OPEN_OPTS_INIT { .struct_size = sizeof(struct topcow_open_opts) }

/* Open the image at @path (and, unless TOPCOW_OPEN_NO_BACKING, its backing
 * chain).  On success store a new handle in *@imgp and return 0.  On failure
 * return -errno and set *@imgp to NULL.  @opts may be NULL for defaults
 * (read-write, probed format).
 *
 * A read-write open of an image that another process has open read-write
 * (topcow or QEMU) fails with -EBUSY.  A read-write open of a qcow2 image
 * whose dirty bit is set (lazy refcounts after a crash) rebuilds its
 * refcounts before returning. */
TOPCOW_API int topcow_image_open(struct topcow_image **imgp, const char *path,
                                 const struct topcow_open_opts *opts);

/* Flush and close.  Returns 0, or -errno if the final flush failed (the handle
 * is released either way).  NULL is a no-op returning 0. */
TOPCOW_API int topcow_image_close(struct topcow_image *img);

/* ------------------------------------------------------------------------ */
/* Creating                                                                  */

enum topcow_prealloc {
    TOPCOW_PREALLOC_OFF = 0,
    TOPCOW_PREALLOC_METADATA,
    TOPCOW_PREALLOC_FALLOC,
    TOPCOW_PREALLOC_FULL,
};

enum topcow_compression {
    TOPCOW_COMPRESSION_ZLIB = 0,
    TOPCOW_COMPRESSION_ZSTD = 1,
};

struct topcow_create_opts {
    size_t struct_size;         /* sizeof(struct topcow_create_opts) */
    const char *format;         /* "qcow2" (default when NULL), "raw", ... */
    uint64_t size;              /* virtual size in bytes; 0 with a backing file
                                 * takes the backing file's size */
    const char *backing_file;   /* as stored in the image (may be relative) */
    const char *backing_format; /* NULL: probed from the backing file */
    bool no_backing_open;       /* like qemu-img create -u: trust the options
                                 * and do not open the backing file */
    /* qcow2 only (0 / false selects qemu-img's default): */
    unsigned compat;            /* 2 = "0.10", 3 = "1.1" (default) */
    uint32_t cluster_size;      /* 512 .. 2 MiB, power of two; default 65536 */
    unsigned refcount_bits;     /* 1, 2, 4, ... 64; default 16 */
    enum topcow_prealloc preallocation;
    bool lazy_refcounts;
    bool extended_l2;
    enum topcow_compression compression_type;
    const char *data_file;      /* external data file, created or truncated */
    bool data_file_raw;
    /* Encryption (qcow2): encrypt_format "luks", or NULL for none.  The
     * passphrase goes into key slot 0.  The other strings take qemu-img's
     * encrypt.* names and values; NULL or 0 selects qemu-img's default
     * (aes-256, xts, plain64, sha256, sha256, 2000 ms). */
    const char *encrypt_format;
    const void *encrypt_secret;
    size_t encrypt_secret_len;
    const char *encrypt_cipher_alg;     /* aes-128/192/256, serpent-*, twofish-*, cast5-128 */
    const char *encrypt_cipher_mode;    /* ecb, cbc, xts, ctr */
    const char *encrypt_ivgen_alg;      /* plain, plain64, essiv */
    const char *encrypt_ivgen_hash_alg; /* for essiv */
    const char *encrypt_hash_alg;       /* PBKDF2 and anti-forensic hash */
    unsigned encrypt_iter_time_ms;      /* PBKDF2 time per unlock */
    /* Other formats (NULL / 0 / false selects qemu-img's default).  Each
     * format appends its own fields below, in a group named after it. */
    const char *subformat;      /* vmdk, vpc, vhdx: qemu-img's subformat= value */
    /* vdi: */
    bool vdi_static;            /* static=on: every block allocated at creation */
    /* vpc (VHD): subformat "dynamic" (default) or "fixed". */
    bool vpc_force_size;        /* the size as given, not rounded up to a CHS geometry */
    /* vhdx (subformat "dynamic", the default, or "fixed"): */
    uint32_t vhdx_block_size;   /* 1 MiB .. 256 MiB, power of two; 0 picks by size */
    uint32_t vhdx_log_size;     /* rounded up to a multiple of 1 MiB */
    bool vhdx_log_size_given;   /* false: 1 MiB; given as 0: refused, as by qemu-img */
    int vhdx_block_state_zero;  /* dynamic: new blocks in state ZERO (1, default
                                 * when 0) or NOT_PRESENT (-1) */
    /* vmdk: adapter_type ("ide" default, "lsilogic", "buslogic", "legacyESX"),
     * hwversion (NULL: "4", or "6" with compat6), toolsversion (NULL:
     * "2147483647"), zeroed_grain (sparse subformats: GTE 1 marks zero grains). */
    const char *vmdk_adapter_type;
    const char *vmdk_hwversion;
    const char *vmdk_toolsversion;
    bool vmdk_compat6;
    bool vmdk_zeroed_grain;
};
#define TOPCOW_CREATE_OPTS_INIT { .struct_size = sizeof(struct topcow_create_opts) }

/* Whether the library knows the image format called @name ("qcow2", "raw",
 * ...), and whether it can create images of it. */
TOPCOW_API bool topcow_format_known(const char *name);
TOPCOW_API bool topcow_format_can_create(const char *name);

/* Create (or overwrite) an image at @path.  Returns 0 or -errno.  Option
 * combinations that qemu-img refuses are refused with the same reasons. */
TOPCOW_API int topcow_image_create(const char *path, const struct topcow_create_opts *opts);

/* ------------------------------------------------------------------------ */
/* Data I/O.  Requests must lie within the virtual size (-EINVAL otherwise);
 * no alignment is required.  Buffers are borrowed for the duration of the call. */

#define TOPCOW_WRITE_FUA (1u << 0)       /* durable on return */
#define TOPCOW_ZERO_MAY_UNMAP (1u << 1)  /* write_zeroes may deallocate */
#define TOPCOW_ZERO_FAST (1u << 2)       /* write_zeroes fails with -ENOTSUP rather
                                          * than write a zero buffer */

/* Virtual (guest-visible) size in bytes. */
TOPCOW_API uint64_t topcow_image_size(struct topcow_image *img);

/* Read @len bytes at @off into @buf.  Returns 0 or -errno. */
TOPCOW_API int topcow_image_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off);

/* Write @len bytes from @buf at @off.  @flags: TOPCOW_WRITE_FUA. */
TOPCOW_API int topcow_image_pwrite(struct topcow_image *img, const void *buf, size_t len,
                                   uint64_t off, unsigned flags);

/* Make [@off, @off+@len) read as zeros.  @flags: TOPCOW_ZERO_MAY_UNMAP,
 * TOPCOW_ZERO_FAST, TOPCOW_WRITE_FUA. */
TOPCOW_API int topcow_image_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len,
                                         unsigned flags);

/* Tell the image that [@off, @off+@len) is no longer needed.  Afterwards the
 * range reads as qcow2/QEMU semantics define: whole clusters of a v3 image
 * read as zeros; a v2 image without a backing file deallocates them (they
 * read as zeros), one with a backing file ignores the request; parts of
 * clusters are left alone.  Freed clusters are reused by later writes. */
TOPCOW_API int topcow_image_discard(struct topcow_image *img, uint64_t off, uint64_t len);

/* Make every completed write durable, metadata included. */
TOPCOW_API int topcow_image_flush(struct topcow_image *img);

/* ------------------------------------------------------------------------ */
/* Compressed writes                                                         */
/*
 * A qcow2 image stores a compressed cluster in as many bytes as its stream
 * needs, packed one after the other into host clusters.  Streams use the
 * image's compression type (topcow_create_opts.compression_type).  A cluster
 * that does not compress is stored as normal data, as QEMU does.  Writing
 * part of a compressed cluster later turns it into a normal cluster.
 *
 * Compression is split from storing, so that a program can compress on
 * several threads and still store in guest order (which keeps the streams
 * of neighbouring clusters together in the file):
 *
 *     topcow_image_compress(img, buf, len, off, &c);    any thread, in parallel
 *     topcow_image_write_compressed(img, c);             in the order wanted
 *     topcow_compressed_free(c);
 *
 * Requests cover whole clusters: @off is a multiple of the cluster size,
 * and @len too unless the request ends at the end of the image (the last
 * cluster is compressed zero-padded).  Formats without compressed clusters
 * (raw) and qcow2 images with an external data file give -ENOTSUP. */
struct topcow_compressed;

/* Compress guest bytes [@off, @off+@len) of @buf for @img into a new
 * *@out, without touching the image.  Thread-safe. */
TOPCOW_API int topcow_image_compress(struct topcow_image *img, const void *buf, size_t len,
                                     uint64_t off, struct topcow_compressed **out);

/* Store clusters prepared by topcow_image_compress() for this image: each
 * replaces what its guest cluster held.  Durable after the next flush. */
TOPCOW_API int topcow_image_write_compressed(struct topcow_image *img,
                                             const struct topcow_compressed *c);

TOPCOW_API void topcow_compressed_free(struct topcow_compressed *c); /* NULL is a no-op */

/* Compress and store in one call (both steps above). */
TOPCOW_API int topcow_image_pwrite_compressed(struct topcow_image *img, const void *buf,
                                              size_t len, uint64_t off);

/* ------------------------------------------------------------------------ */
/* Block status                                                              */

#define TOPCOW_EXTENT_DATA (1u << 0)       /* reads come from storage */
#define TOPCOW_EXTENT_ZERO (1u << 1)       /* reads return zeros */
#define TOPCOW_EXTENT_ALLOCATED (1u << 2)  /* the layer at `depth` defines this range
                                            * ("present" in qemu-img map) */
#define TOPCOW_EXTENT_OFFSET_VALID (1u << 3) /* host_offset is meaningful: the data is
                                              * stored raw at host_offset in `file` */
#define TOPCOW_EXTENT_COMPRESSED (1u << 4) /* stored compressed */

#define TOPCOW_BS_TOP_ONLY (1u << 0)       /* describe the top layer only (qemu-io alloc) */

struct topcow_extent {
    uint64_t offset;       /* guest offset (the request's @off) */
    uint64_t length;       /* length of the run with these properties, > 0 */
    unsigned flags;        /* TOPCOW_EXTENT_* */
    unsigned depth;        /* 0 = top layer, 1 = its backing file, ... */
    uint64_t host_offset;  /* with TOPCOW_EXTENT_OFFSET_VALID */
    const char *file;      /* name of the file holding the data, with OFFSET_VALID;
                            * valid while the image is open */
};

/* Describe the longest run starting at @off (at most @len bytes) whose
 * properties are the same.  Returns 0 and fills *@ext, or -errno. */
TOPCOW_API int topcow_image_block_status(struct topcow_image *img, uint64_t off, uint64_t len,
                                         unsigned flags, struct topcow_extent *ext);

/* ------------------------------------------------------------------------ */
/* Information                                                               */

/* One extent of a VMDK image (qemu-img info's "extents" list). */
struct topcow_vmdk_extent {
    const char *filename;        /* the extent's file as opened */
    const char *format;          /* extent type from the descriptor ("SPARSE",
                                  * "FLAT", ...), "" for a sparse file opened
                                  * directly */
    uint64_t virtual_size;       /* guest bytes the extent covers */
    uint32_t cluster_size;       /* grain size in bytes; 0 for flat extents */
    bool compressed;             /* grains are compressed (streamOptimized) */
};

struct topcow_info {
    size_t struct_size;          /* set by the caller to sizeof(struct topcow_info) */
    /* All strings below are owned by the image and valid until it is closed. */
    const char *filename;        /* as given to open (or as named by the overlay) */
    const char *format;          /* "qcow2", "raw", ... */
    uint64_t virtual_size;
    uint64_t actual_size;        /* bytes allocated on the host for the image file */
    uint32_t cluster_size;       /* 0 when the format has none */
    bool dirty;                  /* qcow2 dirty bit (not cleanly shut down) */
    bool corrupt;                /* qcow2 corrupt bit */
    bool encrypted;
    const char *backing_file;    /* as stored in the image, or NULL */
    const char *backing_format;  /* as stored in the image, or NULL */
    const char *full_backing_filename; /* resolved path, or NULL */
    /* qcow2 specifics (format == "qcow2"): */
    unsigned compat;             /* 2 or 3 */
    unsigned refcount_bits;
    bool lazy_refcounts;
    bool extended_l2;
    enum topcow_compression compression_type;
    const char *data_file;       /* external data file name as stored, or NULL */
    bool data_file_raw;
    unsigned nb_snapshots;
    uint64_t vm_state_offset;    /* guest offset where VM state would live */
    /* vmdk specifics (format == "vmdk"), as qemu-img info shows them: */
    uint32_t vmdk_cid;
    uint32_t vmdk_parent_cid;
    const char *vmdk_create_type;          /* NULL when the descriptor has none */
    size_t vmdk_nextents;
    const struct topcow_vmdk_extent *vmdk_extents; /* owned by the image */
};

/* Fill *@info (whose struct_size the caller sets).  Returns 0 or -errno. */
TOPCOW_API int topcow_image_get_info(struct topcow_image *img, struct topcow_info *info);

/* How an image is encrypted (qemu-img info's "encrypt" block). */
#define TOPCOW_LUKS_SLOTS 8
struct topcow_encryption {
    size_t struct_size;        /* set by the caller */
    const char *format;        /* "luks", "aes" (legacy qcow2 AES), or NULL: none */
    bool unlocked;             /* the image was opened with its passphrase */
    /* LUKS only: */
    char cipher_alg[16];       /* "aes-256" */
    char cipher_mode[8];       /* "xts" */
    char ivgen_alg[8];         /* "plain64" */
    char ivgen_hash_alg[16];   /* "" unless essiv */
    char hash_alg[16];
    char uuid[41];
    uint64_t payload_offset;   /* bytes (the header's length) */
    uint32_t master_key_iters;
    struct {
        bool active;
        uint32_t iters;
        uint32_t stripes;
        uint64_t key_offset;   /* bytes */
    } slots[TOPCOW_LUKS_SLOTS];
};

/* Fill *@enc (whose struct_size the caller sets).  Returns 0 or -errno. */
TOPCOW_API int topcow_image_get_encryption(struct topcow_image *img,
                                           struct topcow_encryption *enc);

/* The backing image of @img, or NULL.  Borrowed: valid while @img is open. */
TOPCOW_API struct topcow_image *topcow_image_backing(struct topcow_image *img);

/* ------------------------------------------------------------------------ */
/* Internal snapshots (qcow2)                                                */
/* Snapshot operations are not concurrent with I/O on the same handle.       */

struct topcow_snapshot {
    size_t struct_size;          /* set by the caller */
    /* Strings are owned by the image; valid until the next snapshot
     * operation on it or its close. */
    const char *id;              /* decimal id, unique */
    const char *name;            /* tag; names need not be unique */
    uint64_t vm_state_size;      /* bytes of saved VM state (0 for disk-only) */
    uint32_t date_sec;           /* creation time, Unix seconds */
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;      /* guest run time when taken */
    int64_t icount;              /* instruction count, -1 when absent */
    uint64_t disk_size;          /* virtual size when taken */
};

/* Number of internal snapshots (0 for formats without them). */
TOPCOW_API unsigned topcow_snapshot_count(struct topcow_image *img);

/* Describe snapshot @index (0 .. count-1, in table order). */
TOPCOW_API int topcow_snapshot_get(struct topcow_image *img, unsigned index,
                                   struct topcow_snapshot *sn);

/* Take a disk-only snapshot of the current contents named @name.  Its id
 * is one more than the highest numeric id.  Costs metadata work only.
 * -ERANGE when the refcount width cannot count one more reference. */
TOPCOW_API int topcow_snapshot_create(struct topcow_image *img, const char *name);

/* Revert the image to snapshot @id_or_name (looked up by id first, then by
 * name, as qemu-img does); the snapshot itself stays.  -ENOENT if absent. */
TOPCOW_API int topcow_snapshot_apply(struct topcow_image *img, const char *id_or_name);

/* Delete snapshot @id_or_name and free what only it referenced. */
TOPCOW_API int topcow_snapshot_delete(struct topcow_image *img, const char *id_or_name);

/* ------------------------------------------------------------------------ */
/* Image lifecycle: backing file, emptying, resizing, amending               */
/* Like snapshot operations, these are not concurrent with I/O on the handle. */

/* Record @backing_file (as it is to be stored: relative names are resolved
 * against the image's directory when opened) and @backing_format (NULL: no
 * format recorded) in the image header; NULL or "" for @backing_file removes
 * the backing file.  Everything written before is made durable first.  The
 * open handle keeps reading through its old chain; the new backing file is
 * used from the next open.  qcow2 only. */
TOPCOW_API int topcow_image_set_backing(struct topcow_image *img, const char *backing_file,
                                        const char *backing_format);

/* Deallocate every cluster of the active layer, so that the whole image
 * reads from its backing file (or as zeros without one), as qemu-img commit
 * leaves the committed overlay.  Snapshots keep their data.  qcow2 only. */
TOPCOW_API int topcow_image_make_empty(struct topcow_image *img);

#define TOPCOW_RESIZE_SHRINK (1u << 0) /* allow @size below the current size */

/* Change the virtual size to @size (rounded up to 512 bytes, as qemu-img
 * does).  Growing: the new range reads as zeros; @prealloc allocates it
 * (qcow2: metadata, falloc, full; raw: falloc, full).  Shrinking needs
 * TOPCOW_RESIZE_SHRINK and is refused with -ENOTEMPTY, naming the offset,
 * while the range cut off holds data in the image itself (discard it first):
 * a shrink never loses guest data silently. */
TOPCOW_API int topcow_image_resize(struct topcow_image *img, uint64_t size, unsigned flags,
                                   enum topcow_prealloc prealloc);

/* What topcow_image_amend changes; 0 / -1 fields are left alone. */
struct topcow_amend_opts {
    size_t struct_size;       /* sizeof(struct topcow_amend_opts) */
    unsigned compat;          /* 2 = "0.10", 3 = "1.1" */
    int lazy_refcounts;       /* 0 off, 1 on, -1 unchanged */
    unsigned refcount_bits;   /* 1, 2, 4, ... 64 */
    /* LUKS key slots (qemu-img amend -o encrypt.*): state 1 "active" puts
     * new_secret into keyslot (-1: the first free one); state 2 "inactive"
     * erases keyslot, or (keyslot -1) every slot old_secret opens, and
     * refuses to erase the last active slot unless @force.  The image must
     * have been opened with a passphrase that opens it. */
    int encrypt_state;        /* 0 unchanged, 1 active, 2 inactive */
    const void *new_secret;
    size_t new_secret_len;
    const void *old_secret;
    size_t old_secret_len;
    int keyslot;              /* -1: any */
    unsigned iter_time_ms;    /* 0: 2000 */
    bool force;
};
#define TOPCOW_AMEND_OPTS_INIT                                                                     \
    { .struct_size = sizeof(struct topcow_amend_opts), .lazy_refcounts = -1, .keyslot = -1 }

/* Change qcow2 header options in place (qemu-img amend).  A downgrade to
 * compat 0.10 turns zero clusters into deallocated or zero-filled clusters,
 * and is refused (naming the reason) with extended L2 entries, an external
 * data file, refcount widths other than 16 bits or lazy refcounts left on.
 * A new refcount width rewrites the refcount structures. */
TOPCOW_API int topcow_image_amend(struct topcow_image *img, const struct topcow_amend_opts *opts);

/* ------------------------------------------------------------------------ */
/* Consistency check                                                         */

#define TOPCOW_CHECK_REPAIR_LEAKS (1u << 0) /* fix refcounts that are too high */
#define TOPCOW_CHECK_REPAIR_ALL (1u << 1)   /* fix everything fixable: refcounts
                                             * (rebuilding them if needed), COPIED
                                             * flags; clears the corrupt and dirty
                                             * bits once the image is consistent */

struct topcow_check_result {
    size_t struct_size;          /* set by the caller */
    uint64_t corruptions;        /* metadata errors found */
    uint64_t leaks;              /* clusters with refcount > references */
    uint64_t check_errors;       /* errors that prevented checking (I/O, ...) */
    uint64_t corruptions_fixed;
    uint64_t leaks_fixed;
    uint64_t total_clusters;     /* virtual size in clusters */
    uint64_t allocated_clusters; /* guest clusters with data in this image */
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
    uint64_t image_end_offset;   /* end of the last refcounted cluster */
};

/* Called for each problem found, with one line in qemu-img's wording
 * ("ERROR cluster 5 refcount=0 reference=1", "Leaked cluster 6 ..."). */
typedef void (*topcow_report_fn)(void *opaque, const char *line);

/* Check the image's metadata, and with a REPAIR flag fix what it finds
 * (the image must then be open read-write; open it with
 * TOPCOW_OPEN_NO_REPAIR | TOPCOW_OPEN_ALLOW_CORRUPT to repair a dirty or
 * corrupt image).  Fixed problems count in *_fixed, the others in
 * corruptions/leaks; run the check again afterwards to see the result.
 * Returns 0 when the check ran (whatever it found), -ENOTSUP when the
 * format has no check, or -errno. */
TOPCOW_API int topcow_image_check(struct topcow_image *img, unsigned flags,
                                  struct topcow_check_result *res, topcow_report_fn report,
                                  void *opaque);

/* ------------------------------------------------------------------------ */
/* Live statistics (what `topcow top` shows)                                 */
/*
 * Every image opened with topcow_image_open (the top of a chain) counts its
 * requests and publishes the counters in a small shared-memory file in the
 * statistics directory, where `topcow top`, or any program using
 * topcow_stats_scan, reads them without talking to the process.  The cost is
 * a few relaxed atomic additions per request.  The file disappears when the
 * image is closed; a file left by a process that died (even by SIGKILL) is
 * removed by the next scan, which sees that its owner no longer holds it.
 *
 * The directory: $TOPCOW_STATS_DIR, else $XDG_RUNTIME_DIR/topcow, else
 * /run/topcow for root, else /tmp/topcow-UID.  TOPCOW_STATS=off in the
 * environment turns statistics off: nothing is published and requests are
 * not counted (topcow_image_get_stats then reports zeros).  When the
 * directory cannot be written, the counters are kept in private memory.
 */

#define TOPCOW_STATS_HEAT_BUCKETS 1024 /* regions of the virtual disk in the heat map */
#define TOPCOW_STATS_LAT_BUCKETS 40    /* latency histogram: bucket i counts requests that
                                        * took [2^i, 2^(i+1)) ns (bucket 0 also < 1 ns) */
#define TOPCOW_STATS_MAX_LAYERS 16     /* layers of a chain published; deeper ones are not */
#define TOPCOW_STATS_NAME_MAX 1024

/* Kinds of guest requests. */
enum topcow_stats_op {
    TOPCOW_STATS_READ,
    TOPCOW_STATS_WRITE,   /* including compressed writes */
    TOPCOW_STATS_FLUSH,
    TOPCOW_STATS_ZERO,    /* write_zeroes */
    TOPCOW_STATS_DISCARD,
    TOPCOW_STATS_OPS
};

/* Kinds of operations on a layer's host file. */
enum topcow_stats_host_op {
    TOPCOW_STATS_HOST_READ,
    TOPCOW_STATS_HOST_WRITE,
    TOPCOW_STATS_HOST_FLUSH,
    TOPCOW_STATS_HOST_ZERO,
    TOPCOW_STATS_HOST_DISCARD,
    TOPCOW_STATS_HOST_TRUNCATE,
    TOPCOW_STATS_HOST_OPS
};

/* One layer of a chain: depth 0 is the image that was opened, 1 its backing
 * file, and so on.  Counters only grow, from the moment the image was opened. */
struct topcow_stats_layer {
    char filename[TOPCOW_STATS_NAME_MAX]; /* absolute path of the layer's file */
    char format[16];                      /* "qcow2", "raw", ... */
    unsigned depth;
    /* Requests this layer received: at depth 0 the guest's, deeper the reads
     * the layer above passed down for data it does not hold. */
    uint64_t ops[TOPCOW_STATS_OPS];
    uint64_t bytes[TOPCOW_STATS_OPS];
    uint64_t errors[TOPCOW_STATS_OPS];
    uint64_t read_bytes_resolved;  /* read bytes this layer answered itself (its data, or
                                    * zeros), not passed to the layer below */
    /* Operations on the layer's host file (metadata and data alike). */
    uint64_t host_ops[TOPCOW_STATS_HOST_OPS];
    uint64_t host_bytes[TOPCOW_STATS_HOST_OPS];
    uint64_t host_nsec[TOPCOW_STATS_HOST_OPS];
    /* Format internals (qcow2; zero for formats without them). */
    uint64_t l2_hits, l2_misses;             /* L2 table cache */
    uint64_t refcount_hits, refcount_misses; /* refcount block cache */
    uint64_t clusters_allocated;             /* host clusters, data and metadata */
    uint64_t data_clusters_allocated;        /* host clusters for guest data */
    uint64_t cow_bytes;            /* bytes copied from old contents (backing file,
                                    * compressed cluster) around partial-cluster writes */
    uint64_t compressed_reads;     /* compressed clusters read */
    uint64_t decompress_nsec;      /* time spent decompressing them */
    uint64_t discard_bytes;        /* guest bytes whose clusters a discard freed */
};

struct topcow_stats {
    size_t struct_size;            /* set by the caller */
    uint64_t pid;                  /* the process that has the image open */
    uint64_t id;                   /* tells apart images one process has open */
    char command[32];              /* its program and first argument ("topcow serve") */
    uint64_t open_time_ns;         /* when the image was opened (CLOCK_REALTIME) */
    uint64_t sample_time_ns;       /* when these figures were read (CLOCK_REALTIME) */
    uint64_t virtual_size;
    bool read_only;
    uint64_t clients;              /* NBD clients connected (set by the server) */
    uint64_t in_flight;            /* guest requests running now */
    uint64_t zero_bytes_detected;  /* written bytes found to be zeros and stored as
                                    * zero clusters (detect-zeroes, convert) */
    /* Latency of guest requests, per enum topcow_stats_op. */
    uint64_t latency[TOPCOW_STATS_OPS][TOPCOW_STATS_LAT_BUCKETS];
    uint64_t latency_max_ns[TOPCOW_STATS_OPS];
    uint64_t latency_nsec[TOPCOW_STATS_OPS]; /* summed */
    /* Guest bytes read and written per region: bucket b covers guest
     * bytes [b * B, (b + 1) * B) where B = ceil(virtual_size / BUCKETS). */
    uint64_t heat_read[TOPCOW_STATS_HEAT_BUCKETS];
    uint64_t heat_write[TOPCOW_STATS_HEAT_BUCKETS];
    unsigned nlayers;              /* layers[0 .. nlayers) are filled */
    struct topcow_stats_layer layers[TOPCOW_STATS_MAX_LAYERS];
};

/* Fill *@st with the current counters of @img (which must be a handle from
 * topcow_image_open; set st->struct_size first).  Thread-safety: safe
 * while other threads do I/O; counters are read one by one, not as one
 * atomic snapshot. */
TOPCOW_API int topcow_image_get_stats(struct topcow_image *img, struct topcow_stats *st);

/* Figures only a front end knows, for the published statistics. */
enum topcow_stats_note {
    TOPCOW_STATS_NOTE_CLIENTS,        /* @n clients connected (+1) or left (-1) */
    TOPCOW_STATS_NOTE_ZEROS_DETECTED, /* @n bytes of a write were zeros */
};
TOPCOW_API void topcow_image_stats_note(struct topcow_image *img, enum topcow_stats_note what,
                                        int64_t n);

/* The statistics directory in effect (see above).  Valid until the next
 * call. */
TOPCOW_API const char *topcow_stats_dir(void);

/* Called by topcow_stats_scan with each image published; a non-zero
 * return stops the scan and is returned by it.  @st is valid for the call. */
typedef int (*topcow_stats_fn)(void *opaque, const struct topcow_stats *st);

/* Call @fn for every image published in @dir (NULL: topcow_stats_dir()),
 * removing the files of processes that are gone.  Files that are not
 * statistics, or of another version, are skipped.  Returns 0, @fn's
 * non-zero value, or -errno when the directory cannot be read (a missing
 * directory is not an error: nothing is published). */
TOPCOW_API int topcow_stats_scan(const char *dir, topcow_stats_fn fn, void *opaque);

/* ------------------------------------------------------------------------ */
/* Cloud remotes (docs/internals/cloud-layout.md)                            */
/*                                                                          */
/* A remote is STORE/NAME: a store URL, "file:///dir" or                    */
/* "s3://bucket[/prefix]", and an image name.  S3 is configured as the AWS  */
/* CLI is (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,       */
/* AWS_REGION, AWS_PROFILE, ~/.aws/credentials and ~/.aws/config) or with    */
/* @endpoint / @profile below.  Built without S3 support, s3:// URLs fail   */
/* with -ENOTSUP; file:// always works.                                     */

enum {
    TOPCOW_REMOTE_FORCE = 1 << 0,      /* push: make the local copy HEAD even if HEAD
                                        * moved since it was pulled (the other generation
                                        * stays in the log) */
    TOPCOW_REMOTE_TAKE_LEASE = 1 << 1, /* take over a lease that has expired */
    TOPCOW_REMOTE_DRY_RUN = 1 << 2,    /* gc: report, delete nothing */
    TOPCOW_REMOTE_NO_WAIT = 1 << 3,    /* push: when another push holds the lease, fail
                                        * at once instead of waiting up to 15 s for it */
    TOPCOW_REMOTE_COMPRESS = 1 << 4,   /* push: send chunks zstd-compressed when that
                                        * saves space (any reader takes both forms) */
};

/* Progress of a push or pull, for progress bars. */
struct topcow_remote_progress {
    uint64_t chunks_total, chunks_done;
    uint64_t bytes_total, bytes_done; /* bytes of the image file */
    uint64_t bytes_transferred;       /* chunk bytes sent or received so far */
};

struct topcow_remote_opts {
    size_t struct_size;       /* sizeof(struct topcow_remote_opts) */
    unsigned flags;           /* TOPCOW_REMOTE_* */
    const char *endpoint;     /* S3 endpoint URL; NULL: the AWS configuration */
    const char *profile;      /* AWS profile; NULL: AWS_PROFILE or "default" */
    unsigned jobs;            /* parallel transfers; 0: 4 */
    uint32_t chunk_size;      /* push of a new image: bytes per chunk, a power of two
                               * from 64 KiB to 64 MiB; 0: 4 MiB (later generations
                               * keep the image's) */
    unsigned lease_ttl;       /* seconds a lease lasts without renewal; 0: 60 */
    uint64_t gc_grace;        /* gc: seconds an unreferenced chunk is kept; 0: 86400 */
    /* Called from the calling thread, at most every 200 ms and once at the end. */
    void (*progress)(void *opaque, const struct topcow_remote_progress *p);
    void *progress_opaque;
};
#define TOPCOW_REMOTE_OPTS_INIT { .struct_size = sizeof(struct topcow_remote_opts) }

/* What a push or pull did. */
struct topcow_remote_result {
    size_t struct_size;          /* set by the caller: sizeof(struct topcow_remote_result) */
    char generation[32];         /* the generation pushed or pulled */
    char parent[32];             /* its parent ("" for none) */
    bool up_to_date;             /* nothing needed doing */
    uint64_t size;               /* bytes of the image file */
    uint64_t chunks, chunks_zero;  /* chunks in the image; all-zero ones (never stored) */
    uint64_t chunks_transferred;   /* uploaded (push) or downloaded (pull) */
    uint64_t bytes_transferred;    /* their bytes */
    uint64_t chunks_present;       /* already in the store (push) or local (pull) */
    uint64_t requests, retries;    /* requests to the store (S3) and retries among them */
};

/* Upload the image file @image to @remote (STORE/NAME; a URL ending in '/'
 * takes @image's base name): the chunks the store lacks, then a manifest,
 * then HEAD by compare-and-swap.  Writes IMAGE.topcow, the generation the
 * local copy now matches.  Takes the image's lease while it runs.  Returns 0,
 * -ESTALE (a conflict: HEAD moved since the local copy's generation, or
 * another pusher won the race; the generation is stored and named in the
 * message), -EBUSY (the lease is held), or -errno.
 *
 * With @image a remote URL (and @remote NULL or the same URL), push what a
 * run of that remote from its local cache wrote and could not push when it
 * closed. */
TOPCOW_API int topcow_remote_push(const char *image, const char *remote,
                                  const struct topcow_remote_opts *opts,
                                  struct topcow_remote_result *res);

/* Download @remote's HEAD generation (or @generation, if not NULL) into the
 * file @image: a sparse file, written as IMAGE.topcow-part and renamed when
 * every chunk is in and verified against its hash.  Chunks found locally
 * (the old @image, an interrupted pull's part file) are not fetched again.
 * Returns 0, -EBADMSG (a chunk in the store does not match its hash; the
 * message names it), or -errno; on failure @image is untouched. */
TOPCOW_API int topcow_remote_pull(const char *remote, const char *image,
                                  const char *generation,
                                  const struct topcow_remote_opts *opts,
                                  struct topcow_remote_result *res);

/* One generation of an image, or one image of a store (its HEAD). */
struct topcow_remote_gen_info {
    const char *name;            /* the image */
    const char *generation;
    const char *parent;          /* "" for none */
    bool is_head;
    uint64_t size;
    uint32_t chunk_size;
    uint64_t chunks, chunks_zero;
    int64_t created;             /* Unix seconds */
    const char *host, *user;     /* who pushed it */
    /* The image's lease (topcow_remote_list only): holder "" when never taken. */
    const char *lease_holder, *lease_op;
    int64_t lease_expires;       /* 0: released */
};
typedef int (*topcow_remote_gen_fn)(void *opaque, const struct topcow_remote_gen_info *g);

/* Every image in the store @store (a store URL), with its HEAD generation. */
TOPCOW_API int topcow_remote_list(const char *store, const struct topcow_remote_opts *opts,
                                  topcow_remote_gen_fn fn, void *opaque);
/* Every generation of @remote, oldest first. */
TOPCOW_API int topcow_remote_log(const char *remote, const struct topcow_remote_opts *opts,
                                 topcow_remote_gen_fn fn, void *opaque);
/* Point @remote's HEAD at its stored generation @generation (a full id, or a
 * unique prefix of one).  Takes the lease. */
TOPCOW_API int topcow_remote_rollback(const char *remote, const char *generation,
                                      const struct topcow_remote_opts *opts);

struct topcow_remote_gc_result {
    size_t struct_size;
    uint64_t manifests;             /* generations read */
    uint64_t chunks;                /* chunk objects in the store */
    uint64_t chunks_referenced;
    uint64_t chunks_young;          /* unreferenced, but within the grace period */
    uint64_t chunks_deleted, bytes_deleted; /* (or that would be, with DRY_RUN) */
};
/* Delete the chunks of @store that no manifest names and that are older than
 * opts->gc_grace.  Refused (-EBUSY) while any image's lease is held. */
TOPCOW_API int topcow_remote_gc(const char *store, const struct topcow_remote_opts *opts,
                                struct topcow_remote_gc_result *res);

#ifdef __cplusplus
}
#endif

#endif /* TOPCOW_H */
