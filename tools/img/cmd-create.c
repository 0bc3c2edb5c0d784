// SPDX-License-Identifier: MIT
/* topcow create: qemu-img create syntax.
 *   create [-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] [-u] [-o OPTIONS] FILE [SIZE] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "create-opts.h"
#include "util.h"

static void
help(void)
{
    printf("usage: topcow create [-q] [-f FMT] [-b BACKING_FILE [-F BACKING_FMT]] [-u]\n"
           "                     [-o OPTIONS] FILENAME [SIZE]\n\n"
           "Create a disk image FILENAME of SIZE bytes (suffixes k, M, G, T, P, E).\n"
           "With a backing file the size defaults to the backing file's.\n\n"
           "  -f FMT          image format: qcow2 (default) or raw; see topcow(1) for others\n"
           "  -b FILE         backing file (relative names are relative to FILENAME)\n"
           "  -F FMT          format of the backing file (required with -b, as in qemu-img)\n"
           "  -u              do not open the backing file (trust -F and SIZE)\n"
           "  -o OPTIONS      comma-separated format options; '-o help' lists them\n"
           "  -q              quiet\n");
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
    const struct create_format *cf = create_format_find(fmt);
    if (!cf)
        die("Unknown file format '%s'", fmt);
    if (optlist_get(&ol, "help")) {
        /* qemu-img names the format when no file is given (then it
         * cannot list the file protocol's options as well). */
        if (optind >= argc)
            printf("Supported %s options:\n", fmt);
        else
            printf("Supported options:\n");
        cf->help();
        optlist_free(&ol);
        return 0;
    }
    if (optind >= argc)
        die("Expecting image file name");
    const char *path = argv[optind++];

    struct create_spec spec = { .opts = TOPCOW_CREATE_OPTS_INIT };
    struct topcow_create_opts *o = &spec.opts;
    o->format = fmt;
    const char *v;
    const char *size_str = optind < argc ? argv[optind++] : optlist_get(&ol, "size");
    if (optind < argc)
        die("Unexpected argument: %s", argv[optind]);
    if (size_str && parse_size(size_str, &o->size) < 0)
        die("Invalid image size specified. You may use k, M, G, T, P or E suffixes for\n"
            "%s: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.", prog_name);
    if ((v = optlist_get(&ol, "backing_file")))
        backing = v;
    if ((v = optlist_get(&ol, "backing_fmt")))
        backing_fmt = v;
    o->backing_file = backing;
    o->backing_format = backing_fmt;
    o->no_backing_open = no_open;
    if (!size_str && !backing)
        die("%s: Image creation needs a size parameter", path);
    if (!size_str && no_open)
        die("%s: -u requires a size: the backing file is not opened", path);

    spec.size_given = size_str != NULL;
    create_opts_parse(&ol, path, &spec);
    if (!quiet)
        create_opts_print(path, &spec);
    int r = topcow_image_create(path, &spec.opts);
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
