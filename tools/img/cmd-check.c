// SPDX-License-Identifier: MIT
/* topcow check: qemu-img check syntax, output and exit codes.
 *   check [-f FMT] [--output=human|json] [-U] [-q] [-r leaks|all] FILE
 * Problems are reported on stderr one per line as they are found; the
 * summary (human text or qemu-img 7.2's ImageCheck JSON) goes to stdout.
 * Exit: 0 clean, 1 check failed, 2 corruptions, 3 leaks only, 63 when the
 * format has no consistency check.  With -r the problems found are repaired
 * (leaks only, or everything fixable), then the image is checked again. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "json.h"
#include "util.h"

/* qemu-img's exit code for "this format does not support checks". */
#define EXIT_NO_CHECK 63

static void
help(void)
{
    printf("usage: topcow check [-f FMT] [--output=human|json] [-U] [-q] [-r leaks|all] "
           "FILENAME\n\n"
           "Check the metadata of an image for consistency.\n\n"
           "  -f FMT             image format (default: probed)\n"
           "  --output=OFMT      'human' (default) or 'json', as qemu-img prints them\n"
           "  -U, --force-share  open without taking the image lock\n"
           "  -q                 quiet: print only the problems found\n"
           "  -r leaks|all       repair leaked clusters, or everything that can be\n"
           "                     repaired (refcounts, COPIED flags; rebuilding the\n"
           "                     refcounts when needed), then check again\n\n"
           "Exit status: 0 no problems, 1 the check failed, 2 corruptions found,\n"
           "3 only leaked clusters found, 63 the format has no check.\n");
}

static void
report(void *opaque, const char *line)
{
    (void)opaque;
    fprintf(stderr, "%s\n", line);
}

/* ImageCheck's optional members are present only when non-zero. */
static void
set_nonzero(struct json *o, const char *key, uint64_t v)
{
    if (v)
        json_set_uint(o, key, v);
}

static void
print_json(const char *path, const char *format, const struct topcow_check_result *r)
{
    struct json *o = json_new_object();
    /* Members in QEMU's schema order (it decides the order within a bucket). */
    json_set_string(o, "filename", path);
    json_set_string(o, "format", format);
    json_set_uint(o, "check-errors", r->check_errors);
    set_nonzero(o, "image-end-offset", r->image_end_offset);
    set_nonzero(o, "corruptions", r->corruptions);
    set_nonzero(o, "leaks", r->leaks);
    set_nonzero(o, "corruptions-fixed", r->corruptions_fixed);
    set_nonzero(o, "leaks-fixed", r->leaks_fixed);
    set_nonzero(o, "total-clusters", r->total_clusters);
    set_nonzero(o, "allocated-clusters", r->allocated_clusters);
    set_nonzero(o, "fragmented-clusters", r->fragmented_clusters);
    set_nonzero(o, "compressed-clusters", r->compressed_clusters);
    json_print(stdout, o);
    json_free(o);
}

static void
print_human(const struct topcow_check_result *r)
{
    if (!r->corruptions && !r->leaks && !r->check_errors)
        printf("No errors were found on the image.\n");
    if (r->corruptions)
        printf("\n%llu errors were found on the image.\n"
               "Data may be corrupted, or further writes to the image may corrupt it.\n",
               (unsigned long long)r->corruptions);
    if (r->leaks)
        printf("\n%llu leaked clusters were found on the image.\n"
               "This means waste of disk space, but no harm to data.\n",
               (unsigned long long)r->leaks);
    if (r->check_errors)
        printf("\n%llu internal errors have occurred during the check.\n",
               (unsigned long long)r->check_errors);
    if (r->total_clusters && r->allocated_clusters) {
        double alloc = (double)r->allocated_clusters;
        printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed "
               "clusters\n",
               (unsigned long long)r->allocated_clusters, (unsigned long long)r->total_clusters,
               alloc * 100 / (double)r->total_clusters,
               (double)r->fragmented_clusters * 100 / alloc,
               (double)r->compressed_clusters * 100 / alloc);
    }
    if (r->image_end_offset)
        printf("Image end offset: %llu\n", (unsigned long long)r->image_end_offset);
}

int
cmd_check(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { "repair", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, quiet = false;
    unsigned repair = 0;
    unsigned flags = TOPCOW_OPEN_RDONLY;
    int c;
    while ((c = getopt_long(argc, argv, "+hf:Uqr:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': fmt = optarg; break;
        case 'U': flags |= TOPCOW_OPEN_FORCE_SHARE; break;
        case 'q': quiet = true; break;
        case 'r':
            if (strcmp(optarg, "leaks") && strcmp(optarg, "all"))
                die("Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
            repair = !strcmp(optarg, "all") ? TOPCOW_CHECK_REPAIR_ALL : TOPCOW_CHECK_REPAIR_LEAKS;
            break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human"))
                die("--output must be used with human or json as argument.");
            break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        die("Expecting one image file name");
    const char *path = argv[optind];
    if (repair) {
        if (flags & TOPCOW_OPEN_FORCE_SHARE)
            die("-U cannot be used with -r: repairing needs the image lock");
        /* Read-write, and neither refused for the corrupt bit nor rebuilt
         * behind our back for the dirty bit: the repair does that. */
        flags = TOPCOW_OPEN_NO_REPAIR | TOPCOW_OPEN_ALLOW_CORRUPT;
    }

    struct topcow_image *img = open_image(path, fmt, flags);
    if (!img)
        return 1;
    struct topcow_info info = { .struct_size = sizeof info };
    struct topcow_check_result res = { .struct_size = sizeof res };
    int r = topcow_image_get_info(img, &info);
    if (r == 0)
        r = topcow_image_check(img, repair, &res, report, NULL);
    if (r == 0 && (res.leaks_fixed || res.corruptions_fixed)) {
        /* What was repaired, then the verdict of a fresh check. */
        struct topcow_check_result fixed = res;
        if (!json && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %llu leaked clusters\n    %llu corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   (unsigned long long)res.leaks_fixed,
                   (unsigned long long)res.corruptions_fixed);
        res = (struct topcow_check_result){ .struct_size = sizeof res };
        r = topcow_image_check(img, 0, &res, report, NULL);
        res.leaks_fixed = fixed.leaks_fixed;
        res.corruptions_fixed = fixed.corruptions_fixed;
    }
    if (r == -ENOTSUP) {
        error_msg("This image format does not support checks");
        topcow_image_close(img);
        return EXIT_NO_CHECK;
    }
    if (r < 0) {
        error_msg("Check failed: %s", strerror(-r));
        topcow_image_close(img);
        return 1;
    }
    /* Errors that stopped parts of the check: the summary still follows. */
    if (res.check_errors)
        error_msg("Check failed");
    if (!quiet) {
        if (json)
            print_json(path, info.format, &res);
        else
            print_human(&res);
    }
    topcow_image_close(img);
    if (res.check_errors)
        return 1;
    return res.corruptions ? 2 : res.leaks ? 3 : 0;
}
