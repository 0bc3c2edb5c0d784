// SPDX-License-Identifier: MIT
/* The write path.
 *
 * Fast path: every cluster the request touches is allocated with COPIED set
 * (refcount 1), so the data goes straight to its host clusters with the guest
 * range held shared - concurrent writes to allocated clusters run in parallel.
 *
 * Slow path (range held exclusive): runs of clusters that need a new host
 * cluster - unallocated, zero, compressed, or shared with a snapshot - get
 * one contiguous allocation.  The parts of each cluster the request does not
 * cover are copied from the old contents (backing file, zeros, decompressed
 * data, the shared cluster), at subcluster granularity with extended L2.
 * Data and copies are written first; the L2 entries are updated afterwards,
 * and the old host clusters are freed once that update is durable. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

/* Largest run allocated at once (bounds bounce memory and lock hold time). */
#define MAX_RUN_BYTES (32ull << 20)

/* A byte range of one cluster to fill from the cluster's old contents. */
struct cow_piece {
    uint64_t rel;      /* offset within the cluster */
    uint64_t len;
    uint8_t *buf;      /* read old contents here */
};

struct cluster_plan {
    uint64_t old_e, old_bm; /* the entry before the write */
    uint64_t new_bm;
    struct cow_piece pieces[QCOW2_SUBCLUSTERS + 2];
    unsigned npieces;
};

static bool
has_host(const struct qcow2_state *s, uint64_t e)
{
    return !(e & QCOW_OFLAG_COMPRESSED) &&
           ((e & L2E_OFFSET_MASK) != 0 || (s->external_data && (e & QCOW_OFLAG_COPIED)));
}

/* The cluster's own host cluster can take the write (no new allocation). */
static bool
can_reuse(const struct qcow2_state *s, uint64_t e)
{
    return has_host(s, e) && (e & QCOW_OFLAG_COPIED);
}

static bool
is_zero(const uint8_t *p, size_t len)
{
    /* Word-at-a-time scan; buffers come from malloc and are aligned. */
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w)
            return false;
    }
    for (; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static void
add_piece(struct cluster_plan *p, uint64_t rel, uint64_t len)
{
    if (len == 0)
        return;
    if (p->npieces > 0) {
        struct cow_piece *last = &p->pieces[p->npieces - 1];
        if (last->rel + last->len == rel) {
            last->len += len;
            return;
        }
    }
    p->pieces[p->npieces++] = (struct cow_piece){ rel, len, NULL };
}

/* Decide the new subcluster bitmap and which parts must be copied, for a
 * cluster whose bytes [ws, we) are being written.  @reuse: the write goes to
 * the cluster's own host cluster. */
static void
plan_cluster(const struct qcow2_state *s, struct cluster_plan *p, uint64_t ws, uint64_t we,
             bool reuse)
{
    const uint64_t cs = s->cluster_size, scs = s->subcluster_size;
    p->npieces = 0;
    if (!s->ext_l2 || (p->old_e & QCOW_OFLAG_COMPRESSED)) {
        /* Whole cluster becomes data: copy what the write does not cover. */
        add_piece(p, 0, ws);
        add_piece(p, we, cs - we);
        p->new_bm = s->ext_l2 ? SC_ALLOC_MASK : 0;
        return;
    }
    unsigned s0 = (unsigned)(ws / scs), s1 = (unsigned)((we - 1) / scs);
    uint64_t bm = p->old_bm;
    for (unsigned sc = s0; sc <= s1; sc++) {
        bm |= 1ull << sc;
        bm &= ~(1ull << (32 + sc));
    }
    p->new_bm = bm;
    bool copy_others = !reuse && has_host(s, p->old_e);
    for (unsigned sc = 0; sc < QCOW2_SUBCLUSTERS; sc++) {
        if (sc == s0)
            add_piece(p, sc * scs, ws - sc * scs);
        if (sc == s1)
            add_piece(p, we, (sc + 1) * scs - we);
        /* Moving to a new host cluster: carry the allocated subclusters. */
        if (copy_others && (sc < s0 || sc > s1) && (p->old_bm & (1ull << sc)))
            add_piece(p, sc * scs, scs);
    }
}

/* Read the old contents of [rel, rel+len) of the cluster at guest @g. */
static int
read_old(struct qcow2_state *s, const struct cluster_plan *p, uint64_t g, uint64_t rel,
         uint64_t len, uint8_t *out, uint8_t **decompressed)
{
    if (p->old_e & QCOW_OFLAG_COMPRESSED) {
        if (!*decompressed) {
            *decompressed = malloc(s->cluster_size);
            if (!*decompressed)
                return err_set(-ENOMEM, "out of memory");
            int r = qcow2_read_compressed(s, p->old_e, *decompressed);
            if (r < 0)
                return r;
        }
        memcpy(out, *decompressed + rel, len);
        return 0;
    }
    while (len > 0) {
        unsigned sc = (unsigned)(rel >> s->subcluster_bits);
        uint64_t n = MIN(len, ((uint64_t)(sc + 1) << s->subcluster_bits) - rel);
        struct qcow2_extent e = { .len = n };
        int t = qcow2_entry_type(s, p->old_e, p->old_bm, sc);
        e.type = t < 0 ? QCOW2_ZERO_PLAIN : (enum qcow2_type)t;
        e.host = (p->old_e & L2E_OFFSET_MASK) + rel;
        int r = qcow2_read_cluster_part(s, &e, g + rel, out, (size_t)n, false);
        if (r < 0)
            return r;
        out += n;
        rel += n;
        len -= n;
    }
    return 0;
}

/* One contiguous host write segment. */
struct seg {
    uint64_t host;
    uint64_t len;
    const uint8_t *buf;
};

static int
cmp_seg(const void *a, const void *b)
{
    const struct seg *x = a, *y = b;
    return x->host < y->host ? -1 : x->host > y->host;
}

/* Write segments, merging host-contiguous neighbours into one pwritev.  The
 * run's host bytes from @host_base hold guest bytes from @run_guest. */
static int
write_segments(struct qcow2_state *s, struct seg *segs, size_t n, uint64_t host_base,
               uint64_t run_guest)
{
    qsort(segs, n, sizeof *segs, cmp_seg);
    struct iovec iov[64];
    size_t i = 0;
    while (i < n) {
        int cnt = 0;
        uint64_t start = segs[i].host, next = start;
        while (i < n && cnt < 64 && segs[i].host == next) {
            iov[cnt].iov_base = (void *)segs[i].buf;
            iov[cnt].iov_len = segs[i].len;
            next += segs[i].len;
            cnt++;
            i++;
        }
        int r = s->h.crypt_method ? qcow2_crypto_pwritev(s, iov, cnt, start, run_guest + (start - host_base))
                                  : io_pwritev(s->data_file, iov, cnt, start);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Write guest [@off, @off+@len) starting at a cluster that is not writable in
 * place; handles one run of clusters within one L2 table and reports how many
 * bytes of @buf it consumed in *@done.  Needs s->lock and the range held
 * exclusive; drops the lock during I/O. */
static int
write_run(struct qcow2_state *s, const uint8_t *buf, uint64_t off, uint64_t len, uint64_t *done)
{
    const uint64_t cs = s->cluster_size;
    uint64_t l1i = qcow2_l1_index(s, off), i0 = qcow2_l2_index(s, off);
    int r;

    if (s->lazy_refcounts && (r = qcow2_mark_dirty(s)) < 0)
        return r;
    uint8_t *l2;
    r = qcow2_get_l2(s, l1i, true, &l2);
    if (r < 0)
        return r;

    uint64_t run_guest = off & ~(cs - 1);
    uint64_t nmax = ((off + len - 1) >> s->cluster_bits) - (off >> s->cluster_bits) + 1;
    nmax = MIN(nmax, s->l2_entries - i0);
    nmax = MIN(nmax, MAX(1, MAX_RUN_BYTES >> s->cluster_bits));
    uint64_t e0 = qcow2_l2e_get(s, l2, i0);
    bool reuse = can_reuse(s, e0);
    uint64_t n = 1;
    while (!reuse && n < nmax && !can_reuse(s, qcow2_l2e_get(s, l2, i0 + n)))
        n++;

    struct cluster_plan *plans = calloc(n, sizeof *plans);
    if (!plans) {
        qcow2_cache_put(s->l2_cache, l2);
        return err_set(-ENOMEM, "out of memory");
    }
    for (uint64_t k = 0; k < n; k++) {
        plans[k].old_e = qcow2_l2e_get(s, l2, i0 + k);
        plans[k].old_bm = qcow2_l2_bitmap_get(s, l2, i0 + k);
        r = qcow2_validate_l2e(s, plans[k].old_e, run_guest + k * cs);
        if (r < 0)
            break;
    }
    qcow2_cache_put(s->l2_cache, l2);
    if (r < 0) {
        free(plans);
        return r;
    }

    uint64_t host_base;
    bool fresh = false;
    if (reuse)
        host_base = s->external_data ? run_guest : (e0 & L2E_OFFSET_MASK);
    else if (s->external_data)
        host_base = run_guest; /* guest offset == data file offset */
    else if ((r = qcow2_alloc_clusters(s, n, &host_base, &n, &fresh)) < 0) {
        free(plans);
        return r;
    }

    uint64_t data_end = MIN(off + len, run_guest + n * cs);
    size_t npieces = 0;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t g = run_guest + k * cs;
        uint64_t ws = k == 0 ? off - g : 0;
        uint64_t we = k == n - 1 ? data_end - g : cs;
        plan_cluster(s, &plans[k], ws, we, reuse);
        npieces += plans[k].npieces;
    }

    /* Copy-on-write reads and all writes happen without the lock. */
    struct seg *segs = calloc(npieces + 1, sizeof *segs);
    size_t nsegs = 0;
    pthread_mutex_unlock(&s->lock);
    if (!segs)
        r = err_set(-ENOMEM, "out of memory");
    for (uint64_t k = 0; k < n && r == 0; k++) {
        uint8_t *decompressed = NULL;
        uint64_t g = run_guest + k * cs;
        for (unsigned j = 0; j < plans[k].npieces && r == 0; j++) {
            struct cow_piece *pc = &plans[k].pieces[j];
            pc->buf = malloc(pc->len);
            if (!pc->buf) {
                r = err_set(-ENOMEM, "out of memory");
                break;
            }
            r = read_old(s, &plans[k], g, pc->rel, pc->len, pc->buf, &decompressed);
            /* A fresh cluster already reads as zeros (not through a cipher). */
            if (r == 0 && !(fresh && !s->h.crypt_method && is_zero(pc->buf, pc->len))) {
                segs[nsegs++] = (struct seg){ host_base + k * cs + pc->rel, pc->len, pc->buf };
                STATS_ADD(s->img->stats, cow_bytes, pc->len);
            }
        }
        free(decompressed);
    }
    if (r == 0) {
        segs[nsegs++] = (struct seg){ host_base + (off - run_guest), data_end - off, buf };
        r = write_segments(s, segs, nsegs, host_base, run_guest);
    }
    pthread_mutex_lock(&s->lock);
    free(segs);
    for (uint64_t k = 0; k < n; k++)
        for (unsigned j = 0; j < plans[k].npieces; j++)
            free(plans[k].pieces[j].buf);

    if (r < 0) {
        if (!reuse && !s->external_data)
            qcow2_free_clusters(s, host_base, n, false); /* never linked */
        free(plans);
        return r;
    }

    /* Link the new data. */
    r = qcow2_get_l2(s, l1i, true, &l2);
    if (r < 0) {
        free(plans);
        return r;
    }
    for (uint64_t k = 0; k < n && r == 0; k++) {
        uint64_t ne = (host_base + k * cs) | QCOW_OFLAG_COPIED;
        qcow2_l2e_set(s, l2, i0 + k, ne, plans[k].new_bm);
        if (!reuse)
            r = qcow2_free_l2_entry(s, plans[k].old_e, false);
    }
    qcow2_cache_mark_dirty(s->l2_cache, l2);
    qcow2_cache_put(s->l2_cache, l2);
    s->deps_unsynced = true;
    if (!reuse)
        STATS_ADD(s->img->stats, data_clusters_allocated, n);
    free(plans);
    *done = data_end - off;
    return r;
}

int
qcow2_write_locked(struct qcow2_state *s, const uint8_t *buf, uint64_t len, uint64_t off)
{
    uint64_t pos = 0;
    int cr = qcow2_crypto_check_write(s);
    if (cr < 0)
        return cr;
    while (pos < len) {
        struct qcow2_extent e;
        int r = qcow2_map(s, off + pos, len - pos, &e);
        if (r < 0)
            return r;
        if (e.type == QCOW2_NORMAL && e.copied) {
            pthread_mutex_unlock(&s->lock);
            r = s->h.crypt_method ? qcow2_crypto_pwrite(s, buf + pos, e.len, e.host, off + pos)
                                  : io_pwrite(s->data_file, buf + pos, e.len, e.host);
            pthread_mutex_lock(&s->lock);
            if (r < 0)
                return r;
            pos += e.len;
            continue;
        }
        uint64_t done = 0;
        r = write_run(s, buf + pos, off + pos, len - pos, &done);
        if (r < 0)
            return r;
        pos += done;
    }
    return 0;
}

/* Extents of an in-place write, gathered under the lock. */
#define INPLACE_MAX 16

int
qcow2_pwrite(struct topcow_image *img, const void *buf, size_t len, uint64_t off, unsigned flags)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_extent ext[INPLACE_MAX];
    struct range_req req;
    uint64_t c0 = off >> s->cluster_bits, c1 = ((off + len - 1) >> s->cluster_bits) + 1;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    if (s->corrupt) {
        pthread_mutex_unlock(&s->lock);
        return QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused until "
                             "'check -r all' repairs it");
    }
    range_lock_acquire(&s->ranges, &req, c0, c1, false);
    if ((r = qcow2_crypto_check_write(s)) < 0) {
        range_lock_release(&s->ranges, &req);
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    unsigned n = 0;
    /* Encrypted writes that cut sectors read them first: not in place. */
    bool inplace = !s->h.crypt_method || ((off | len) & 511) == 0;
    for (uint64_t pos = 0; pos < len && inplace; n++) {
        if (n == INPLACE_MAX || qcow2_map(s, off + pos, len - pos, &ext[n]) < 0 ||
            ext[n].type != QCOW2_NORMAL || !ext[n].copied) {
            inplace = false;
            break;
        }
        pos += ext[n].len;
    }
    if (inplace) {
        pthread_mutex_unlock(&s->lock);
        const uint8_t *p = buf;
        uint64_t g = off;
        for (unsigned i = 0; i < n && r == 0; i++) {
            r = s->h.crypt_method ? qcow2_crypto_pwrite(s, p, ext[i].len, ext[i].host, g)
                                  : io_pwrite(s->data_file, p, ext[i].len, ext[i].host);
            p += ext[i].len;
            g += ext[i].len;
        }
        pthread_mutex_lock(&s->lock);
        range_lock_release(&s->ranges, &req);
        if (r == 0 && (flags & TOPCOW_WRITE_FUA) && !s->unsafe) {
            /* The data is only durable in place if its mapping is too. */
            if (qcow2_metadata_dirty(s)) {
                r = qcow2_flush_locked(s);
            } else {
                pthread_mutex_unlock(&s->lock);
                return io_flush(s->data_file);
            }
        }
        pthread_mutex_unlock(&s->lock);
        return r;
    }

    range_lock_release(&s->ranges, &req);
    range_lock_acquire(&s->ranges, &req, c0, c1, true);
    r = qcow2_write_locked(s, buf, len, off);
    range_lock_release(&s->ranges, &req);
    if (r == 0 && (flags & TOPCOW_WRITE_FUA))
        r = qcow2_flush_locked(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}
