// SPDX-License-Identifier: MIT
/* Strict decimal numbers from untrusted text (manifests, S3 replies):
 * digits only, no sign, no spaces, no overflow. */
#ifndef TOPCOW_PARSE_NUMBER_H
#define TOPCOW_PARSE_NUMBER_H

#include <stdbool.h>
#include <stdint.h>

/* *@out = the decimal number @s; false for an empty string, anything but
 * digits, or a value over UINT64_MAX.  With @canonical, a leading zero
 * (other than "0" itself) is refused too, so each value has one spelling. */
static inline bool
parse_decimal_u64(const char *s, bool canonical, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s || (canonical && s[0] == '0' && s[1]))
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

#endif
