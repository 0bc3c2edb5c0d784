// SPDX-License-Identifier: MIT
/* The memory backend: a growable byte buffer.  Used for scratch images and
 * as the durable store underneath the test-only crash backend.  Calls are
 * serialized by the io wrappers (IO_SERIALIZE). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "minmax.h"
#include "error.h"
#include "io.h"

struct mem_io {
    struct io base;
    uint8_t *data;
    uint64_t size;     /* logical size */
    uint64_t capacity; /* allocated bytes */
};

static struct mem_io *
to_mem(struct io *io)
{
    return (struct mem_io *)io;
}

static int
mem_reserve(struct mem_io *m, uint64_t size)
{
    if (size <= m->capacity)
        return 0;
    uint64_t cap = MAX(size, m->capacity * 2);
    if (cap > SIZE_MAX)
        return -ENOMEM;
    uint8_t *p = realloc(m->data, (size_t)cap);
    if (!p)
        return -ENOMEM;
    memset(p + m->capacity, 0, (size_t)(cap - m->capacity));
    m->data = p;
    m->capacity = cap;
    return 0;
}

static int
mem_pread(struct io *io, void *buf, size_t len, uint64_t off)
{
    struct mem_io *m = to_mem(io);
    size_t n = off >= m->size ? 0 : (size_t)MIN((uint64_t)len, m->size - off);
    if (n)
        memcpy(buf, m->data + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

static int
mem_pwrite(struct io *io, const void *buf, size_t len, uint64_t off)
{
    struct mem_io *m = to_mem(io);
    int r = mem_reserve(m, off + len);
    if (r < 0)
        return r;
    memcpy(m->data + off, buf, len);
    m->size = MAX(m->size, off + len);
    return 0;
}

static int
mem_flush(struct io *io)
{
    (void)io;
    return 0;
}

static int
mem_get_size(struct io *io, uint64_t *size)
{
    *size = to_mem(io)->size;
    return 0;
}

static int
mem_truncate(struct io *io, uint64_t size)
{
    struct mem_io *m = to_mem(io);
    int r = mem_reserve(m, size);
    if (r < 0)
        return r;
    if (size < m->size)
        memset(m->data + size, 0, (size_t)(m->size - size));
    m->size = size;
    return 0;
}

static int
mem_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags)
{
    (void)flags;
    struct mem_io *m = to_mem(io);
    int r = mem_reserve(m, off + len);
    if (r < 0)
        return r;
    memset(m->data + off, 0, (size_t)len);
    m->size = MAX(m->size, off + len);
    return 0;
}

static int
mem_discard(struct io *io, uint64_t off, uint64_t len)
{
    struct mem_io *m = to_mem(io);
    if (off >= m->size)
        return 0;
    memset(m->data + off, 0, (size_t)MIN(len, m->size - off));
    return 0;
}

static int
mem_preallocate(struct io *io, uint64_t off, uint64_t len)
{
    struct mem_io *m = to_mem(io);
    int r = mem_reserve(m, off + len);
    if (r == 0)
        m->size = MAX(m->size, off + len);
    return r;
}

static int
mem_allocated_size(struct io *io, uint64_t *bytes)
{
    *bytes = to_mem(io)->size;
    return 0;
}

static void
mem_close(struct io *io)
{
    struct mem_io *m = to_mem(io);
    free(m->data);
    io_base_fini(io);
    free(m);
}

static const struct io_ops io_mem_ops = {
    .struct_size = sizeof(struct io_ops),
    .name = "mem",
    .thread_model = IO_SERIALIZE,
    .close = mem_close,
    .pread = mem_pread,
    .pwrite = mem_pwrite,
    .flush = mem_flush,
    .get_size = mem_get_size,
    .truncate = mem_truncate,
    .write_zeroes = mem_write_zeroes,
    .discard = mem_discard,
    .preallocate = mem_preallocate,
    .allocated_size = mem_allocated_size,
};

int
io_mem_open(const char *name, struct io **out)
{
    struct mem_io *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(-ENOMEM, "out of memory");
    int r = io_base_init(&m->base, &io_mem_ops, name, 0);
    if (r < 0) {
        free(m);
        return r;
    }
    *out = &m->base;
    return 0;
}
