// SPDX-License-Identifier: MIT
/* topcow measure: qemu-img measure syntax and output.
 *   measure [--output=human|json] [-O FMT] [-o OPTIONS]
 *           [--size N | [-f FMT] [-l SNAPSHOT] [-U] FILE]
 * Prints how many bytes a new image of format FMT (raw by default) needs:
 * "required" for the data of FILE (or nothing but metadata with --size),
 * "fully allocated" when every cluster is written, and for qcow2 sources
 * and v3 output the room their persistent bitmaps would take.  Options and
 * messages follow qemu-img 7.2; the arithmetic lives in measure.c. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "json.h"
#include "measure.h"
#include "minmax.h"
#include "util.h"

static void
help(void)
{
    printf("usage: topcow measure [--output=human|json] [-O OUTPUT_FMT] [-o OPTIONS]\n"
           "                      [--size N | [-f FMT] [-l SNAPSHOT] [-U] FILENAME]\n\n"
           "Print the size a new image needs: for N bytes of virtual disk, or for the\n"
           "contents of FILENAME (its whole backing chain).  'required size' counts the\n"
           "clusters that hold data, 'fully allocated size' every cluster; for a qcow2\n"
           "source and qcow2 v3 output, 'bitmaps size' is the room its persistent\n"
           "bitmaps take on top of that.\n\n"
           "  --size N         measure an empty image of N bytes (suffixes k, M, G, T, P, E)\n"
           "  -f FMT           format of FILENAME (default: probed)\n"
           "  -l SNAPSHOT      measure internal snapshot SNAPSHOT (id or name, or\n"
           "                   snapshot.id=ID / snapshot.name=NAME) of FILENAME\n"
           "  -U, --force-share  open FILENAME without taking its lock\n"
           "  -O OUTPUT_FMT    format of the image to create: raw (default) or qcow2\n"
           "  -o OPTIONS       its options, as for 'create': cluster_size, compat,\n"
           "                   refcount_bits, extended_l2, preallocation, backing_file, ...\n"
           "  --output=OFMT    'human' (default) or 'json'\n");
}

/* ------------------------------------------------------------------------ */
/* -o options: the ones qemu-img accepts for each output format, checked for
 * their type in the order given, with qemu-img's messages. */

enum opt_type { T_STR, T_BOOL, T_NUM, T_SIZE };

struct opt_def {
    const char *name;
    enum opt_type type;
};

static const struct opt_def qcow2_opts[] = {
    { "backing_file", T_STR },        { "backing_fmt", T_STR },
    { "cluster_size", T_SIZE },       { "compat", T_STR },
    { "compression_type", T_STR },    { "data_file", T_STR },
    { "data_file_raw", T_BOOL },      { "encrypt.cipher-alg", T_STR },
    { "encrypt.cipher-mode", T_STR }, { "encrypt.format", T_STR },
    { "encrypt.hash-alg", T_STR },    { "encrypt.iter-time", T_NUM },
    { "encrypt.ivgen-alg", T_STR },   { "encrypt.ivgen-hash-alg", T_STR },
    { "encrypt.key-secret", T_STR },  { "encryption", T_BOOL },
    { "extended_l2", T_BOOL },        { "extent_size_hint", T_SIZE },
    { "lazy_refcounts", T_BOOL },     { "nocow", T_BOOL },
    { "preallocation", T_STR },       { "refcount_bits", T_NUM },
    { "size", T_SIZE },               { NULL, T_STR },
};

static const struct opt_def raw_opts[] = {
    { "extent_size_hint", T_SIZE }, { "nocow", T_BOOL },
    { "preallocation", T_STR },     { "size", T_SIZE },
    { NULL, T_STR },
};

/* qemu's boolean spellings for -o values. */
static int
opt_bool(const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "y"))
        *out = true;
    else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "n"))
        *out = false;
    else
        return -1;
    return 0;
}

/* Numbers as qemu parses them: decimal, 0x hex or 0 octal, a leading '-'
 * wrapping around as in strtoull. */
static int
opt_num(const char *v, uint64_t *out)
{
    char *end;
    if (!*v)
        return -1;
    *out = strtoull(v, &end, 0);
    return *end ? -1 : 0;
}

/* qemu-img refuses an -o list that is empty, starts with a comma or ends
 * with one that is not escaped (",," stands for a literal comma). */
static bool
valid_option_list(const char *s)
{
    size_t len = strlen(s), trailing = 0;
    while (trailing < len && s[len - 1 - trailing] == ',')
        trailing++;
    return len && s[0] != ',' && trailing % 2 == 0;
}

/* The value of option @i: a bare key means "on", as in qemu. */
static const char *
opt_val(const struct optlist *ol, size_t i)
{
    return ol->vals[i] ? ol->vals[i] : "on";
}

/* The last value given for @key, or NULL. */
static const char *
opt_get(const struct optlist *ol, const char *key)
{
    const char *v = NULL;
    for (size_t i = 0; i < ol->n; i++)
        if (!strcmp(ol->keys[i], key))
            v = opt_val(ol, i);
    return v;
}

/* Check every option against @defs.  Returns 0 or -1 after printing. */
static int
check_opt_types(const struct optlist *ol, const struct opt_def *defs, const char *fmt)
{
    for (size_t i = 0; i < ol->n; i++) {
        const struct opt_def *d = defs;
        while (d->name && strcmp(d->name, ol->keys[i]))
            d++;
        const char *v = opt_val(ol, i);
        uint64_t n;
        bool b;
        if (!d->name) {
            error_msg("Invalid parameter '%s'", ol->keys[i]);
        } else if (d->type == T_SIZE && (!ol->vals[i] || cvtnum(v, &n) < 0)) {
            error_msg("Parameter '%s' expects a non-negative number below 2^64", d->name);
            fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                            "tera-, peta-\nand exabytes, respectively.\n");
        } else if (d->type == T_BOOL && opt_bool(v, &b) < 0) {
            error_msg("Parameter '%s' expects 'on' or 'off'", d->name);
        } else if (d->type == T_NUM && opt_num(v, &n) < 0) {
            error_msg("Parameter '%s' expects a number", d->name);
        } else {
            continue;
        }
        error_msg("Invalid options for file format '%s'", fmt);
        return -1;
    }
    return 0;
}

/* The qcow2 settings that change the numbers. */
struct qcow2_target {
    struct measure_geometry geo;
    unsigned compat;
    bool full_prealloc;  /* falloc or full: data counts as written */
    bool backing;        /* backing_file given: assume no cluster is shared */
};

/* Validate the qcow2 options in qemu-img's order.  Returns 0 or -1. */
static int
parse_qcow2_target(const struct optlist *ol, struct qcow2_target *t)
{
    const char *v;
    uint64_t n;
    bool b = false;

    t->geo.cluster_size = 65536;
    if ((v = opt_get(ol, "cluster_size"))) {
        cvtnum(v, &n);
        if (n < 512 || n > (2u << 20) || (n & (n - 1))) {
            error_msg("Cluster size must be a power of two between 512 and 2048k");
            return -1;
        }
        t->geo.cluster_size = (uint32_t)n;
    }
    if ((v = opt_get(ol, "extended_l2")))
        opt_bool(v, &b);
    t->geo.extended_l2 = b;
    if (b && t->geo.cluster_size < 16384) {
        error_msg("Extended L2 entries are only supported with cluster sizes of at least "
                  "16384 bytes");
        return -1;
    }
    t->compat = 3;
    if ((v = opt_get(ol, "compat"))) {
        if (!strcmp(v, "0.10"))
            t->compat = 2;
        else if (strcmp(v, "1.1")) {
            error_msg("Invalid compatibility level: '%s'", v);
            return -1;
        }
    }
    t->geo.refcount_bits = 16;
    if ((v = opt_get(ol, "refcount_bits"))) {
        opt_num(v, &n);
        if (n == 0 || n > 64 || (n & (n - 1))) {
            error_msg("Refcount width must be a power of two and may not exceed 64 bits");
            return -1;
        }
        if (t->compat == 2 && n != 16) {
            error_msg("Different refcount widths than 16 bits require compatibility level "
                      "1.1 or above (use compat=1.1 or greater)");
            return -1;
        }
        t->geo.refcount_bits = (unsigned)n;
    }
    if ((v = opt_get(ol, "preallocation"))) {
        if (!strcmp(v, "falloc") || !strcmp(v, "full"))
            t->full_prealloc = true;
        else if (strcmp(v, "off") && strcmp(v, "metadata")) {
            error_msg("invalid parameter value: %s", v);
            return -1;
        }
    }
    t->backing = opt_get(ol, "backing_file") != NULL;
    if ((v = opt_get(ol, "encrypt.format")) && !strcmp(v, "luks")) {
        if (!opt_get(ol, "encrypt.key-secret"))
            error_msg("Parameter 'encrypt.key-secret' is required for cipher");
        else
            error_msg("encrypt.format=luks: measuring encrypted images is not supported");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The source image */

/* Bytes of the output's clusters (of @cluster_size) that hold data of
 * @img, through its backing chain.  A cluster counts when any byte of it
 * reads from storage; ranges that read as zeros (holes, zero clusters,
 * unallocated ranges) do not.  Returns 0 or -1 after printing. */
static int
data_bytes(struct topcow_image *img, uint64_t size, uint32_t cluster_size, uint64_t *out)
{
    uint64_t counted_end = 0, total = 0, off = 0;
    while (off < size) {
        struct topcow_extent ext;
        if (topcow_image_block_status(img, off, size - off, 0, &ext) < 0) {
            error_msg("Unable to get block status: %s", topcow_last_error());
            return -1;
        }
        uint64_t end = off + ext.length;
        if ((ext.flags & TOPCOW_EXTENT_DATA) && !(ext.flags & TOPCOW_EXTENT_ZERO)) {
            /* Count the clusters this run touches, except one already
             * counted for the previous data run. */
            uint64_t first = MAX(ALIGN_DOWN(off, cluster_size), counted_end);
            uint64_t last = ALIGN_UP(end, cluster_size);
            if (last > first)
                total += last - first;
            counted_end = MAX(counted_end, last);
        }
        off = end;
    }
    *out = total;
    return 0;
}

struct source {
    struct topcow_image *img;
    uint64_t size;       /* rounded up to 512 bytes, as QEMU sizes images */
    bool qcow2_v3;       /* can carry persistent bitmaps */
};

/* Open @path.  Returns 0 or -1 after printing. */
static int
open_source(const char *path, const char *fmt, const char *snapshot, bool force_share,
            struct source *src)
{
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.format = fmt;
    o.flags = TOPCOW_OPEN_RDONLY | (force_share ? TOPCOW_OPEN_FORCE_SHARE : 0);
    char *snap = NULL;
    if (snapshot) {
        /* Open without it first so that a missing file reads as such. */
        src->img = open_image(path, fmt, o.flags);
        if (!src->img)
            return -1;
        topcow_image_close(src->img);
        snap = snapshot_param_id(snapshot);
        if (!snap) {
            error_msg("out of memory");
            return -1;
        }
        o.snapshot = snap;
    }
    int r = topcow_image_open(&src->img, path, &o);
    free(snap);
    if (r < 0) {
        if (snapshot)
            error_msg("Failed to load snapshot '%s' of '%s': %s", snapshot, path,
                      topcow_last_error());
        else
            error_msg("Could not open '%s': %s", path, topcow_last_error());
        return -1;
    }
    struct topcow_info info = { .struct_size = sizeof info };
    if (topcow_image_get_info(src->img, &info) < 0) {
        error_msg("%s: %s", path, topcow_last_error());
        return -1;
    }
    src->size = ALIGN_UP(topcow_image_size(src->img), 512);
    src->qcow2_v3 = info.format && !strcmp(info.format, "qcow2") && info.compat >= 3;
    return 0;
}

/* ------------------------------------------------------------------------ */

struct result {
    uint64_t required, fully_allocated, bitmaps;
    bool has_bitmaps;
};

static void
print_result(const struct result *r, bool json)
{
    if (json) {
        struct json *o = json_new_object();
        if (r->has_bitmaps)
            json_set_uint(o, "bitmaps", r->bitmaps);
        json_set_uint(o, "required", r->required);
        json_set_uint(o, "fully-allocated", r->fully_allocated);
        json_print(stdout, o);
        json_free(o);
        return;
    }
    printf("required size: %" PRIu64 "\n", r->required);
    printf("fully allocated size: %" PRIu64 "\n", r->fully_allocated);
    if (r->has_bitmaps)
        printf("bitmaps size: %" PRIu64 "\n", r->bitmaps);
}

/* qemu-img output formats that exist but cannot be measured. */
static bool
known_unmeasurable(const char *fmt)
{
    static const char *const names[] = { "vmdk",  "vdi",  "vhdx", "vpc",  "qed", "qcow",
                                         "parallels", "bochs", "cloop", "dmg", "vvfat",
                                         "file", "luks", NULL };
    for (size_t i = 0; names[i]; i++)
        if (!strcmp(fmt, names[i]))
            return true;
    return false;
}

/* Measure a qcow2 target.  Returns 0 or -1 after printing. */
static int
measure_qcow2(const struct optlist *ol, uint64_t opt_size, const struct source *src,
              const char *path, struct result *res)
{
    struct qcow2_target t = { 0 };
    if (parse_qcow2_target(ol, &t) < 0)
        return -1;
    const uint32_t cs = t.geo.cluster_size;
    /* qemu-img checks the L1 limit against the size option only: a source
     * image's own size is measured whatever it is. */
    if (opt_size > INT64_MAX || measure_l2_tables(opt_size, &t.geo) * 8 > MEASURE_MAX_L1_BYTES) {
        error_msg("The image size is too large (try using a larger cluster size)");
        return -1;
    }
    uint64_t vsize = ALIGN_UP(src->img ? src->size : opt_size, cs);
    uint64_t data = 0;
    if (src->img) {
        if (t.backing)
            data = vsize; /* the new backing file may share nothing with the source */
        else if (data_bytes(src->img, topcow_image_size(src->img), cs, &data) < 0)
            return -1;
    }
    if (t.full_prealloc)
        data = vsize;
    res->fully_allocated = measure_qcow2_full(vsize, &t.geo);
    /* Metadata is counted as for the fully allocated image (L2 tables for
     * clusters that stay empty included); only data is left out. */
    res->required = res->fully_allocated - vsize + data;
    res->has_bitmaps = src->img && src->qcow2_v3 && t.compat >= 3;
    if (res->has_bitmaps) {
        struct measure_bitmap *bm;
        size_t n;
        if (measure_read_bitmaps(path, &bm, &n) < 0)
            return -1;
        res->bitmaps = measure_bitmaps(bm, n, src->size, cs);
        free(bm);
    }
    return 0;
}

int
cmd_measure(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_SIZE, OPT_OBJECT, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "size", required_argument, NULL, OPT_SIZE },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw", *snapshot = NULL;
    bool json = false, force_share = false, has_size = false;
    uint64_t size = 0;
    struct optlist ol = { 0 };
    struct source src = { 0 };
    int ret = 1, c, r;
    while ((c = getopt_long(argc, argv, "hf:O:o:l:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help();
            ret = 0;
            goto out;
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o':
            if (!valid_option_list(optarg)) {
                error_msg("Invalid option list: %s", optarg);
                goto out;
            }
            if (optlist_parse(&ol, optarg) < 0)
                goto out;
            break;
        case 'l': snapshot = optarg; break;
        case 'U': force_share = true; break;
        case OPT_SIZE:
            r = cvtnum(optarg, &size);
            if (r == -1) {
                error_msg("Invalid image size specified. You may use k, M, G, T, P or E "
                          "suffixes for");
                error_msg("kilobytes, megabytes, gigabytes, terabytes, petabytes and "
                          "exabytes.");
                goto out;
            }
            if (r < 0 || size > INT64_MAX) {
                error_msg("Invalid image size specified. Must be between 0 and %" PRId64 ".",
                          INT64_MAX);
                goto out;
            }
            has_size = true;
            break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human")) {
                error_msg("--output must be used with human or json as argument.");
                goto out;
            }
            break;
        case OPT_OBJECT:
            error_msg("--object is not supported (measure needs no secrets for raw and "
                      "qcow2 output)");
            goto out;
        case OPT_IMAGE_OPTS:
            error_msg("--image-opts is not supported; give a file name and -f");
            goto out;
        default: goto out;
        }
    }
    if (argc - optind > 1) {
        error_msg("At most one filename argument is allowed.");
        goto out;
    }
    const char *path = optind < argc ? argv[optind] : NULL;
    if (!path && (fmt || snapshot)) {
        error_msg("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (path && has_size) {
        error_msg("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!path && !has_size) {
        error_msg("Either --size N or one filename must be specified.");
        goto out;
    }
    if (path && open_source(path, fmt, snapshot, force_share, &src) < 0)
        goto out;

    bool qcow2 = !strcmp(out_fmt, "qcow2");
    if (!qcow2 && strcmp(out_fmt, "raw")) {
        if (known_unmeasurable(out_fmt))
            error_msg("Block driver '%s' does not support size measurement", out_fmt);
        else
            error_msg("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (check_opt_types(&ol, qcow2 ? qcow2_opts : raw_opts, out_fmt) < 0)
        goto out;
    /* --size wins over -o size=; with a source, -o size= only feeds the
     * qcow2 L1 limit check, as in qemu-img. */
    uint64_t opt_size = size;
    const char *v;
    if (!has_size && (v = opt_get(&ol, "size")))
        cvtnum(v, &opt_size);

    struct result res = { 0 };
    if (qcow2) {
        if (measure_qcow2(&ol, opt_size, &src, path, &res) < 0)
            goto out;
    } else {
        /* A raw file is its virtual size, in whole sectors; preallocation
         * changes nothing. */
        res.required = src.img ? src.size : ALIGN_UP(size, 512);
        res.fully_allocated = res.required;
    }
    print_result(&res, json);
    ret = 0;
out:
    topcow_image_close(src.img);
    optlist_free(&ol);
    return ret;
}
