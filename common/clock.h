// SPDX-License-Identifier: MIT
/* Reading a clock in nanoseconds: CLOCK_MONOTONIC for intervals,
 * CLOCK_REALTIME for dates. */
#ifndef TOPCOW_COMMON_CLOCK_H
#define TOPCOW_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The same in milliseconds, for poll(2) deadlines. */
static inline int64_t
clock_ms(clockid_t clock)
{
    return (int64_t)(clock_ns(clock) / 1000000u);
}

#endif
