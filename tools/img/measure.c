// SPDX-License-Identifier: MIT
/* qcow2 layout arithmetic for `topcow measure` (see measure.h).  The
 * numbers follow from the on-disk format (docs/interop/qcow2.txt) and from
 * the layout qemu-img creates: one header cluster, L2 tables of one cluster,
 * an L1 table of whole clusters, and refcount blocks that also count the
 * refcount structures themselves.  The bitmap reader at the end is a
 * stop-gap until include/topcow.h exposes persistent bitmaps. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "measure.h"
#include "minmax.h"
#include "util.h"

/* Bytes per L2 entry: a 64-bit descriptor, plus a 64-bit subcluster bitmap
 * with extended L2 entries. */
static unsigned
l2_entry_bytes(const struct measure_geometry *g)
{
    return g->extended_l2 ? 16 : 8;
}

uint64_t
measure_l2_tables(uint64_t virtual_size, const struct measure_geometry *g)
{
    uint64_t clusters = ALIGN_UP(virtual_size, g->cluster_size) / g->cluster_size;
    uint64_t per_table = g->cluster_size / l2_entry_bytes(g);
    return DIV_ROUND_UP(clusters, per_table);
}

/* The refcount blocks and table clusters needed to count @counted clusters
 * plus the refcount clusters themselves.
 *
 * A refcount block of one cluster holds cluster_size * 8 / refcount_bits
 * entries (R); a refcount table cluster holds cluster_size / 8 block
 * pointers (P).  With B blocks and T = ceil(B / P) table clusters, B blocks
 * suffice when they can count everything, themselves included:
 *     counted + B + ceil(B / P) <= B * R.
 * The left side grows by at most 2 per extra block and the right by R >= 64,
 * so the condition is monotone in B and the answer is the smallest B that
 * meets it.  That is also the point the obvious "add blocks until the count
 * stops changing" iteration settles on, starting from nothing, which is how
 * qemu-img sizes a new image.  Since ceil(B / P) <= B, any B with
 * counted <= B * (R - 2) meets the condition, which bounds a binary search
 * (and keeps B * R far from overflowing: it stays below 2 * counted + R). */
static uint64_t
refcount_clusters(uint64_t counted, const struct measure_geometry *g)
{
    const uint64_t per_block = (uint64_t)g->cluster_size * 8 / g->refcount_bits;
    const uint64_t per_table_cluster = g->cluster_size / 8;
    uint64_t lo = 0, hi = DIV_ROUND_UP(counted, per_block - 2);
    while (lo < hi) {
        uint64_t b = lo + (hi - lo) / 2;
        if (counted + b + DIV_ROUND_UP(b, per_table_cluster) <= b * per_block)
            hi = b;
        else
            lo = b + 1;
    }
    return lo + DIV_ROUND_UP(lo, per_table_cluster);
}

uint64_t
measure_qcow2_full(uint64_t virtual_size, const struct measure_geometry *g)
{
    const uint64_t cs = g->cluster_size;
    uint64_t data = ALIGN_UP(virtual_size, cs) / cs;
    uint64_t l2 = measure_l2_tables(virtual_size, g);
    /* The L1 table has one 8-byte entry per L2 table, in whole clusters. */
    uint64_t l1 = DIV_ROUND_UP(l2 * 8, cs);
    uint64_t counted = 1 /* header */ + l1 + l2 + data;
    return (counted + refcount_clusters(counted, g)) * cs;
}

uint64_t
measure_bitmaps(const struct measure_bitmap *bm, size_t n, uint64_t virtual_size,
                uint32_t cluster_size)
{
    uint64_t total = 0, dir = 0;
    for (size_t i = 0; i < n; i++) {
        /* One bit per granule, stored in whole clusters, all assumed set;
         * the bitmap table has one 8-byte entry per data cluster and also
         * takes whole clusters. */
        uint64_t bits = DIV_ROUND_UP(virtual_size, bm[i].granularity);
        uint64_t clusters = DIV_ROUND_UP(DIV_ROUND_UP(bits, 8), cluster_size);
        total += clusters * cluster_size + ALIGN_UP(clusters * 8, cluster_size);
        /* A directory entry: 24 fixed bytes and the name (no extra data),
         * padded to 8.  The directory is padded to whole clusters once. */
        dir += ALIGN_UP(24 + (uint64_t)bm[i].name_len, 8);
    }
    return total + ALIGN_UP(dir, cluster_size);
}

/* ------------------------------------------------------------------------ */

int
cvtnum(const char *s, uint64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    const bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    if (!(hex ? isxdigit((unsigned char)s[2]) : isdigit((unsigned char)*s)))
        return -1;
    char *end;
    errno = 0;
    uint64_t whole = strtoull(s, &end, hex ? 16 : 10);
    if (errno == ERANGE)
        return -2;
    /* The fraction is kept as its digits, in a double: qemu-img accepts
     * "1.5k" but scales it in floating point too. */
    double frac = 0;
    if (!hex && *end == '.') {
        const char *digits = end;
        frac = strtod(digits, &end); /* digits only, checked below */
        if (end == digits)
            end++; /* "1.k" */
        for (const char *p = digits + 1; p < end; p++)
            if (!isdigit((unsigned char)*p))
                return -1;
    }
    unsigned shift = 0;
    static const char suffixes[] = "bkmgtpe";
    if (*end) {
        const char *p = strchr(suffixes, tolower((unsigned char)*end));
        if (!p)
            return -1;
        shift = 10 * (unsigned)(p - suffixes);
        end++;
        if (shift == 0 && frac != 0)
            return -1;
    } else if (frac != 0) {
        return -1;
    }
    if (*end)
        return -1;
    if (shift && whole > (UINT64_MAX >> shift))
        return -2;
    uint64_t v = whole << shift;
    double extra = frac * (double)(1ull << shift);
    if ((double)v + extra >= 18446744073709551616.0)
        return -2;
    *out = v + (uint64_t)extra;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading the bitmap directory of a qcow2 file (qcow2.txt, "Bitmaps
 * extension" and "Bitmap directory").  Everything read is untrusted: sizes
 * are bounded before use and every entry must lie inside the directory. */

#define EXT_BITMAPS 0x23852875u
#define AUTOCLEAR_BITMAPS 1u
#define MAX_BITMAP_DIR (64u << 20) /* qemu-img's own limit on the directory */
#define DIR_ENTRY_FIXED 24

static int
read_at(struct topcow_image *f, void *buf, size_t len, uint64_t off, const char *path)
{
    if (topcow_image_pread(f, buf, len, off) < 0) {
        error_msg("%s: could not read the bitmap directory: %s", path, topcow_last_error());
        return -1;
    }
    return 0;
}

/* Walk the header extensions of the header cluster @hdr (@len bytes) for
 * the bitmaps extension.  Returns 1 and fills *@dir_off, *@dir_size, *@nb
 * when found, 0 when absent, -1 on a malformed list. */
static int
find_bitmaps_ext(const uint8_t *hdr, size_t len, uint64_t *dir_off, uint64_t *dir_size,
                 uint32_t *nb)
{
    size_t pos = be32_get(hdr + 100); /* header_length (v3) */
    if (pos < 104 || pos > len)
        return -1;
    while (pos + 8 <= len) {
        uint32_t type = be32_get(hdr + pos), elen = be32_get(hdr + pos + 4);
        pos += 8;
        if (type == 0)
            return 0;
        if (elen > len - pos)
            return -1;
        if (type == EXT_BITMAPS) {
            if (elen < 24)
                return -1;
            *nb = be32_get(hdr + pos);
            *dir_size = be64_get(hdr + pos + 8);
            *dir_off = be64_get(hdr + pos + 16);
            return 1;
        }
        pos += ALIGN_UP(elen, 8);
    }
    return 0;
}

int
measure_read_bitmaps(const char *path, struct measure_bitmap **bmp, size_t *np)
{
    *bmp = NULL;
    *np = 0;
    struct topcow_image *f = open_image(path, "raw", TOPCOW_OPEN_FORCE_SHARE);
    if (!f)
        return -1;
    int ret = -1;
    uint8_t *hdr = NULL, *dir = NULL;
    uint8_t head[104];
    if (topcow_image_size(f) < sizeof head || read_at(f, head, sizeof head, 0, path) < 0)
        goto out;
    uint32_t cluster_bits = be32_get(head + 20);
    /* Version 2 images have no bitmaps; neither have images whose bitmaps
     * autoclear bit was cleared by a program that did not know them. */
    if (be32_get(head + 4) < 3 || !(be64_get(head + 88) & AUTOCLEAR_BITMAPS)) {
        ret = 0;
        goto out;
    }
    if (cluster_bits < 9 || cluster_bits > 21)
        goto corrupt;
    size_t cs = (size_t)1 << cluster_bits;
    if (topcow_image_size(f) < cs)
        goto corrupt;
    hdr = malloc(cs);
    if (!hdr || read_at(f, hdr, cs, 0, path) < 0)
        goto out;
    uint64_t dir_off, dir_size;
    uint32_t nb;
    int found = find_bitmaps_ext(hdr, cs, &dir_off, &dir_size, &nb);
    if (found <= 0) {
        ret = found == 0 ? 0 : -1;
        if (found < 0)
            goto corrupt;
        goto out;
    }
    if (dir_size > MAX_BITMAP_DIR || nb == 0 || nb > dir_size / DIR_ENTRY_FIXED ||
        dir_off > topcow_image_size(f) || dir_size > topcow_image_size(f) - dir_off)
        goto corrupt;
    dir = malloc(dir_size);
    *bmp = calloc(nb, sizeof **bmp);
    if (!dir || !*bmp) {
        error_msg("out of memory");
        goto out;
    }
    if (read_at(f, dir, dir_size, dir_off, path) < 0)
        goto out;
    size_t pos = 0;
    for (uint32_t i = 0; i < nb; i++) {
        if (dir_size - pos < DIR_ENTRY_FIXED)
            goto corrupt;
        const uint8_t *e = dir + pos;
        unsigned gran_bits = e[17];
        uint32_t name_len = be16_get(e + 18), extra = be32_get(e + 20);
        uint64_t entry = ALIGN_UP((uint64_t)DIR_ENTRY_FIXED + extra + name_len, 8);
        if (gran_bits < 9 || gran_bits > 31 || entry > dir_size - pos)
            goto corrupt;
        (*bmp)[i].granularity = 1ull << gran_bits;
        (*bmp)[i].name_len = name_len;
        pos += entry;
    }
    *np = nb;
    ret = 0;
    goto out;
corrupt:
    error_msg("%s: invalid bitmap directory in the qcow2 header", path);
out:
    if (ret < 0) {
        free(*bmp);
        *bmp = NULL;
    }
    free(hdr);
    free(dir);
    topcow_image_close(f);
    return ret;
}
