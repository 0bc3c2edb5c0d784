// SPDX-License-Identifier: MIT
/* Whole files in and out for the cloud test tools (s3-tool, store-tool):
 * read a file into a new buffer, write a buffer to a file or "-" (stdout).
 * Errors return -errno with a message, as the library's do. */
#ifndef TOPCOW_TESTS_TOOL_FILES_H
#define TOPCOW_TESTS_TOOL_FILES_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static inline int
read_file(const char *path, void **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set_errno(-errno, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    *data = buf;
    *len = n;
    return 0;
}

static inline int
write_out(const char *path, const void *data, size_t len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
    if (!f)
        return err_set_errno(-errno, "cannot create %s", path);
    size_t w = fwrite(data, 1, len, f);
    int bad = f == stdout ? fflush(f) : fclose(f);
    return w != len || bad ? err_set(-EIO, "cannot write %s", path) : 0;
}

#endif
