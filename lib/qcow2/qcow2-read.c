// SPDX-License-Identifier: MIT
/* The read path: map a run under the lock, then transfer without it.  The
 * guest clusters being read are held shared in the range lock, so no
 * concurrent write, zero or discard can change or free their host clusters
 * while the transfer runs. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

int
qcow2_read_compressed(struct qcow2_state *s, uint64_t l2e, uint8_t *out)
{
    uint64_t off, len;
    qcow2_compressed_range(s, l2e, &off, &len);
    uint8_t *in = malloc(len);
    if (!in)
        return err_set(-ENOMEM, "out of memory");
    int r = io_pread(s->file, in, len, off);
    if (r == 0) {
        uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
        r = qcow2_decompress(s, in, len, out, s->cluster_size);
        STATS_ADD(s->img->stats, compressed_reads, 1);
        STATS_ADD(s->img->stats, decompress_nsec, clock_ns(CLOCK_MONOTONIC) - t0);
        if (r == -EUCLEAN)
            r = QERR(s, r, "qcow2: compressed cluster at host offset 0x%" PRIx64
                           " does not decompress", off);
    }
    free(in);
    return r;
}

int
qcow2_read_cluster_part(struct qcow2_state *s, const struct qcow2_extent *ext, uint64_t guest_off,
                        uint8_t *buf, size_t len, bool for_guest)
{
    switch (ext->type) {
    case QCOW2_NORMAL:
        if (s->h.crypt_method)
            return qcow2_crypto_pread(s, buf, len, ext->host, guest_off);
        return io_pread(s->data_file, buf, len, ext->host);
    case QCOW2_ZERO_PLAIN:
    case QCOW2_ZERO_ALLOC:
        memset(buf, 0, len);
        return 0;
    case QCOW2_UNALLOCATED:
    case QCOW2_UNALLOCATED_ALLOC:
        return for_guest ? image_backing_pread(s->img, buf, len, guest_off)
                         : image_backing_copy(s->img, buf, len, guest_off);
    case QCOW2_COMPRESSED: {
        uint8_t *tmp = malloc(s->cluster_size);
        if (!tmp)
            return err_set(-ENOMEM, "out of memory");
        int r = qcow2_read_compressed(s, ext->l2e, tmp);
        if (r == 0)
            memcpy(buf, tmp + qcow2_offset_into_cluster(s, guest_off), len);
        free(tmp);
        return r;
    }
    }
    return err_set(-EINVAL, "internal: bad extent type");
}

/* Extents of one request mapped per pass; the data clusters among them are
 * read as one batch. */
#define READ_BATCH 32

int
qcow2_pread(struct topcow_image *img, void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = qcow2_state(img);
    struct range_req req;
    int r = 0;

    pthread_mutex_lock(&s->lock);
    range_lock_acquire(&s->ranges, &req, off >> s->cluster_bits,
                       ((off + len - 1) >> s->cluster_bits) + 1, false);
    for (size_t pos = 0; pos < len && r == 0;) {
        /* Map up to READ_BATCH extents under the lock, then transfer
         * without it: plain data clusters in one batch (overlapped by the
         * io backend where it can), the rest one by one. */
        struct qcow2_extent e[READ_BATCH];
        size_t at[READ_BATCH];
        unsigned n = 0;
        for (size_t p = pos; p < len && n < READ_BATCH; p += e[n++].len) {
            at[n] = p;
            if ((r = qcow2_map(s, off + p, len - p, &e[n])) < 0)
                break;
        }
        pthread_mutex_unlock(&s->lock);
        struct io_seg seg[READ_BATCH];
        unsigned nseg = 0;
        for (unsigned i = 0; i < n && r == 0; i++) {
            uint8_t *dst = (uint8_t *)buf + at[i];
            if (e[i].type == QCOW2_NORMAL && !s->h.crypt_method)
                seg[nseg++] = (struct io_seg){ dst, e[i].len, e[i].host };
            else
                r = qcow2_read_cluster_part(s, &e[i], off + at[i], dst, e[i].len, true);
        }
        if (r == 0 && nseg)
            r = io_pread_batch(s->data_file, seg, nseg);
        if (n)
            pos = at[n - 1] + e[n - 1].len;
        pthread_mutex_lock(&s->lock);
    }
    range_lock_release(&s->ranges, &req);
    pthread_mutex_unlock(&s->lock);
    return r;
}
