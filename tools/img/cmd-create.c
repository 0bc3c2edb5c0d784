// SPDX-License-Identifier: MIT
/* topcow create: qemu-img create syntax.
 *   create [-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] [-u] [-o OPTIONS] FILE [SIZE] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "util.h"

static void
help(void)
{
    printf("usage: topcow create [-q] [-f FMT] [-b BACKING_FILE [-F BACKING_FMT]] [-u]\n"
           "                     [-o OPTIONS] FILENAME [SIZE]\n\n"
           "Create a disk image FILENAME of SIZE bytes (suffixes k, M, G, T, P, E).\n"
           "With a backing file the size defaults to the backing file's.\n\n"
           "  -f FMT          image format: qcow2 (default) or raw\n"
           "  -b FILE         backing file (relative names are relative to FILENAME)\n"
           "  -F FMT          format of the backing file (required with -b, as in qemu-img)\n"
           "  -u              do not open the backing file (trust -F and SIZE)\n"
           "  -o OPTIONS      comma-separated format options; '-o help' lists them\n"
           "  -q              quiet\n");
}

static void
options_help(const char *fmt)
{
    printf("Supported options:\n");
    if (!strcmp(fmt, "raw")) {
        printf("  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, "
               "full)\n  size=<size>            - Virtual disk size\n");
        return;
    }
    printf("  backing_file=<str>     - File name of a base image\n"
           "  backing_fmt=<str>      - Image format of the base image\n"
           "  cluster_size=<size>    - qcow2 cluster size (512 B .. 2 MiB, power of two)\n"
           "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
           "  compression_type=<str> - Compression method: zlib or zstd\n"
           "  data_file=<str>        - File name of an external data file\n"
           "  data_file_raw=<bool>   - The external data file must stay valid as a raw image\n"
           "  extended_l2=<bool>     - Extended L2 tables (subclusters)\n"
           "  lazy_refcounts=<bool>  - Postpone refcount updates\n"
           "  preallocation=<str>    - Preallocation mode (off, metadata, falloc, full)\n"
           "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
           "  size=<size>            - Virtual disk size\n");
}

static int
parse_prealloc(const char *v, enum topcow_prealloc *p, bool raw)
{
    if (!strcmp(v, "off"))
        *p = TOPCOW_PREALLOC_OFF;
    else if (!strcmp(v, "metadata") && !raw)
        *p = TOPCOW_PREALLOC_METADATA;
    else if (!strcmp(v, "falloc"))
        *p = TOPCOW_PREALLOC_FALLOC;
    else if (!strcmp(v, "full"))
        *p = TOPCOW_PREALLOC_FULL;
    else
        return -1;
    return 0;
}

int
cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 'O' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "qcow2", *backing = NULL, *backing_fmt = NULL;
    bool quiet = false, no_open = false;
    struct optlist ol = { 0 };
    int c;
    while ((c = getopt_long(argc, argv, "+hqf:b:F:uo:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'q': quiet = true; break;
        case 'f': fmt = optarg; break;
        case 'b': backing = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'u': no_open = true; break;
        case 'o':
            if (optlist_parse(&ol, optarg) < 0)
                return 1;
            break;
        case 'O': break; /* secrets: used by encrypted images (not yet) */
        default: return 1;
        }
    }
    if (strcmp(fmt, "qcow2") && strcmp(fmt, "raw"))
        die("Unknown file format '%s'", fmt);
    bool raw = !strcmp(fmt, "raw");
    if (optlist_get(&ol, "help")) {
        options_help(fmt);
        optlist_free(&ol);
        return 0;
    }
    if (optind >= argc)
        die("Expecting image file name");
    const char *path = argv[optind++];

    struct topcow_create_opts o = TOPCOW_CREATE_OPTS_INIT;
    o.format = fmt;
    const char *v;
    const char *size_str = optind < argc ? argv[optind++] : optlist_get(&ol, "size");
    if (optind < argc)
        die("Unexpected argument: %s", argv[optind]);
    if (size_str && parse_size(size_str, &o.size) < 0)
        die("Invalid image size specified. You may use k, M, G, T, P or E suffixes for\n"
            "%s: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.", prog_name);
    if ((v = optlist_get(&ol, "backing_file")))
        backing = v;
    if ((v = optlist_get(&ol, "backing_fmt")))
        backing_fmt = v;
    o.backing_file = backing;
    o.backing_format = backing_fmt;
    o.no_backing_open = no_open;
    if (!size_str && !backing)
        die("%s: Image creation needs a size parameter", path);
    if (!size_str && no_open)
        die("%s: -u requires a size: the backing file is not opened", path);

    bool b;
    unsigned given = 0; /* which optional fields to print */
    enum { G_PREALLOC = 1, G_COMPAT = 2, G_DATA = 4, G_RAW = 8 };
    if ((v = optlist_get(&ol, "preallocation"))) {
        if (parse_prealloc(v, &o.preallocation, raw) < 0)
            die("%s: Parameter 'preallocation' does not accept value '%s'", path, v);
        given |= G_PREALLOC;
    }
    if (!raw) {
        if ((v = optlist_get(&ol, "compat")) || (v = optlist_get(&ol, "version"))) {
            if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
                o.compat = 2;
            else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
                o.compat = 3;
            else
                die("%s: Parameter 'version' does not accept value '%s'", path, v);
            given |= G_COMPAT;
        }
        if ((v = optlist_get(&ol, "cluster_size"))) {
            uint64_t cs;
            if (parse_size(v, &cs) < 0 || cs > UINT32_MAX)
                die("%s: Parameter 'cluster_size' expects a size", path);
            o.cluster_size = (uint32_t)cs;
        }
        if ((v = optlist_get(&ol, "refcount_bits"))) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*end || n == 0 || n > 64)
                die("%s: Refcount width must be a power of two and may not exceed 64 bits",
                    path);
            o.refcount_bits = (unsigned)n;
        }
#define BOOL_OPT(name, field)                                                                     \
    if ((v = optlist_get(&ol, name))) {                                                            \
        if (parse_bool(v, &b) < 0)                                                                 \
            die("%s: Parameter '%s' expects 'on' or 'off'", path, name);                           \
        o.field = b;                                                                               \
    }
        BOOL_OPT("lazy_refcounts", lazy_refcounts)
        BOOL_OPT("extended_l2", extended_l2)
        BOOL_OPT("data_file_raw", data_file_raw)
#undef BOOL_OPT
        if (optlist_get(&ol, "data_file_raw"))
            given |= G_RAW;
        if ((v = optlist_get(&ol, "compression_type"))) {
            if (!strcmp(v, "zlib"))
                o.compression_type = TOPCOW_COMPRESSION_ZLIB;
            else if (!strcmp(v, "zstd"))
                o.compression_type = TOPCOW_COMPRESSION_ZSTD;
            else
                die("%s: Parameter 'compression_type' does not accept value '%s'", path, v);
        }
        if ((v = optlist_get(&ol, "data_file"))) {
            o.data_file = v;
            given |= G_DATA;
        }
    }
    const char *unknown = optlist_unused(&ol);
    if (unknown)
        die("%s: Invalid parameter '%s' for format '%s' (see -o help)", path, unknown, fmt);

    /* Size rounded up to 512, as qemu-img prints it. */
    uint64_t shown = (o.size + 511) & ~511ull;
    if (!quiet) {
        if (raw) {
            printf("Formatting '%s', fmt=raw size=%llu", path, (unsigned long long)shown);
            if (given & G_PREALLOC)
                printf(" preallocation=%s", optlist_get(&ol, "preallocation"));
        } else {
            printf("Formatting '%s', fmt=qcow2 cluster_size=%u extended_l2=%s", path,
                   o.cluster_size ? o.cluster_size : 65536, o.extended_l2 ? "on" : "off");
            if (given & G_PREALLOC)
                printf(" preallocation=%s", optlist_get(&ol, "preallocation"));
            printf(" compression_type=%s", o.compression_type ? "zstd" : "zlib");
            if (size_str)
                printf(" size=%llu", (unsigned long long)shown);
            if (given & G_COMPAT)
                printf(" compat=%s", o.compat == 2 ? "0.10" : "1.1");
            if (backing)
                printf(" backing_file=%s", backing);
            if (backing_fmt)
                printf(" backing_fmt=%s", backing_fmt);
            if (given & G_DATA)
                printf(" data_file=%s", o.data_file);
            if (given & G_RAW)
                printf(" data_file_raw=%s", o.data_file_raw ? "on" : "off");
            printf(" lazy_refcounts=%s refcount_bits=%u", o.lazy_refcounts ? "on" : "off",
                   o.refcount_bits ? o.refcount_bits : 16);
        }
        printf("\n");
        fflush(stdout);
    }
    int r = topcow_image_create(path, &o);
    optlist_free(&ol);
    if (r < 0) {
        const char *msg = topcow_last_error();
        if (!strncmp(msg, "create: ", 8))
            msg += 8;
        error_msg("%s", msg);
        return 1;
    }
    return 0;
}
