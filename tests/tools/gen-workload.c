// SPDX-License-Identifier: MIT
/* gen-workload: print a seeded random qemu-io workload for the interop tests.
 *
 *   gen-workload SEED SIZE CLUSTER COUNT IMG_CMDS REF_CMDS [--no-discard]
 *
 * IMG_CMDS receives commands for the qcow2 image under test: pattern writes,
 * zero writes (with and without unmap), discards and flushes, with extents of
 * 512 B .. 1 MiB (log-uniform) at random, sometimes unaligned, offsets.
 * REF_CMDS receives the same workload for a raw reference image, with each
 * discard replaced by what qcow2 guarantees afterwards: the whole clusters
 * inside the range read as zeros (v3, or v2 without a backing file) and
 * parts of clusters are left alone.  --no-discard omits discards (v2 images
 * with a backing file, where a discard re-exposes the backing data). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;

static uint64_t
rnd(void)
{
    /* xorshift64*: small, fast, the same on every machine. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint64_t
rnd_below(uint64_t n)
{
    return rnd() % n;
}

/* A length between 512 B and 1 MiB, log-uniformly distributed. */
static uint64_t
rnd_len(void)
{
    unsigned bits = 9 + (unsigned)rnd_below(11); /* [2^9, 2^20) */
    uint64_t lo = 1ull << bits;
    return lo + rnd_below(lo);
}

int
main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: gen-workload SEED SIZE CLUSTER COUNT IMG_CMDS REF_CMDS "
                        "[--no-discard]\n");
        return 2;
    }
    rng_state = strtoull(argv[1], NULL, 0) * 0x9e3779b97f4a7c15ull + 1;
    uint64_t size = strtoull(argv[2], NULL, 0);
    uint64_t cs = strtoull(argv[3], NULL, 0);
    unsigned count = (unsigned)strtoul(argv[4], NULL, 0);
    bool discard = !(argc > 7 && !strcmp(argv[7], "--no-discard"));
    FILE *img = fopen(argv[5], "w"), *ref = fopen(argv[6], "w");
    if (!img || !ref) {
        perror("gen-workload");
        return 1;
    }
    for (unsigned i = 0; i < count; i++) {
        uint64_t len = rnd_len();
        if (len > size)
            len = size;
        uint64_t off = rnd_below(size - len + 1);
        if (rnd_below(10) != 0) { /* mostly sector aligned */
            off &= ~511ull;
            len = (len + 511) & ~511ull;
            if (off + len > size)
                len = size - off;
        }
        unsigned kind = (unsigned)rnd_below(100);
        if (kind < 60) {
            unsigned pat = 1 + (unsigned)rnd_below(255);
            fprintf(img, "write -q -P 0x%02x %" PRIu64 " %" PRIu64 "\n", pat, off, len);
            fprintf(ref, "write -q -P 0x%02x %" PRIu64 " %" PRIu64 "\n", pat, off, len);
        } else if (kind < 72) {
            fprintf(img, "write -q -z %" PRIu64 " %" PRIu64 "\n", off, len);
            fprintf(ref, "write -q -z %" PRIu64 " %" PRIu64 "\n", off, len);
        } else if (kind < 84) {
            fprintf(img, "write -q -z -u %" PRIu64 " %" PRIu64 "\n", off, len);
            fprintf(ref, "write -q -z %" PRIu64 " %" PRIu64 "\n", off, len);
        } else if (kind < 96 && discard) {
            fprintf(img, "discard -q %" PRIu64 " %" PRIu64 "\n", off, len);
            uint64_t a = (off + cs - 1) / cs * cs, b = (off + len) / cs * cs;
            if (a < b)
                fprintf(ref, "write -q -z %" PRIu64 " %" PRIu64 "\n", a, b - a);
        } else {
            fprintf(img, "flush\n");
            fprintf(ref, "flush\n");
        }
    }
    if (fclose(img) || fclose(ref)) {
        perror("gen-workload");
        return 1;
    }
    return 0;
}
