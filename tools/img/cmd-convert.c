// SPDX-License-Identifier: MIT
/* topcow convert: qemu-img convert syntax.
 *   convert [-f FMT] [-O FMT] [-o OPTS] [-c] [-S SIZE] [-n] [--target-is-zero]
 *           [-B BACKING [-F FMT]] [-l SNAPSHOT_PARAM] [-p] [-q] [-m N] [-W] [-U]
 *           [-t CACHE] [-T CACHE] [--keep-chain] SRC... DST
 * Option checks, opening the sources, creating and opening the target, and
 * progress; the copying itself is convert-copy.c.  Semantics follow qemu-img
 * 7.2: sources are concatenated, the target is written with cache=unsafe,
 * with -B only the top layer of the source is copied, and with -l the first
 * source is read at one of its internal snapshots.  --keep-chain (ours) converts
 * a source's backing chain layer by layer (convert-keep-chain.c). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "convert.h"
#include "create-opts.h"
#include "util.h"

/* qemu-img's limits for -m and -S. */
#define MAX_WORKERS 16
#define MAX_SPARSE (16u << 20)

/* The allocation unit assumed for targets without clusters (a file system
 * block): zero runs shorter than this would not leave a hole anyway. */
#define RAW_GRANULE 4096

static void
help(void)
{
    printf("usage: topcow convert [-f FMT] [-O OUTPUT_FMT] [-o OPTIONS] [-c] [-S SPARSE_SIZE]\n"
           "                      [-n] [--target-is-zero] [-B BACKING_FILE [-F BACKING_FMT]]\n"
           "                      [-l SNAPSHOT_PARAM] [-m NUM] [-W] [-U] [-t CACHE]\n"
           "                      [-T SRC_CACHE] [-p] [-q] [--keep-chain]\n"
           "                      FILENAME [FILENAME2 [...]] OUTPUT_FILENAME\n\n"
           "Copy one image, or several concatenated, into OUTPUT_FILENAME.  Holes and\n"
           "zeros are not written, so the output is sparse.\n\n"
           "  -f FMT           format of the sources (probed by default)\n"
           "  -O FMT           output format: raw (default), qcow2, or another that\n"
           "                   topcow writes (see FORMATS in topcow(1))\n"
           "  -o OPTIONS       format options for the new image, as for 'create'\n"
           "  -c               compress the output's clusters (qcow2; the codec is\n"
           "                   -o compression_type=zlib|zstd); clusters that do not\n"
           "                   compress are stored as they are; compression runs on\n"
           "                   the -m worker threads\n"
           "  -S SIZE          zero runs of at least SIZE bytes inside data stay holes\n"
           "                   (default 4k; 0 allocates everything)\n"
           "  -n               write into an existing OUTPUT_FILENAME (no creation)\n"
           "  --target-is-zero with -n: the output already reads as zeros\n"
           "  -B FILE          the output gets backing file FILE (format -F) and only\n"
           "                   the top layer of the source is copied\n"
           "  -l SNAPSHOT      read the first source at an internal snapshot: SNAPSHOT\n"
           "                   is snapshot.id=ID[,snapshot.name=NAME], snapshot.name=NAME\n"
           "                   or ID_OR_NAME (by id first, then name; one source only)\n"
           "  -s ID_OR_NAME    the same as -l ID_OR_NAME (older qemu-img spelling)\n"
           "  -m NUM           parallel requests / worker threads, 1..16 (default 8)\n"
           "  -W               write out of order (faster; layout varies between runs)\n"
           "  -U               open the sources without taking their locks\n"
           "  -t CACHE         output cache mode (default unsafe)\n"
           "  -T CACHE         source cache mode (default writeback)\n"
           "  -p               show progress\n"
           "  -q               quiet\n"
           "  --keep-chain     convert a source with a backing chain (a qcow2 overlay,\n"
           "                   a VirtualBox differencing VDI) into a chain of the same\n"
           "                   depth instead of one flattened image: OUTPUT_FILENAME\n"
           "                   gets the top layer, each layer N below it (1, 2, ...)\n"
           "                   goes to OUTPUT_FILENAME with '.N' put before its\n"
           "                   extension (out.qcow2, out.1.qcow2, ...), holds only\n"
           "                   what that layer defines, and is the backing file of\n"
           "                   the layer above (one source; not with -n, -B or -l)\n");
}

/* qemu-img -p: percentages, printed when they moved by at least 1%. */
struct progress {
    double shown;
};

static void
progress_cb(void *opaque, uint64_t done, uint64_t total)
{
    struct progress *p = opaque;
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (pct - p->shown >= 1.0 || (pct == 100.0 && p->shown < 100.0)) {
        p->shown = pct;
        progress_print(pct);
    }
}

/* The library's create message without its "create: PATH: " prefix. */
static const char *
create_error(const char *path)
{
    const char *msg = topcow_last_error();
    size_t n = strlen(path);
    if (!strncmp(msg, "create: ", 8))
        msg += 8;
    if (!strncmp(msg, path, n) && !strncmp(msg + n, ": ", 2))
        msg += n + 2;
    return msg;
}

/* -l: qemu-img keeps the last "snapshot.id=..,snapshot.name=.." list
 * (sn_opts) and the last plain ID_OR_NAME (sn_plain); a list wins. */
struct snapshot_param {
    bool sn_opts;
    const char *id, *name; /* with sn_opts; NULL: not given */
    const char *sn_plain;
};

struct options {
    const char *src_fmt, *out_fmt, *backing, *backing_fmt;
    struct snapshot_param sn;
    struct optlist sn_ol; /* owns the strings of sn.id and sn.name */
    struct optlist ol;
    bool have_o, no_create, target_is_zero, progress, quiet, out_of_order, force_share;
    bool compress, keep_chain;
    uint64_t min_sparse;
    unsigned workers, src_flags, dst_flags;
};

/* Parse one -l argument into o->sn, with qemu-img's messages.  Returns 0 or
 * -1. */
static int
parse_snapshot_param(struct options *o, const char *arg)
{
    if (strncmp(arg, "snapshot.", 9)) {
        o->sn.sn_plain = arg;
        return 0;
    }
    /* A new list replaces the previous one; keys repeat, the last wins. */
    optlist_free(&o->sn_ol);
    if (optlist_parse(&o->sn_ol, arg) < 0)
        return -1;
    o->sn.sn_opts = true;
    o->sn.id = o->sn.name = NULL;
    for (size_t i = 0; i < o->sn_ol.n; i++) {
        const char *key = o->sn_ol.keys[i], *val = o->sn_ol.vals[i];
        if (!val) { /* QEMU's deprecated short form of key=on */
            fprintf(stderr, "%s: warning: short-form boolean option '%s' deprecated\n"
                    "Please use %s=on instead\n", prog_name, key, key);
            val = "on";
        }
        if (!strcmp(key, "snapshot.id")) {
            o->sn.id = val;
        } else if (!strcmp(key, "snapshot.name")) {
            o->sn.name = val;
        } else {
            error_msg("Invalid parameter '%s'", key);
            error_msg("Failed in parsing snapshot param '%s'", arg);
            return -1;
        }
    }
    return 0;
}

/* Parse argv into *o; returns optind, or -1 (message printed) to exit 1, or 0
 * after --help. */
static int
parse_args(int argc, char **argv, struct options *o)
{
    enum { OPT_TARGET_IS_ZERO = 256, OPT_KEEP_CHAIN };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "keep-chain", no_argument, NULL, OPT_KEEP_CHAIN },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "hf:O:o:S:nB:F:pqm:WUt:T:cl:s:", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': o->src_fmt = optarg; break;
        case 'O': o->out_fmt = optarg; break;
        case 'o':
            if (optlist_parse(&o->ol, optarg) < 0)
                return -1;
            o->have_o = true;
            break;
        case 'S': {
            uint64_t v;
            if (parse_size(optarg, &v) < 0 || v % 512 || v > MAX_SPARSE) {
                error_msg("Invalid buffer size for sparse output specified. Valid sizes are "
                          "multiples of 512 up to %u. Select 0 to disable sparse detection "
                          "(fully allocates output).", MAX_SPARSE);
                return -1;
            }
            o->min_sparse = v;
            break;
        }
        case 'n': o->no_create = true; break;
        case OPT_TARGET_IS_ZERO: o->target_is_zero = true; break;
        case OPT_KEEP_CHAIN: o->keep_chain = true; break;
        case 'B': o->backing = optarg; break;
        case 'F': o->backing_fmt = optarg; break;
        case 'p': o->progress = true; break;
        case 'q': o->quiet = true; break;
        case 'm': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > MAX_WORKERS) {
                error_msg("Invalid number of coroutines. Allowed number of coroutines is "
                          "between 1 and %d", MAX_WORKERS);
                return -1;
            }
            o->workers = (unsigned)v;
            break;
        }
        case 'W': o->out_of_order = true; break;
        case 'U': o->force_share = true; break;
        case 't':
            if (parse_cache_mode(optarg, &o->dst_flags) < 0) {
                error_msg("Invalid cache option: %s", optarg);
                return -1;
            }
            break;
        case 'T':
            if (parse_cache_mode(optarg, &o->src_flags) < 0) {
                error_msg("Invalid source cache option: %s", optarg);
                return -1;
            }
            break;
        case 'c': o->compress = true; break;
        case 'l':
            if (parse_snapshot_param(o, optarg) < 0)
                return -1;
            break;
        case 's': o->sn.sn_plain = optarg; break;
        default: return -1;
        }
    }
    return optind;
}

/* Checks that need all options; qemu-img's messages.  Returns 0 or -1. */
static int
check_args(const struct options *o, int nfiles)
{
    if (o->target_is_zero && !o->no_create) {
        error_msg("--target-is-zero requires use of -n flag");
        return -1;
    }
    if (nfiles < 2) {
        error_msg("Must specify image file name");
        return -1;
    }
    if (!create_format_find(o->out_fmt)) {
        error_msg("Unknown file format '%s'", o->out_fmt);
        return -1;
    }
    if (o->backing && nfiles > 2) {
        error_msg("Having a backing file for the target makes no sense when concatenating "
                  "multiple input images");
        return -1;
    }
    if (o->no_create && o->have_o) {
        error_msg("-o has no effect when skipping image creation");
        return -1;
    }
    if (o->backing && !strcmp(o->out_fmt, "raw")) {
        error_msg("Backing file not supported for file format 'raw'");
        return -1;
    }
    if (o->backing && !o->backing_fmt && !o->no_create) {
        error_msg("Use of backing file requires explicit backing format");
        return -1;
    }
    if (o->compress && strcmp(o->out_fmt, "qcow2")) {
        error_msg("Compression not supported for this file format");
        return -1;
    }
    if (o->compress && optlist_has(&o->ol, "data_file")) {
        error_msg("Compression is not supported with an external data file");
        return -1;
    }
    if (o->keep_chain && (nfiles > 2 || o->no_create || o->backing || o->sn.sn_opts ||
                          o->sn.sn_plain)) {
        error_msg("--keep-chain takes one source image, and not -n, -B or -l");
        return -1;
    }
    if (o->keep_chain && !strcmp(o->out_fmt, "raw")) {
        error_msg("--keep-chain needs an output format with backing files (qcow2)");
        return -1;
    }
    if (o->target_is_zero && o->backing) {
        error_msg("Cannot use --target-is-zero when the destination image has a backing file");
        return -1;
    }
    return 0;
}

/* The id of the first snapshot of @img whose id is @id (if not NULL) and
 * whose name is @name (if not NULL), as QEMU looks snapshots up; NULL if
 * there is none.  Borrowed from @img. */
static const char *
find_snapshot(struct topcow_image *img, const char *id, const char *name)
{
    const unsigned n = topcow_snapshot_count(img);
    for (unsigned i = 0; (id || name) && i < n; i++) {
        struct topcow_snapshot sn = { .struct_size = sizeof sn };
        if (topcow_snapshot_get(img, i, &sn) < 0)
            return NULL;
        if ((!id || !strcmp(sn.id, id)) && (!name || !strcmp(sn.name, name)))
            return sn.id;
    }
    return NULL;
}

/* Reopen source @s, opened at its current state with @flags, at the snapshot
 * o->sn names.  As qemu-img 7.2 does, the source keeps its current size: a
 * smaller snapshot reads as zeros up to it, a bigger one is cut.  Returns 0,
 * or -1 with qemu-img's message printed. */
static int
load_snapshot(struct convert_source *s, const struct options *o, unsigned flags)
{
    const struct snapshot_param *sn = &o->sn;
    struct topcow_info info = { .struct_size = sizeof info };
    if (topcow_image_get_info(s->img, &info) < 0) {
        error_msg("%s: %s", s->name, topcow_last_error());
        return -1;
    }
    if (strcmp(info.format, "qcow2")) {
        error_msg("Failed to load snapshot: Block format '%s' used by device '' does not "
                  "support temporarily loading internal snapshots", info.format);
        return -1;
    }
    const char *id = sn->sn_opts ? find_snapshot(s->img, sn->id, sn->name)
                                 : find_snapshot(s->img, sn->sn_plain, NULL);
    if (!id && !sn->sn_opts)
        id = find_snapshot(s->img, NULL, sn->sn_plain);
    if (!id) {
        error_msg("Failed to load snapshot: Can't find snapshot");
        return -1;
    }
    /* The library finds snapshots by id first, so the id names this one. */
    char *id_copy = strdup(id);
    if (!id_copy) {
        error_msg("out of memory");
        return -1;
    }
    struct topcow_open_opts oo = TOPCOW_OPEN_OPTS_INIT;
    oo.format = o->src_fmt;
    oo.flags = flags;
    oo.snapshot = id_copy;
    topcow_image_close(s->img);
    int r = topcow_image_open(&s->img, s->name, &oo);
    free(id_copy);
    if (r < 0) {
        error_msg("Failed to load snapshot: %s",
                  r == -ENOENT ? "Can't find snapshot" : topcow_last_error());
        return -1;
    }
    uint64_t snap_size = topcow_image_size(s->img);
    if (snap_size < s->size)
        s->size = snap_size;
    return 0;
}

/* Create the target as the options say, sized @size.  Returns 0 or -1. */
static int
create_target(struct options *o, const char *path, uint64_t size)
{
    struct create_spec spec = { .opts = TOPCOW_CREATE_OPTS_INIT };
    spec.opts.format = o->out_fmt;
    spec.opts.size = size;
    spec.opts.backing_file = o->backing;
    spec.opts.backing_format = o->backing_fmt;
    create_opts_parse(&o->ol, path, &spec);
    if (topcow_image_create(path, &spec.opts) < 0) {
        error_msg("%s: error while converting %s: %s", path, o->out_fmt, create_error(path));
        return -1;
    }
    return 0;
}

int
cmd_convert(int argc, char **argv)
{
    struct options o = {
        .out_fmt = "raw",
        .min_sparse = 4096,
        .workers = 8,
        .dst_flags = TOPCOW_OPEN_UNSAFE,
    };
    int first = parse_args(argc, argv, &o);
    if (first <= 0) {
        optlist_free(&o.ol);
        optlist_free(&o.sn_ol);
        return first == 0 ? 0 : 1;
    }
    int nfiles = argc - first;
    size_t nsrcs = nfiles > 0 ? (size_t)nfiles - 1 : 0;
    const char *out = nfiles > 0 ? argv[argc - 1] : NULL;
    struct convert_source *srcs = NULL;
    struct topcow_image *dst = NULL;
    int ret = 1;
    bool created = false;
    char msg[1024] = "";
    /* -o backing_file/backing_fmt stand for -B/-F; the size always comes from
     * the sources. */
    const char *v;
    if ((v = optlist_get(&o.ol, "backing_file")))
        o.backing = v;
    if ((v = optlist_get(&o.ol, "backing_fmt")))
        o.backing_fmt = v;
    optlist_get(&o.ol, "size");
    /* A streamOptimized VMDK compresses every grain by itself: -c asks for
     * what it does anyway (qemu-img accepts it there too). */
    const char *sub = o.compress && !strcmp(o.out_fmt, "vmdk") ? optlist_get(&o.ol, "subformat")
                                                               : NULL;
    if (sub && !strcmp(sub, "streamOptimized"))
        o.compress = false;
    if (check_args(&o, nfiles) < 0)
        goto out;
    if (o.quiet)
        o.progress = false;

    srcs = calloc(nsrcs, sizeof *srcs);
    if (!srcs) {
        error_msg("out of memory");
        goto out;
    }
    unsigned sflags = TOPCOW_OPEN_RDONLY | o.src_flags;
    if (o.force_share)
        sflags |= TOPCOW_OPEN_FORCE_SHARE;
    uint64_t total = 0;
    for (size_t i = 0; i < nsrcs; i++) {
        struct convert_source *s = &srcs[i];
        s->name = argv[first + (int)i];
        s->img = open_image(s->name, o.src_fmt, sflags | OPEN_NEED_KEY);
        if (!s->img)
            goto out;
        s->size = topcow_image_size(s->img);
        s->span = (s->size + 511) & ~511ull;
        s->start = total;
        total += s->span;
    }
    if (o.sn.sn_plain && !o.sn.sn_opts && nsrcs > 1) {
        error_msg("No support for concatenating multiple snapshot");
        goto out;
    }
    /* Only the first source, as in qemu-img. */
    if ((o.sn.sn_opts || o.sn.sn_plain) && load_snapshot(&srcs[0], &o, sflags) < 0)
        goto out;
    if (o.keep_chain) {
        struct progress cprog = { 0 };
        const struct convert_chain_opts co = {
            .out = out, .out_fmt = o.out_fmt, .ol = &o.ol, .dst_flags = o.dst_flags,
            .workers = o.workers, .out_of_order = o.out_of_order, .min_sparse = o.min_sparse,
            .compress = o.compress, .progress = o.progress ? progress_cb : NULL,
            .opaque = &cprog,
        };
        if (o.progress)
            progress_print(0);
        ret = convert_keep_chain(srcs[0].img, &co) < 0 ? 1 : 0;
        goto out;
    }

    if (!o.no_create && create_target(&o, out, total) < 0)
        goto out;
    created = !o.no_create;
    /* The output is a path (never --image-opts), unlocked with the secret
     * its creation options named. */
    dst = open_image_path(out, o.out_fmt, o.dst_flags | OPEN_NEED_KEY,
                          optlist_get(&o.ol, "encrypt.key-secret"));
    if (!dst)
        goto out;
    if (o.no_create && topcow_image_size(dst) < total) {
        error_msg("output file is smaller than input file");
        goto out;
    }
    struct topcow_info info = { .struct_size = sizeof info };
    if (topcow_image_get_info(dst, &info) < 0) {
        error_msg("%s: %s", out, topcow_last_error());
        goto out;
    }

    struct progress prog = { 0 };
    struct convert_job job = {
        .srcs = srcs,
        .nsrcs = nsrcs,
        .dst = dst,
        .size = total,
        .workers = o.workers,
        .out_of_order = o.out_of_order,
        .parallel_writes = (o.dst_flags & TOPCOW_OPEN_DIRECT) != 0,
        .min_sparse = o.min_sparse,
        .granule = info.cluster_size ? info.cluster_size : RAW_GRANULE,
        .zero_init = o.no_create ? o.target_is_zero : !o.backing,
        .top_only = o.backing != NULL,
        .compress = o.compress,
        .progress = o.progress ? progress_cb : NULL,
        .opaque = &prog,
    };
    if (o.progress)
        progress_print(0);
    if (convert_run(&job, msg, sizeof msg) < 0)
        goto out;
    ret = 0;

out:
    if (dst && topcow_image_close(dst) < 0 && ret == 0) {
        snprintf(msg, sizeof msg, "%s: %s", out, topcow_last_error());
        ret = 1;
    }
    /* A failed copy (a full disk, a read error) must not leave an image
     * that looks complete: remove what we created (saying so on the error's
     * one line), or say that the user's output is incomplete. */
    if (ret != 0 && created && unlink(out) == 0) {
        if (msg[0])
            error_msg("%s (removed the incomplete output '%s')", msg, out);
    } else if (msg[0]) {
        error_msg("%s (the output '%s' is incomplete)", msg, out);
    }
    if (ret == 0 && o.progress)
        progress_end();
    for (size_t i = 0; srcs && i < nsrcs; i++)
        topcow_image_close(srcs[i].img);
    free(srcs);
    optlist_free(&o.ol);
    optlist_free(&o.sn_ol);
    return ret;
}
