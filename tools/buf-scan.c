// SPDX-License-Identifier: MIT
/* Buffer scans (see buf-scan.h): zero detection and first-difference
 * search.  Data blocks usually differ from zero in their first word, so the
 * scans test 64-byte blocks (eight words ORed together, which compilers turn
 * into vector code) and only narrow down inside the block that hit. */
#include <string.h>

#include <stdint.h>

#include "buf-scan.h"

/* Words are loaded with memcpy: no alignment or aliasing assumptions, and
 * compilers emit plain loads for it. */
static inline uint64_t
load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

size_t
buf_first_nonzero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        uint64_t acc = load64(p + i) | load64(p + i + 8) | load64(p + i + 16) |
                       load64(p + i + 24) | load64(p + i + 32) | load64(p + i + 40) |
                       load64(p + i + 48) | load64(p + i + 56);
        if (acc)
            break;
    }
    for (; i + 8 <= len; i += 8)
        if (load64(p + i))
            break;
    for (; i < len; i++)
        if (p[i])
            return i;
    return len;
}

bool
buf_is_zero(const void *buf, size_t len)
{
    /* The first word decides for almost every data block. */
    if (len >= 8 && load64(buf))
        return false;
    return buf_first_nonzero(buf, len) == len;
}

size_t
buf_first_diff(const void *a, const void *b, size_t len)
{
    const uint8_t *x = a, *y = b;
    /* memcmp is the C library's vectorized compare; it only says whether a
     * block differs, so find the block first and the byte inside it after. */
    const size_t block = 4096;
    size_t i = 0;
    while (i < len) {
        size_t n = len - i < block ? len - i : block;
        if (memcmp(x + i, y + i, n) != 0)
            break;
        i += n;
    }
    for (; i < len; i++)
        if (x[i] != y[i])
            return i;
    return len;
}
