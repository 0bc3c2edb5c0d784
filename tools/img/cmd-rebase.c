// SPDX-License-Identifier: MIT
/* topcow rebase: qemu-img rebase syntax.
 *   rebase [-q] [-U] [-f FMT] [-t CACHE] [-T SRC_CACHE] [-p] [-u]
 *          -b BACKING_FILE [-F BACKING_FMT] FILENAME
 * Safe mode (the default) keeps what FILENAME reads unchanged: every range
 * FILENAME does not define itself is read through the old backing chain and
 * from the new backing file, and the 512-byte sectors that differ are
 * written into FILENAME; then the header names the new backing file.  -u
 * only rewrites the header.  -b "" makes FILENAME standalone. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain-copy.h"
#include "commands.h"
#include "buf-scan.h"
#include "util.h"

#define REBASE_WORKERS 4
#define SECTOR 512u

#define ALIGN_DOWN_POW2(x, a) ((x) & ~((uint64_t)(a) - 1))
#define MIN_U64(a, b) ((a) < (b) ? (a) : (b))
#define MAX_U64(a, b) ((a) > (b) ? (a) : (b))

enum { SEG_COMPARE = 1 };

static void
help(void)
{
    printf("usage: topcow rebase [-q] [-U] [-f FMT] [-t CACHE] [-T SRC_CACHE] [-p] [-u]\n"
           "                     -b BACKING_FILE [-F BACKING_FMT] FILENAME\n\n"
           "Change the backing file of FILENAME to BACKING_FILE (a relative name is\n"
           "relative to FILENAME's directory, and is stored as given).  In the default\n"
           "safe mode what FILENAME reads stays the same: wherever FILENAME does not\n"
           "hold data itself, the sectors in which the old backing chain and the new\n"
           "backing file differ are copied into FILENAME first.  -b \"\" removes the\n"
           "backing file, copying everything the old chain provides.\n\n"
           "  -b BACKING_FILE the new backing file (\"\": none)\n"
           "  -F BACKING_FMT  its format (required with a backing file)\n"
           "  -u              unsafe: only change the name in the header, without\n"
           "                  reading anything (the old backing file may be missing)\n"
           "  -f FMT          format of FILENAME (default: probed)\n"
           "  -t CACHE        cache mode of FILENAME: writeback (default), none,\n"
           "                  writethrough, directsync, unsafe\n"
           "  -T SRC_CACHE    cache mode of the new backing file\n"
           "  -U              open the new backing file without taking its lock\n"
           "  -p              show progress\n"
           "  -q              quiet: print nothing but errors\n");
}

struct rebase {
    struct topcow_image *top;   /* FILENAME over its old chain, read-write */
    struct topcow_image *nb;    /* the new backing file; NULL: none (reads zeros) */
    uint64_t nb_size;
    unsigned prefix_depth;      /* the new backing file is this layer of the old
                                 * chain (0: it is not) */
};

/* Which runs need comparing: those FILENAME does not define.  When the new
 * backing file is a layer of the old chain, only those defined above that
 * layer (the rest reads the same either way), as qemu-img does. */
static int
rebase_plan(void *opaque, uint64_t off, uint64_t len, unsigned *kind, uint64_t *n)
{
    struct rebase *rb = opaque;
    struct topcow_extent ext;
    const unsigned p = rb->prefix_depth;
    int r = topcow_image_block_status(rb->top, off, len, p ? 0 : TOPCOW_BS_TOP_ONLY, &ext);
    if (r < 0)
        return r;
    bool alloc = ext.flags & TOPCOW_EXTENT_ALLOCATED;
    bool need;
    if (!p)
        need = !alloc;
    else if (alloc)
        need = ext.depth > 0 && ext.depth < p;
    else /* zeros past a short layer's end, or unallocated everywhere */
        need = ext.depth + 1 < p;
    *kind = need ? SEG_COMPARE : 0;
    *n = ext.length;
    return 0;
}

/* Queue the differing sectors of [off, off+len): @old and @new hold its
 * bytes.  Zeros in the old view are written as zeros. */
static int
queue_diffs(struct chain_unit *u, uint64_t off, uint64_t len, const uint8_t *old,
            const uint8_t *new)
{
    const uint64_t end = off + len;
    uint64_t pos = off;
    while (pos < end) {
        size_t d = buf_first_diff(old + (pos - off), new + (pos - off), (size_t)(end - pos));
        if (d == end - pos)
            break;
        uint64_t a = MAX_U64(pos, ALIGN_DOWN_POW2(pos + d, SECTOR)), b = a;
        while (b < end) {
            uint64_t se = MIN_U64(ALIGN_DOWN_POW2(b, SECTOR) + SECTOR, end);
            if (b > a && memcmp(old + (b - off), new + (b - off), (size_t)(se - b)) == 0)
                break;
            b = se;
        }
        const uint8_t *data = old + (a - off);
        if (chain_add_write(u, a, b - a, buf_is_zero(data, (size_t)(b - a)) ? NULL : data) < 0)
            return -ENOMEM;
        pos = b;
    }
    return 0;
}

static int
rebase_work(void *opaque, struct chain_unit *u)
{
    struct rebase *rb = opaque;
    for (size_t i = 0; i < u->nsegs; i++) {
        const struct chain_seg *s = &u->segs[i];
        uint8_t *old = u->buf[0] + (s->off - u->start), *new = u->buf[1] + (s->off - u->start);
        /* FILENAME does not define the run, so its handle reads the old chain. */
        int r = chain_pread(u, rb->top, old, (size_t)s->len, s->off,
                            "reading from the old backing file");
        if (r < 0)
            return r;
        uint64_t n = rb->nb && s->off < rb->nb_size ? MIN_U64(s->len, rb->nb_size - s->off) : 0;
        if (n > 0 && (r = chain_pread(u, rb->nb, new, (size_t)n, s->off,
                                      "reading from the new backing file")) < 0)
            return r;
        memset(new + n, 0, (size_t)(s->len - n));
        if (queue_diffs(u, s->off, s->len, old, new) < 0) {
            u->fail_what = "comparing";
            u->fail_off = s->off;
            return -ENOMEM;
        }
    }
    return 0;
}

/* Open the new backing file @name (resolved against @path's directory).
 * Returns NULL after printing qemu-img's message. */
static struct topcow_image *
open_new_backing(const char *path, const char *name, const char *fmt, unsigned flags,
                 char **resolved)
{
    *resolved = chain_resolve(path, name);
    if (!*resolved) {
        error_msg("out of memory");
        return NULL;
    }
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.format = fmt;
    o.flags = flags;
    struct topcow_image *img;
    if (topcow_image_open(&img, *resolved, &o) < 0) {
        error_msg("Could not open new backing file '%s': %s", name, topcow_last_error());
        return NULL;
    }
    return img;
}

/* Whether the new backing file is layer @depth of @top's chain, opened in
 * the same format. */
static bool
same_format(struct topcow_image *top, unsigned depth, const char *fmt)
{
    struct topcow_image *layer = top;
    for (unsigned d = 0; d < depth && layer; d++)
        layer = topcow_image_backing(layer);
    struct topcow_info info = { .struct_size = sizeof info };
    return layer && topcow_image_get_info(layer, &info) == 0 && !strcmp(info.format, fmt);
}

int
cmd_rebase(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *backing = NULL, *backing_fmt = NULL;
    bool unsafe = false, progress = false, quiet = false, share = false;
    unsigned cache = 0, src_cache = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hf:F:b:upt:T:qU", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': fmt = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'b': backing = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress = true; break;
        case 't':
            if (parse_cache_mode(optarg, &cache) < 0)
                die("Invalid cache option: %s", optarg);
            break;
        case 'T':
            if (parse_cache_mode(optarg, &src_cache) < 0)
                die("Invalid source cache option: %s", optarg);
            break;
        case 'q': quiet = true; break;
        case 'U': share = true; break;
        case OPT_OBJECT: break; /* secrets: no encrypted images yet */
        case OPT_IMAGE_OPTS: die("--image-opts is not supported");
        default: return 1;
        }
    }
    if (optind != argc - 1)
        die("Expecting one image file name");
    if (!unsafe && !backing)
        die("Must specify backing file (-b) or use unsafe mode (-u)");
    if (backing_fmt && !topcow_format_known(backing_fmt))
        die("Invalid format name: '%s'", backing_fmt);
    if (quiet)
        progress = false;
    const char *path = argv[optind];
    const bool flatten = !backing || !*backing;
    /* qemu-img finds this out only after the copy; nothing is written here. */
    if (!flatten && !backing_fmt)
        die("Could not change the backing file to '%s': backing format must be specified",
            backing);

    struct rebase rb = { 0 };
    char *resolved = NULL;
    int ret = 1;
    rb.top = open_image(path, fmt, cache | (unsafe ? TOPCOW_OPEN_NO_BACKING : 0));
    if (!rb.top)
        return 1;
    if (!unsafe) {
        if (!flatten) {
            unsigned flags = TOPCOW_OPEN_RDONLY | src_cache | (share ? TOPCOW_OPEN_FORCE_SHARE : 0);
            rb.nb = open_new_backing(path, backing, backing_fmt, flags, &resolved);
            if (!rb.nb)
                goto out;
            rb.nb_size = topcow_image_size(rb.nb);
            rb.prefix_depth = chain_depth_of(rb.top, resolved);
            if (rb.prefix_depth && !same_format(rb.top, rb.prefix_depth, backing_fmt))
                rb.prefix_depth = 0;
        }
        double shown = 0;
        struct chain_job job = {
            .dst = rb.top,
            .size = topcow_image_size(rb.top),
            .workers = REBASE_WORKERS,
            .zero_flags = 0,
            .plan = rebase_plan,
            .work = rebase_work,
            .progress = progress ? chain_progress : NULL,
            .opaque = &rb,
            .progress_opaque = &shown,
        };
        if (progress)
            progress_print(0);
        if (chain_copy_run(&job) < 0)
            goto out;
    }
    int r = topcow_image_set_backing(rb.top, flatten ? NULL : backing,
                                     flatten ? NULL : backing_fmt);
    if (r < 0) {
        error_msg("Could not change the backing file to '%s': %s", flatten ? "" : backing,
                  r == -ENOTSUP ? strerror(ENOTSUP) : topcow_last_error());
        goto out;
    }
    ret = 0;

out:
    topcow_image_close(rb.nb);
    if (topcow_image_close(rb.top) < 0 && ret == 0) {
        error_msg("%s: %s", path, topcow_last_error());
        ret = 1;
    }
    free(resolved);
    if (ret == 0 && progress)
        progress_end();
    return ret;
}
