// SPDX-License-Identifier: MIT
/* The data movers behind `topcow convert` and `topcow compare`: the parallel
 * copy engine (convert-copy.c) and the buffer scans both commands use
 * (convert-zero.c).  Work is split into units of CONVERT_UNIT bytes of the
 * target's address space; reader threads query block status, read and scan
 * units, and a writer writes them. */
#ifndef TOPCOW_TOOLS_CONVERT_H
#define TOPCOW_TOOLS_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topcow.h"

/* Bytes of target address space per work unit (and per buffer): big enough
 * to amortize the per-request costs, small enough that the buffers in flight
 * stay in the CPU caches between their read, scan and write. */
#define CONVERT_UNIT (1u << 20)

/* One input image: its bytes [0, size) followed by zeros up to span. */
struct convert_source {
    struct topcow_image *img;
    const char *name;
    uint64_t size;  /* topcow_image_size() */
    uint64_t span;  /* size rounded up to 512 bytes, as qemu-img sizes images */
    uint64_t start; /* target offset of the first byte; sources are consecutive */
};

/* Called after each committed unit with the bytes of target space finished so
 * far; calls are serialized. */
typedef void (*convert_progress_fn)(void *opaque, uint64_t done, uint64_t total);

struct convert_job {
    const struct convert_source *srcs;
    size_t nsrcs;
    struct topcow_image *dst;
    uint64_t size;       /* sum of the spans: the bytes to produce */
    unsigned workers;    /* reader threads, as qemu-img -m counts requests; >= 1 */
    bool out_of_order;   /* -W: commit units as they finish */
    /* With out_of_order: several writer threads.  Leave it off for buffered
     * targets: the kernel serializes buffered writes to one file on its inode
     * lock anyway, and writers queued there spin, taking the CPU from the
     * readers. */
    bool parallel_writes;
    uint64_t min_sparse; /* -S: zero runs of at least this many bytes inside data are
                          * not written; 0 writes everything, holes included */
    uint64_t granule;    /* the target's allocation unit (cluster size, or a file
                          * system block): zero detection works on whole granules */
    bool zero_init;      /* the target already reads as zeros: zero runs are skipped,
                          * otherwise they are written with write_zeroes */
    bool top_only;       /* copy only what the sources' top layers define (-B) */
    bool compress;       /* -c: store data as compressed clusters; granule is the
                          * target's cluster size */
    convert_progress_fn progress;
    void *opaque;
};

/* Copy the sources into job->dst.  Returns 0, or -errno with one line
 * naming the failed operation and offset in @msg (the caller prints it, with
 * what became of the output). */
int convert_run(const struct convert_job *job, char *msg, size_t msglen);

/* convert --keep-chain (convert-keep-chain.c): the options every layer's
 * conversion shares. */
struct optlist;
struct convert_chain_opts {
    const char *out;        /* the top layer's output; the others are named after it */
    const char *out_fmt;
    struct optlist *ol;     /* -o options, for every layer */
    unsigned dst_flags;     /* open flags of the outputs */
    unsigned workers;
    bool out_of_order;
    uint64_t min_sparse;
    bool compress;
    convert_progress_fn progress; /* over the whole chain; NULL: none */
    void *opaque;
};

/* The output name of the layer @depth levels below the top (0: @out):
 * ".DEPTH" inserted before the extension of @out's file name, or appended
 * when it has none.  NULL when out of memory; the caller frees. */
char *convert_chain_layer_name(const char *out, unsigned depth);

/* Convert @src and each image of its backing chain into its own new image,
 * each backed by the next, so that the outputs form a chain that mirrors
 * the source's; each output holds only what its layer defines.  Returns 0,
 * or -1 with the failure printed and every output created removed. */
int convert_keep_chain(struct topcow_image *src, const struct convert_chain_opts *o);

#endif
