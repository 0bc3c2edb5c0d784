// SPDX-License-Identifier: MIT
/* The io_*() wrappers: the single choke point every byte-level operation goes
 * through.  They count operations, bytes, errors and time per kind, serialize
 * backends that asked for it, and emulate optional methods a backend lacks. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "minmax.h"
#include "error.h"
#include "io.h"

int
io_base_init(struct io *io, const struct io_ops *ops, const char *name, unsigned flags)
{
    io->ops = ops;
    io->flags = flags;
    io->alignment = 1;
    io->stats = &io->own_stats;
    io->name = strdup(name ? name : "");
    if (!io->name)
        return err_set(-ENOMEM, "out of memory");
    if (ops->thread_model == IO_SERIALIZE) {
        io->serialize = malloc(sizeof *io->serialize);
        if (!io->serialize) {
            free(io->name);
            return err_set(-ENOMEM, "out of memory");
        }
        pthread_mutex_init(io->serialize, NULL);
    }
    return 0;
}

void
io_base_fini(struct io *io)
{
    if (io->serialize) {
        pthread_mutex_destroy(io->serialize);
        free(io->serialize);
    }
    free(io->name);
}

/* Run one backend call and account for it.  The call is an expression using
 * the backend's op; the macro keeps locking and counting in one place. */
#define ACCOUNTED(io, kind, nbytes, call)                                                          \
    ({                                                                                             \
        uint64_t t0_ = clock_ns(CLOCK_MONOTONIC);                                                                   \
        if ((io)->serialize)                                                                       \
            pthread_mutex_lock((io)->serialize);                                                   \
        int r_ = (call);                                                                           \
        if ((io)->serialize)                                                                       \
            pthread_mutex_unlock((io)->serialize);                                                 \
        account((io), (kind), (nbytes), r_, clock_ns(CLOCK_MONOTONIC) - t0_);                                       \
        r_;                                                                                        \
    })

static void
account(struct io *io, enum io_op_kind kind, uint64_t bytes, int r, uint64_t ns)
{
    atomic_fetch_add_explicit(&io->stats->ops[kind], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&io->stats->nsec[kind], ns, memory_order_relaxed);
    if (r < 0)
        atomic_fetch_add_explicit(&io->stats->errors[kind], 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&io->stats->bytes[kind], bytes, memory_order_relaxed);
}

/* Messages for backend failures name the file; a backend that already set a
 * more precise message keeps it. */
static int
io_fail(struct io *io, const char *what, int r, uint64_t off)
{
    if (!err_is_set())
        err_set_errno(r, "%s: %s failed at offset %llu", io->name, what,
                      (unsigned long long)off);
    return r;
}

int
io_pread(struct io *io, void *buf, size_t len, uint64_t off)
{
    assert(len > 0);
    int r = ACCOUNTED(io, IO_OP_READ, len, io->ops->pread(io, buf, len, off));
    return r < 0 ? io_fail(io, "read", r, off) : 0;
}

int
io_pread_batch(struct io *io, const struct io_seg *segs, unsigned n)
{
    if (!io->ops->pread_batch || io->serialize || n == 1) {
        for (unsigned i = 0; i < n; i++) {
            int r = io_pread(io, segs[i].buf, segs[i].len, segs[i].off);
            if (r < 0)
                return r;
        }
        return 0;
    }
    uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
    for (unsigned i = 0; i < n; i++)
        assert(segs[i].len > 0);
    int r = io->ops->pread_batch(io, segs, n);
    uint64_t ns = clock_ns(CLOCK_MONOTONIC) - t0;
    /* n reads, the batch's time shared among them. */
    for (unsigned i = 0; i < n; i++)
        account(io, IO_OP_READ, segs[i].len, r, ns / n);
    return r < 0 ? io_fail(io, "read", r, segs[0].off) : 0;
}

int
io_pwrite(struct io *io, const void *buf, size_t len, uint64_t off)
{
    assert(len > 0);
    if (io->flags & IO_RDONLY)
        return err_set(-EROFS, "%s: opened read-only", io->name);
    int r = ACCOUNTED(io, IO_OP_WRITE, len, io->ops->pwrite(io, buf, len, off));
    return r < 0 ? io_fail(io, "write", r, off) : 0;
}

static int
pwritev_emulated(struct io *io, const struct iovec *iov, int iovcnt, uint64_t off)
{
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        int r = io->ops->pwrite(io, iov[i].iov_base, iov[i].iov_len, off);
        if (r < 0)
            return r;
        off += iov[i].iov_len;
    }
    return 0;
}

int
io_pwritev(struct io *io, const struct iovec *iov, int iovcnt, uint64_t off)
{
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    if (io->flags & IO_RDONLY)
        return err_set(-EROFS, "%s: opened read-only", io->name);
    int r = ACCOUNTED(io, IO_OP_WRITE, total,
                      io->ops->pwritev ? io->ops->pwritev(io, iov, iovcnt, off)
                                       : pwritev_emulated(io, iov, iovcnt, off));
    return r < 0 ? io_fail(io, "write", r, off) : 0;
}

int
io_flush(struct io *io)
{
    if (io->flags & IO_RDONLY)
        return 0;
    int r = ACCOUNTED(io, IO_OP_FLUSH, 0, io->ops->flush(io));
    return r < 0 ? io_fail(io, "flush", r, 0) : 0;
}

int
io_get_size(struct io *io, uint64_t *size)
{
    int r = io->ops->get_size(io, size);
    return r < 0 ? io_fail(io, "size query", r, 0) : 0;
}

int
io_truncate(struct io *io, uint64_t size)
{
    if (io->flags & IO_RDONLY)
        return err_set(-EROFS, "%s: opened read-only", io->name);
    int r = ACCOUNTED(io, IO_OP_TRUNCATE, 0, io->ops->truncate(io, size));
    return r < 0 ? io_fail(io, "truncate", r, size) : 0;
}

/* Write zeros from a static zero buffer, a chunk at a time. */
static int
zero_by_writing(struct io *io, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[256 * 1024];
    while (len > 0) {
        size_t n = (size_t)MIN(len, sizeof zeros);
        int r = io->ops->pwrite(io, zeros, n, off);
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

static int
do_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags)
{
    if (io->ops->write_zeroes) {
        int r = io->ops->write_zeroes(io, off, len, flags);
        if (r != -ENOTSUP)
            return r;
    }
    if (flags & IO_ZERO_FAST)
        return -ENOTSUP;
    return zero_by_writing(io, off, len);
}

int
io_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags)
{
    if (len == 0)
        return 0;
    if (io->flags & IO_RDONLY)
        return err_set(-EROFS, "%s: opened read-only", io->name);
    int r = ACCOUNTED(io, IO_OP_ZERO, len, do_write_zeroes(io, off, len, flags));
    if (r == -ENOTSUP)
        return r; /* only with IO_ZERO_FAST; callers fall back quietly */
    return r < 0 ? io_fail(io, "write zeroes", r, off) : 0;
}

int
io_discard(struct io *io, uint64_t off, uint64_t len)
{
    if (len == 0 || !io->ops->discard)
        return 0; /* discard is advisory */
    if (io->flags & IO_RDONLY)
        return err_set(-EROFS, "%s: opened read-only", io->name);
    int r = ACCOUNTED(io, IO_OP_DISCARD, len, io->ops->discard(io, off, len));
    if (r == -ENOTSUP || r == -EOPNOTSUPP)
        return 0;
    return r < 0 ? io_fail(io, "discard", r, off) : 0;
}

int
io_preallocate(struct io *io, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    if (!io->ops->preallocate)
        return err_set(-ENOTSUP, "%s: preallocation not supported by the %s backend",
                       io->name, io->ops->name);
    int r = ACCOUNTED(io, IO_OP_ZERO, 0, io->ops->preallocate(io, off, len));
    return r < 0 ? io_fail(io, "preallocate", r, off) : 0;
}

int
io_block_status(struct io *io, uint64_t off, uint64_t len, bool *is_data, uint64_t *pnum)
{
    if (!io->ops->block_status) {
        *is_data = true;
        *pnum = len;
        return 0;
    }
    int r = io->ops->block_status(io, off, len, is_data, pnum);
    if (r < 0)
        return io_fail(io, "block status", r, off);
    if (*pnum == 0 || *pnum > len)
        *pnum = len;
    return 0;
}

int
io_allocated_size(struct io *io, uint64_t *bytes)
{
    if (!io->ops->allocated_size) {
        *bytes = 0;
        return -ENOTSUP;
    }
    return io->ops->allocated_size(io, bytes);
}

void
io_close(struct io *io)
{
    if (io)
        io->ops->close(io);
}
