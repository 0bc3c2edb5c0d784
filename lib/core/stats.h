// SPDX-License-Identifier: MIT
/* Live statistics of open images (topcow.h, "Live statistics").
 *
 * An image opened at the top of a chain owns one stats_region: in a shared
 * memory file in the statistics directory when publishing works, in private
 * memory otherwise.  Each layer of the chain (up to TOPCOW_STATS_MAX_LAYERS)
 * counts into its stats_layer inside that region, and its host file's io
 * wrapper counts into the layer's io_stats.  Images opened with statistics
 * off, layers too deep, and images still being opened have no region
 * (img->stats_region and img->stats are NULL) and count nothing.
 *
 * The region layout below is the file format readers map.  It changes only
 * with STATS_VERSION; readers skip files of another version.  Writers only
 * add to counters (relaxed atomics); the liveness of a file is its flock:
 * the owner holds a shared lock for as long as the image is open, so a
 * reader that can take an exclusive lock knows the owner is gone. */
#ifndef TOPCOW_STATS_H
#define TOPCOW_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "topcow.h"
#include "io.h"

#define STATS_MAGIC "TOPCOWST"
#define STATS_VERSION 1u
#define STATS_SUFFIX ".stats"

struct stats_layer {
    char filename[TOPCOW_STATS_NAME_MAX];
    char format[16];
    uint32_t depth;
    uint32_t reserved;
    _Atomic uint64_t ops[TOPCOW_STATS_OPS];
    _Atomic uint64_t bytes[TOPCOW_STATS_OPS];
    _Atomic uint64_t errors[TOPCOW_STATS_OPS];
    _Atomic uint64_t read_passed_down; /* read bytes handed to the layer below */
    struct io_stats host;
    _Atomic uint64_t l2_hits, l2_misses;
    _Atomic uint64_t refcount_hits, refcount_misses;
    _Atomic uint64_t clusters_allocated, data_clusters_allocated;
    _Atomic uint64_t cow_bytes;
    _Atomic uint64_t compressed_reads, decompress_nsec;
    _Atomic uint64_t discard_bytes;
};

struct stats_region {
    char magic[8];
    uint32_t version;
    uint32_t size;                  /* sizeof(struct stats_region) */
    _Atomic uint64_t pid;           /* rewritten in a child after fork */
    uint64_t id;
    uint64_t open_time_ns;
    char command[32];
    _Atomic uint64_t virtual_size;
    uint32_t read_only;
    uint32_t nlayers;
    _Atomic uint64_t clients;
    _Atomic uint64_t in_flight;
    _Atomic uint64_t zero_bytes_detected;
    _Atomic uint64_t latency[TOPCOW_STATS_OPS][TOPCOW_STATS_LAT_BUCKETS];
    _Atomic uint64_t latency_max_ns[TOPCOW_STATS_OPS];
    _Atomic uint64_t latency_nsec[TOPCOW_STATS_OPS];
    _Atomic uint64_t heat_read[TOPCOW_STATS_HEAT_BUCKETS];
    _Atomic uint64_t heat_write[TOPCOW_STATS_HEAT_BUCKETS];
    struct stats_layer layers[TOPCOW_STATS_MAX_LAYERS];
};

struct topcow_image;

/* Give @img (a fully opened top image) and its chain a region, published
 * when possible.  Never fails: statistics are best effort. */
void stats_publish(struct topcow_image *img);

/* Withdraw and free the region of @img; call after the chain is closed
 * (its layers count into the region until then).  @region may be NULL. */
void stats_unpublish(struct stats_region *region);

/* Copy @r into @st (which has @st->struct_size set). */
void stats_region_copy(const struct stats_region *r, struct topcow_stats *st);

/* Account one finished guest request on a top image's region: @t0 is
 * clock_ns(CLOCK_MONOTONIC) from when it started (after in_flight was raised). */
void stats_request_done(struct stats_region *r, struct stats_layer *l, enum topcow_stats_op op,
                        uint64_t off, uint64_t len, int ret, uint64_t t0);

/* Add @n to @counter; adding 0 costs no atomic operation. */
static inline void
stats_add(_Atomic uint64_t *counter, uint64_t n)
{
    if (n)
        atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* Add @n to field @field of layer @st (a struct stats_layer *, may be NULL). */
#define STATS_ADD(st, field, n)                                                                    \
    do {                                                                                           \
        struct stats_layer *st_ = (st);                                                            \
        if (st_)                                                                                   \
            stats_add(&st_->field, (n));                                                           \
    } while (0)

#endif
