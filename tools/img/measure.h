// SPDX-License-Identifier: MIT
/* Size arithmetic behind `topcow measure`: how many bytes a qcow2 image of
 * a given geometry occupies when every cluster is allocated, and how much
 * room the persistent bitmaps of a source image would take in it.  Pure
 * functions of their arguments (measure.c), so they are easy to check
 * against qemu-img's numbers. */
#ifndef TOPCOW_TOOLS_MEASURE_H
#define TOPCOW_TOOLS_MEASURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topcow.h"

/* The geometry of a qcow2 image to be created. */
struct measure_geometry {
    uint32_t cluster_size; /* power of two, 512 .. 2 MiB */
    unsigned refcount_bits;  /* 1, 2, 4, ... 64 */
    bool extended_l2;      /* 16-byte L2 entries instead of 8 */
};

/* qemu-img's limit on the active L1 table, which caps the virtual size a
 * cluster size can address. */
#define MEASURE_MAX_L1_BYTES (32u << 20)

/* The number of L2 tables needed to map @virtual_size bytes (rounded up to
 * whole clusters).  The caller compares L2 tables * 8 (the L1 table) with
 * MEASURE_MAX_L1_BYTES. */
uint64_t measure_l2_tables(uint64_t virtual_size, const struct measure_geometry *g);

/* Bytes of a qcow2 file of @virtual_size bytes (rounded up to whole
 * clusters) with every data cluster allocated: header, L1 and L2 tables,
 * the refcount table and blocks that count all of it and themselves, and
 * the data.  @virtual_size must pass the L1 limit above. */
uint64_t measure_qcow2_full(uint64_t virtual_size, const struct measure_geometry *g);

/* One persistent bitmap of the source image. */
struct measure_bitmap {
    uint64_t granularity; /* bytes per bit */
    uint32_t name_len;
};

/* Bytes needed to store @n bitmaps covering @virtual_size bytes in an image
 * with @cluster_size clusters: each bitmap fully allocated plus its bitmap
 * table, plus the bitmap directory. */
uint64_t measure_bitmaps(const struct measure_bitmap *bm, size_t n, uint64_t virtual_size,
                         uint32_t cluster_size);

/* Read the persistent bitmaps of the qcow2 image at @path (its top layer
 * only) into a malloc'ed array *@bmp of *@np entries.  Returns 0, or -1
 * after printing a message.  Until the library exposes bitmaps this reads
 * the header extension and the bitmap directory itself through a raw open
 * of the file. */
int measure_read_bitmaps(const char *path, struct measure_bitmap **bmp, size_t *np);

/* Parse a size the way qemu-img's option parser does (qemu_strtosz): a
 * decimal number, or 0x hex, with an optional suffix b, k, M, G, T, P, E
 * (powers of 1024, either case); a fraction needs a suffix other than b.
 * Returns 0, -1 for malformed input, or -2 when the value does not fit in
 * 64 bits.  Shared by measure and dd. */
int cvtnum(const char *s, uint64_t *out);

#endif
