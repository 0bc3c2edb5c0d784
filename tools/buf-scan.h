// SPDX-License-Identifier: MIT
/* Buffer scans (buf-scan.c): zero detection and first-difference search,
 * for convert, compare, rebase and serve's --detect-zeroes. */
#ifndef TOPCOW_TOOLS_BUF_SCAN_H
#define TOPCOW_TOOLS_BUF_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* Whether @len bytes at @p are all zero. */
bool buf_is_zero(const void *p, size_t len);

/* The index of the first non-zero byte of @p, or @len if there is none. */
size_t buf_first_nonzero(const void *p, size_t len);

/* The index of the first byte where @a and @b differ, or @len. */
size_t buf_first_diff(const void *a, const void *b, size_t len);

#endif
