// SPDX-License-Identifier: MIT
/* What each transmission request does to the image, and the reply it gets
 * (see nbd-server.h).  Replies are sent whole under the connection's send
 * lock, so replies of requests running in parallel never interleave. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf-scan.h"
#include "clock.h"
#include "minmax.h"
#include "nbd-proto.h"
#include "nbd-server.h"
#include "topcow.h"

/* Reads at least this long go out as data and hole chunks (when the client
 * negotiated structured replies and did not ask for one chunk). */
#define SPARSE_READ_MIN (64u << 10)
/* At most this many block status descriptors per context in one reply. */
#define MAX_EXTENTS (1u << 16)
/* CACHE reads through a buffer of this size. */
#define CACHE_CHUNK (1u << 20)

static uint32_t
nbd_errno(int e)
{
    switch (e < 0 ? -e : e) {
    case EPERM:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

/* Send one reply (or chunk) of @req made of @n buffers, adding the time it
 * took to req->send_ns.  Returns 0, or -1 when the stream is broken (the
 * connection is then shut down so its reader stops). */
static int
send_iov(struct nbd_conn *c, struct nbd_req *req, struct iovec *v, int n)
{
    if (atomic_load_explicit(&c->broken, memory_order_relaxed))
        return -1;
    uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
    pthread_mutex_lock(&c->send_lock);
    int r = chan_writev(&c->chan, v, n);
    pthread_mutex_unlock(&c->send_lock);
    req->send_ns += clock_ns(CLOCK_MONOTONIC) - t0;
    if (r < 0) {
        atomic_store(&c->broken, true);
        chan_shutdown(&c->chan);
        return -1;
    }
    return 0;
}

static void
simple_header(uint8_t h[NBD_SIMPLE_REPLY_SIZE], uint64_t cookie, uint32_t err)
{
    be32_put(h, NBD_SIMPLE_REPLY_MAGIC);
    be32_put(h + 4, err);
    be64_put(h + 8, cookie);
}

static void
chunk_header(uint8_t h[NBD_CHUNK_HEADER_SIZE], uint64_t cookie, uint16_t flags, uint16_t type,
             uint32_t len)
{
    be32_put(h, NBD_STRUCTURED_REPLY_MAGIC);
    be16_put(h + 4, flags);
    be16_put(h + 6, type);
    be64_put(h + 8, cookie);
    be32_put(h + 16, len);
}

static int
reply_ok(struct nbd_conn *c, struct nbd_req *r)
{
    uint8_t h[NBD_SIMPLE_REPLY_SIZE];
    simple_header(h, r->cookie, 0);
    struct iovec v = { h, sizeof h };
    return send_iov(c, r, &v, 1);
}

int
nbd_cmd_reply_error(struct nbd_conn *c, struct nbd_req *r, uint32_t err)
{
    if (!c->structured) {
        uint8_t h[NBD_SIMPLE_REPLY_SIZE];
        simple_header(h, r->cookie, err);
        struct iovec v = { h, sizeof h };
        return send_iov(c, r, &v, 1);
    }
    const char *msg = strerror((int)err); /* NBD values are Linux errno values */
    size_t mlen = strlen(msg);
    uint8_t h[NBD_CHUNK_HEADER_SIZE + 6];
    chunk_header(h, r->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, (uint32_t)(6 + mlen));
    be32_put(h + NBD_CHUNK_HEADER_SIZE, err);
    be16_put(h + NBD_CHUNK_HEADER_SIZE + 4, (uint16_t)mlen);
    struct iovec v[2] = { { h, sizeof h }, { (void *)msg, mlen } };
    return send_iov(c, r, v, 2);
}

static int
reply_errno(struct nbd_conn *c, struct nbd_req *r, int e)
{
    return nbd_cmd_reply_error(c, r, nbd_errno(e));
}

/* An OFFSET_DATA chunk of @len bytes at guest @off. */
static int
send_data_chunk(struct nbd_conn *c, struct nbd_req *r, uint16_t flags, uint64_t off,
                const void *data, size_t len)
{
    uint8_t h[NBD_CHUNK_HEADER_SIZE + 8];
    chunk_header(h, r->cookie, flags, NBD_REPLY_TYPE_OFFSET_DATA, (uint32_t)(8 + len));
    be64_put(h + NBD_CHUNK_HEADER_SIZE, off);
    struct iovec v[2] = { { h, sizeof h }, { (void *)data, len } };
    return send_iov(c, r, v, 2);
}

static int
send_hole_chunk(struct nbd_conn *c, struct nbd_req *r, uint64_t off, uint32_t len)
{
    uint8_t h[NBD_CHUNK_HEADER_SIZE + 12];
    chunk_header(h, r->cookie, 0, NBD_REPLY_TYPE_OFFSET_HOLE, 12);
    be64_put(h + NBD_CHUNK_HEADER_SIZE, off);
    be32_put(h + NBD_CHUNK_HEADER_SIZE + 8, len);
    struct iovec v = { h, sizeof h };
    return send_iov(c, r, &v, 1);
}

static int
send_done(struct nbd_conn *c, struct nbd_req *r)
{
    uint8_t h[NBD_CHUNK_HEADER_SIZE];
    chunk_header(h, r->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
    struct iovec v = { h, sizeof h };
    return send_iov(c, r, &v, 1);
}

/* Send guest bytes [@from, @to) of a sparse read, already in the matching
 * part of @buf, as a hole or as data.  Returns 0, or -1 when the stream
 * broke. */
static int
send_run(struct nbd_conn *c, struct nbd_req *r, const uint8_t *buf, uint64_t from, uint64_t to,
         bool zero)
{
    if (zero)
        return send_hole_chunk(c, r, from, (uint32_t)(to - from));
    return send_data_chunk(c, r, 0, from, buf + (from - r->offset), to - from);
}

/* A long structured read: read whole (so that it is one read in the
 * image's statistics, holes included: they cost a memset), then one walk
 * over the block status sends runs that read as zeros as hole chunks and
 * the rest as data. */
static int
read_sparse(struct nbd_conn *c, struct nbd_req *r, uint8_t *buf)
{
    int e = topcow_image_pread(c->exp->img, buf, r->len, r->offset);
    if (e < 0)
        return reply_errno(c, r, e);
    uint64_t end = r->offset + r->len, run = r->offset; /* the pending run starts at run */
    bool zero = false;
    for (uint64_t pos = r->offset; pos < end;) {
        struct topcow_extent ext;
        e = topcow_image_block_status(c->exp->img, pos, end - pos, 0, &ext);
        if (e < 0)
            return reply_errno(c, r, e);
        bool z = ext.flags & TOPCOW_EXTENT_ZERO;
        if (pos > run && z != zero) {
            if (send_run(c, r, buf, run, pos, zero) < 0)
                return -1;
            run = pos;
        }
        zero = z;
        pos += MIN(ext.length, end - pos);
    }
    return send_run(c, r, buf, run, end, zero) < 0 ? -1 : send_done(c, r);
}

static int
cmd_read(struct nbd_conn *c, struct nbd_req *r)
{
    if (r->len == 0)
        return c->structured ? send_done(c, r) : reply_ok(c, r);
    uint8_t *buf = nbd_buf_alloc(c, r->len);
    if (!buf)
        return nbd_cmd_reply_error(c, r, NBD_ENOMEM);
    int ret;
    if (c->structured && c->exp->sparse_reads && r->len >= SPARSE_READ_MIN &&
        !(r->flags & NBD_CMD_FLAG_DF)) {
        ret = read_sparse(c, r, buf);
    } else {
        int e = topcow_image_pread(c->exp->img, buf, r->len, r->offset);
        if (e < 0) {
            ret = reply_errno(c, r, e);
        } else if (c->structured) {
            ret = send_data_chunk(c, r, NBD_REPLY_FLAG_DONE, r->offset, buf, r->len);
        } else {
            uint8_t h[NBD_SIMPLE_REPLY_SIZE];
            simple_header(h, r->cookie, 0);
            struct iovec v[2] = { { h, sizeof h }, { buf, r->len } };
            ret = send_iov(c, r, v, 2);
        }
    }
    free(buf);
    return ret;
}

static int
cmd_write(struct nbd_conn *c, struct nbd_req *r)
{
    struct nbd_export *e = c->exp;
    unsigned fua = (r->flags & NBD_CMD_FLAG_FUA) ? TOPCOW_WRITE_FUA : 0;
    int err;
    if (e->detect_zeroes != DETECT_ZEROES_OFF && buf_is_zero(r->payload, r->len)) {
        unsigned zf = fua;
        if (e->detect_zeroes == DETECT_ZEROES_UNMAP && e->discard)
            zf |= TOPCOW_ZERO_MAY_UNMAP;
        err = topcow_image_write_zeroes(e->img, r->offset, r->len, zf);
        if (err == 0)
            topcow_image_stats_note(e->img, TOPCOW_STATS_NOTE_ZEROS_DETECTED, r->len);
    } else {
        err = topcow_image_pwrite(e->img, r->payload, r->len, r->offset, fua);
    }
    return err < 0 ? reply_errno(c, r, err) : reply_ok(c, r);
}

static int
cmd_write_zeroes(struct nbd_conn *c, struct nbd_req *r)
{
    struct nbd_export *e = c->exp;
    unsigned f = 0;
    if (r->flags & NBD_CMD_FLAG_FUA)
        f |= TOPCOW_WRITE_FUA;
    if (!(r->flags & NBD_CMD_FLAG_NO_HOLE) && e->discard)
        f |= TOPCOW_ZERO_MAY_UNMAP;
    if (r->flags & NBD_CMD_FLAG_FAST_ZERO)
        f |= TOPCOW_ZERO_FAST;
    int err = topcow_image_write_zeroes(e->img, r->offset, r->len, f);
    return err < 0 ? reply_errno(c, r, err) : reply_ok(c, r);
}

static int
cmd_trim(struct nbd_conn *c, struct nbd_req *r)
{
    struct nbd_export *e = c->exp;
    if (!e->discard)
        return reply_ok(c, r); /* --discard=ignore: a hint we may ignore */
    int err = topcow_image_discard(e->img, r->offset, r->len);
    if (err == 0 && (r->flags & NBD_CMD_FLAG_FUA))
        err = topcow_image_flush(e->img);
    return err < 0 ? reply_errno(c, r, err) : reply_ok(c, r);
}

static int
cmd_flush(struct nbd_conn *c, struct nbd_req *r)
{
    int err = topcow_image_flush(c->exp->img); /* a no-op with --cache=unsafe */
    return err < 0 ? reply_errno(c, r, err) : reply_ok(c, r);
}

/* Read the range (into the page cache and the metadata caches) and drop it. */
static int
cmd_cache(struct nbd_conn *c, struct nbd_req *r)
{
    uint8_t *buf = malloc(MIN(r->len, CACHE_CHUNK) + 1);
    if (!buf)
        return nbd_cmd_reply_error(c, r, NBD_ENOMEM);
    int err = 0;
    for (uint64_t pos = r->offset, end = r->offset + r->len; pos < end && !err;) {
        size_t n = (size_t)MIN(end - pos, CACHE_CHUNK);
        err = topcow_image_pread(c->exp->img, buf, n, pos);
        pos += n;
    }
    free(buf);
    return err < 0 ? reply_errno(c, r, err) : reply_ok(c, r);
}

/* Descriptors of one metadata context, merged as they are appended. */
struct extents {
    uint32_t id;
    uint8_t *buf;      /* 4-byte context id, then (length, flags) pairs */
    unsigned n, max;
};

static bool
extents_add(struct extents *x, uint32_t len, uint32_t flags)
{
    if (x->n > 0) {
        uint8_t *last = x->buf + 4 + 8 * (size_t)(x->n - 1);
        if (be32_get(last + 4) == flags && (uint64_t)be32_get(last) + len <= UINT32_MAX) {
            be32_put(last, be32_get(last) + len);
            return true;
        }
    }
    if (x->n == x->max)
        return false;
    uint8_t *d = x->buf + 4 + 8 * (size_t)x->n++;
    be32_put(d, len);
    be32_put(d + 4, flags);
    return true;
}

static int
send_extents(struct nbd_conn *c, struct nbd_req *r, struct extents *x, uint16_t flags)
{
    size_t len = 4 + 8 * (size_t)x->n;
    uint8_t h[NBD_CHUNK_HEADER_SIZE];
    chunk_header(h, r->cookie, flags, NBD_REPLY_TYPE_BLOCK_STATUS, (uint32_t)len);
    be32_put(x->buf, x->id);
    struct iovec v[2] = { { h, sizeof h }, { x->buf, len } };
    return send_iov(c, r, v, 2);
}

static int
cmd_block_status(struct nbd_conn *c, struct nbd_req *r)
{
    if (!c->contexts)
        return nbd_cmd_reply_error(c, r, NBD_EINVAL);
    unsigned max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS;
    struct extents x[] = { { .id = NBD_CTX_BASE_ALLOCATION, .max = max },
                           { .id = NBD_CTX_ALLOCATION_DEPTH, .max = max } };
    enum { NX = sizeof x / sizeof x[0] };
    int ret = -1;
    for (unsigned k = 0; k < NX; k++)
        if ((c->contexts & (1u << x[k].id)) && !(x[k].buf = malloc(4 + 8 * (size_t)max))) {
            ret = nbd_cmd_reply_error(c, r, NBD_ENOMEM);
            goto out;
        }
    for (uint64_t pos = r->offset, end = r->offset + r->len; pos < end;) {
        struct topcow_extent ext;
        int e = topcow_image_block_status(c->exp->img, pos, end - pos, 0, &ext);
        if (e < 0) {
            ret = reply_errno(c, r, e);
            goto out;
        }
        uint32_t len = (uint32_t)MIN(ext.length, end - pos);
        uint32_t value[NX] = {
            (ext.flags & TOPCOW_EXTENT_DATA ? 0 : NBD_STATE_HOLE) |
                (ext.flags & TOPCOW_EXTENT_ZERO ? NBD_STATE_ZERO : 0),
            ext.flags & TOPCOW_EXTENT_ALLOCATED ? ext.depth + 1 : 0,
        };
        bool room = true;
        for (unsigned k = 0; k < NX; k++)
            if (x[k].buf)
                room &= extents_add(&x[k], len, value[k]);
        if (!room || (r->flags & NBD_CMD_FLAG_REQ_ONE))
            break; /* the client asks again from where we stopped */
        pos += len;
    }
    /* One chunk per selected context, the last one marked done. */
    unsigned last = x[1].buf ? 1 : 0;
    ret = 0;
    for (unsigned k = 0; k < NX && ret == 0; k++)
        if (x[k].buf)
            ret = send_extents(c, r, &x[k], k == last ? NBD_REPLY_FLAG_DONE : 0);
out:
    for (unsigned k = 0; k < NX; k++)
        free(x[k].buf);
    return ret;
}

/* The flags each command accepts (FUA is valid on every command). */
static uint16_t
allowed_flags(const struct nbd_conn *c, uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:
        return NBD_CMD_FLAG_FUA | (c->structured ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE_ZEROES:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    case NBD_CMD_BLOCK_STATUS:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
    default:
        return NBD_CMD_FLAG_FUA;
    }
}

int
nbd_cmd_run(struct nbd_conn *c, struct nbd_req *r)
{
    struct nbd_export *e = c->exp;
    uint16_t t = r->type;
    bool writes = t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES || t == NBD_CMD_TRIM;
    if (t > NBD_CMD_BLOCK_STATUS || t == NBD_CMD_DISC || (r->flags & ~allowed_flags(c, t)))
        return nbd_cmd_reply_error(c, r, NBD_EINVAL);
    if (t != NBD_CMD_FLUSH) {
        if (r->offset > e->size || r->len > e->size - r->offset)
            return nbd_cmd_reply_error(c, r, (t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES)
                                                 ? NBD_ENOSPC
                                                 : NBD_EINVAL);
        if (e->min_block > 1 && (!IS_ALIGNED(r->offset, e->min_block) ||
                                 !IS_ALIGNED(r->len, e->min_block)) && r->offset + r->len != e->size)
            return nbd_cmd_reply_error(c, r, NBD_EINVAL);
    }
    if (writes && e->readonly)
        return nbd_cmd_reply_error(c, r, NBD_EPERM);
    if (t == NBD_CMD_READ && r->len > NBD_MAX_PAYLOAD)
        return nbd_cmd_reply_error(c, r, c->structured ? NBD_EOVERFLOW : NBD_EINVAL);
    if (r->len == 0 && t != NBD_CMD_READ && t != NBD_CMD_FLUSH)
        return reply_ok(c, r);
    switch (t) {
    case NBD_CMD_READ:
        return cmd_read(c, r);
    case NBD_CMD_WRITE:
        return cmd_write(c, r);
    case NBD_CMD_FLUSH:
        return cmd_flush(c, r);
    case NBD_CMD_TRIM:
        return cmd_trim(c, r);
    case NBD_CMD_CACHE:
        return cmd_cache(c, r);
    case NBD_CMD_WRITE_ZEROES:
        return cmd_write_zeroes(c, r);
    default:
        return cmd_block_status(c, r);
    }
}
