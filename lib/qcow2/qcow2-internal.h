// SPDX-License-Identifier: MIT
/* Shared state and cross-file contracts of the qcow2 driver.  The on-disk
 * format is QEMU's docs/interop/qcow2.txt; section names below refer to it.
 *
 * Locking: `lock` protects every field below it that changes after open
 * (caches, L1, refcount table, allocator, pending frees, header fields).
 * Data transfers run without it; guest-range conflicts are excluded by the
 * range lock `ranges` (see range-lock.h). */
#ifndef TOPCOW_QCOW2_INTERNAL_H
#define TOPCOW_QCOW2_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "image.h"
#include "range-lock.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)       /* QEMU's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)  /* QEMU's QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_HEADER_LEN_WRITTEN 112        /* what QEMU writes for v3 */

/* Feature bits (header section "incompatible/compatible/autoclear features"). */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN 0x1full
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* Byte offsets of header fields that are rewritten in place. */
#define QCOW2_HDR_BACKING_OFFSET 8
#define QCOW2_HDR_SIZE 24
#define QCOW2_HDR_L1 36              /* l1_size + l1_table_offset: 12 bytes */
#define QCOW2_HDR_REFTABLE 48        /* offset + clusters: 12 bytes */
#define QCOW2_HDR_SNAPSHOTS 60       /* nb_snapshots + offset: 12 bytes */
#define QCOW2_HDR_INCOMPAT 72
#define QCOW2_HDR_COMPAT 80
#define QCOW2_HDR_AUTOCLEAR 88
#define QCOW2_HDR_REFCOUNT_ORDER 96

/* L1 and L2 entry bits (section "Cluster mapping"). */
#define L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define L1E_RESERVED_MASK 0x7f000000000001ffull
#define QCOW_OFLAG_COPIED (1ull << 63)
#define QCOW_OFLAG_COMPRESSED (1ull << 62)
#define QCOW_OFLAG_ZERO (1ull << 0)
#define L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define L2E_STD_RESERVED_MASK 0x3f000000000001feull
#define RT_OFFSET_MASK 0xfffffffffffffe00ull

/* Extended L2 subcluster bitmap: bit x allocated, bit 32+x reads as zero. */
#define QCOW2_SUBCLUSTERS 32
#define SC_ALLOC_MASK 0x00000000ffffffffull
#define SC_ZERO_MASK 0xffffffff00000000ull

/* The header as decoded; field names follow the spec. */
struct qcow2_header {
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
};

/* A header extension kept verbatim (unknown types, bitmaps, crypto). */
struct qcow2_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

/* A feature-name table entry, for naming unknown feature bits. */
struct qcow2_feature_name {
    uint8_t type; /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    char name[47];
};

/* One internal snapshot, as read from the snapshot table. */
struct qcow2_snapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id_str;
    char *name;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    int64_t icount;          /* -1: absent */
    uint32_t extra_data_size;
    uint8_t *extra_data;     /* verbatim, for preservation */
};

/* A range of host clusters whose refcounts drop once the metadata that
 * stopped referencing them is durable (see qcow2-refcount.c). */
struct qcow2_pending_free {
    uint64_t offset;   /* byte offset, cluster aligned */
    uint64_t nclusters;
    bool punch;        /* punch a hole in the file when freed */
};

struct qcow2_cache;

struct qcow2_state {
    struct topcow_image *img;
    struct io *file;          /* the qcow2 file */
    struct io *data_file;     /* guest data: == file unless external */
    char *data_file_name;     /* as stored in the extension, or NULL */

    struct qcow2_header h;
    uint8_t *unknown_header_fields;   /* bytes [112, header_length) */
    uint32_t unknown_header_len;
    struct qcow2_ext *exts;           /* preserved extensions, in file order */
    unsigned nb_exts;
    struct qcow2_feature_name *features;
    unsigned nb_features;

    /* Geometry, derived from the header. */
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l2_bits;          /* log2(entries per L2 table) */
    uint64_t l2_entries;
    uint32_t l2_entry_size;    /* 8, or 16 with extended L2 */
    bool ext_l2;
    uint32_t subcluster_bits;  /* log2(subcluster size); == cluster_bits without ext L2 */
    uint64_t subcluster_size;
    uint32_t refcount_order;
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint32_t rb_bits;          /* log2(refcounts per block) */
    uint64_t rb_entries;
    uint32_t csize_shift;      /* compressed descriptor: 62 - (cluster_bits - 8) */
    uint64_t csize_mask;
    uint64_t cluster_offset_mask;
    bool external_data;
    bool data_file_raw;
    bool lazy_refcounts;
    bool read_only;
    bool unsafe;               /* TOPCOW_OPEN_UNSAFE: never fsync */

    struct qcow2_snapshot *snapshots;
    unsigned nb_snapshots;

    pthread_mutex_t lock;
    struct range_lock ranges;  /* guest clusters being read/written */

    uint64_t *l1;              /* active L1, host endian */
    uint32_t l1_size;
    uint8_t *l1_dirty;         /* one flag per 512-byte chunk of the table */

    uint64_t *rt;              /* refcount table, host endian */
    uint64_t rt_entries;
    uint8_t *rt_dirty;         /* one flag per 512-byte chunk */

    struct qcow2_cache *l2_cache;
    struct qcow2_cache *rb_cache;

    uint64_t free_hint;        /* no free cluster below this index */
    uint64_t fresh_from;       /* clusters at or above this index were never written */
    struct qcow2_pending_free *pending;
    size_t nb_pending, cap_pending;

    /* What was written since the last fsync (see qcow2-flush.c): */
    bool deps_unsynced;        /* things L2 tables may point at: refcount blocks and
                                * table, header, newly linked guest data */
    bool tables_unsynced;      /* L2 tables and L1 chunks */
    bool dirty_bit_set;        /* header dirty bit is set on disk (lazy refcounts) */
    bool corrupt;              /* metadata corruption seen: refuse further writes */
    uint64_t file_size_at_open;
    int prealloc_detected;     /* -1 not yet known, 0 no, 1 metadata preallocation */
    uint64_t cpack;            /* next free byte of the host cluster compressed streams
                                * are packed into; 0: none (qcow2-compress.c) */

    /* Encryption (qcow2-crypto.c); all NULL/0 for plain images. */
    uint64_t crypto_off, crypto_len;   /* the LUKS header area */
    struct luks_header *luks_hdr;      /* as read at open (info without a key) */
    struct luks *luks;                 /* unlocked volume, or NULL */
    struct sector_cipher *cipher;      /* data cipher, or NULL without the key */
};

/* ---- qcow2-header.c ------------------------------------------------------ */

/* Decode and validate the header and extensions from cluster 0 (@buf of
 * @len bytes) into s (h, exts, features, backing and data-file names).  */
int qcow2_header_parse(struct qcow2_state *s, const uint8_t *buf, size_t len, uint64_t file_size);
/* Set (or add) header extension @type, kept in s->exts for the next
 * header encoding. */
int qcow2_ext_set(struct qcow2_state *s, uint32_t type, const void *data, uint32_t len);
/* Encode the whole of cluster 0 (header, extensions, backing name) into
 * @buf (cluster_size bytes).  -EINVAL if it does not fit. */
int qcow2_header_encode(struct qcow2_state *s, uint8_t *buf);
/* Write header bytes [@off, @off+@len) (a field group) from the in-memory header. */
int qcow2_header_write_field(struct qcow2_state *s, unsigned off, unsigned len);
/* Name an incompatible/compatible/autoclear feature bit from the image's table. */
const char *qcow2_feature_name(struct qcow2_state *s, unsigned type, unsigned bit);

/* ---- qcow2-cache.c -------------------------------------------------------- */

enum qcow2_cache_kind { QCOW2_CACHE_L2, QCOW2_CACHE_REFBLOCK };

/* A bounded cache of cluster-sized metadata tables keyed by host offset.
 * All calls need s->lock.  Tables are returned pinned; unpin with
 * qcow2_cache_put() before dropping the lock. */
int qcow2_cache_new(struct qcow2_state *s, enum qcow2_cache_kind kind, size_t nentries,
                    struct qcow2_cache **out);
void qcow2_cache_free(struct qcow2_cache *c);
/* Get the table at @offset, reading it from the file (or zero-filling it
 * when @fresh, for a newly allocated table).  *@data points at its bytes. */
int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, bool fresh, uint8_t **data);
void qcow2_cache_put(struct qcow2_cache *c, uint8_t *data);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, uint8_t *data);
/* Write every dirty table (respecting write ordering for L2 tables). */
int qcow2_cache_flush(struct qcow2_cache *c);
bool qcow2_cache_has_dirty(struct qcow2_cache *c);
/* Drop the table at @offset from the cache without writing it (freed tables). */
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset);

/* ---- qcow2-refcount.c ----------------------------------------------------- */

/* Read the refcount of cluster index @idx (0 where no block exists). */
int qcow2_refcount_get(struct qcow2_state *s, uint64_t idx, uint64_t *rc);
/* Add @delta to the refcounts of @n clusters starting at byte @offset.
 * Increments take effect now; callers queue decrements with
 * qcow2_free_clusters() instead, so they land after the unlinking metadata. */
int qcow2_refcount_update(struct qcow2_state *s, uint64_t offset, uint64_t n, int64_t delta);
/* Allocate @n contiguous clusters (refcount 1) and store the byte offset of
 * the first in *@offset.  With @got non-NULL a shorter run may be returned
 * (at least 1 cluster; *@got says how many) when no run of @n is near; with
 * @got NULL exactly @n are allocated.  *@fresh is set when the clusters were
 * never written since open (they read as zeros). */
int qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n, uint64_t *offset, uint64_t *got,
                         bool *fresh);
/* Queue a refcount decrement of @n clusters at @offset (see struct
 * qcow2_pending_free). */
int qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t n, bool punch);
/* Queue the decrements for an L2 entry's host clusters (normal or compressed). */
int qcow2_free_l2_entry(struct qcow2_state *s, uint64_t l2e, bool punch);
/* Apply queued decrements (only once the unlinking metadata is durable). */
int qcow2_apply_pending_frees(struct qcow2_state *s);
/* Write dirty refcount table chunks. */
int qcow2_refcount_table_write(struct qcow2_state *s);
/* Byte range of a compressed descriptor's host data. */
void qcow2_compressed_range(const struct qcow2_state *s, uint64_t l2e, uint64_t *off,
                            uint64_t *len);
/* Get/put one entry of a refcount block's bytes. */
uint64_t qcow2_rb_get(const struct qcow2_state *s, const uint8_t *block, uint64_t i);
void qcow2_rb_set(const struct qcow2_state *s, uint8_t *block, uint64_t i, uint64_t v);

/* ---- qcow2-flush.c (write ordering) ---------------------------------------- */

/* fsync the image (and data) file if anything was written since the last one. */
int qcow2_sync(struct qcow2_state *s);
/* Whether any metadata change is not yet durable (then a FUA write must run
 * a full flush, not just a data fsync). */
bool qcow2_metadata_dirty(struct qcow2_state *s);
/* Everything an L2 table may point at is durable: refcount blocks and the
 * refcount table written, data and metadata synced.  Called before any L2
 * table is written. */
int qcow2_prepare_l2_write(struct qcow2_state *s);
/* The full ordered write-back (docs/internals/qcow2-write-ordering.md). */
int qcow2_flush_locked(struct qcow2_state *s);
/* Write dirty L1 chunks. */
int qcow2_l1_write(struct qcow2_state *s);
/* Mark the 512-byte chunk holding entry @i of a table dirty. */
void qcow2_mark_chunk_dirty(uint8_t *dirty, uint64_t i);
/* Set the dirty bit durably before the first allocating write (lazy refcounts). */
int qcow2_mark_dirty(struct qcow2_state *s);
/* Clear the dirty bit (durably, even with cache=unsafe) once the refcounts
 * on disk are exact; a no-op when it is not set. */
int qcow2_mark_clean(struct qcow2_state *s);
/* Set the corrupt bit, record why, and fail with -EUCLEAN (QEMU's behaviour
 * on a detected metadata inconsistency). */
int qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- qcow2-cluster.c (mapping) --------------------------------------------- */

/* Cluster types as QEMU classifies them, per (sub)cluster. */
enum qcow2_type {
    QCOW2_UNALLOCATED,       /* read from backing (or zeros) */
    QCOW2_UNALLOCATED_ALLOC, /* ext L2: host cluster present, subcluster unallocated */
    QCOW2_ZERO_PLAIN,
    QCOW2_ZERO_ALLOC,        /* reads zero, keeps its host cluster */
    QCOW2_NORMAL,
    QCOW2_COMPRESSED,
};

/* A run of guest bytes with one type and (for NORMAL) contiguous host bytes. */
struct qcow2_extent {
    uint64_t len;
    enum qcow2_type type;
    uint64_t host;       /* NORMAL, ZERO_ALLOC, UNALLOCATED_ALLOC: host byte offset
                          * of the run's start */
    uint64_t l2e;        /* COMPRESSED: the descriptor */
    bool copied;         /* NORMAL/ZERO_ALLOC: refcount is exactly 1 (COPIED) */
};

/* Describe the run starting at guest @off (at most @len bytes, never past
 * the end of one L2 table).  Needs s->lock. */
int qcow2_map(struct qcow2_state *s, uint64_t off, uint64_t len, struct qcow2_extent *ext);

/* Load the L2 table for L1 index @l1i.  With @alloc, allocate it (or copy a
 * shared one) so that it is writable; otherwise *@data is NULL when absent. */
int qcow2_get_l2(struct qcow2_state *s, uint64_t l1i, bool alloc, uint8_t **data);
uint64_t qcow2_l2e_get(const struct qcow2_state *s, const uint8_t *l2, uint64_t i);
uint64_t qcow2_l2_bitmap_get(const struct qcow2_state *s, const uint8_t *l2, uint64_t i);
void qcow2_l2e_set(const struct qcow2_state *s, uint8_t *l2, uint64_t i, uint64_t e, uint64_t bm);
/* Type of subcluster @sc of the L2 entry (@l2e, @bitmap); -EUCLEAN-worthy
 * combinations give -1. */
int qcow2_entry_type(const struct qcow2_state *s, uint64_t l2e, uint64_t bitmap, unsigned sc);
/* Validate an L2 entry's host offset; returns 0 or -EUCLEAN with a message. */
int qcow2_validate_l2e(struct qcow2_state *s, uint64_t l2e, uint64_t guest_off);

/* ---- qcow2-read.c / qcow2-write.c / qcow2-zero.c ---------------------------- */

int qcow2_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off);
int qcow2_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                 unsigned flags);
int qcow2_write_zeroes(struct topcow_image *img, uint64_t off, uint64_t len, unsigned flags);
int qcow2_discard(struct topcow_image *img, uint64_t off, uint64_t len);
/* Make the whole clusters [@off, @off+@len) unallocated (entries 0: the
 * backing file shows through, or zeros), dropping their host clusters;
 * @punch frees the host space too.  Needs s->lock; the range must not be in
 * use.  Ignores external data files (the caller handles them). */
int qcow2_deallocate(struct qcow2_state *s, uint64_t off, uint64_t len, bool punch);
/* Write guest [@off, @off+@len) with s->lock held and the range held
 * exclusive (the slow path of qcow2_pwrite; also used for explicit zeros). */
int qcow2_write_locked(struct qcow2_state *s, const uint8_t *buf, uint64_t len, uint64_t off);
/* Read one compressed cluster described by @l2e into @out (cluster_size bytes). */
int qcow2_read_compressed(struct qcow2_state *s, uint64_t l2e, uint8_t *out);
/* Read guest bytes [@off, @off+@len) of one cluster as they are now: for a
 * guest read (@for_guest) or a copy-on-write source (statistics tell them
 * apart).  No lock needed; the caller holds the range. */
int qcow2_read_cluster_part(struct qcow2_state *s, const struct qcow2_extent *ext,
                            uint64_t guest_off, uint8_t *buf, size_t len, bool for_guest);

/* ---- qcow2-compress.c ----------------------------------------------------- */

/* The format_ops compress/write_compressed methods. */
int qcow2_compress(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
                   struct topcow_compressed **out);
int qcow2_write_compressed(struct topcow_image *img, const struct topcow_compressed *c);

/* Decompress @in (@inlen bytes, possibly with trailing garbage) into exactly
 * @outlen bytes with the image's compression type. */
int qcow2_decompress(struct qcow2_state *s, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t outlen);

/* ---- qcow2-crypto.c ------------------------------------------------------- */

struct iovec;
struct luks_header;
struct luks;
struct sector_cipher;

/* Read the encryption header (LUKS) and, given the passphrase, unlock the
 * data cipher.  A plain image: nothing to do. */
int qcow2_crypto_open(struct qcow2_state *s, const void *secret, size_t secret_len);
void qcow2_crypto_close(struct qcow2_state *s);
/* 0 when guest data may be written: not encrypted, or unlocked LUKS. */
int qcow2_crypto_check_write(struct qcow2_state *s);
/* Transfer guest data of an encrypted image at host byte @host (guest byte
 * @guest): any alignment; an unaligned write reads and merges the sectors it
 * cuts, so the caller must hold those guest clusters exclusive. */
int qcow2_crypto_pread(struct qcow2_state *s, uint8_t *buf, size_t len, uint64_t host,
                       uint64_t guest);
int qcow2_crypto_pwrite(struct qcow2_state *s, const uint8_t *buf, size_t len, uint64_t host,
                        uint64_t guest);
int qcow2_crypto_pwritev(struct qcow2_state *s, const struct iovec *iov, int cnt, uint64_t host,
                         uint64_t guest);
/* Make a new (open, empty) image LUKS-encrypted as @o says. */
int qcow2_crypto_create(struct qcow2_state *s, const struct topcow_create_opts *o);
/* Key slot changes of amend (no-op unless o->encrypt_state). */
int qcow2_crypto_amend(struct qcow2_state *s, const struct topcow_amend_opts *o);
int qcow2_get_encryption(struct topcow_image *img, struct topcow_encryption *enc);

/* ---- qcow2-snapshot.c ------------------------------------------------------ */

int qcow2_snapshot_table_read(struct qcow2_state *s);
void qcow2_snapshot_table_free(struct qcow2_state *s);
/* Index of the snapshot with id @id_or_name, else the first with that name;
 * -1 if none (qemu-img's lookup order). */
int qcow2_snapshot_find(const struct qcow2_state *s, const char *id_or_name);
/* Replace the in-memory active L1 with snapshot @id_or_name's (read-only
 * opens at a snapshot). */
int qcow2_snapshot_open_at(struct qcow2_state *s, const char *id_or_name);
/* Set every COPIED flag of the active L1 and of the L2 tables it reaches from
 * the refcounts (exact refcounts needed: flush first). */
int qcow2_recompute_copied(struct qcow2_state *s);
/* Grow the active L1 table to @n entries (needs durable metadata). */
int qcow2_l1_grow(struct qcow2_state *s, uint32_t n);
/* The format_ops snapshot methods. */
unsigned qcow2_snapshot_count(struct topcow_image *img);
int qcow2_snapshot_get(struct topcow_image *img, unsigned index, struct topcow_snapshot *sn);
int qcow2_snapshot_create(struct topcow_image *img, const char *name);
int qcow2_snapshot_apply(struct topcow_image *img, const char *id_or_name);
int qcow2_snapshot_delete(struct topcow_image *img, const char *id_or_name);

/* ---- qcow2-check.c --------------------------------------------------------- */

int qcow2_check(struct topcow_image *img, unsigned flags, struct topcow_check_result *res,
                topcow_report_fn report, void *opaque);
/* Recompute every refcount from the metadata and write a fresh refcount
 * structure.  @keep_old: the replaced structure keeps its refcounts (left
 * for a repair pass to free and report); otherwise it becomes free space.
 * @new_order: the refcount geometry in *s was changed (amend): the new
 * structure uses it and the header's refcount_order changes with the table
 * pointer, atomically. */
int qcow2_rebuild_refcounts(struct qcow2_state *s, bool keep_old, bool new_order);

/* ---- qcow2-create.c -------------------------------------------------------- */

int qcow2_create(const char *path, const struct topcow_create_opts *opts);
/* Preallocate metadata (and data per @mode) for the clusters from guest
 * offset @from (cluster aligned) to the end of the disk that have no L2
 * entry yet.  Takes s->lock. */
int qcow2_preallocate(struct qcow2_state *s, enum topcow_prealloc mode, uint64_t from);

/* ---- qcow2-resize.c / qcow2-amend.c ---------------------------------------- */

int qcow2_resize(struct topcow_image *img, uint64_t size, unsigned flags,
                 enum topcow_prealloc prealloc);
int qcow2_make_empty(struct topcow_image *img);
int qcow2_set_backing(struct topcow_image *img, const char *file, const char *format);
int qcow2_amend(struct topcow_image *img, const struct topcow_amend_opts *opts);
/* Rewrite the header cluster from *s (and the image's backing names),
 * durably, after flushing everything else.  Needs s->lock. */
int qcow2_header_rewrite(struct qcow2_state *s);

/* ---- helpers --------------------------------------------------------------- */

static inline struct qcow2_state *
qcow2_state(struct topcow_image *img)
{
    return img->priv;
}

static inline uint64_t
qcow2_offset_into_cluster(const struct qcow2_state *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}

static inline uint64_t
qcow2_l1_index(const struct qcow2_state *s, uint64_t guest_off)
{
    return guest_off >> (s->cluster_bits + s->l2_bits);
}

static inline uint64_t
qcow2_l2_index(const struct qcow2_state *s, uint64_t guest_off)
{
    return (guest_off >> s->cluster_bits) & (s->l2_entries - 1);
}

/* Prefix for messages: "qcow2: FILE: ". */
#define QERR(s, neg, fmt, ...) err_set((neg), "%s: " fmt, (s)->img->filename, ##__VA_ARGS__)

#endif
