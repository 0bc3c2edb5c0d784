// SPDX-License-Identifier: MIT
/* topcow remote ls STORE | log REMOTE | rollback REMOTE GEN | gc STORE
 *
 * Look after a remote: list its images, show an image's generations, point
 * HEAD back at an older generation, delete chunks nothing refers to. */
#include <getopt.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloud-cli.h"
#include "commands.h"
#include "util.h"

enum { OPT_GRACE = CLOUD_OPT_LAST, OPT_DRY_RUN };

static void
usage(FILE *f)
{
    fprintf(f,
        "Usage: topcow remote ls [OPTIONS] STORE\n"
        "       topcow remote log [OPTIONS] REMOTE\n"
        "       topcow remote rollback [OPTIONS] REMOTE GENERATION\n"
        "       topcow remote gc [OPTIONS] STORE\n"
        "\n"
        "STORE is file:///dir or s3://bucket[/prefix]; REMOTE is STORE/NAME.\n"
        "\n"
        "  ls        the images in STORE: HEAD generation, size, who pushed it when,\n"
        "            and who holds the writer lease\n"
        "  log       every generation of REMOTE, oldest first; '*' marks HEAD.  A\n"
        "            generation off HEAD is a pushed copy that lost a conflict.\n"
        "  rollback  make GENERATION (an id or a unique prefix of one) HEAD again\n"
        "  gc        delete chunks no generation of any image refers to, if older than\n"
        "            the grace period (a push in progress uploads chunks first)\n"
        "\n"
        "      --grace=SECONDS      gc: keep unreferenced chunks younger than this\n"
        "                           (default 86400)\n"
        "  -n, --dry-run            gc: report what would be deleted\n"
        CLOUD_OPTS_HELP
        "  -h, --help               this help\n");
}

static void
fmt_time(int64_t t, char *buf, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "%" PRId64, t);
}

struct print_ctx {
    bool json, ls;
    unsigned n;
};

static int
print_gen(void *opaque, const struct topcow_remote_gen_info *g)
{
    struct print_ctx *pc = opaque;
    char when[32], size[32];
    fmt_time(g->created, when, sizeof when);
    cloud_size_str(g->size, size, sizeof size);
    if (pc->json) {
        printf("%s{\"name\": \"%s\", \"generation\": \"%s\", \"parent\": \"%s\", \"head\": %s, "
               "\"size\": %" PRIu64 ", \"chunk-size\": %" PRIu32 ", \"chunks\": %" PRIu64
               ", \"chunks-zero\": %" PRIu64 ", \"created\": %" PRId64
               ", \"host\": \"%s\", \"user\": \"%s\"",
               pc->n ? ",\n" : "[\n", g->name, g->generation, g->parent,
               g->is_head ? "true" : "false", g->size, g->chunk_size, g->chunks, g->chunks_zero,
               g->created, g->host, g->user);
        if (pc->ls)
            printf(", \"lease-holder\": \"%s\", \"lease-op\": \"%s\", \"lease-expires\": %" PRId64,
                   g->lease_expires ? g->lease_holder : "", g->lease_expires ? g->lease_op : "",
                   g->lease_expires);
        printf("}");
    } else if (pc->ls) {
        if (!pc->n)
            printf("%-24s %-17s %10s  %-19s  %-24s %s\n", "NAME", "HEAD", "SIZE", "PUSHED (UTC)",
                   "BY", "LEASE");
        char by[200], lease[300] = "-";
        snprintf(by, sizeof by, "%s@%s", g->user, g->host);
        if (g->lease_expires) {
            char until[32];
            fmt_time(g->lease_expires, until, sizeof until);
            snprintf(lease, sizeof lease, "%s (%s) until %s", g->lease_holder, g->lease_op, until);
        }
        printf("%-24s %-17s %10s  %-19s  %-24s %s\n", g->name, g->generation, size, when, by,
               lease);
    } else {
        if (!pc->n)
            printf("  %-17s %-17s %10s %8s  %-19s  %s\n", "GENERATION", "PARENT", "SIZE",
                   "CHUNKS", "PUSHED (UTC)", "BY");
        printf("%c %-17s %-17s %10s %8" PRIu64 "  %-19s  %s@%s\n", g->is_head ? '*' : ' ',
               g->generation, g->parent[0] ? g->parent : "-", size, g->chunks - g->chunks_zero,
               when, g->user, g->host);
    }
    pc->n++;
    return 0;
}

int
cmd_remote(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"grace", required_argument, NULL, OPT_GRACE},
        {"dry-run", no_argument, NULL, 'n'},
        CLOUD_LONG_OPTS,
        {NULL, 0, NULL, 0},
    };
    if (argc < 2) {
        error_msg("remote needs a subcommand: ls, log, rollback or gc "
                  "(see 'topcow remote --help')");
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    const char *sub = argv[1];
    argc--;
    argv++;
    struct topcow_remote_opts o = TOPCOW_REMOTE_OPTS_INIT;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "+hnj:", longopts, NULL)) != -1) {
        int k = cloud_opt(c, optarg, &o, &json);
        if (k < 0)
            return 1;
        if (k > 0)
            continue;
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case 'n':
            o.flags |= TOPCOW_REMOTE_DRY_RUN;
            break;
        case OPT_GRACE: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                error_msg("invalid --grace '%s': seconds", optarg);
                return 1;
            }
            o.gc_grace = v ? v : 1; /* 0 would mean the default */
            break;
        }
        default:
            usage(stderr);
            return 1;
        }
    }
    int nargs = argc - optind, r;
    struct print_ctx pc = {json, false, 0};
    if (!strcmp(sub, "ls") || !strcmp(sub, "log")) {
        if (nargs != 1) {
            error_msg("remote %s needs %s", sub, !strcmp(sub, "ls") ? "STORE" : "REMOTE");
            return 1;
        }
        pc.ls = !strcmp(sub, "ls");
        r = pc.ls ? topcow_remote_list(argv[optind], &o, print_gen, &pc)
                  : topcow_remote_log(argv[optind], &o, print_gen, &pc);
        if (json)
            printf(pc.n ? "\n]\n" : "[]\n");
    } else if (!strcmp(sub, "rollback")) {
        if (nargs != 2) {
            error_msg("remote rollback needs REMOTE and GENERATION");
            return 1;
        }
        r = topcow_remote_rollback(argv[optind], argv[optind + 1], &o);
        if (r == 0)
            printf("%s: HEAD is now generation %s\n", argv[optind], argv[optind + 1]);
    } else if (!strcmp(sub, "gc")) {
        if (nargs != 1) {
            error_msg("remote gc needs STORE");
            return 1;
        }
        struct topcow_remote_gc_result res = {.struct_size = sizeof res};
        r = topcow_remote_gc(argv[optind], &o, &res);
        if (r == 0) {
            char freed[32];
            cloud_size_str(res.bytes_deleted, freed, sizeof freed);
            printf("%s: %" PRIu64 " generations, %" PRIu64 " chunks: %" PRIu64
                   " referenced, %" PRIu64 " unreferenced but within the grace period, %" PRIu64
                   " %s (%s)\n",
                   argv[optind], res.manifests, res.chunks, res.chunks_referenced,
                   res.chunks_young, res.chunks_deleted,
                   (o.flags & TOPCOW_REMOTE_DRY_RUN) ? "would be deleted" : "deleted", freed);
        }
    } else {
        error_msg("unknown remote subcommand '%s': ls, log, rollback or gc", sub);
        return 1;
    }
    if (r < 0) {
        error_msg("%s", topcow_last_error());
        return 1;
    }
    return 0;
}
