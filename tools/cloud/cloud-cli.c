// SPDX-License-Identifier: MIT
/* Shared parts of the cloud commands (cloud-cli.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloud-cli.h"
#include "util.h"

double
cloud_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max || s[0] == '-')
        return -1;
    *out = (unsigned)v;
    return 0;
}

int
cloud_opt(int c, const char *arg, struct topcow_remote_opts *o, bool *json)
{
    switch (c) {
    case CLOUD_OPT_OUTPUT:
        if (strcmp(arg, "json") != 0 && strcmp(arg, "human") != 0) {
            error_msg("invalid --output '%s': human or json", arg);
            return -1;
        }
        *json = strcmp(arg, "json") == 0;
        return 1;
    case CLOUD_OPT_ENDPOINT:
        o->endpoint = arg;
        return 1;
    case CLOUD_OPT_PROFILE:
        o->profile = arg;
        return 1;
    case 'j':
        if (parse_uint(arg, 64, &o->jobs) < 0) {
            error_msg("invalid --jobs '%s': a number from 1 to 64", arg);
            return -1;
        }
        return 1;
    case CLOUD_OPT_LEASE_TTL:
        if (parse_uint(arg, 86400, &o->lease_ttl) < 0 || o->lease_ttl < 3) {
            error_msg("invalid --lease-ttl '%s': seconds, from 3 to 86400", arg);
            return -1;
        }
        return 1;
    case CLOUD_OPT_TAKE_LEASE:
        o->flags |= TOPCOW_REMOTE_TAKE_LEASE;
        return 1;
    default:
        return 0;
    }
}

void
cloud_size_str(uint64_t v, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", v);
    else
        snprintf(buf, len, "%.2f %s", d, units[u]);
}

void
cloud_progress_cb(void *opaque, const struct topcow_remote_progress *p)
{
    struct cloud_progress *cp = opaque;
    double el = cloud_now() - cp->start;
    char done[32], total[32], moved[32], rate[32];
    cloud_size_str(p->bytes_done, done, sizeof done);
    cloud_size_str(p->bytes_total, total, sizeof total);
    cloud_size_str(p->bytes_transferred, moved, sizeof moved);
    cloud_size_str(el > 0.05 ? (uint64_t)((double)p->bytes_transferred / el) : 0, rate,
                   sizeof rate);
    double pct = p->bytes_total ? 100.0 * (double)p->bytes_done / (double)p->bytes_total : 100.0;
    int width = 24, fill = (int)(pct / 100.0 * width + 0.5);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s [%s] %5.1f%%  %s / %s  chunks %" PRIu64 "/%" PRIu64 "  %s %s  %s/s ",
            cp->verb, bar, pct, done, total, p->chunks_done, p->chunks_total,
            strcmp(cp->verb, "push") == 0 ? "sent" : "fetched", moved, rate);
    fflush(stderr);
    cp->drawn = true;
}

void
cloud_progress_end(struct cloud_progress *cp)
{
    if (cp->drawn)
        fputc('\n', stderr);
    cp->drawn = false;
}

void
cloud_print_result(FILE *f, const char *verb, const char *remote,
                   const struct topcow_remote_result *res, double seconds, bool json)
{
    bool push = strcmp(verb, "push") == 0;
    if (json) {
        fprintf(f,
                "{\"%s\": \"%s\", \"generation\": \"%s\", \"parent\": \"%s\", \"up-to-date\": %s, "
                "\"size\": %" PRIu64 ", \"chunks\": %" PRIu64 ", \"chunks-zero\": %" PRIu64
                ", \"chunks-transferred\": %" PRIu64 ", \"bytes-transferred\": %" PRIu64
                ", \"chunks-present\": %" PRIu64 ", \"requests\": %" PRIu64
                ", \"retries\": %" PRIu64 ", \"seconds\": %.3f}\n",
                verb, remote, res->generation, res->parent, res->up_to_date ? "true" : "false",
                res->size, res->chunks, res->chunks_zero, res->chunks_transferred,
                res->bytes_transferred, res->chunks_present, res->requests, res->retries,
                seconds);
        return;
    }
    char moved[32], size[32];
    cloud_size_str(res->bytes_transferred, moved, sizeof moved);
    cloud_size_str(res->size, size, sizeof size);
    if (res->up_to_date && push) {
        fprintf(f, "%s is up to date at generation %s (%s)\n", remote, res->generation, size);
        return;
    }
    fprintf(f,
            "%s generation %s (%s): %" PRIu64 " of %" PRIu64 " chunks %s (%s), %" PRIu64
            " already %s, %" PRIu64 " all-zero; %.1f s\n",
            push ? "pushed" : "pulled", res->generation, size, res->chunks_transferred,
            res->chunks, push ? "uploaded" : "downloaded", moved, res->chunks_present,
            push ? "in the store" : "local", res->chunks_zero, seconds);
}
