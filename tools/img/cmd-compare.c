// SPDX-License-Identifier: MIT
/* topcow compare: qemu-img compare syntax, messages and exit codes.
 *   compare [-f FMT] [-F FMT] [-T SRC_CACHE] [-s] [-U] [-p] [-q] IMG1 IMG2
 * Exit 0 identical, 1 different, 2 open error, 3 block status error, 4 read
 * error.  Unallocated and zero read the same; past the shorter image's end
 * the longer one must read as zeros (unless -s, where sizes and block status
 * must match too).  Worker threads compare units of the address space in
 * parallel; ranges both images report as zero are never read, and the
 * outcome is the one at the lowest offset, as a front-to-back scan finds it. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "buf-scan.h"
#include "convert.h"
#include "util.h"

#define WORKERS 4
#define UNIT CONVERT_UNIT

/* The block status bits strict mode compares.  qemu-img compares its whole
 * status word, which also says whether the run reaches the end of the image;
 * COMPRESSED has no qemu 7.2 equivalent. */
#define STRICT_MASK                                                                                \
    (TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_ZERO | TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_OFFSET_VALID)

enum outcome {
    SAME = 0,         /* keep in exit code order */
    DIFFER = 1,
    STATUS_ERROR = 3, /* block status failed */
    READ_ERROR = 4,
};

/* An image as qemu-img sizes it: its bytes [0, real), then zeros up to the
 * next multiple of 512. */
struct image {
    struct topcow_image *img;
    const char *name;
    uint64_t real;  /* topcow_image_size() */
    uint64_t size;  /* real rounded up to 512 */
    uint64_t slice; /* strict mode: qemu's block status runs end at multiples of this
                     * (its L2 cache slices); 0 for none */
};

struct compare {
    struct image im[2];
    bool progress;
    uint64_t common; /* bytes both images have */
    uint64_t total;  /* the longer image's size */

    pthread_mutex_t lock;
    uint64_t next;   /* first unclaimed byte */
    uint64_t done;
    double shown;    /* progress percentage last printed */
    /* The earliest finding so far; off == UINT64_MAX while there is none. */
    uint64_t off;
    enum outcome what;
    bool status_mismatch; /* DIFFER found by strict block status */
    char msg[640];        /* the error line for STATUS_ERROR / READ_ERROR */
};

struct worker {
    struct compare *c;
    uint8_t *buf[2];
    pthread_t tid;
};

static void
help(void)
{
    printf("usage: topcow compare [-f FMT] [-F FMT] [-T SRC_CACHE] [-s] [-U] [-p] [-q]\n"
           "                      FILENAME1 FILENAME2\n\n"
           "Check whether two images have the same contents.  Exit status: 0 identical,\n"
           "1 different, 2 open error, 3 block status error, 4 read error.\n\n"
           "  -f FMT         format of FILENAME1 (probed by default)\n"
           "  -F FMT         format of FILENAME2 (probed by default)\n"
           "  -T SRC_CACHE   cache mode for reading (none bypasses the page cache)\n"
           "  -s             strict: sizes and allocation must match too\n"
           "  -U             open the images without taking their locks\n"
           "  -p             show progress\n"
           "  -q             quiet: only the exit status tells\n");
}

/* Record a finding at @off if it is the earliest so far. */
static void
found(struct compare *c, uint64_t off, enum outcome what, bool status, const char *msg)
{
    pthread_mutex_lock(&c->lock);
    if (off < c->off) {
        c->off = off;
        c->what = what;
        c->status_mismatch = status;
        snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "");
    }
    pthread_mutex_unlock(&c->lock);
}

/* Block status of [off, off+len) of @im (the padding past its real end is
 * zeros); a failure is recorded as a finding. */
static int
status(struct compare *c, const struct image *im, uint64_t off, uint64_t len,
       struct topcow_extent *e)
{
    if (off >= im->real) {
        *e = (struct topcow_extent){ .offset = off, .length = len, .flags = TOPCOW_EXTENT_ZERO };
        return 0;
    }
    if (len > im->real - off)
        len = im->real - off;
    if (topcow_image_block_status(im->img, off, len, 0, e) == 0)
        return 0;
    char msg[640];
    snprintf(msg, sizeof msg, "Sector allocation test failed for %s: %s", im->name,
             topcow_last_error());
    found(c, off, STATUS_ERROR, false, msg);
    return -1;
}

/* Read [off, off+len) of @im into @buf; a failure is recorded as a finding. */
static int
read_range(struct compare *c, const struct image *im, uint8_t *buf, uint64_t off, uint64_t len)
{
    if (topcow_image_pread(im->img, buf, (size_t)len, off) == 0)
        return 0;
    char msg[640];
    snprintf(msg, sizeof msg, "Error while reading offset %llu of %s: %s",
             (unsigned long long)off, im->name, topcow_last_error());
    found(c, off, READ_ERROR, false, msg);
    return -1;
}

/* A content mismatch at byte @i of the range starting at @off: qemu-img
 * names the sector that differs. */
static void
mismatch(struct compare *c, uint64_t off, size_t i)
{
    found(c, off + (i & ~(size_t)511), DIFFER, false, NULL);
}

/* Compare [start, end) of the common part.  Stops at the first finding. */
static void
compare_unit(struct worker *w, uint64_t start, uint64_t end)
{
    struct compare *c = w->c;
    for (uint64_t pos = start; pos < end;) {
        struct topcow_extent e[2];
        if (status(c, &c->im[0], pos, end - pos, &e[0]) < 0 ||
            status(c, &c->im[1], pos, end - pos, &e[1]) < 0)
            return;
        uint64_t n = e[0].length < e[1].length ? e[0].length : e[1].length;
        bool z0 = e[0].flags & TOPCOW_EXTENT_ZERO, z1 = e[1].flags & TOPCOW_EXTENT_ZERO;
        if (z0 && z1) {
            pos += n;
            continue;
        }
        if (z0 || z1) { /* only the other side needs reading */
            int k = z0 ? 1 : 0;
            if (read_range(c, &c->im[k], w->buf[0], pos, n) < 0)
                return;
            size_t i = buf_first_nonzero(w->buf[0], (size_t)n);
            if (i < n) {
                mismatch(c, pos, i);
                return;
            }
        } else {
            if (read_range(c, &c->im[0], w->buf[0], pos, n) < 0 ||
                read_range(c, &c->im[1], w->buf[1], pos, n) < 0)
                return;
            size_t i = buf_first_diff(w->buf[0], w->buf[1], (size_t)n);
            if (i < n) {
                mismatch(c, pos, i);
                return;
            }
        }
        pos += n;
    }
}

/* Check that [start, end) of the longer image reads as zeros. */
static void
check_tail_unit(struct worker *w, uint64_t start, uint64_t end)
{
    struct compare *c = w->c;
    const struct image *im = c->im[0].size > c->im[1].size ? &c->im[0] : &c->im[1];
    for (uint64_t pos = start; pos < end;) {
        struct topcow_extent e;
        if (status(c, im, pos, end - pos, &e) < 0)
            return;
        if (!(e.flags & TOPCOW_EXTENT_ZERO)) {
            if (read_range(c, im, w->buf[0], pos, e.length) < 0)
                return;
            size_t i = buf_first_nonzero(w->buf[0], (size_t)e.length);
            if (i < e.length) {
                mismatch(c, pos, i);
                return;
            }
        }
        pos += e.length;
    }
}

/* The span of one L2 cache slice of a qcow2 image as qemu-img caches it by
 * default: whole tables while they all fit in 32 MiB, else 4 KiB slices. */
static uint64_t
qemu_slice(struct topcow_image *img, uint64_t size)
{
    struct topcow_info info = { .struct_size = sizeof info };
    if (topcow_image_get_info(img, &info) < 0 || strcmp(info.format, "qcow2") != 0 ||
        info.cluster_size == 0)
        return 0;
    uint64_t cs = info.cluster_size, entry = info.extended_l2 ? 16 : 8;
    uint64_t table_span = cs / entry * cs;
    uint64_t tables = (size + table_span - 1) / table_span;
    uint64_t slice_bytes = tables * cs <= (32u << 20) ? cs : (cs < 4096 ? cs : 4096);
    return slice_bytes / entry * cs;
}

/* Strict mode's block status pass (the images have equal sizes): walk both
 * images front to back in steps that end wherever either status changes; the
 * first step whose status differs, in the STRICT_MASK bits or in reaching the
 * end of the image, is recorded as the mismatch.  Returns the offset where
 * the walk stopped (the size when nothing differs). */
static uint64_t
strict_scan(struct compare *c)
{
    uint64_t pos = 0, size = c->total;
    while (pos < size) {
        struct topcow_extent e[2];
        bool eof[2];
        for (int k = 0; k < 2; k++) {
            const struct image *im = &c->im[k];
            uint64_t len = size - pos;
            if (im->slice && len > im->slice - pos % im->slice)
                len = im->slice - pos % im->slice;
            if (status(c, im, pos, len, &e[k]) < 0)
                return pos;
            eof[k] = pos + e[k].length == im->size;
        }
        if ((e[0].flags & STRICT_MASK) != (e[1].flags & STRICT_MASK) || eof[0] != eof[1]) {
            found(c, pos, DIFFER, true, NULL);
            return pos;
        }
        pos += e[0].length < e[1].length ? e[0].length : e[1].length;
    }
    return size;
}

/* Take the next unit; units never straddle the end of the common part, and
 * none is handed out past the earliest finding. */
static bool
claim(struct compare *c, uint64_t *start, uint64_t *end)
{
    pthread_mutex_lock(&c->lock);
    bool ok = c->next < c->total && c->next < c->off;
    if (ok) {
        *start = c->next;
        *end = (*start & ~(uint64_t)(UNIT - 1)) + UNIT;
        if (*end > c->total)
            *end = c->total;
        if (*start < c->common && *end > c->common)
            *end = c->common;
        c->next = *end;
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

static void
unit_done(struct compare *c, uint64_t len)
{
    pthread_mutex_lock(&c->lock);
    c->done += len;
    double pct = 100.0 * (double)c->done / (double)c->total;
    if (c->progress && pct - c->shown >= 1.0) {
        c->shown = pct;
        progress_print(pct);
    }
    pthread_mutex_unlock(&c->lock);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t start, end;
    while (claim(w->c, &start, &end)) {
        if (start < w->c->common)
            compare_unit(w, start, end);
        else
            check_tail_unit(w, start, end);
        unit_done(w->c, end - start);
    }
    return NULL;
}

/* Run the workers over [0, total).  Returns 0, or -1 if they could not start
 * (message printed). */
static int
run(struct compare *c)
{
    struct worker ws[WORKERS] = { 0 };
    unsigned started = 0;
    int r = 0;
    for (unsigned i = 0; i < WORKERS && r == 0; i++) {
        ws[i].c = c;
        ws[i].buf[0] = malloc(UNIT);
        ws[i].buf[1] = malloc(UNIT);
        if (!ws[i].buf[0] || !ws[i].buf[1])
            r = -ENOMEM;
        else if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0)
            r = -EAGAIN;
        else
            started++;
    }
    if (started == 0 && c->total > 0) {
        error_msg("could not start worker threads: %s", strerror(-r));
        r = -1;
    } else {
        r = 0; /* fewer workers just take longer */
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    for (unsigned i = 0; i < WORKERS; i++) {
        free(ws[i].buf[0]);
        free(ws[i].buf[1]);
    }
    return r;
}

int
cmd_compare(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt[2] = { NULL, NULL };
    bool strict = false, progress = false, quiet = false;
    unsigned flags = TOPCOW_OPEN_RDONLY, cache = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hf:F:T:pqsU", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': fmt[0] = optarg; break;
        case 'F': fmt[1] = optarg; break;
        case 'T':
            if (parse_cache_mode(optarg, &cache) < 0) {
                error_msg("Invalid source cache option: %s", optarg);
                return 2;
            }
            break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': flags |= TOPCOW_OPEN_FORCE_SHARE; break;
        default: return 1;
        }
    }
    if (argc - optind != 2) {
        error_msg("Expecting two image file names");
        return 1;
    }
    if (quiet)
        progress = false;

    struct compare cmp = { .progress = progress, .off = UINT64_MAX };
    int ret = 2;
    for (int k = 0; k < 2; k++) {
        struct image *im = &cmp.im[k];
        im->name = argv[optind + k];
        im->img = open_image(im->name, fmt[k], flags | cache | OPEN_NEED_KEY);
        if (!im->img)
            goto out;
        im->real = topcow_image_size(im->img);
        im->size = (im->real + 511) & ~511ull;
    }
    if (progress)
        progress_print(0);
    bool size_differs = cmp.im[0].size != cmp.im[1].size;
    if (strict && size_differs) {
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        ret = 1;
        goto out;
    }
    cmp.common = cmp.im[0].size < cmp.im[1].size ? cmp.im[0].size : cmp.im[1].size;
    cmp.total = cmp.im[0].size > cmp.im[1].size ? cmp.im[0].size : cmp.im[1].size;
    if (strict) {
        /* Contents only need comparing up to the first status mismatch. */
        for (int k = 0; k < 2; k++)
            cmp.im[k].slice = qemu_slice(cmp.im[k].img, cmp.im[k].size);
        cmp.common = cmp.total = strict_scan(&cmp);
    }
    pthread_mutex_init(&cmp.lock, NULL);
    int r = run(&cmp);
    pthread_mutex_destroy(&cmp.lock);
    if (r < 0)
        goto out;

    enum outcome what = cmp.off == UINT64_MAX ? SAME : cmp.what;
    if (progress && what == SAME)
        progress_print(100);
    /* The size warning comes when a front-to-back scan reaches the tail. */
    if (!quiet && size_differs && (what == SAME || cmp.off >= cmp.common))
        printf("Warning: Image size mismatch!\n");
    switch (what) {
    case SAME:
        if (!quiet)
            printf("Images are identical.\n");
        break;
    case DIFFER:
        if (quiet)
            break;
        if (cmp.status_mismatch)
            printf("Strict mode: Offset %llu block status mismatch!\n",
                   (unsigned long long)cmp.off);
        else
            printf("Content mismatch at offset %llu!\n", (unsigned long long)cmp.off);
        break;
    case STATUS_ERROR:
    case READ_ERROR:
        fflush(stdout);
        error_msg("%s", cmp.msg);
        break;
    }
    if (progress)
        printf("\n");
    ret = (int)what;

out:
    for (int k = 0; k < 2; k++)
        topcow_image_close(cmp.im[k].img);
    return ret;
}
