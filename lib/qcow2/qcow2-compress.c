// SPDX-License-Identifier: MIT
/* Compressed clusters (spec: "Compressed Clusters Descriptor"; notes §1a
 * "Compression streams").
 *
 * Writing happens in two steps so that callers can compress on many threads
 * and still lay the data out in guest order:
 *  - qcow2_compress() compresses whole clusters into a topcow_compressed
 *    without touching the image.  A cluster whose stream would not fit in
 *    cluster_size - 1 bytes is kept uncompressed, as QEMU does, and stored
 *    as a normal cluster in its turn (the file follows the call order).
 *  - qcow2_write_compressed() packs the streams byte by byte into host
 *    clusters, one after the other, continuing in the partly filled cluster
 *    the previous write left (s->cpack).  A stream that does not fit in what
 *    is left of that cluster continues into the next host cluster if the
 *    allocator hands out exactly that one, otherwise it starts afresh.  Every
 *    host cluster a stream overlaps holds one reference for it.
 * Order on disk, as for any allocating write: data, then refcounts, then the
 * L2 entries (qcow2-flush.c); a crash in between leaks at most.
 *
 * Compressed entries never carry COPIED, and with extended L2 their
 * subcluster bitmap is 0.  A cluster that held data before is released
 * (freed once the new entry is durable): unlike QEMU, which refuses to
 * compress over allocated clusters, any cluster may be rewritten. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "codec.h"
#include "error.h"
#include "minmax.h"
#include "qcow2-internal.h"

int
qcow2_decompress(struct qcow2_state *s, const uint8_t *in, size_t inlen, uint8_t *out,
                 size_t outlen)
{
    int r = codec_decompress((enum codec_type)s->h.compression_type, in, inlen, out, outlen);
    if (r == -ENOTSUP)
        return QERR(s, r, "qcow2: zstd support is not built in");
    if (r == -ENOMEM)
        return err_set(r, "out of memory");
    return r;
}

int
qcow2_compress(struct topcow_image *img, const void *buf, size_t len, uint64_t off,
               struct topcow_compressed **out)
{
    struct qcow2_state *s = qcow2_state(img);
    const uint64_t cs = s->cluster_size;
    *out = NULL;
    RETURN_ERR_IF(s->external_data, -ENOTSUP,
                  "%s: qcow2: compressed clusters cannot go to an external data file",
                  img->filename);
    RETURN_ERR_IF(s->h.crypt_method, -ENOTSUP,
                  "%s: qcow2: compressed clusters cannot be encrypted", img->filename);
    RETURN_ERR_IF(off % cs != 0 || (len % cs != 0 && off + len != img->size), -EINVAL,
                  "%s: compressed writes take whole clusters (%" PRIu64 " bytes) at cluster "
                  "boundaries; [%" PRIu64 ", +%zu) is not", img->filename, cs, off, len);

    size_t n = (size_t)((len + cs - 1) / cs);
    struct topcow_compressed *c = calloc(1, sizeof *c);
    uint8_t *pad = malloc(cs);
    if (c) {
        c->clusters = calloc(n, sizeof *c->clusters);
        c->arena = malloc(n * cs);
    }
    if (!c || !pad || !c->clusters || !c->arena) {
        free(pad);
        topcow_compressed_free(c);
        return err_set(-ENOMEM, "out of memory");
    }
    c->off = off;
    c->len = len;
    c->cluster_size = cs;
    c->n = n;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *in = (const uint8_t *)buf + i * cs;
        size_t inlen = (size_t)MIN(cs, len - i * cs);
        if (inlen < cs) { /* the image's last cluster: compress it zero-padded */
            memcpy(pad, in, inlen);
            memset(pad + inlen, 0, cs - inlen);
            in = pad;
        }
        ssize_t z = codec_compress((enum codec_type)s->h.compression_type, in, cs,
                                   c->arena + pos, cs - 1);
        if (z < 0) {
            free(pad);
            topcow_compressed_free(c);
            return z == -ENOMEM ? err_set(-ENOMEM, "out of memory")
                                : QERR(s, (int)z, "qcow2: %s compression failed",
                                       s->h.compression_type ? "zstd" : "deflate");
        }
        if (z > 0) {
            c->clusters[i] = (struct topcow_compressed_cluster){ pos, (size_t)z, false };
            pos += (size_t)z;
        } else { /* incompressible: kept as it is */
            memcpy(c->arena + pos, (const uint8_t *)buf + i * cs, inlen);
            c->clusters[i] = (struct topcow_compressed_cluster){ pos, inlen, true };
            pos += inlen;
        }
    }
    free(pad);
    *out = c;
    return 0;
}

/* The descriptor of a stream of @len bytes at host byte @host. */
static uint64_t
descriptor(const struct qcow2_state *s, uint64_t host, uint64_t len)
{
    uint64_t extra = (host + len - 1) / 512 - host / 512;
    return QCOW_OFLAG_COMPRESSED | (extra << s->csize_shift) | host;
}

/* Find @len (< cluster_size) bytes for a stream and take the references for
 * it; *@host gets the byte offset.  Needs s->lock. */
static int
place_stream(struct qcow2_state *s, uint64_t len, uint64_t *host)
{
    const uint64_t cs = s->cluster_size;
    uint64_t p = s->cpack;
    int r;
    if (p) {
        /* The packing cluster may have been freed and reused, or be full of
         * references. */
        uint64_t rc;
        if ((r = qcow2_refcount_get(s, p >> s->cluster_bits, &rc)) < 0)
            return r;
        if (rc == 0 || rc >= s->refcount_max)
            p = 0;
    }
    uint64_t room = p ? cs - (p & (cs - 1)) : 0;
    if (p && len <= room) {
        *host = p;
        r = qcow2_refcount_update(s, p & ~(cs - 1), 1, 1);
    } else {
        uint64_t nc, got;
        bool fresh;
        if ((r = qcow2_alloc_clusters(s, 1, &nc, &got, &fresh)) < 0)
            return r;
        STATS_ADD(s->img->stats, data_clusters_allocated, 1);
        if (p && nc == p + room) { /* the next cluster: continue across */
            *host = p;
            r = qcow2_refcount_update(s, p & ~(cs - 1), 1, 1);
            if (r < 0)
                qcow2_free_clusters(s, nc, 1, false);
        } else {
            *host = nc;
        }
    }
    if (r < 0)
        return r;
    /* Bits at and above csize_shift hold the sector count (and 56.. must be 0). */
    if ((*host + len) >> MIN(s->csize_shift, 56)) {
        qcow2_free_l2_entry(s, descriptor(s, *host, len), false);
        s->cpack = 0;
        return QERR(s, -ENOSPC, "qcow2: host offset 0x%" PRIx64 " is too large for a "
                                "compressed cluster", *host);
    }
    s->cpack = (*host + len) & (cs - 1) ? *host + len : 0;
    return 0;
}

/* The L2 entry for cluster @i of @c stored at @host. */
static uint64_t
entry_for(const struct qcow2_state *s, const struct topcow_compressed *c, size_t i,
          uint64_t host)
{
    if (c->clusters[i].raw)
        return host | QCOW_OFLAG_COPIED;
    return descriptor(s, host, c->clusters[i].len);
}

/* Write the placed clusters, one pwritev per host-contiguous run. */
static int
write_streams(struct qcow2_state *s, const struct topcow_compressed *c, const uint64_t *host)
{
    struct iovec iov[64];
    int cnt = 0;
    uint64_t start = 0, next = 0;
    for (size_t i = 0; i <= c->n; i++) {
        bool end = i == c->n;
        if (cnt > 0 && (end || host[i] != next || cnt == 64)) {
            int r = io_pwritev(s->file, iov, cnt, start);
            if (r < 0)
                return r;
            cnt = 0;
        }
        if (end)
            break;
        if (cnt == 0)
            start = next = host[i];
        iov[cnt].iov_base = c->arena + c->clusters[i].pos;
        iov[cnt].iov_len = c->clusters[i].len;
        cnt++;
        /* A raw cluster is a whole host cluster (the image's short last
         * cluster leaves the rest unwritten). */
        next += c->clusters[i].raw ? s->cluster_size : c->clusters[i].len;
    }
    return 0;
}

/* Point the guest cluster at @guest to @entry, releasing what it held. */
static int
link_entry(struct qcow2_state *s, uint64_t guest, uint64_t entry)
{
    uint64_t bitmap = s->ext_l2 && !(entry & QCOW_OFLAG_COMPRESSED) ? SC_ALLOC_MASK : 0;
    uint8_t *l2;
    int r = qcow2_get_l2(s, qcow2_l1_index(s, guest), true, &l2);
    if (r < 0)
        return r;
    uint64_t i = qcow2_l2_index(s, guest);
    uint64_t old = qcow2_l2e_get(s, l2, i);
    r = qcow2_validate_l2e(s, old, guest);
    if (r == 0) {
        qcow2_l2e_set(s, l2, i, entry, bitmap);
        qcow2_cache_mark_dirty(s->l2_cache, l2);
        r = qcow2_free_l2_entry(s, old, false);
    }
    qcow2_cache_put(s->l2_cache, l2);
    return r;
}

/* The locked part of qcow2_write_compressed. */
static int
write_compressed_locked(struct qcow2_state *s, const struct topcow_compressed *c, uint64_t *host)
{
    const uint64_t cs = s->cluster_size;
    int r = 0;
    if (s->lazy_refcounts && (r = qcow2_mark_dirty(s)) < 0)
        return r;
    /* L2 tables first, so they do not land between the streams. */
    for (uint64_t g = c->off; g < c->off + c->len;
         g = (qcow2_l1_index(s, g) + 1) << (s->cluster_bits + s->l2_bits)) {
        uint8_t *l2;
        if ((r = qcow2_get_l2(s, qcow2_l1_index(s, g), true, &l2)) < 0)
            return r;
        qcow2_cache_put(s->l2_cache, l2);
    }
    /* Clusters that did not compress get a host cluster of their own, in
     * turn, so the file follows guest order. */
    size_t placed = 0;
    for (; placed < c->n; placed++) {
        uint64_t got;
        bool fresh;
        if (c->clusters[placed].raw) {
            r = qcow2_alloc_clusters(s, 1, &host[placed], &got, &fresh);
            if (r == 0)
                STATS_ADD(s->img->stats, data_clusters_allocated, 1);
        } else
            r = place_stream(s, c->clusters[placed].len, &host[placed]);
        if (r < 0)
            break;
    }
    if (r == 0) {
        pthread_mutex_unlock(&s->lock);
        r = write_streams(s, c, host);
        pthread_mutex_lock(&s->lock);
    }
    if (r < 0) { /* never linked: give the references back */
        for (size_t i = 0; i < placed; i++)
            qcow2_free_l2_entry(s, entry_for(s, c, i, host[i]), false);
        s->cpack = 0;
        return r;
    }
    s->deps_unsynced = true;
    for (size_t i = 0; i < c->n && r == 0; i++)
        r = link_entry(s, c->off + i * cs, entry_for(s, c, i, host[i]));
    return r;
}

int
qcow2_write_compressed(struct topcow_image *img, const struct topcow_compressed *c)
{
    struct qcow2_state *s = qcow2_state(img);
    RETURN_ERR_IF(c->cluster_size != s->cluster_size || c->off + c->len > img->size ||
                      s->external_data, -EINVAL,
                  "%s: the compressed clusters were prepared for another image", img->filename);
    uint64_t *host = calloc(c->n ? c->n : 1, sizeof *host);
    if (!host)
        return err_set(-ENOMEM, "out of memory");
    struct range_req req;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (s->corrupt)
        r = QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused until "
                          "'check -r all' repairs it");
    if (r == 0 && c->n > 0) {
        range_lock_acquire(&s->ranges, &req, c->off >> s->cluster_bits,
                           (c->off >> s->cluster_bits) + c->n, true);
        r = write_compressed_locked(s, c, host);
        range_lock_release(&s->ranges, &req);
    }
    pthread_mutex_unlock(&s->lock);
    free(host);
    return r;
}
