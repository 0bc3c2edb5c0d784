// SPDX-License-Identifier: MIT
/* The parent of a differencing VHD: the dynamic header's parent locators
 * ("Implementing a Differencing Hard Disk" in the specification) and its
 * parent name, turned into a host path for the core to open as the backing
 * file.  Windows writes a relative (W2ru) and an absolute (W2ku) path in
 * UTF-16LE; Mac hosts write a file URL in UTF-8 (MacX). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "error.h"
#include "minmax.h"
#include "vhd-internal.h"

/* A locator's data is a path: anything longer is not one. */
#define LOCATOR_MAX_BYTES 65536u

/* Append code point @c to @out (room for 4 more bytes assumed). */
static size_t
put_utf8(char *out, size_t n, uint32_t c)
{
    if (c < 0x80) {
        out[n++] = (char)c;
    } else if (c < 0x800) {
        out[n++] = (char)(0xc0 | (c >> 6));
        out[n++] = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out[n++] = (char)(0xe0 | (c >> 12));
        out[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[n++] = (char)(0x80 | (c & 0x3f));
    } else {
        out[n++] = (char)(0xf0 | (c >> 18));
        out[n++] = (char)(0x80 | ((c >> 12) & 0x3f));
        out[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[n++] = (char)(0x80 | (c & 0x3f));
    }
    return n;
}

/* UTF-16 (@big_endian or little) of @len bytes to a new UTF-8 string,
 * stopping at the first NUL; unpaired surrogates become U+FFFD.  NULL on
 * ENOMEM. */
static char *
utf16_to_utf8(const uint8_t *in, size_t len, bool big_endian)
{
    char *out = malloc(len / 2 * 3 + 1); /* a UTF-16 unit never needs more than 3 bytes */
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        uint32_t c = big_endian ? be16_get(in + i) : le16_get(in + i);
        if (c == 0)
            break;
        if (c >= 0xd800 && c < 0xdc00 && i + 3 < len) {
            uint32_t lo = big_endian ? be16_get(in + i + 2) : le16_get(in + i + 2);
            if (lo >= 0xdc00 && lo < 0xe000) {
                c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                i += 2;
            } else {
                c = 0xfffd;
            }
        } else if (c >= 0xd800 && c < 0xe000) {
            c = 0xfffd;
        }
        n = put_utf8(out, n, c);
    }
    out[n] = 0;
    return out;
}

/* Windows path to host path in place: backslashes become slashes, a drive
 * letter goes, and a leading "./" of a relative path too. */
static void
windows_to_host(char *p)
{
    for (char *q = p; *q; q++)
        if (*q == '\\')
            *q = '/';
    if (isalpha((unsigned char)p[0]) && p[1] == ':')
        memmove(p, p + 2, strlen(p + 2) + 1);
    while (p[0] == '.' && p[1] == '/')
        memmove(p, p + 2, strlen(p + 2) + 1);
}

/* A "file://[localhost]/path" URL to a host path in place (%XX decoded). */
static void
url_to_host(char *p)
{
    const char *s = p;
    if (!strncmp(s, "file://", 7))
        s += 7;
    if (!strncmp(s, "localhost/", 10))
        s += 9;
    size_t n = 0;
    for (; *s; s++) {
        if (s[0] == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            char hex[3] = { s[1], s[2], 0 };
            p[n++] = (char)strtoul(hex, NULL, 16);
            s += 2;
        } else {
            p[n++] = *s;
        }
    }
    p[n] = 0;
    while (p[0] == '.' && p[1] == '/')
        memmove(p, p + 2, strlen(p + 2) + 1);
}

/* The host path locator @loc (24 bytes) of @img names, in *@out (NULL when
 * the locator is unused or of a platform we do not read). */
static int
locator_path(struct topcow_image *img, const uint8_t *loc, char **out)
{
    *out = NULL;
    const uint8_t *code = loc;
    bool w2ku = !memcmp(code, "W2ku", 4), w2ru = !memcmp(code, "W2ru", 4);
    bool macx = !memcmp(code, "MacX", 4);
    if (!w2ku && !w2ru && !macx)
        return 0;
    uint32_t len = be32_get(loc + 8);
    uint64_t off = be64_get(loc + 16), end, fsize;
    int r = io_get_size(img->file, &fsize);
    if (r < 0)
        return r;
    RETURN_ERR_IF(len == 0 || len > LOCATOR_MAX_BYTES || ADD_OVERFLOW(off, len, &end) ||
                  end > fsize, -EUCLEAN,
                  "%s: vpc: parent locator '%.4s' (%u bytes at offset %llu) lies outside the file",
                  img->filename, (const char *)code, len, (unsigned long long)off);
    uint8_t *raw = malloc(len + 1);
    if (!raw)
        return err_set(-ENOMEM, "out of memory");
    r = io_pread(img->file, raw, len, off);
    if (r < 0) {
        free(raw);
        return r;
    }
    if (macx) {
        raw[len] = 0;
        url_to_host((char *)raw);
        *out = (char *)raw;
    } else {
        *out = utf16_to_utf8(raw, len, false);
        free(raw);
        if (!*out)
            return err_set(-ENOMEM, "out of memory");
        windows_to_host(*out);
    }
    if (!**out) {
        free(*out);
        *out = NULL;
    }
    return 0;
}

/* Whether @path, relative to @img's directory, names an existing file. */
static bool
exists(struct topcow_image *img, const char *path)
{
    char *full = image_resolve_relative(img->filename, path);
    bool found = full && access(full, F_OK) == 0;
    free(full);
    return found;
}

/* Candidates in the order the specification suggests trying them: the
 * relative path first (it survives moving both files together), then the
 * absolute one, then the Mac URL, and last the bare parent name beside the
 * child.  The first that exists wins; if none does, the first one is kept
 * so that the error names the path the image prefers. */
int
vhd_parent_resolve(struct topcow_image *img, const uint8_t *hdr)
{
    static const char order[][4] = { "W2ru", "W2ku", "MacX" };
    char *cand[ARRAY_SIZE(order) + 1] = { NULL };
    size_t ncand = 0;
    int r = 0;
    for (size_t o = 0; o < ARRAY_SIZE(order) && r == 0; o++)
        for (unsigned i = 0; i < VHD_LOCATOR_COUNT && r == 0; i++) {
            const uint8_t *loc = hdr + VHD_H_LOCATORS + i * VHD_LOCATOR_SIZE;
            if (memcmp(loc, order[o], 4) != 0)
                continue;
            char *p;
            r = locator_path(img, loc, &p);
            if (r == 0 && p) {
                cand[ncand++] = p;
                break;
            }
        }
    if (r == 0) {
        char *name = utf16_to_utf8(hdr + VHD_H_PARENT_NAME, 512, true);
        if (!name)
            r = err_set(-ENOMEM, "out of memory");
        else if (*name)
            cand[ncand++] = name;
        else
            free(name);
    }
    if (r == 0 && ncand == 0)
        r = err_set(-EUCLEAN, "%s: vpc: differencing disk names no parent", img->filename);
    size_t pick = 0;
    for (size_t i = 0; r == 0 && i < ncand; i++)
        if (exists(img, cand[i])) {
            pick = i;
            break;
        }
    if (r == 0) {
        img->backing_file = cand[pick];
        cand[pick] = NULL;
        if (!(img->backing_format = strdup("vpc")))
            r = err_set(-ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < ncand; i++)
        free(cand[i]);
    return r;
}
