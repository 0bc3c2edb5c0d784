// SPDX-License-Identifier: MIT
/* topcow top [-b] [-n N] [-d SECONDS] [-o] [-s KEY] [--json]
 *            [--prometheus ADDR:PORT] [--qmp SOCKET]... [--stats-dir DIR]
 *
 * Live statistics of every open image on the host: images published by
 * topcow processes and, with --qmp, the drives of running QEMU guests. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "top.h"
#include "util.h"

static void
usage(FILE *f)
{
    fprintf(f,
        "Usage: topcow top [OPTIONS]\n"
        "\n"
        "Show live statistics of open disk images: every image a topcow process has\n"
        "open (serve, convert, commit, io, ...) and, with --qmp, the drives of running\n"
        "QEMU guests.  One row per image: requests and bytes per second, p99 latency,\n"
        "metadata cache hit rate, write amplification and how fast the file grows.\n"
        "\n"
        "  -b, --batch              print plain tables, one per interval, like top -b\n"
        "  -n, --iterations=N       stop after N samples (batch, --json)\n"
        "  -d, --delay=SECONDS      time between samples (default 2; fractions allowed)\n"
        "  -o, --only               only images with requests in the interval\n"
        "  -s, --sort=KEY           io (default), iops, latency, growth, name, pid\n"
        "      --json               one JSON object per interval on stdout\n"
        "      --prometheus=ADDR:PORT\n"
        "                           serve the figures at http://ADDR:PORT/metrics in the\n"
        "                           Prometheus text format (until interrupted)\n"
        "      --qmp=SOCKET         also show the drives of the QEMU whose QMP unix socket\n"
        "                           is SOCKET (repeatable)\n"
        "      --stats-dir=DIR      where topcow processes publish (default: %s)\n"
        "  -h, --help               this help\n"
        "\n"
        "Screen keys: q quit, i io, p iops, l latency, g growth, n name, P pid,\n"
        "o only active on/off, Enter or d detail view of the selected image (layers\n"
        "and heat map), arrows or j/k move, Esc back, t heat map since open or of\n"
        "the last interval, space refresh now.\n",
        topcow_stats_dir());
}

static int
parse_sort(const char *s, enum top_sort *out)
{
    static const struct { const char *name; enum top_sort key; } keys[] = {
        { "io", TOP_SORT_IO },           { "iops", TOP_SORT_IOPS },
        { "latency", TOP_SORT_LATENCY }, { "growth", TOP_SORT_GROWTH },
        { "name", TOP_SORT_NAME },       { "pid", TOP_SORT_PID },
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(s, keys[i].name) == 0) {
            *out = keys[i].key;
            return 0;
        }
    return -1;
}

volatile sig_atomic_t top_stop;

static void
on_signal(int sig)
{
    (void)sig;
    top_stop = 1;
}

static void
sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - floor(s)) * 1e9) };
    while (!top_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Batch and JSON: print a sample per interval.  The first sample has no
 * rates, so it is taken one interval before the first one printed. */
static int
run_batch(struct top_source *src, const struct top_opts *o, bool json)
{
    struct top_sample s;
    if (top_sample_take(src, &s) < 0)
        die("out of memory");
    top_sample_free(&s);
    for (long it = 1; !top_stop && (o->iterations == 0 || it <= o->iterations); it++) {
        sleep_s(o->delay_s);
        if (top_sample_take(src, &s) < 0)
            die("out of memory");
        if (o->only_active)
            top_sample_only_active(&s);
        top_sample_sort(&s, o->sort);
        if (json)
            top_print_json(stdout, &s);
        else
            top_print_batch(stdout, &s, (unsigned)it);
        top_sample_free(&s);
        if (ferror(stdout))
            return 1;
    }
    return 0;
}

enum { OPT_JSON = 256, OPT_PROM, OPT_QMP, OPT_STATS_DIR };

int
cmd_top(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "batch", no_argument, NULL, 'b' },
        { "iterations", required_argument, NULL, 'n' },
        { "delay", required_argument, NULL, 'd' },
        { "only", no_argument, NULL, 'o' },
        { "sort", required_argument, NULL, 's' },
        { "json", no_argument, NULL, OPT_JSON },
        { "prometheus", required_argument, NULL, OPT_PROM },
        { "qmp", required_argument, NULL, OPT_QMP },
        { "stats-dir", required_argument, NULL, OPT_STATS_DIR },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct top_opts o = { .delay_s = 2.0, .sort = TOP_SORT_IO };
    struct top_source src = { 0 };
    bool batch = false, json = false;
    const char *prom = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "bn:d:os:h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'b': batch = true; break;
        case 'n':
            errno = 0;
            o.iterations = strtol(optarg, &end, 10);
            if (errno || *end || o.iterations < 1)
                die("top: -n wants a count of 1 or more, not '%s'", optarg);
            break;
        case 'd':
            errno = 0;
            o.delay_s = strtod(optarg, &end);
            if (errno || *end || !(o.delay_s >= 0.05 && o.delay_s <= 86400))
                die("top: -d wants seconds between 0.05 and 86400, not '%s'", optarg);
            break;
        case 'o': o.only_active = true; break;
        case 's':
            if (parse_sort(optarg, &o.sort) < 0)
                die("top: unknown sort key '%s' (io, iops, latency, growth, name, pid)",
                    optarg);
            break;
        case OPT_JSON: json = true; break;
        case OPT_PROM: prom = optarg; break;
        case OPT_QMP: {
            char **v = realloc(src.qmp_sockets, (src.n_qmp + 1) * sizeof *v);
            if (!v)
                die("out of memory");
            src.qmp_sockets = v;
            src.qmp_sockets[src.n_qmp++] = optarg;
            break;
        }
        case OPT_STATS_DIR: src.stats_dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "Try 'topcow top --help' for more information.\n");
            return 1;
        }
    }
    if (optind < argc)
        die("top: unexpected argument '%s'", argv[optind]);
    if ((batch || json) + (prom != NULL) > 1 || (batch && json))
        die("top: choose one of -b, --json and --prometheus");
    if (src.n_qmp && !(src.qmp = calloc(src.n_qmp, sizeof *src.qmp)))
        die("out of memory");

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc;
    if (prom)
        rc = top_prom_serve(&src, prom);
    else if (batch || json)
        rc = run_batch(&src, &o, json);
    else if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO))
        die("top: the screen needs a terminal; use -b or --json for output to a pipe");
    else
        rc = top_screen_run(&src, &o);
    top_source_free(&src);
    free(src.qmp_sockets);
    return rc;
}
