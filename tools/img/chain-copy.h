// SPDX-License-Identifier: MIT
/* What `topcow commit` and `topcow rebase` share: a pipelined copy engine
 * that walks an address space, lets a job decide (under a lock, in order)
 * which runs need work, reads and compares them in parallel reader threads,
 * and writes the results in order from one writer; plus the small helpers
 * both commands need (cache modes, relative backing names, chain lookup). */
#ifndef TOPCOW_TOOLS_CHAIN_COPY_H
#define TOPCOW_TOOLS_CHAIN_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topcow.h"

/* Bytes of address space per unit of work, and per buffer: big enough to
 * amortize per-request costs, small enough to stay in the CPU caches. */
#define CHAIN_UNIT (1u << 20)

/* A run of a unit that the job's plan callback marked with kind != 0. */
struct chain_seg {
    uint64_t off, len;
    unsigned kind;
};

/* A write the writer issues: @data NULL means write_zeroes. */
struct chain_write {
    uint64_t off, len;
    const uint8_t *data;
};

struct chain_unit {
    uint64_t start, end;       /* the range of the address space */
    uint8_t *buf[2];           /* CHAIN_UNIT bytes each; buf[i][0] is byte start */
    struct chain_seg *segs;    /* runs needing work, in order, inside [start, end) */
    size_t nsegs, segs_cap;
    struct chain_write *writes; /* filled by the work callback */
    size_t nwrites, writes_cap;
    const char *fail_what;     /* set by a failing work callback: "reading", ... */
    uint64_t fail_off;
    /* engine-private */
    int state;
    uint64_t seq;
};

struct chain_job {
    struct topcow_image *dst;  /* where the writes go */
    uint64_t size;             /* the address space to walk: [0, size) */
    unsigned workers;          /* reader threads, >= 1 */
    unsigned zero_flags;       /* flags for topcow_image_write_zeroes */
    /* Classify the run at @off of at most @len bytes: store its kind (0:
     * nothing to do) in *@kind and its length (1..@len) in *@n.  Calls are
     * serialized and in increasing offset order.  Returns 0 or -errno (the
     * library's message is printed). */
    int (*plan)(void *opaque, uint64_t off, uint64_t len, unsigned *kind, uint64_t *n);
    /* Read (and compare) the segments of @u into its buffers and queue the
     * writes with chain_add_write().  Runs in several threads at once.
     * Returns 0, or -errno after setting u->fail_what and u->fail_off; the
     * library's message (or strerror for -ENOMEM) is printed. */
    int (*work)(void *opaque, struct chain_unit *u);
    /* After each written unit, with the bytes of address space done so far;
     * calls are serialized.  May be NULL. */
    void (*progress)(void *progress_opaque, uint64_t done, uint64_t total);
    void *opaque;          /* for plan and work */
    void *progress_opaque; /* for progress */
};

/* Queue a write of [@off, @off+@len) from @data (NULL: zeros). */
int chain_add_write(struct chain_unit *u, uint64_t off, uint64_t len, const uint8_t *data);

/* Read [@off, @off+@len) of @img into @buf for a work callback.  On failure
 * set u->fail_what to @what and u->fail_off to the start of the first
 * 64 KiB piece that fails to read (so the message names the bad cluster,
 * not the start of a long run), and return -errno. */
int chain_pread(struct chain_unit *u, struct topcow_image *img, void *buf, size_t len,
                uint64_t off, const char *what);

/* Run the job.  Returns 0, or -errno after printing one line naming the
 * failed operation and offset. */
int chain_copy_run(const struct chain_job *job);

/* @name as seen from the image @overlay: relative names are relative to
 * the overlay's directory, as qemu resolves backing file names.  Caller
 * frees; NULL when out of memory. */
char *chain_resolve(const char *overlay, const char *name);

/* Whether @name, given on the command line to name a backing file, names
 * @backing, the resolved backing file name of the image @overlay: @name is
 * resolved against @overlay's directory and both are compared canonicalized
 * (qemu's bdrv_find_backing_image, one layer). */
bool chain_names(const char *overlay, const char *backing, const char *name);

/* The depth in @top's backing chain (1 = @top's backing file) of the layer
 * that is the same file as @path (compared canonicalized), or 0. */
unsigned chain_depth_of(struct topcow_image *top, const char *path);

/* A progress callback for chain_job: qemu-img -p percentages, printed when
 * they moved by at least 1%.  @opaque points at a double, the last shown
 * (start it at 0). */
void chain_progress(void *opaque, uint64_t done, uint64_t total);

#endif
