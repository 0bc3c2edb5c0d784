// SPDX-License-Identifier: MIT
/* topcow push [OPTIONS] IMAGE REMOTE
 * topcow pull [OPTIONS] REMOTE IMAGE
 *
 * Move an image file to and from a remote (file:///dir/NAME or
 * s3://bucket/prefix/NAME), sending or fetching only the chunks the other
 * side lacks. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-cli.h"
#include "commands.h"
#include "util.h"

enum { OPT_FORCE = CLOUD_OPT_LAST, OPT_CHUNK_SIZE, OPT_NO_WAIT };

static void
usage(FILE *f, bool push)
{
    if (push)
        fprintf(f,
            "Usage: topcow push [OPTIONS] IMAGE REMOTE\n"
            "       topcow push [OPTIONS] REMOTE\n"
            "\n"
            "Upload the image file IMAGE to REMOTE, a store URL and an image name:\n"
            "file:///dir/NAME or s3://bucket[/prefix]/NAME (a REMOTE ending in '/' takes\n"
            "IMAGE's file name).  Only chunks the store lacks are sent; then a new\n"
            "generation is recorded and made HEAD with a compare-and-swap, so a push that\n"
            "dies leaves HEAD where it was and the next push resumes.  If HEAD moved since\n"
            "IMAGE was pulled or pushed (IMAGE.topcow records that), the push stores its\n"
            "generation off HEAD and fails with a conflict.\n"
            "With REMOTE alone, push what a run of REMOTE from its local cache (topcow\n"
            "serve REMOTE, ...) wrote but could not push when it stopped.\n"
            "\n"
            "  -p, --progress           show a progress bar (bytes, chunks, rate)\n"
            "  -f, --force              make this copy HEAD even if HEAD moved\n"
            "  -c, --compress           send chunks zstd-compressed where that saves space\n"
            "      --chunk-size=SIZE    chunk size of a new remote image (64K..64M, a power\n"
            "                           of two; default 4M)\n"
            "      --no-wait            when another push holds the lease, fail at once\n"
            "                           (default: wait up to 15 s for it to finish)\n"
            CLOUD_OPTS_HELP
            "  -h, --help               this help\n");
    else
        fprintf(f,
            "Usage: topcow pull [OPTIONS] REMOTE IMAGE\n"
            "\n"
            "Download REMOTE's HEAD generation into the file IMAGE (sparse).  Chunks IMAGE\n"
            "already has, or an interrupted pull left in IMAGE.topcow-part, are not fetched\n"
            "again; every chunk is checked against its hash.  IMAGE is replaced only when\n"
            "all of it is in.  An existing IMAGE must be unchanged since it was last pulled\n"
            "or pushed (so no local work is lost), unless --force.\n"
            "\n"
            "  -p, --progress           show a progress bar (bytes, chunks, rate)\n"
            "  -g, --generation=GEN     pull this generation instead of HEAD\n"
            "  -f, --force              overwrite IMAGE even with changes not pushed\n"
            CLOUD_OPTS_HELP
            "  -h, --help               this help\n");
}

static int
push_or_pull(int argc, char **argv, bool push)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"progress", no_argument, NULL, 'p'},
        {"force", no_argument, NULL, 'f'},
        {"compress", no_argument, NULL, 'c'},
        {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
        {"generation", required_argument, NULL, 'g'},
        {"no-wait", no_argument, NULL, OPT_NO_WAIT},
        CLOUD_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    struct topcow_remote_opts o = TOPCOW_REMOTE_OPTS_INIT;
    struct cloud_progress cp = {push ? "push" : "pull", 0, false};
    bool progress = false, json = false;
    const char *gen = NULL;
    int c;
    while ((c = getopt_long(argc, argv, push ? "+hpfcj:" : "+hpfj:g:", longopts, NULL)) != -1) {
        int k = cloud_opt(c, optarg, &o, &json);
        if (k < 0)
            return 1;
        if (k > 0)
            continue;
        switch (c) {
        case 'h':
            usage(stdout, push);
            return 0;
        case 'p':
            progress = true;
            break;
        case 'f':
            o.flags |= TOPCOW_REMOTE_FORCE;
            break;
        case 'c':
            o.flags |= TOPCOW_REMOTE_COMPRESS;
            break;
        case 'g':
            gen = optarg;
            break;
        case OPT_NO_WAIT:
            o.flags |= TOPCOW_REMOTE_NO_WAIT;
            break;
        case OPT_CHUNK_SIZE: {
            uint64_t v;
            if (!push || parse_size(optarg, &v) < 0 || v < 65536 || v > (64u << 20) ||
                (v & (v - 1))) {
                error_msg("invalid --chunk-size '%s': a power of two from 64K to 64M", optarg);
                return 1;
            }
            o.chunk_size = (uint32_t)v;
            break;
        }
        default:
            usage(stderr, push);
            return 1;
        }
    }
    if (push && gen) {
        error_msg("push takes no --generation (it makes a new one)");
        return 1;
    }
    /* push REMOTE: the writes a run from the remote's cache kept. */
    if (push && argc - optind == 1 && strstr(argv[optind], "://")) {
        struct topcow_remote_result res = {.struct_size = sizeof res};
        if (topcow_remote_push(argv[optind], NULL, &o, &res) < 0) {
            error_msg("%s", topcow_last_error());
            return 1;
        }
        printf(res.up_to_date ? "%s: nothing to push; HEAD is generation %s\n"
                              : "%s: pushed the cached writes as generation %s\n",
               argv[optind], res.generation);
        return 0;
    }
    if (argc - optind != 2) {
        error_msg("%s needs %s (see 'topcow %s --help')", push ? "push" : "pull",
                  push ? "IMAGE and REMOTE" : "REMOTE and IMAGE", push ? "push" : "pull");
        return 1;
    }
    if (progress) {
        cp.start = cloud_now();
        o.progress = cloud_progress_cb;
        o.progress_opaque = &cp;
    }
    struct topcow_remote_result res = {.struct_size = sizeof res};
    double t0 = cloud_now();
    const char *a = argv[optind], *b = argv[optind + 1];
    int r = push ? topcow_remote_push(a, b, &o, &res) : topcow_remote_pull(a, b, gen, &o, &res);
    cloud_progress_end(&cp);
    if (r < 0) {
        error_msg("%s", topcow_last_error());
        return 1;
    }
    cloud_print_result(stdout, push ? "push" : "pull", push ? b : a, &res, cloud_now() - t0,
                       json);
    return 0;
}

int
cmd_push(int argc, char **argv)
{
    return push_or_pull(argc, argv, true);
}

int
cmd_pull(int argc, char **argv)
{
    return push_or_pull(argc, argv, false);
}
