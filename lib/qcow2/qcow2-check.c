// SPDX-License-Identifier: MIT
/* Consistency check and refcount rebuild.
 *
 * One walker visits every reference the metadata makes to a host cluster -
 * the header, refcount table and blocks, active and snapshot L1 tables, L2
 * tables, data clusters (each overlapped cluster of a compressed stream
 * counts once per descriptor), the snapshot table and persistent bitmaps -
 * and counts them.  check compares the counts with the refcounts on disk and
 * reports in qemu-img's words; rebuild writes a fresh refcount structure from
 * them (used when a lazy-refcounts image was not closed cleanly). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

struct walk {
    struct qcow2_state *s;
    uint32_t *refs;              /* references per host cluster (saturating) */
    uint64_t nrefs;
    uint64_t limit;              /* refuse to track clusters beyond this */
    uint64_t file_size;
    struct topcow_check_result *res;
    topcow_report_fn report;
    void *opaque;
    uint64_t next_contiguous;    /* fragmentation accounting */
    bool broken;                 /* found something a rebuild cannot fix */
    bool skip_refcounts;         /* do not count the refcount table and blocks
                                  * (a rebuild replaces them) */
};

static void __attribute__((format(printf, 2, 3)))
say(struct walk *w, const char *fmt, ...)
{
    if (!w->report)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    w->report(w->opaque, line);
}

static void
corruption(struct walk *w)
{
    w->res->corruptions++;
    w->broken = true;
}

/* Count one reference to every cluster overlapping [off, off+len). */
static int
add_ref(struct walk *w, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    const struct qcow2_state *s = w->s;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    /* A reference reaching a whole cluster or more past the end of the file
     * points at nothing: report it and do not count it (as qemu-img). */
    if (off + len > w->file_size && off + len - w->file_size >= s->cluster_size) {
        say(w, "ERROR: counting reference for region exceeding the end of the file by one "
               "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64, off, len);
        corruption(w);
        return 0;
    }
    if (last >= w->limit) {
        say(w, "ERROR: offset=%" PRIx64 " is far beyond the end of the image file", off);
        corruption(w);
        return 0;
    }
    if (last >= w->nrefs) {
        uint64_t n = MAX(last + 1, w->nrefs * 2);
        n = MIN(n, w->limit);
        uint32_t *p = realloc(w->refs, n * sizeof *p);
        if (!p)
            return err_set(-ENOMEM, "out of memory");
        memset(p + w->nrefs, 0, (n - w->nrefs) * sizeof *p);
        w->refs = p;
        w->nrefs = n;
    }
    for (uint64_t c = first; c <= last; c++)
        if (w->refs[c] != UINT32_MAX)
            w->refs[c]++;
    return 0;
}

static int
read_table(struct qcow2_state *s, uint64_t off, uint64_t n, uint8_t **out)
{
    *out = malloc(n * 8 + 1);
    if (!*out)
        return err_set(-ENOMEM, "out of memory");
    return n ? io_pread(s->file, *out, n * 8, off) : 0;
}

/* Walk one L2 table.  @active: part of the active L1 (COPIED flags and
 * fragmentation statistics are checked only there). */
static int
walk_l2(struct walk *w, uint8_t *l2, bool active)
{
    struct qcow2_state *s = w->s;
    w->next_contiguous = 0; /* fragmentation is counted within each L2 table */
    for (uint64_t i = 0; i < s->l2_entries; i++) {
        uint64_t e = qcow2_l2e_get(s, l2, i), bm = qcow2_l2_bitmap_get(s, l2, i);
        if (e & QCOW_OFLAG_COMPRESSED) {
            if (e & QCOW_OFLAG_COPIED) {
                say(w, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
                       "compressed clusters", e & s->cluster_offset_mask);
                corruption(w);
            }
            if (s->ext_l2 && bm) {
                say(w, "ERROR compressed cluster %" PRIu64 " with non-zero subcluster "
                       "allocation bitmap, entry=0x%" PRIx64, i, e);
                corruption(w);
                continue; /* not trusted: neither counted nor referenced */
            }
            uint64_t off, len;
            qcow2_compressed_range(s, e, &off, &len);
            if (active) {
                w->res->allocated_clusters++;
                w->res->compressed_clusters++;
                w->res->fragmented_clusters++;
            }
            int r = add_ref(w, off, len);
            if (r < 0)
                return r;
            continue;
        }
        if (!s->ext_l2 && (e & L2E_STD_RESERVED_MASK)) {
            say(w, "ERROR found l2 entry with reserved bits set: %016" PRIx64, e);
            corruption(w);
        }
        uint64_t host = e & L2E_OFFSET_MASK;
        bool present = host || (s->external_data && (e & QCOW_OFLAG_COPIED));
        if (s->ext_l2) {
            uint64_t alloc = bm & SC_ALLOC_MASK, zero = bm >> 32;
            if (present && (alloc & zero)) {
                say(w, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted subcluster "
                       "allocation bitmap", host);
                corruption(w);
            } else if (!present && alloc) {
                say(w, "ERROR: Unallocated cluster has non-zero subcluster allocation map");
                corruption(w);
            }
        }
        if (!present)
            continue;
        if (!IS_ALIGNED(host, s->cluster_size)) {
            /* Still counted, over the clusters the entry overlaps. */
            say(w, "ERROR offset=%" PRIx64 ": Data cluster is not properly aligned; L2 entry "
                   "corrupted.", host);
            corruption(w);
        }
        if (active) {
            w->res->allocated_clusters++;
            if (w->next_contiguous && host != w->next_contiguous)
                w->res->fragmented_clusters++;
            w->next_contiguous = host + s->cluster_size;
        }
        if (s->external_data)
            continue; /* data clusters in the data file are not refcounted */
        int r = add_ref(w, host, s->cluster_size);
        if (r < 0)
            return r;
    }
    return 0;
}

static int
walk_l1(struct walk *w, uint64_t l1off, uint64_t l1n, bool active)
{
    struct qcow2_state *s = w->s;
    int r = add_ref(w, l1off, l1n * 8);
    if (r < 0)
        return r;
    uint8_t *l1 = NULL, *l2 = malloc(s->cluster_size);
    if (!l2)
        return err_set(-ENOMEM, "out of memory");
    r = active ? 0 : read_table(s, l1off, l1n, &l1);
    for (uint64_t i = 0; i < l1n && r == 0; i++) {
        uint64_t e = active ? s->l1[i] : be64_get(l1 + 8 * i);
        if (e & L1E_RESERVED_MASK) {
            say(w, "ERROR found L1 entry with reserved bits set: %016" PRIx64, e);
            corruption(w);
        }
        uint64_t off = e & L1E_OFFSET_MASK;
        if (!off)
            continue;
        if (!IS_ALIGNED(off, s->cluster_size)) {
            say(w, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                   "corrupted", off);
            corruption(w);
            continue;
        }
        r = add_ref(w, off, s->cluster_size);
        if (r < 0)
            break;
        r = io_pread(s->file, l2, s->cluster_size, off);
        if (r < 0) { /* the counts would be meaningless: stop, as qemu-img does */
            w->res->check_errors++;
            say(w, "ERROR: I/O error in check_refcounts_l2");
            break;
        }
        r = walk_l2(w, l2, active);
    }
    free(l1);
    free(l2);
    return r;
}

/* Persistent bitmaps (the bitmaps header extension): directory, bitmap
 * tables and their data clusters. */
static int
walk_bitmaps(struct walk *w)
{
    struct qcow2_state *s = w->s;
    for (unsigned x = 0; x < s->nb_exts; x++) {
        if (s->exts[x].type != QCOW2_EXT_BITMAPS || s->exts[x].len < 24)
            continue;
        const uint8_t *d = s->exts[x].data;
        uint32_t nb = be32_get(d);
        uint64_t dsize = be64_get(d + 8), doff = be64_get(d + 16);
        if (dsize > (64u << 20) || !IS_ALIGNED(doff, s->cluster_size)) {
            say(w, "ERROR bitmap directory is invalid");
            corruption(w);
            return 0;
        }
        int r = add_ref(w, doff, dsize);
        uint8_t *dir = malloc(dsize + 1);
        if (!dir)
            return err_set(-ENOMEM, "out of memory");
        if (r == 0 && dsize)
            r = io_pread(s->file, dir, dsize, doff);
        uint64_t pos = 0;
        for (uint32_t b = 0; b < nb && r == 0 && pos + 24 <= dsize; b++) {
            uint64_t toff = be64_get(dir + pos);
            uint32_t tsize = be32_get(dir + pos + 8);
            uint16_t name_size = be16_get(dir + pos + 18);
            uint32_t extra = be32_get(dir + pos + 20);
            if ((uint64_t)tsize * 8 > (64u << 20)) {
                corruption(w);
                break;
            }
            r = add_ref(w, toff, (uint64_t)tsize * 8);
            uint8_t *table = NULL;
            if (r == 0)
                r = read_table(s, toff, tsize, &table);
            for (uint32_t i = 0; i < tsize && r == 0; i++) {
                uint64_t off = be64_get(table + 8 * i) & L1E_OFFSET_MASK;
                if (off)
                    r = add_ref(w, off, s->cluster_size);
            }
            free(table);
            pos += ALIGN_UP(24 + (uint64_t)extra + name_size, 8);
        }
        free(dir);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Count every reference the metadata makes. */
/* Metadata placed in cluster 0 overlaps the header: rewriting the header
 * (a repair does) would change it, so no repair can be trusted. */
static int
header_overlap(struct walk *w)
{
    if (w->refs[0] > 1) {
        say(w, "ERROR cluster 0 (the image header) is also used by other metadata; "
               "the image cannot be repaired");
        corruption(w);
    }
    return 0;
}

static int
walk_all(struct walk *w)
{
    struct qcow2_state *s = w->s;
    uint64_t file_size;
    int r = io_get_size(s->file, &file_size);
    if (r < 0)
        return r;
    uint64_t file_clusters = DIV_ROUND_UP(file_size, s->cluster_size);
    w->file_size = file_size;
    w->nrefs = MAX(file_clusters, 1);
    w->limit = MAX(file_clusters * 4 + (1u << 20), s->rt_entries << s->rb_bits);
    w->refs = calloc(w->nrefs, sizeof *w->refs);
    if (!w->refs)
        return err_set(-ENOMEM, "out of memory");

    r = add_ref(w, 0, s->cluster_size);
    if (r == 0)
        r = walk_l1(w, s->h.l1_table_offset, s->l1_size, true);
    for (unsigned i = 0; i < s->nb_snapshots && r == 0; i++)
        r = walk_l1(w, s->snapshots[i].l1_table_offset, s->snapshots[i].l1_size, false);
    if (r == 0 && s->h.nb_snapshots) {
        uint64_t len = 0;
        for (unsigned i = 0; i < s->nb_snapshots; i++)
            len += ALIGN_UP(40ull + s->snapshots[i].extra_data_size +
                                strlen(s->snapshots[i].id_str) + strlen(s->snapshots[i].name),
                            8);
        r = add_ref(w, s->h.snapshots_offset, len);
    }
    if (r == 0)
        r = walk_bitmaps(w);
    for (unsigned x = 0; x < s->nb_exts && r == 0; x++)
        if (s->exts[x].type == QCOW2_EXT_CRYPTO && s->exts[x].len >= 16)
            r = add_ref(w, be64_get(s->exts[x].data), be64_get(s->exts[x].data + 8));
    if (w->skip_refcounts)
        return r == 0 ? header_overlap(w) : r;
    if (r == 0)
        r = add_ref(w, s->h.refcount_table_offset,
                    (uint64_t)s->h.refcount_table_clusters << s->cluster_bits);
    for (uint64_t i = 0; i < s->rt_entries && r == 0; i++) {
        uint64_t off = s->rt[i] & RT_OFFSET_MASK;
        if (!off)
            continue;
        if (!IS_ALIGNED(off, s->cluster_size)) {
            say(w, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount table "
                   "entry corrupted", i);
            corruption(w);
            continue;
        }
        r = add_ref(w, off, s->cluster_size);
    }
    return r == 0 ? header_overlap(w) : r;
}

/* COPIED must equal "refcount == 1" in the active tables; with @fix, wrong
 * flags are corrected (through the cache) and counted as fixed. */
static int
check_copied(struct walk *w, bool fix)
{
    struct qcow2_state *s = w->s;
    const char *verb = fix ? "Repairing" : "ERROR";
    int r = 0;
    for (uint64_t i = 0; i < s->l1_size && r == 0; i++) {
        uint64_t off = s->l1[i] & L1E_OFFSET_MASK, rc;
        if (!off || !IS_ALIGNED(off, s->cluster_size))
            continue;
        r = qcow2_refcount_get(s, off >> s->cluster_bits, &rc);
        if (r < 0)
            break;
        if ((rc == 1) != ((s->l1[i] & QCOW_OFLAG_COPIED) != 0)) {
            say(w, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64 " l1_entry=%" PRIx64
                   " refcount=%" PRIu64, verb, i, s->l1[i], rc);
            if (fix) {
                s->l1[i] ^= QCOW_OFLAG_COPIED;
                qcow2_mark_chunk_dirty(s->l1_dirty, i);
                w->res->corruptions_fixed++;
            } else {
                w->res->corruptions++;
            }
        }
        uint8_t *l2;
        if (qcow2_cache_get(s->l2_cache, off, false, &l2) < 0)
            continue; /* reported by the walk */
        for (uint64_t j = 0; j < s->l2_entries && r == 0; j++) {
            uint64_t e = qcow2_l2e_get(s, l2, j), host = e & L2E_OFFSET_MASK;
            if ((e & QCOW_OFLAG_COMPRESSED) || s->external_data || !host ||
                !IS_ALIGNED(host, s->cluster_size))
                continue;
            r = qcow2_refcount_get(s, host >> s->cluster_bits, &rc);
            if (r < 0 || (rc == 1) == ((e & QCOW_OFLAG_COPIED) != 0))
                continue;
            say(w, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64, verb,
                e, rc);
            if (fix) {
                qcow2_l2e_set(s, l2, j, e ^ QCOW_OFLAG_COPIED, qcow2_l2_bitmap_get(s, l2, j));
                qcow2_cache_mark_dirty(s->l2_cache, l2);
                w->res->corruptions_fixed++;
            } else {
                w->res->corruptions++;
            }
        }
        qcow2_cache_put(s->l2_cache, l2);
    }
    return r;
}

/* How compare_refcounts() treats a mismatch. */
enum cmp_mode {
    CMP_REPORT,       /* report and count it */
    CMP_FIX,          /* repair what the flags allow ("Repairing ..."); count the
                       * repairs as fixed and the rest as found, silently */
    CMP_FREE_REPLACED /* after a rebuild: repair the replaced structure's leaks
                       * without counting them (as qemu-img does) */
};

/* Compare the counted references with the refcounts on disk over every
 * cluster of the file (like qemu-img: refcounts of clusters past its end
 * describe nothing that exists).  A referenced cluster whose refcount is 0
 * cannot be repaired in place (the allocator may have handed it out):
 * *@rebuild. */
static int
compare_refcounts(struct walk *w, enum cmp_mode mode, bool fix_leaks, bool fix_all, bool *rebuild)
{
    struct qcow2_state *s = w->s;
    struct topcow_check_result *res = w->res;
    uint64_t n = w->nrefs, highest = 0;
    bool any = false;
    int r = 0;
    /* Refcount metadata sharing a cluster with other metadata cannot be
     * repaired in place: the repaired refcounts would overwrite the other
     * structure.  A fresh refcount structure elsewhere can (QEMU rebuilds
     * then too). */
    for (uint64_t ti = 0; ti < s->rt_entries; ti++) {
        uint64_t c = (s->rt[ti] & RT_OFFSET_MASK) >> s->cluster_bits;
        if (c && c < n && w->refs[c] > 1)
            *rebuild = true;
    }
    for (uint64_t k = 0; k < s->h.refcount_table_clusters; k++) {
        uint64_t c = (s->h.refcount_table_offset >> s->cluster_bits) + k;
        if (c < n && w->refs[c] > 1)
            *rebuild = true;
    }
    for (uint64_t i = 0; i < n && r == 0; i++) {
        uint64_t ti = i >> s->rb_bits;
        bool noblock = ti >= s->rt_entries || !(s->rt[ti] & RT_OFFSET_MASK);
        uint64_t ref = w->refs[i], rc = 0;
        if (!noblock) {
            r = qcow2_refcount_get(s, i, &rc);
            if (r < 0) {
                res->check_errors++;
                say(w, "ERROR: could not read refcount block for cluster %" PRIu64, i);
                r = 0;
                i = ((ti + 1) << s->rb_bits) - 1;
                continue;
            }
        }
        if (rc || ref) {
            highest = i;
            any = true;
        }
        if (rc == ref)
            continue;
        bool leak = rc > ref;
        if (rc == 0)
            *rebuild = true;
        if (mode == CMP_REPORT) {
            say(w, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
                leak ? "Leaked" : "ERROR", i, rc, ref);
        } else if (rc != 0 && (leak ? fix_leaks : fix_all)) {
            say(w, "Repairing cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64, i,
                rc, ref);
            /* Safe at once: a leaked cluster is referenced by nothing, and a
             * raised refcount only protects what is referenced. */
            /* In steps an int64_t delta can carry: 64-bit refcounts can be
             * more than INT64_MAX apart. */
            for (uint64_t cur = rc; r == 0 && cur != ref;) {
                uint64_t d = MIN(ref > cur ? ref - cur : cur - ref, (uint64_t)INT64_MAX);
                r = qcow2_refcount_update(s, i << s->cluster_bits, 1,
                                          ref > cur ? (int64_t)d : -(int64_t)d);
                cur = ref > cur ? cur + d : cur - d;
            }
            if (mode == CMP_FIX && leak)
                res->leaks_fixed++;
            else if (mode == CMP_FIX)
                res->corruptions_fixed++;
            continue;
        }
        if (mode == CMP_FREE_REPLACED)
            continue;
        if (leak)
            res->leaks++;
        else
            res->corruptions++;
    }
    res->image_end_offset = any ? (highest + 1) << s->cluster_bits : 0;
    return r;
}

int
qcow2_check(struct topcow_image *img, unsigned flags, struct topcow_check_result *res,
            topcow_report_fn report, void *opaque)
{
    struct qcow2_state *s = qcow2_state(img);
    bool fix_all = flags & TOPCOW_CHECK_REPAIR_ALL;
    bool fix_leaks = fix_all || (flags & TOPCOW_CHECK_REPAIR_LEAKS);
    struct walk w = { .s = s, .res = res, .report = report, .opaque = opaque };
    bool rebuild = false;

    RETURN_ERR_IF(fix_leaks && s->read_only, -EROFS,
                  "%s: cannot repair an image opened read-only", img->filename);
    pthread_mutex_lock(&s->lock);
    int r = s->read_only ? 0 : qcow2_flush_locked(s);
    if (r == 0)
        r = walk_all(&w);
    /* First report every mismatch, then repair (qemu-img's order). */
    struct topcow_check_result found = { .struct_size = sizeof found };
    w.res = fix_leaks ? &found : res;
    if (r == 0)
        r = compare_refcounts(&w, CMP_REPORT, false, false, &rebuild);
    w.res = res;
    if (r == 0 && fix_leaks && rebuild) {
        if (!fix_all) {
            say(&w, "ERROR need to rebuild refcount structures");
            r = QERR(s, -EIO, "refcounts can only be repaired by rebuilding them (-r all)");
            goto out;
        }
        say(&w, "Rebuilding refcount structure");
        r = qcow2_rebuild_refcounts(s, true, false);
        if (r < 0)
            goto out;
        res->corruptions_fixed += found.corruptions;
        res->leaks_fixed += found.leaks;
        res->image_end_offset = found.image_end_offset;
        /* The old structure is now a leak: free it the way it is reported. */
        struct walk w2 = { .s = s, .res = res, .report = report, .opaque = opaque };
        bool unused = false;
        r = walk_all(&w2);
        if (r == 0)
            r = compare_refcounts(&w2, CMP_FREE_REPLACED, true, true, &unused);
        free(w2.refs);
        if (r < 0)
            goto out;
    } else if (r == 0 && fix_leaks) {
        r = compare_refcounts(&w, CMP_FIX, fix_leaks, fix_all, &rebuild);
    }
    if (r == 0 && fix_leaks)
        r = qcow2_flush_locked(s); /* exact refcounts before the COPIED pass */
    if (r == 0)
        r = check_copied(&w, fix_leaks);
    if (r == 0 && fix_all && res->corruptions == 0 &&
        (s->h.incompatible_features & (QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DIRTY))) {
        /* Repaired: the image is consistent and clean again. */
        r = qcow2_flush_locked(s);
        s->h.incompatible_features &= ~(QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DIRTY);
        if (r == 0)
            r = qcow2_header_write_field(s, QCOW2_HDR_INCOMPAT, 8);
        s->corrupt = false;
        s->dirty_bit_set = false;
    }
    if (r == 0 && fix_leaks)
        r = qcow2_flush_locked(s);
    res->total_clusters = DIV_ROUND_UP(s->h.size, s->cluster_size);
out:
    pthread_mutex_unlock(&s->lock);
    free(w.refs);
    return r;
}

int
qcow2_rebuild_refcounts(struct qcow2_state *s, bool keep_old, bool new_order)
{
    struct topcow_check_result res = { .struct_size = sizeof res };
    struct walk w = { .s = s, .res = &res, .skip_refcounts = !keep_old };
    s->cpack = 0; /* the packing cluster's references are recounted */
    int r = walk_all(&w);
    if (r == 0 && w.broken)
        r = QERR(s, -EUCLEAN, "qcow2: cannot rebuild refcounts: the metadata is corrupt "
                              "(run 'check' for details)");
    if (r < 0) {
        free(w.refs);
        return r;
    }

    /* A fresh table and blocks past everything referenced and past the end
     * of the file, covering themselves too (a fixed point). */
    const uint64_t cs = s->cluster_size;
    uint64_t file_size;
    r = io_get_size(s->file, &file_size);
    uint64_t area = MAX(w.nrefs, DIV_ROUND_UP(file_size, cs));
    uint64_t blocks = 0, tclusters = 0, end;
    for (;;) {
        end = area + blocks + tclusters;
        uint64_t nb = DIV_ROUND_UP(end, s->rb_entries);
        uint64_t nt = DIV_ROUND_UP(nb * 8, cs);
        if (nb == blocks && nt == tclusters)
            break;
        blocks = nb;
        tclusters = nt;
    }
    uint64_t entries = tclusters * cs / 8;
    RETURN_ERR_IF(r == 0 && entries * 8 > QCOW2_MAX_REFTABLE_BYTES, -EFBIG,
                  "%s: qcow2: refcount table would be too large", s->img->filename);
    uint8_t *block = malloc(cs), *table = calloc(tclusters, cs);
    uint64_t *rt = calloc(entries, sizeof *rt);
    uint8_t *rt_dirty = calloc(DIV_ROUND_UP(entries, 64) + 1, 1);
    if (!block || !table || !rt || !rt_dirty)
        r = err_set(-ENOMEM, "out of memory");
    for (uint64_t b = 0; b < blocks && r == 0; b++) {
        memset(block, 0, cs);
        for (uint64_t i = 0; i < s->rb_entries; i++) {
            uint64_t c = b * s->rb_entries + i;
            uint64_t v = c >= area && c < end ? 1 : (c < w.nrefs ? w.refs[c] : 0);
            if (v > s->refcount_max) {
                r = QERR(s, -ERANGE, "qcow2: cluster %" PRIu64 " has %" PRIu64
                                     " references, more than refcount_bits=%u can count",
                         c, v, s->refcount_bits);
                break;
            }
            qcow2_rb_set(s, block, i, v);
        }
        if (r == 0)
            r = io_pwrite(s->file, block, cs, (area + b) * cs);
        rt[b] = (area + b) * cs;
        be64_put(table + 8 * b, rt[b]);
    }
    if (r == 0)
        r = io_pwrite(s->file, table, tclusters * cs, (area + blocks) * cs);
    bool unsafe = s->unsafe;
    s->unsafe = false;
    if (r == 0)
        r = qcow2_sync(s);
    if (r == 0) {
        s->h.refcount_table_offset = (area + blocks) * cs;
        s->h.refcount_table_clusters = (uint32_t)tclusters;
        /* With a new refcount width, its field (byte 96) changes in the
         * same write as the table pointer: 52 bytes, within one sector. */
        r = qcow2_header_write_field(s, QCOW2_HDR_REFTABLE,
                                     new_order ? QCOW2_HDR_REFCOUNT_ORDER + 4 - QCOW2_HDR_REFTABLE
                                               : 12);
    }
    if (r == 0)
        r = qcow2_sync(s);
    s->unsafe = unsafe;
    if (r == 0) {
        free(s->rt);
        free(s->rt_dirty);
        s->rt = rt;
        s->rt_dirty = rt_dirty;
        s->rt_entries = entries;
        rt = NULL;
        rt_dirty = NULL;
        /* Cached refcount blocks describe the old structure. */
        qcow2_cache_free(s->rb_cache);
        s->rb_cache = NULL;
        r = qcow2_cache_new(s, QCOW2_CACHE_REFBLOCK, MAX(4, (1u << 20) / cs), &s->rb_cache);
        s->free_hint = 0;
        s->fresh_from = MAX(s->fresh_from, end);
    }
    free(block);
    free(table);
    free(rt);
    free(rt_dirty);
    free(w.refs);
    return r;
}
