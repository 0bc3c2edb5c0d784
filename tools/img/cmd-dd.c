// SPDX-License-Identifier: MIT
/* topcow dd: qemu-img dd syntax and semantics.
 *   dd [-f FMT] [-O OUTPUT_FMT] [-U] [bs=BYTES] [count=N] [skip=N] if=INPUT of=OUTPUT
 * Creates OUTPUT afresh and copies the guest bytes of INPUT into it.  The
 * sizes follow qemu-img 7.2 exactly, including its quirk: with count= the
 * input is first cut to count*bs bytes and skip*bs bytes are then taken off
 * its start, so the output holds input[skip*bs, min(count*bs, size)), not
 * count blocks.  A skip past the end warns, creates an empty output and
 * succeeds, like dd(1).  Every byte is written, zeros included, as qemu-img
 * does, so a qcow2 output is allocated over the copied range. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "measure.h"
#include "minmax.h"
#include "util.h"

/* Bytes moved per read/write: bs only decides what is copied, not how, so
 * the copy runs in larger chunks than the default 512-byte blocks. */
#define DD_CHUNK (4u << 20)

static void
help(void)
{
    printf("usage: topcow dd [-f FMT] [-O OUTPUT_FMT] [-U] [bs=BYTES] [count=N] [skip=N]\n"
           "                 if=INPUT of=OUTPUT\n\n"
           "Create OUTPUT and copy the contents of INPUT into it, like dd(1) on guest\n"
           "bytes.  OUTPUT is created with the size of what is copied.\n\n"
           "  if=INPUT       image to read (format -f FMT, probed by default)\n"
           "  of=OUTPUT      image to create (format -O OUTPUT_FMT: raw (default), qcow2, ...)\n"
           "  bs=BYTES       block size for count and skip, 1 to 2147483647 (default 512;\n"
           "                 suffixes k, M, G)\n"
           "  count=N        copy only the first N*bs bytes of INPUT, less the skipped part\n"
           "                 (as qemu-img dd does)\n"
           "  skip=N         start reading at byte N*bs of INPUT\n"
           "  -U             open INPUT without taking its lock\n");
}

struct dd_args {
    const char *in, *out;
    uint64_t bs, count, skip;
    bool has_count, has_skip;
};

/* Parse "NAME=VALUE" for bs, count and skip with qemu-img's messages.
 * Returns 0 or -1. */
static int
dd_number(const char *name, const char *val, uint64_t min, uint64_t max, uint64_t *out)
{
    int r = cvtnum(val, out);
    if (r == -1) {
        error_msg("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
        error_msg("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (r < 0 || *out < min || *out > max) {
        error_msg("Invalid %s specified. Must be between %" PRIu64 " and %" PRIu64 ".", name,
                  min, max);
        return -1;
    }
    return 0;
}

/* Parse one operand.  Returns 0 or -1. */
static int
dd_operand(const char *arg, struct dd_args *a)
{
    const char *eq = strchr(arg, '=');
    size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
    const char *val = eq ? eq + 1 : NULL;
#define IS(k) (klen == strlen(k) && !strncmp(arg, k, klen) && val)
    if (IS("bs"))
        return dd_number("bs", val, 1, INT_MAX, &a->bs);
    if (IS("count")) {
        a->has_count = true;
        return dd_number("count", val, 0, INT64_MAX, &a->count);
    }
    if (IS("skip")) {
        a->has_skip = true;
        return dd_number("skip", val, 0, INT64_MAX, &a->skip);
    }
    if (IS("if")) {
        a->in = val;
        return 0;
    }
    if (IS("of")) {
        a->out = val;
        return 0;
    }
#undef IS
    error_msg("unrecognized operand %.*s", (int)klen, arg);
    return -1;
}

/* The library's create message without its "create: PATH: " prefix. */
static const char *
create_error(const char *path)
{
    const char *msg = topcow_last_error();
    size_t n = strlen(path);
    if (!strncmp(msg, "create: ", 8))
        msg += 8;
    if (n && !strncmp(msg, path, n) && !strncmp(msg + n, ": ", 2))
        msg += n + 2;
    return msg;
}

/* Copy input bytes [@start, @end) to output offset 0.  Returns 0 or -1. */
static int
copy(struct topcow_image *in, struct topcow_image *out, uint64_t start, uint64_t end,
     uint64_t in_size)
{
    size_t bufsize = (size_t)MIN((uint64_t)DD_CHUNK, end > start ? end - start : 1);
    uint8_t *buf = malloc(bufsize);
    if (!buf) {
        error_msg("out of memory");
        return -1;
    }
    int ret = 0;
    for (uint64_t pos = start; pos < end;) {
        size_t n = (size_t)MIN((uint64_t)bufsize, end - pos);
        /* Past the input's own end (it is counted in whole sectors, as
         * QEMU counts it) the bytes read as zeros. */
        size_t avail = pos < in_size ? (size_t)MIN((uint64_t)n, in_size - pos) : 0;
        if (avail && topcow_image_pread(in, buf, avail, pos) < 0) {
            error_msg("error while reading from input image file at byte %" PRIu64 ": %s",
                      pos, topcow_last_error());
            ret = -1;
            break;
        }
        memset(buf + avail, 0, n - avail);
        if (topcow_image_pwrite(out, buf, n, pos - start, 0) < 0) {
            error_msg("error while writing to output image file at byte %" PRIu64 ": %s",
                      pos - start, topcow_last_error());
            ret = -1;
            break;
        }
        pos += n;
    }
    free(buf);
    return ret;
}

int
cmd_dd(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *out_fmt = "raw";
    unsigned in_flags = TOPCOW_OPEN_RDONLY;
    struct dd_args a = { .bs = 512 };
    int c;
    /* Operands and options mix freely, as getopt permutes them. */
    while ((c = getopt_long(argc, argv, "hf:O:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'U': in_flags |= TOPCOW_OPEN_FORCE_SHARE; break;
        case OPT_IMAGE_OPTS:
            error_msg("--image-opts is not supported; give a file name and -f");
            return 1;
        default: return 1;
        }
    }
    for (int i = optind; i < argc; i++)
        if (dd_operand(argv[i], &a) < 0)
            return 1;
    if (!a.in || !a.out) {
        error_msg("Must specify both input and output files");
        return 1;
    }

    struct topcow_image *in = open_image(a.in, fmt, in_flags | OPEN_NEED_KEY), *out = NULL;
    if (!in)
        return 1;
    int ret = 1;
    if (!topcow_format_can_create(out_fmt)) {
        error_msg("Unknown file format '%s'", out_fmt);
        goto out;
    }

    /* qemu-img's arithmetic: the input length in whole sectors, cut to
     * count*bs, less skip*bs (or nothing when skip reaches past the end). */
    const uint64_t in_size = topcow_image_size(in);
    uint64_t size = ALIGN_UP(in_size, 512);
    if (a.has_count && a.count <= INT64_MAX / a.bs && a.count * a.bs < size)
        size = a.count * a.bs;
    const bool past_end = a.has_skip && (a.skip > INT64_MAX / a.bs || a.skip * a.bs > size);
    const uint64_t start = past_end ? size : a.skip * a.bs;

    struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
    co.format = out_fmt;
    co.size = ALIGN_UP(size - start, 512); /* qemu-img creates whole sectors */
    if (topcow_image_create(a.out, &co) < 0) {
        error_msg("%s: error while creating output image: %s", a.out, create_error(a.out));
        goto out;
    }
    out = open_image(a.out, out_fmt, 0);
    if (!out)
        goto out;
    if (past_end)
        error_msg("%s: cannot skip to specified offset", a.in);
    if (copy(in, out, start, size, in_size) < 0)
        goto out;
    ret = 0;
out:
    if (out && topcow_image_close(out) < 0 && ret == 0) {
        error_msg("%s: %s", a.out, topcow_last_error());
        ret = 1;
    }
    topcow_image_close(in);
    return ret;
}
