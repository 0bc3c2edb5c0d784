// SPDX-License-Identifier: MIT
/* Small arithmetic helpers: min/max, alignment, rounding.  Alignment helpers
 * require a power-of-two alignment. */
#ifndef TOPCOW_COMMON_MINMAX_H
#define TOPCOW_COMMON_MINMAX_H

#include <stdbool.h>
#include <stdint.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define IS_ALIGNED(x, a) ((((uint64_t)(x)) & ((uint64_t)(a) - 1)) == 0)
#define ALIGN_DOWN(x, a) (((uint64_t)(x)) & ~((uint64_t)(a) - 1))
#define ALIGN_UP(x, a) ALIGN_DOWN((uint64_t)(x) + (uint64_t)(a) - 1, (a))
#define DIV_ROUND_UP(x, d) (((x) + (d) - 1) / (d))

static inline bool
is_power_of_2(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

/* Return log2(v) for a power of two. */
static inline unsigned
log2_u64(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

#endif
