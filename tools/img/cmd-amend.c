// SPDX-License-Identifier: MIT
/* topcow amend: qemu-img amend syntax.
 *   amend [-p] [-q] [-f FMT] [--force] -o OPTIONS FILE
 * Changes compat, lazy_refcounts, refcount_bits and size in place, and
 * (unlike qemu-img, which sends users to rebase -u) backing_file and
 * backing_fmt, recorded as given without checking the new backing file.
 * Options fixed at creation (cluster_size, extended_l2, ...) are refused
 * with qemu-img's message. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "secrets.h"
#include "util.h"

static void
help(void)
{
    printf("usage: topcow amend [-p] [-q] [-f FMT] -o OPTIONS FILENAME\n\n"
           "Change options of an existing qcow2 image in place.  OPTIONS is a\n"
           "comma-separated list of:\n"
           "  compat=0.10|1.1        downgrade (zero clusters are expanded) or upgrade\n"
           "  lazy_refcounts=on|off  (compat=1.1 only)\n"
           "  refcount_bits=N        1, 2, 4, 8, 16, 32 or 64: rewrites the refcounts\n"
           "  size=SIZE              as resize; shrinking is refused while data lives\n"
           "                         past the new end\n"
           "  backing_file=NAME      recorded as given (like rebase -u); empty removes it\n"
           "  backing_fmt=FMT\n"
           "'-o help' lists them.  -p shows progress, -q is quiet.\n");
}

static const char *const creation_only[] = {
    "cluster_size", "extended_l2", "compression_type", "preallocation", "encryption",
    "encrypt.format",
};

int
cmd_amend(int argc, char **argv)
{
    enum { OPT_OBJECT = 256, OPT_FORCE, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "force", no_argument, NULL, OPT_FORCE },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = NULL;
    bool progress = false, force = false;
    struct optlist ol = { 0 };
    bool have_opts = false;
    int c;
    while ((c = getopt_long(argc, argv, "+hpqf:o:t:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'p': progress = true; break;
        case 'q': progress = false; break;
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'o':
            if (optlist_parse(&ol, optarg) < 0)
                return 1;
            have_opts = true;
            break;
        case OPT_OBJECT: break; /* taken out of argv before (secrets.c) */
        case OPT_FORCE: force = true; break;
        default: return 1;
        }
    }
    (void)cache;
    if (!have_opts)
        die("Must specify options (-o)");
    if (optlist_get(&ol, "help")) {
        help();
        optlist_free(&ol);
        return 0;
    }
    if (optind != argc - 1)
        die("Expecting one image file name");
    const char *path = argv[optind];

    for (size_t i = 0; i < sizeof creation_only / sizeof *creation_only; i++)
        if (optlist_get(&ol, creation_only[i]))
            die("Invalid parameter '%s'\nThis option is only supported for image creation",
                creation_only[i]);
    struct topcow_amend_opts ao = TOPCOW_AMEND_OPTS_INIT;
    const char *v;
    if ((v = optlist_get(&ol, "compat"))) {
        if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
            ao.compat = 2;
        else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
            ao.compat = 3;
        else
            die("Invalid compatibility level: '%s'", v);
    }
    if ((v = optlist_get(&ol, "lazy_refcounts"))) {
        bool b;
        if (parse_bool(v, &b) < 0)
            die("Parameter 'lazy_refcounts' expects 'on' or 'off'");
        ao.lazy_refcounts = b;
    }
    if ((v = optlist_get(&ol, "refcount_bits"))) {
        uint64_t n;
        if (parse_size(v, &n) < 0 || n == 0 || n > 64 || (n & (n - 1)))
            die("Refcount width must be a power of two and may not exceed 64 bits");
        ao.refcount_bits = (unsigned)n;
    }
    uint64_t size = 0;
    if ((v = optlist_get(&ol, "size")) && parse_size(v, &size) < 0)
        die("Parameter 'size' expects a size, got '%s'", v);
    const char *bfile = optlist_get(&ol, "backing_file");
    const char *bfmt = optlist_get(&ol, "backing_fmt");
    if ((v = optlist_get(&ol, "data_file")) || (v = optlist_get(&ol, "data_file_raw")))
        die("Changing the external data file is not supported");
    /* LUKS key slots. */
    if ((v = optlist_get(&ol, "encrypt.state"))) {
        if (!strcmp(v, "active"))
            ao.encrypt_state = 1;
        else if (!strcmp(v, "inactive"))
            ao.encrypt_state = 2;
        else
            die("Parameter 'encrypt.state' does not accept value '%s'", v);
    }
    if ((v = optlist_get(&ol, "encrypt.new-secret")) &&
        !(ao.new_secret = secret_lookup(v, &ao.new_secret_len)))
        return 1;
    if ((v = optlist_get(&ol, "encrypt.old-secret")) &&
        !(ao.old_secret = secret_lookup(v, &ao.old_secret_len)))
        return 1;
    if ((v = optlist_get(&ol, "encrypt.keyslot"))) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || !*v || n < 0 || n > 7)
            die("Invalid keyslot %s", v);
        ao.keyslot = (int)n;
    }
    if ((v = optlist_get(&ol, "encrypt.iter-time"))) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (*end || !*v || n == 0 || n > 3600000)
            die("Parameter 'encrypt.iter-time' expects a number of milliseconds");
        ao.iter_time_ms = (unsigned)n;
    }
    ao.force = force;
    if (!ao.encrypt_state && (ao.new_secret || ao.old_secret || ao.keyslot >= 0))
        die("encrypt.state must be given with the other encrypt.* options");
    const char *bad = optlist_unused(&ol);
    if (bad)
        die("Invalid parameter '%s'", bad);

    struct topcow_image *img = open_image(path, fmt, TOPCOW_OPEN_NO_BACKING);
    if (!img) {
        optlist_free(&ol);
        return 1;
    }
    struct topcow_info info = { .struct_size = sizeof info };
    int r = topcow_image_get_info(img, &info);
    if (r == 0 && strcmp(info.format, "qcow2")) {
        error_msg("Format driver '%s' does not support option amendment", info.format);
        r = -1;
    }
    if (progress)
        progress_print(0);
    if (r == 0)
        r = topcow_image_amend(img, &ao);
    if (r == 0 && size && size != topcow_image_size(img))
        r = topcow_image_resize(img, size, TOPCOW_RESIZE_SHRINK, TOPCOW_PREALLOC_OFF);
    if (r == 0 && (bfile || bfmt)) {
        /* backing_fmt alone keeps the recorded file; backing_file alone keeps
         * no format (the old one may not fit the new file). */
        const char *file = bfile ? bfile : info.backing_file;
        if (!file && bfmt) {
            error_msg("backing_fmt needs a backing file");
            r = -1;
        } else {
            r = topcow_image_set_backing(img, file, bfmt);
        }
    }
    if (r < -1)
        error_msg("Error while amending options: %s", topcow_last_error());
    if (progress) {
        if (r == 0)
            progress_print(100);
        progress_end();
    }
    int rc = topcow_image_close(img);
    if (r == 0 && rc < 0) {
        error_msg("%s: %s", path, topcow_last_error());
        r = rc;
    }
    optlist_free(&ol);
    return r < 0 ? 1 : 0;
}
