// SPDX-License-Identifier: MIT
/* topcow commit: qemu-img commit syntax.
 *   commit [-q] [-f FMT] [-t CACHE] [-b BASE] [-r RATE_LIMIT] [-d] [-p] FILENAME
 * Copies what the layers above BASE (default: FILENAME's backing file)
 * define into BASE, growing BASE to FILENAME's size if it is smaller; then,
 * unless -d or -b, empties FILENAME so that it reads through to BASE.
 *
 * The chain is opened layer by layer, each image once and without its
 * backing file: FILENAME (read-write only when it is to be emptied) and the
 * layers down to BASE read-only, which also holds their shared locks so
 * that nobody writes them meanwhile; BASE read-write, with its own chain.
 * So BASE is never read through a second, stale handle while it is being
 * written, and block status walks only the layers above it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain-copy.h"
#include "commands.h"
#include "util.h"

/* Reader threads: reads come mostly from the page cache or a fast disk,
 * and one writer is the bottleneck beyond that. */
#define COMMIT_WORKERS 4

/* Plan kinds: zeros, or data read from layer (kind - SEG_DATA). */
enum { SEG_ZERO = 1, SEG_DATA = 2 };

static void
help(void)
{
    printf("usage: topcow commit [-q] [-f FMT] [-t CACHE] [-b BASE] [-r RATE_LIMIT] [-d]\n"
           "                     [-p] FILENAME\n\n"
           "Commit the changes recorded in FILENAME into its backing file, or into BASE\n"
           "further down its backing chain: everything the layers above BASE hold (data\n"
           "and zeros) is written into BASE, which grows to FILENAME's size if it is\n"
           "smaller.  Afterwards FILENAME is emptied, so that it reads as BASE does.\n\n"
           "  -b BASE        commit into BASE, an image of FILENAME's backing chain (a\n"
           "                 relative name is relative to the directory of the image that\n"
           "                 names it); the layers in between keep their now stale data,\n"
           "                 so -b implies -d\n"
           "  -d             do not empty FILENAME\n"
           "  -f FMT         format of FILENAME (default: probed)\n"
           "  -t CACHE       cache mode: writeback (default), none, writethrough,\n"
           "                 directsync, unsafe\n"
           "  -r RATE_LIMIT  accepted for compatibility; topcow does not limit the rate\n"
           "  -p             show progress\n"
           "  -q             quiet: print nothing but errors\n");
}

struct commit {
    /* The layers above BASE, top first, each opened by itself without its
     * backing file: the top read-write when it is to be emptied, the others
     * read-only, which also keeps writers away from them meanwhile. */
    struct topcow_image **layers;
    unsigned nlayers;
    struct topcow_image *base; /* opened read-write, with its own backing chain */
};

/* Which layer above BASE defines the run at @off, walking down as a chain
 * read would.  Zeros past the end of a short layer count as defined by that
 * layer (qemu's rule), so they are committed when it is above BASE. */
static int
commit_plan(void *opaque, uint64_t off, uint64_t len, unsigned *kind, uint64_t *n)
{
    struct commit *c = opaque;
    for (unsigned d = 0; d < c->nlayers; d++) {
        struct topcow_image *layer = c->layers[d];
        const uint64_t lsize = topcow_image_size(layer);
        if (off >= lsize) {
            *kind = SEG_ZERO;
            *n = len;
            return 0;
        }
        if (len > lsize - off)
            len = lsize - off;
        struct topcow_extent ext;
        int r = topcow_image_block_status(layer, off, len, 0, &ext);
        if (r < 0)
            return r;
        if (ext.flags & TOPCOW_EXTENT_ALLOCATED) {
            *kind = ext.flags & TOPCOW_EXTENT_ZERO ? SEG_ZERO : SEG_DATA + d;
            *n = ext.length;
            return 0;
        }
        len = ext.length; /* unallocated in this layer for that long */
    }
    *kind = 0; /* BASE (or below) defines it: nothing to copy */
    *n = len;
    return 0;
}

static int
commit_work(void *opaque, struct chain_unit *u)
{
    struct commit *c = opaque;
    for (size_t i = 0; i < u->nsegs; i++) {
        const struct chain_seg *s = &u->segs[i];
        const uint8_t *data = NULL;
        if (s->kind >= SEG_DATA) {
            uint8_t *p = u->buf[0] + (s->off - u->start);
            int r = chain_pread(u, c->layers[s->kind - SEG_DATA], p, (size_t)s->len, s->off,
                                "reading");
            if (r < 0)
                return r;
            data = p;
        }
        if (chain_add_write(u, s->off, s->len, data) < 0) {
            u->fail_what = "planning";
            u->fail_off = s->off;
            return -ENOMEM;
        }
    }
    return 0;
}

/* Append @img to c->layers.  Returns 0, or -1 (message printed). */
static int
add_layer(struct commit *c, struct topcow_image *img)
{
    struct topcow_image **v = realloc(c->layers, (c->nlayers + 1) * sizeof *v);
    if (!v) {
        error_msg("out of memory");
        topcow_image_close(img);
        return -1;
    }
    c->layers = v;
    c->layers[c->nlayers++] = img;
    return 0;
}

/* Open the chain of @path down to BASE (@base_name, or the top's backing
 * file): the layers above it into c->layers, BASE into c->base.  Returns 0,
 * or -1 after printing qemu-img's message. */
static int
open_chain(struct commit *c, const char *path, const char *fmt, const char *base_name,
           unsigned top_flags, unsigned cache)
{
    struct topcow_image *img = open_image(path, fmt, top_flags | TOPCOW_OPEN_NO_BACKING);
    if (!img || add_layer(c, img) < 0)
        return -1;
    for (;;) {
        struct topcow_image *cur = c->layers[c->nlayers - 1];
        struct topcow_info info = { .struct_size = sizeof info };
        if (topcow_image_get_info(cur, &info) < 0) {
            error_msg("%s", topcow_last_error());
            return -1;
        }
        if (!info.full_backing_filename) {
            if (c->nlayers == 1)
                error_msg("Image does not have a backing file");
            else
                error_msg("Did not find '%s' in the backing chain of '%s'", base_name, path);
            return -1;
        }
        const char *next = info.full_backing_filename, *next_fmt = info.backing_format;
        if (!base_name || chain_names(info.filename, next, base_name)) {
            c->base = open_image(next, next_fmt, cache);
            return c->base ? 0 : -1;
        }
        img = open_image(next, next_fmt,
                         TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_NO_BACKING | (cache & TOPCOW_OPEN_DIRECT));
        if (!img || add_layer(c, img) < 0)
            return -1;
    }
}

int
cmd_commit(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *base_name = NULL;
    bool drop = false, progress = false, quiet = false;
    unsigned cache = 0;
    uint64_t rate = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hf:t:b:r:dpq", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': fmt = optarg; break;
        case 't':
            if (parse_cache_mode(optarg, &cache) < 0)
                die("Invalid cache option: %s", optarg);
            break;
        case 'b':
            base_name = optarg;
            drop = true; /* -b implies -d: the layers in between go stale */
            break;
        case 'r':
            if (parse_size(optarg, &rate) < 0)
                die("Invalid rate limit specified. You may use k, M, G, T, P or E suffixes "
                    "for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            break;
        case 'd': drop = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case OPT_OBJECT: break; /* secrets: no encrypted images yet */
        case OPT_IMAGE_OPTS: die("--image-opts is not supported");
        default: return 1;
        }
    }
    if (optind != argc - 1)
        die("Expecting one image file name");
    if (quiet)
        progress = false;
    if (rate && !quiet)
        fprintf(stderr, "%s: warning: the rate limit (-r) is ignored\n", prog_name);
    const char *path = argv[optind];

    struct commit cm = { 0 };
    int ret = 1;
    /* Read-only when it stays as it is: then it only holds a shared lock. */
    if (open_chain(&cm, path, fmt, base_name, cache | (drop ? TOPCOW_OPEN_RDONLY : 0), cache) < 0)
        goto out;
    struct topcow_info bi = { .struct_size = sizeof bi };
    if (topcow_image_get_info(cm.base, &bi) < 0) {
        error_msg("%s", topcow_last_error());
        goto out;
    }
    const uint64_t size = topcow_image_size(cm.layers[0]), old_size = topcow_image_size(cm.base);
    if (old_size < size) {
        /* The grown range reads as zeros, also where BASE's own backing
         * file is longer (as after QEMU's truncate). */
        if (topcow_image_resize(cm.base, size, 0, TOPCOW_PREALLOC_OFF) < 0) {
            error_msg("Could not resize '%s': %s", bi.filename, topcow_last_error());
            goto out;
        }
    }
    double shown = 0;
    struct chain_job job = {
        .dst = cm.base,
        .size = size,
        .workers = COMMIT_WORKERS,
        .zero_flags = TOPCOW_ZERO_MAY_UNMAP,
        .plan = commit_plan,
        .work = commit_work,
        .progress = progress ? chain_progress : NULL,
        .opaque = &cm,
        .progress_opaque = &shown,
    };
    if (progress)
        progress_print(0);
    if (chain_copy_run(&job) < 0)
        goto out;
    /* BASE's new data must be durable before the top lets go of its copy. */
    if (topcow_image_flush(cm.base) < 0) {
        error_msg("%s: %s", bi.filename, topcow_last_error());
        goto out;
    }
    if (!drop && topcow_image_make_empty(cm.layers[0]) < 0) {
        error_msg("Could not empty %s: %s", path, topcow_last_error());
        goto out;
    }
    ret = 0;

out:
    if (cm.base && topcow_image_close(cm.base) < 0 && ret == 0) {
        error_msg("%s", topcow_last_error());
        ret = 1;
    }
    for (unsigned i = cm.nlayers; i-- > 0;)
        if (topcow_image_close(cm.layers[i]) < 0 && ret == 0) {
            error_msg("%s", topcow_last_error());
            ret = 1;
        }
    free(cm.layers);
    if (ret == 0 && progress)
        progress_end();
    if (ret == 0 && !quiet)
        printf("Image committed.\n");
    return ret;
}
