// SPDX-License-Identifier: MIT
/* Byte-level storage backends behind one vtable (modelled on SQLite's
 * sqlite3_io_methods and nbdkit plugins).  A format driver reads and writes
 * bytes through these wrappers and never knows which backend it sits on;
 * this layer knows nothing about formats.
 *
 * Every operation passes through the io_*() wrappers in io.c, the single
 * choke point that counts operations, bytes and errors for `topcow top`. */
#ifndef TOPCOW_IO_H
#define TOPCOW_IO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Open flags for backends. */
#define IO_RDONLY (1u << 0)      /* no writes */
#define IO_CREATE (1u << 1)      /* create or truncate to zero length */
#define IO_DIRECT (1u << 2)      /* bypass the page cache (O_DIRECT) */
#define IO_NOLOCK (1u << 3)      /* take no image lock (qemu-img -U) */
#define IO_EXCL (1u << 4)        /* with IO_CREATE: fail if the file exists */
#define IO_URING (1u << 5)       /* batched reads through io_uring where the kernel allows */

/* write_zeroes flags. */
#define IO_ZERO_MAY_UNMAP (1u << 0) /* may punch a hole */
#define IO_ZERO_FAST (1u << 1)      /* fail with -ENOTSUP instead of writing zeros */

enum io_op_kind {
    IO_OP_READ,
    IO_OP_WRITE,
    IO_OP_FLUSH,
    IO_OP_ZERO,
    IO_OP_DISCARD,
    IO_OP_TRUNCATE,
    IO_OP_KINDS
};

/* Live counters, updated lock-free by the wrappers. */
struct io_stats {
    _Atomic uint64_t ops[IO_OP_KINDS];
    _Atomic uint64_t bytes[IO_OP_KINDS];
    _Atomic uint64_t errors[IO_OP_KINDS];
    _Atomic uint64_t nsec[IO_OP_KINDS];   /* summed wall time */
};

enum io_thread_model {
    IO_SERIALIZE, /* the wrappers serialize calls on one mutex */
    IO_PARALLEL,  /* calls may run concurrently */
};

struct io;

/* One read of a batch (io_pread_batch). */
struct io_seg {
    void *buf;
    size_t len;       /* > 0 */
    uint64_t off;
};

struct io_ops {
    size_t struct_size;                 /* sizeof(struct io_ops) when the backend was built */
    const char *name;                   /* "file", "mem", "crash", "faulty" */
    enum io_thread_model thread_model;
    void (*close)(struct io *io);
    /* Full-length transfers: return 0 or -errno; a short transfer is an error.
     * Reads past the end of the storage return zeros. */
    int (*pread)(struct io *io, void *buf, size_t len, uint64_t off);
    int (*pwrite)(struct io *io, const void *buf, size_t len, uint64_t off);
    int (*flush)(struct io *io);
    int (*get_size)(struct io *io, uint64_t *size);
    int (*truncate)(struct io *io, uint64_t size);
    /* Optional (NULL: the wrapper emulates or returns -ENOTSUP): */
    int (*pwritev)(struct io *io, const struct iovec *iov, int iovcnt, uint64_t off);
    int (*write_zeroes)(struct io *io, uint64_t off, uint64_t len, unsigned flags);
    int (*discard)(struct io *io, uint64_t off, uint64_t len);
    /* Allocate space without changing contents (posix_fallocate semantics). */
    int (*preallocate)(struct io *io, uint64_t off, uint64_t len);
    /* Whether [off, off+len) starts with data or a hole; *pnum = length of the
     * run (>= 1).  Past the end: a hole to infinity. */
    int (*block_status)(struct io *io, uint64_t off, uint64_t len, bool *is_data, uint64_t *pnum);
    /* Bytes allocated on the host (st_blocks * 512). */
    int (*allocated_size)(struct io *io, uint64_t *bytes);
    /* Read several segments, in any order or at once (NULL: the wrapper
     * reads them one by one). */
    int (*pread_batch)(struct io *io, const struct io_seg *segs, unsigned n);
    /* append only */
};

/* The base of every backend object; backends embed it as their first member. */
struct io {
    const struct io_ops *ops;
    char *name;                 /* file name or description, for messages */
    unsigned flags;             /* IO_* flags it was opened with */
    unsigned alignment;         /* required buffer/offset alignment (1, or 512/4096 with O_DIRECT) */
    struct io_stats *stats;     /* where the wrappers count: own_stats, or the published
                                 * statistics of the image layer the file belongs to */
    struct io_stats own_stats;
    pthread_mutex_t *serialize; /* non-NULL for IO_SERIALIZE backends */
};

/* Initialise the base part of a backend object.  @name is copied.  Returns 0
 * or -ENOMEM. */
int io_base_init(struct io *io, const struct io_ops *ops, const char *name, unsigned flags);
/* Release the base part (called by backends' close). */
void io_base_fini(struct io *io);

/* The wrappers.  Same contracts as the ops; they count every call. */
int io_pread(struct io *io, void *buf, size_t len, uint64_t off);
/* Read @n segments (each counted as one read); the backend may overlap them.
 * Returns 0 or the -errno of a failed segment (the others' buffers are then
 * unspecified). */
int io_pread_batch(struct io *io, const struct io_seg *segs, unsigned n);
int io_pwrite(struct io *io, const void *buf, size_t len, uint64_t off);
int io_pwritev(struct io *io, const struct iovec *iov, int iovcnt, uint64_t off);
int io_flush(struct io *io);
int io_get_size(struct io *io, uint64_t *size);
int io_truncate(struct io *io, uint64_t size);
int io_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags);
int io_discard(struct io *io, uint64_t off, uint64_t len);
int io_preallocate(struct io *io, uint64_t off, uint64_t len);
int io_block_status(struct io *io, uint64_t off, uint64_t len, bool *is_data, uint64_t *pnum);
int io_allocated_size(struct io *io, uint64_t *bytes);
/* Close and free; NULL is a no-op. */
void io_close(struct io *io);

/* Backends.  Each returns 0 and a new object in *@out, or -errno. */

/* A host file.  Takes the image lock QEMU uses (OFD locks on bytes 100.. and
 * 200..) unless IO_NOLOCK: a writer excludes other writers, a reader
 * excludes writers; the error names the file and says it is in use. */
int io_file_open(const char *path, unsigned flags, struct io **out);

/* A growable buffer in memory, initially empty. */
int io_mem_open(const char *name, struct io **out);

#endif
