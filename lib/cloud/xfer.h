// SPDX-License-Identifier: MIT
/* Parallel chunk transfers for push and pull: a pool of worker threads,
 * each with its own connection to the store, taking chunk indices in turn;
 * the calling thread reports progress and collects the first error.  The
 * counters are atomic so workers update them without a lock. */
#ifndef TOPCOW_XFER_H
#define TOPCOW_XFER_H

#include <stdatomic.h>
#include <stdint.h>

#include "remote.h"
#include "topcow.h"

struct xfer;

/* What a worker runs for chunk @i with its own store @st and a buffer of
 * 2 * chunk_size bytes (room for a chunk and its compressed or decompressed
 * form).  Returns 0 or -errno with a message. */
typedef int (*xfer_chunk_fn)(struct xfer *x, struct store *st, uint64_t i, void *buf);

struct xfer {
    /* Set by the caller. */
    const struct remote *rm;
    const struct store_opts *sopts;
    uint64_t n_chunks;
    uint32_t chunk_size;
    uint64_t file_size;
    unsigned jobs;
    xfer_chunk_fn fn;
    void *opaque;
    const struct topcow_remote_opts *opts; /* progress callback */
    /* Counters the workers add to. */
    _Atomic uint64_t next;             /* the next chunk to take */
    _Atomic uint64_t done, bytes_done; /* chunks and file bytes finished */
    _Atomic uint64_t transferred, bytes_transferred, present, zero;
    _Atomic uint64_t requests, retries;
    _Atomic int failed;                /* first error, or 0 */
};

/* Run x->fn over every chunk on x->jobs threads (at least 1).  Returns 0 or
 * the first error, with its message, in the calling thread.  The requests
 * and retries of the workers' S3 connections are added to the counters. */
int xfer_run(struct xfer *x);

/* Record that a worker finished chunk @i of @bytes file bytes. */
void xfer_chunk_done(struct xfer *x, uint64_t bytes);

/* Bytes of chunk @i (the last one may be short). */
uint64_t xfer_chunk_len(const struct xfer *x, uint64_t i);

#endif
