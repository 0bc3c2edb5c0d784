// SPDX-License-Identifier: MIT
/* The fault-injecting backend (test only): passes every call through to a
 * lower backend, counts calls by kind, and fails the armed Nth call (or every
 * call from the Nth on) with a chosen errno before it reaches the lower
 * backend.  Drivers count a clean run first, then iterate N over it (curl's
 * -t torture loop, libnbd's errors-*.c). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "error.h"
#include "io-test.h"

struct faulty_io {
    struct io base;
    struct io *lower;
    _Atomic uint64_t calls[IO_FAULT_KINDS];
    _Atomic uint64_t injected;
    /* The armed fault; changed only with no I/O in flight. */
    bool armed;
    enum io_fault_kind kind;
    uint64_t nth;
    int err;
    bool persist;
};

static struct faulty_io *
to_faulty(struct io *io)
{
    return (struct faulty_io *)io;
}

/* Count a call of @kind; return the injected error if it is to fail. */
static int
fault(struct faulty_io *f, enum io_fault_kind kind)
{
    uint64_t n = atomic_fetch_add(&f->calls[kind], 1) + 1;
    if (!f->armed || kind != f->kind || n < f->nth || (n > f->nth && !f->persist))
        return 0;
    atomic_fetch_add(&f->injected, 1);
    return f->err;
}

static int
faulty_pread(struct io *io, void *buf, size_t len, uint64_t off)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_READ);
    return r ? r : io_pread(f->lower, buf, len, off);
}

static int
faulty_pwrite(struct io *io, const void *buf, size_t len, uint64_t off)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_WRITE);
    return r ? r : io_pwrite(f->lower, buf, len, off);
}

static int
faulty_pwritev(struct io *io, const struct iovec *iov, int iovcnt, uint64_t off)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_WRITE);
    return r ? r : io_pwritev(f->lower, iov, iovcnt, off);
}

static int
faulty_flush(struct io *io)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_FLUSH);
    return r ? r : io_flush(f->lower);
}

static int
faulty_get_size(struct io *io, uint64_t *size)
{
    return io_get_size(to_faulty(io)->lower, size);
}

static int
faulty_truncate(struct io *io, uint64_t size)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_TRUNCATE);
    return r ? r : io_truncate(f->lower, size);
}

static int
faulty_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_ZERO);
    return r ? r : io_write_zeroes(f->lower, off, len, flags);
}

static int
faulty_discard(struct io *io, uint64_t off, uint64_t len)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_DISCARD);
    return r ? r : io_discard(f->lower, off, len);
}

static int
faulty_preallocate(struct io *io, uint64_t off, uint64_t len)
{
    struct faulty_io *f = to_faulty(io);
    int r = fault(f, IO_FAULT_ZERO);
    return r ? r : io_preallocate(f->lower, off, len);
}

static int
faulty_block_status(struct io *io, uint64_t off, uint64_t len, bool *is_data, uint64_t *pnum)
{
    return io_block_status(to_faulty(io)->lower, off, len, is_data, pnum);
}

static int
faulty_allocated_size(struct io *io, uint64_t *bytes)
{
    return io_allocated_size(to_faulty(io)->lower, bytes);
}

static void
faulty_close(struct io *io)
{
    io_base_fini(io);
    free(to_faulty(io));
}

static const struct io_ops io_faulty_ops = {
    .struct_size = sizeof(struct io_ops),
    .name = "faulty",
    .thread_model = IO_PARALLEL,
    .close = faulty_close,
    .pread = faulty_pread,
    .pwrite = faulty_pwrite,
    .flush = faulty_flush,
    .get_size = faulty_get_size,
    .truncate = faulty_truncate,
    .pwritev = faulty_pwritev,
    .write_zeroes = faulty_write_zeroes,
    .discard = faulty_discard,
    .preallocate = faulty_preallocate,
    .block_status = faulty_block_status,
    .allocated_size = faulty_allocated_size,
};

int
io_faulty_open(struct io *lower, struct io **out)
{
    struct faulty_io *f = calloc(1, sizeof *f);
    if (!f)
        return err_set(-ENOMEM, "out of memory");
    int r = io_base_init(&f->base, &io_faulty_ops, lower->name, lower->flags);
    if (r < 0) {
        free(f);
        return r;
    }
    f->base.alignment = lower->alignment;
    f->lower = lower;
    *out = &f->base;
    return 0;
}

void
io_faulty_arm(struct io *io, enum io_fault_kind kind, uint64_t nth, int neg_errno, unsigned flags)
{
    struct faulty_io *f = to_faulty(io);
    f->kind = kind;
    f->nth = nth ? nth : 1;
    f->err = neg_errno < 0 ? neg_errno : -EIO;
    f->persist = flags & IO_FAULT_PERSIST;
    f->armed = true;
}

void
io_faulty_disarm(struct io *io)
{
    to_faulty(io)->armed = false;
}

uint64_t
io_faulty_calls(struct io *io, enum io_fault_kind kind)
{
    return atomic_load(&to_faulty(io)->calls[kind]);
}

uint64_t
io_faulty_injected(struct io *io)
{
    return atomic_load(&to_faulty(io)->injected);
}

const char *
io_fault_kind_name(enum io_fault_kind kind)
{
    static const char *const names[IO_FAULT_KINDS] = {"read", "write", "flush", "truncate", "zero",
                                                              "discard"};
    return kind < IO_FAULT_KINDS ? names[kind] : "?";
}
