// SPDX-License-Identifier: MIT
/* --prometheus: a sample in the Prometheus text exposition format (0.0.4)
 * and the small HTTP/1.1 server that hands it out at /metrics.  Every
 * scrape takes a fresh sample; only totals and current values are exported
 * (Prometheus computes rates itself), and not the heat map, whose 2,048
 * series per image would swamp a time-series database.  The server answers
 * one connection at a time: a scrape costs a scan of the statistics
 * directory, and a client that sends nothing is dropped after a few
 * seconds, so no client can hold the others off for long. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "top.h"
#include "util.h"

/* ---- the exposition ----------------------------------------------------- */

/* The length of the UTF-8 sequence at @p, or 0 when it is not one (a stray
 * byte, truncated, overlong, a surrogate or beyond U+10FFFF). */
static size_t
utf8_len(const unsigned char *p)
{
    unsigned n, min;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        n = 2, min = 0x80, cp = p[0] & 0x1f;
    else if ((p[0] & 0xf0) == 0xe0)
        n = 3, min = 0x800, cp = p[0] & 0x0f;
    else if ((p[0] & 0xf8) == 0xf0)
        n = 4, min = 0x10000, cp = p[0] & 0x07;
    else
        return 0;
    for (unsigned i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A label value, between the quotes: backslash, double quote and newline
 * escaped as the format requires.  File names may hold any byte, but
 * Prometheus rejects label values that are not UTF-8, so stray bytes
 * become U+FFFD. */
static void
put_label_value(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_len(p);
        if (n == 0) {
            fputs("\xef\xbf\xbd", f);
            p++;
        } else if (*p == '\\' || *p == '"') {
            fputc('\\', f);
            fputc(*p++, f);
        } else if (*p == '\n') {
            fputs("\\n", f);
            p++;
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
}

/* Nanoseconds as seconds, exactly ("0.000123", "2", "1099.511627776"). */
static void
put_seconds(FILE *f, uint64_t ns)
{
    char frac[16];
    snprintf(frac, sizeof frac, "%09" PRIu64, ns % 1000000000u);
    size_t n = strlen(frac);
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    fprintf(f, "%" PRIu64 "%s%s", ns / 1000000000u, n ? "." : "", frac);
}

static void
family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The start of a sample line: NAME{ and the labels every series of an
 * image has.  The caller adds its own labels and closes the brace. */
static void
line_start(FILE *f, const char *name, const struct top_image *m)
{
    fprintf(f, "%s{image=\"", name);
    put_label_value(f, top_image_name(m));
    fputs("\",pid=\"", f);
    if (m->pid) /* not known: empty, which Prometheus treats as no label */
        fprintf(f, "%" PRIu64, m->pid);
    fputs("\",command=\"", f);
    put_label_value(f, m->source);
    fprintf(f, "\",source=\"%s\"", m->from_qmp ? "qmp" : "topcow");
}

/* A whole line: the image's labels, then @extra (",op=\"read\"" or ""). */
static void
line_u64(FILE *f, const char *name, const struct top_image *m, const char *extra, uint64_t v)
{
    line_start(f, name, m);
    fprintf(f, "%s} %" PRIu64 "\n", extra, v);
}

static void
line_seconds(FILE *f, const char *name, const struct top_image *m, const char *extra,
             uint64_t ns)
{
    line_start(f, name, m);
    fprintf(f, "%s} ", extra);
    put_seconds(f, ns);
    fputc('\n', f);
}

/* What QEMU reports of a drive (top.h): no write_zeroes counters. */
static bool
op_known(const struct top_image *m, int op)
{
    return !m->from_qmp || op != TOPCOW_STATS_ZERO;
}

static unsigned
nlayers(const struct top_image *m)
{
    return m->st.nlayers < TOPCOW_STATS_MAX_LAYERS ? m->st.nlayers : TOPCOW_STATS_MAX_LAYERS;
}

/* Whether the top layer's file could be looked at (top-sample.c leaves
 * zeros when not); an image file is never empty. */
static bool
file_known(const struct top_image *m)
{
    return !m->from_qmp && (m->file_size || m->file_allocated);
}

/* Images whose labels would repeat an earlier image's (one process with
 * the same file open twice) are left out: duplicate series make the whole
 * scrape invalid. */
static bool
same_labels(const struct top_image *a, const struct top_image *b)
{
    return a->pid == b->pid && a->from_qmp == b->from_qmp &&
           strcmp(a->source, b->source) == 0 && strcmp(top_image_name(a), top_image_name(b)) == 0;
}

/* The images a scrape shows. */
struct shown {
    const struct top_image **v;
    size_t n;
};

/* A counter family with one series per op: guest requests (from the top
 * layer, ops the source reports) or host-file operations (every layer). */
static const struct op_family {
    const char *name, *help;
    size_t off;      /* a uint64_t[ops] inside struct topcow_stats_layer */
    bool host;
    bool seconds;    /* nanoseconds, exported in seconds */
    unsigned skip;   /* ops left out (1 << op): they move no bytes */
} op_families[] = {
    { "topcow_requests_total", "Guest requests completed, failed ones included.",
      offsetof(struct topcow_stats_layer, ops), false, false, 0 },
    { "topcow_request_bytes_total",
      "Guest bytes read, written, zeroed or discarded by successful requests.",
      offsetof(struct topcow_stats_layer, bytes), false, false, 1u << TOPCOW_STATS_FLUSH },
    { "topcow_request_errors_total", "Guest requests that failed.",
      offsetof(struct topcow_stats_layer, errors), false, false, 0 },
    { "topcow_host_operations_total",
      "Operations on the layer's host file, metadata and data alike.",
      offsetof(struct topcow_stats_layer, host_ops), true, false, 0 },
    { "topcow_host_bytes_total",
      "Bytes read, written, zeroed or discarded in the layer's host file.",
      offsetof(struct topcow_stats_layer, host_bytes), true, false,
      1u << TOPCOW_STATS_HOST_FLUSH | 1u << TOPCOW_STATS_HOST_TRUNCATE },
    { "topcow_host_operation_seconds_total",
      "Time spent in operations on the layer's host file.",
      offsetof(struct topcow_stats_layer, host_nsec), true, true, 0 },
};

static void
print_op_family(FILE *f, const struct shown *sh, const struct op_family *fam)
{
    char extra[64];
    family(f, fam->name, "counter", fam->help);
    for (size_t im = 0; im < sh->n; im++) {
        const struct top_image *m = sh->v[im];
        unsigned layers = !fam->host ? 1 : m->from_qmp ? 0 : nlayers(m);
        int ops = fam->host ? TOPCOW_STATS_HOST_OPS : TOPCOW_STATS_OPS;
        for (unsigned i = 0; i < layers; i++) {
            const struct topcow_stats_layer *l = &m->st.layers[i];
            const uint64_t *v = (const uint64_t *)(const void *)((const char *)l + fam->off);
            for (int op = 0; op < ops; op++) {
                if ((fam->skip & 1u << op) || (!fam->host && !op_known(m, op)))
                    continue;
                if (fam->host)
                    snprintf(extra, sizeof extra, ",depth=\"%u\",op=\"%s\"", l->depth,
                             top_host_op_names[op]);
                else
                    snprintf(extra, sizeof extra, ",op=\"%s\"", top_op_names[op]);
                if (fam->seconds)
                    line_seconds(f, fam->name, m, extra, v[op]);
                else
                    line_u64(f, fam->name, m, extra, v[op]);
            }
        }
    }
}

/* Guest requests: counters per op and the latency histograms. */
static void
print_requests(FILE *f, const struct shown *sh)
{
    char extra[64];
    for (size_t k = 0; k < 3; k++)
        print_op_family(f, sh, &op_families[k]);

    /* Bucket i of the library's histogram counts [2^i, 2^(i+1)) ns, so
     * the cumulative count up to it is the count at le = 2^(i+1) ns; the
     * last bucket also holds everything slower and goes to +Inf only.
     * QEMU reports only the total time: its drives get the +Inf bucket,
     * which still gives the mean. */
    family(f, "topcow_request_duration_seconds", "histogram",
           "Time guest requests took, from arrival to completion.");
    for (size_t im = 0; im < sh->n; im++) {
        const struct top_image *m = sh->v[im];
        for (int op = 0; op < TOPCOW_STATS_OPS; op++) {
            if (!op_known(m, op))
                continue;
            uint64_t count = 0;
            if (!m->from_qmp)
                for (int b = 0; b < TOPCOW_STATS_LAT_BUCKETS - 1; b++) {
                    count += m->st.latency[op][b];
                    line_start(f, "topcow_request_duration_seconds_bucket", m);
                    fprintf(f, ",op=\"%s\",le=\"", top_op_names[op]);
                    put_seconds(f, (uint64_t)2 << b);
                    fprintf(f, "\"} %" PRIu64 "\n", count);
                }
            else
                count = m->st.layers[0].ops[op];
            snprintf(extra, sizeof extra, ",op=\"%s\",le=\"+Inf\"", top_op_names[op]);
            line_u64(f, "topcow_request_duration_seconds_bucket", m, extra, count);
            snprintf(extra, sizeof extra, ",op=\"%s\"", top_op_names[op]);
            line_seconds(f, "topcow_request_duration_seconds_sum", m, extra,
                         m->st.latency_nsec[op]);
            line_u64(f, "topcow_request_duration_seconds_count", m, extra, count);
        }
    }
    family(f, "topcow_request_max_duration_seconds", "gauge",
           "Longest guest request since the image was opened.");
    for (size_t im = 0; im < sh->n; im++) {
        const struct top_image *m = sh->v[im];
        for (int op = 0; op < TOPCOW_STATS_OPS && !m->from_qmp; op++) {
            snprintf(extra, sizeof extra, ",op=\"%s\"", top_op_names[op]);
            line_seconds(f, "topcow_request_max_duration_seconds", m, extra,
                         m->st.latency_max_ns[op]);
        }
    }
}

/* One figure per image: a uint64_t inside struct top_image. */
static const struct {
    const char *name, *type, *help;
    size_t off;
    bool ns;     /* nanoseconds, exported in seconds */
    bool qmp;    /* QEMU reports it too */
    bool file;   /* about the top layer's file: only when it was reachable */
} image_figures[] = {
    { "topcow_in_flight_requests", "gauge", "Guest requests running now.",
      offsetof(struct top_image, st.in_flight), false, false, false },
    { "topcow_nbd_clients", "gauge", "NBD clients connected to the image.",
      offsetof(struct top_image, st.clients), false, false, false },
    { "topcow_zero_bytes_detected_total", "counter",
      "Written bytes found to be zeros and stored as zero clusters (detect-zeroes).",
      offsetof(struct top_image, st.zero_bytes_detected), false, false, false },
    { "topcow_virtual_size_bytes", "gauge", "Size of the virtual disk.",
      offsetof(struct top_image, st.virtual_size), false, true, false },
    { "topcow_image_open_time_seconds", "gauge",
      "When the image was opened, in seconds since the Unix epoch (counters start there).",
      offsetof(struct top_image, st.open_time_ns), true, false, false },
    { "topcow_file_size_bytes", "gauge", "Size of the top layer's host file.",
      offsetof(struct top_image, file_size), false, false, true },
    { "topcow_file_allocated_bytes", "gauge",
      "Bytes the top layer's host file occupies on its file system.",
      offsetof(struct top_image, file_allocated), false, false, true },
    { "topcow_filesystem_free_bytes", "gauge",
      "Bytes available to unprivileged users on the file system of the top layer's file.",
      offsetof(struct top_image, fs_free), false, false, true },
};

static void
print_image_figures(FILE *f, const struct shown *sh)
{
    for (size_t k = 0; k < sizeof image_figures / sizeof image_figures[0]; k++) {
        family(f, image_figures[k].name, image_figures[k].type, image_figures[k].help);
        for (size_t im = 0; im < sh->n; im++) {
            const struct top_image *m = sh->v[im];
            if ((m->from_qmp && !image_figures[k].qmp) || (image_figures[k].file && !file_known(m)))
                continue;
            uint64_t v;
            memcpy(&v, (const char *)m + image_figures[k].off, sizeof v);
            if (image_figures[k].ns)
                line_seconds(f, image_figures[k].name, m, "", v);
            else
                line_u64(f, image_figures[k].name, m, "", v);
        }
    }
    family(f, "topcow_image_read_only", "gauge", "1 when the image is open read-only.");
    for (size_t im = 0; im < sh->n; im++) {
        const struct top_image *m = sh->v[im];
        if (!m->from_qmp)
            line_u64(f, "topcow_image_read_only", m, "", m->st.read_only);
    }
}

/* One counter per layer: a uint64_t inside struct topcow_stats_layer. */
static const struct {
    const char *name, *help;
    size_t off;
    bool ns;
} layer_counters[] = {
    { "topcow_layer_read_resolved_bytes_total",
      "Guest read bytes the layer answered itself (its data, or zeros) rather than passing "
      "them to the layer below.",
      offsetof(struct topcow_stats_layer, read_bytes_resolved), false },
    { "topcow_clusters_allocated_total", "Host clusters allocated, for data and metadata.",
      offsetof(struct topcow_stats_layer, clusters_allocated), false },
    { "topcow_data_clusters_allocated_total", "Host clusters allocated for guest data.",
      offsetof(struct topcow_stats_layer, data_clusters_allocated), false },
    { "topcow_cow_bytes_total",
      "Bytes copied from old contents (backing file, compressed cluster) around "
      "partial-cluster writes.",
      offsetof(struct topcow_stats_layer, cow_bytes), false },
    { "topcow_compressed_cluster_reads_total", "Compressed clusters read.",
      offsetof(struct topcow_stats_layer, compressed_reads), false },
    { "topcow_decompress_seconds_total", "Time spent decompressing compressed clusters.",
      offsetof(struct topcow_stats_layer, decompress_nsec), true },
    { "topcow_discarded_bytes_total", "Guest bytes whose clusters a discard freed.",
      offsetof(struct topcow_stats_layer, discard_bytes), false },
};

/* Per layer of the chain (label depth: 0 the image opened, 1 its backing
 * file...).  QEMU drives report no layer counters, only the layers' names. */
static void
print_layers(FILE *f, const struct shown *sh)
{
    char extra[64];
    family(f, "topcow_layer_info", "gauge", "The layers of the chain: file and format.");
    for (size_t im = 0; im < sh->n; im++) {
        const struct top_image *m = sh->v[im];
        for (unsigned i = 0; i < nlayers(m); i++) {
            const struct topcow_stats_layer *l = &m->st.layers[i];
            line_start(f, "topcow_layer_info", m);
            fprintf(f, ",depth=\"%u\",file=\"", l->depth);
            put_label_value(f, l->filename);
            fputs("\",format=\"", f);
            put_label_value(f, l->format);
            fputs("\"} 1\n", f);
        }
    }

    for (size_t k = 3; k < sizeof op_families / sizeof op_families[0]; k++)
        print_op_family(f, sh, &op_families[k]);

    static const char *const cache_family[2][2] = {
        { "topcow_cache_hits_total", "Lookups found in the layer's metadata cache." },
        { "topcow_cache_misses_total", "Lookups that had to read the layer's metadata." },
    };
    for (int miss = 0; miss < 2; miss++) {
        family(f, cache_family[miss][0], "counter", cache_family[miss][1]);
        for (size_t im = 0; im < sh->n; im++) {
            const struct top_image *m = sh->v[im];
            for (unsigned i = 0; i < nlayers(m) && !m->from_qmp; i++) {
                const struct topcow_stats_layer *l = &m->st.layers[i];
                snprintf(extra, sizeof extra, ",depth=\"%u\",cache=\"l2\"", l->depth);
                line_u64(f, cache_family[miss][0], m, extra, miss ? l->l2_misses : l->l2_hits);
                snprintf(extra, sizeof extra, ",depth=\"%u\",cache=\"refcount\"", l->depth);
                line_u64(f, cache_family[miss][0], m, extra,
                         miss ? l->refcount_misses : l->refcount_hits);
            }
        }
    }

    for (size_t k = 0; k < sizeof layer_counters / sizeof layer_counters[0]; k++) {
        family(f, layer_counters[k].name, "counter", layer_counters[k].help);
        for (size_t im = 0; im < sh->n; im++) {
            const struct top_image *m = sh->v[im];
            for (unsigned i = 0; i < nlayers(m) && !m->from_qmp; i++) {
                uint64_t v;
                memcpy(&v, (const char *)&m->st.layers[i] + layer_counters[k].off, sizeof v);
                snprintf(extra, sizeof extra, ",depth=\"%u\"", m->st.layers[i].depth);
                if (layer_counters[k].ns)
                    line_seconds(f, layer_counters[k].name, m, extra, v);
                else
                    line_u64(f, layer_counters[k].name, m, extra, v);
            }
        }
    }
}

void
top_print_prometheus(FILE *f, const struct top_sample *s)
{
    struct shown sh = { .v = malloc((s->n ? s->n : 1) * sizeof *sh.v) };
    for (size_t i = 0; sh.v && i < s->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < sh.n && !seen; j++)
            seen = same_labels(&s->v[i], sh.v[j]);
        if (!seen)
            sh.v[sh.n++] = &s->v[i];
    }
    /* Out of memory: the families without samples, which is still valid. */
    print_requests(f, &sh);
    print_image_figures(f, &sh);
    print_layers(f, &sh);
    free(sh.v);
}

/* ---- the HTTP server ---------------------------------------------------- */

#define MAX_LISTENERS 8
#define REQUEST_MAX 8192          /* request line and headers */
#define REQUEST_TIMEOUT_MS 3000   /* to receive them */
#define RESPONSE_TIMEOUT_MS 10000 /* to send the answer */
#define LINGER_MS 500             /* to see the client close after the answer */

/* Wait until @fd is ready for @events, with SIGINT and SIGTERM let through
 * (@mask).  Returns 1 when ready, 0 when @deadline passed, -1 when a signal
 * asked to stop. */
static int
wait_fd(int fd, short events, int64_t deadline, const sigset_t *mask)
{
    for (;;) {
        if (top_stop)
            return -1;
        int64_t left = deadline - clock_ms(CLOCK_MONOTONIC);
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = events };
        struct timespec ts = { (time_t)(left / 1000), (long)(left % 1000) * 1000000 };
        int n = ppoll(&p, 1, &ts, mask);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
    }
}

/* Receive the request line and headers into @buf (NUL-terminated).
 * Returns 1 when complete, 2 when they do not fit, 0 when the client
 * closed, failed or was too slow, -1 when a signal asked to stop. */
static int
read_request(int fd, char *buf, size_t cap, const sigset_t *mask)
{
    const int64_t deadline = clock_ms(CLOCK_MONOTONIC) + REQUEST_TIMEOUT_MS;
    size_t len = 0;
    buf[0] = '\0';
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n > 0) {
            len += (size_t)n;
            buf[len] = '\0';
            if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
                return 1;
            if (len == cap - 1)
                return 2;
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return 0;
        int w = wait_fd(fd, POLLIN, deadline, mask);
        if (w <= 0)
            return w;
    }
}

/* Returns 0, or -1 when the client failed, was too slow or a signal came. */
static int
send_all(int fd, const char *p, size_t len, int64_t deadline, const sigset_t *mask)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline, mask) <= 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static void
respond(int fd, const char *status, const char *headers, const char *body, size_t len,
        bool head, const sigset_t *mask)
{
    char h[512];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, headers, len);
    const int64_t deadline = clock_ms(CLOCK_MONOTONIC) + RESPONSE_TIMEOUT_MS;
    if (send_all(fd, h, (size_t)n, deadline, mask) == 0 && !head)
        send_all(fd, body, len, deadline, mask);
}

static void
respond_text(int fd, const char *status, const char *headers, bool head, const sigset_t *mask)
{
    char body[128];
    int n = snprintf(body, sizeof body, "%s\n", status);
    char hdrs[256];
    snprintf(hdrs, sizeof hdrs, "Content-Type: text/plain; charset=utf-8\r\n%s", headers);
    respond(fd, status, hdrs, body, (size_t)n, head, mask);
}

/* The answer to GET /metrics: a fresh sample, sorted by name so that
 * scrapes read alike. */
static void
respond_metrics(int fd, struct top_source *src, bool head, const sigset_t *mask)
{
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    struct top_sample s;
    if (!f || top_sample_take(src, &s) < 0) {
        if (f)
            fclose(f);
        free(body);
        respond_text(fd, "500 Internal Server Error", "", head, mask);
        return;
    }
    top_sample_sort(&s, TOP_SORT_NAME);
    top_print_prometheus(f, &s);
    top_sample_free(&s);
    if (fclose(f) != 0)
        respond_text(fd, "500 Internal Server Error", "", head, mask);
    else
        respond(fd, "200 OK", "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
                body, len, head, mask);
    free(body);
}

/* Serve one connection: one request, one answer, then close.  Returns -1
 * when a signal asked to stop. */
static int
serve_client(int fd, struct top_source *src, const sigset_t *mask)
{
    char buf[REQUEST_MAX];
    int r = read_request(fd, buf, sizeof buf, mask);
    if (r <= 0) {
        close(fd);
        return r;
    }
    bool head = false;
    if (r == 2) {
        respond_text(fd, "431 Request Header Fields Too Large", "", false, mask);
    } else {
        /* METHOD SP TARGET SP HTTP/1.x */
        buf[strcspn(buf, "\r\n")] = '\0';
        char *method = buf, *target = strchr(buf, ' ');
        char *version = target ? strchr(target + 1, ' ') : NULL;
        if (version)
            *target++ = '\0', *version++ = '\0';
        if (!version || strncmp(version, "HTTP/1.", 7) != 0 || *target != '/') {
            respond_text(fd, "400 Bad Request", "", false, mask);
        } else {
            target[strcspn(target, "?#")] = '\0'; /* Prometheus may add ?params */
            head = strcmp(method, "HEAD") == 0;
            if (strcmp(target, "/metrics") != 0)
                respond_text(fd, "404 Not Found", "", head, mask);
            else if (!head && strcmp(method, "GET") != 0)
                respond_text(fd, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", false, mask);
            else
                respond_metrics(fd, src, head, mask);
        }
    }
    /* Closing with unread bytes would reset the connection and could
     * destroy the answer before the client reads it: say we are done,
     * then wait briefly for the client to close. */
    shutdown(fd, SHUT_WR);
    const int64_t deadline = clock_ms(CLOCK_MONOTONIC) + LINGER_MS;
    while (wait_fd(fd, POLLIN, deadline, mask) > 0 && recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
    return top_stop ? -1 : 0;
}

struct listeners {
    int fd[MAX_LISTENERS];
    unsigned n;
};

/* Split "HOST:PORT", "[V6]:PORT" or ":PORT" into @host (empty: every
 * address) and @port.  Returns 0 or -1. */
static int
split_addr(const char *addr, char *host, size_t hostlen, const char **port)
{
    const char *colon;
    size_t n;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':')
            return -1;
        colon = end + 1;
        addr++;
        n = (size_t)(end - addr);
        if (n == 0)
            return -1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -1;
        n = (size_t)(colon - addr);
        if (memchr(addr, ':', n)) /* an IPv6 address wants brackets */
            return -1;
    }
    if (n >= hostlen)
        return -1;
    memcpy(host, addr, n);
    host[n] = '\0';
    *port = colon + 1;
    size_t digits = strspn(*port, "0123456789");
    if (digits == 0 || digits > 5 || (*port)[digits] || atoi(*port) < 1 || atoi(*port) > 65535)
        return -1;
    return 0;
}

/* Listen on every address @addr names.  An address family the host lacks
 * is skipped when another address works; any other failure is an error.
 * Returns 0, or -1 with a one-line message printed. */
static int
listen_addr(const char *addr, struct listeners *l)
{
    char host[256];
    const char *port;
    l->n = 0;
    if (split_addr(addr, host, sizeof host, &port) < 0) {
        error_msg("top: --prometheus '%s': want HOST:PORT, [IPV6]:PORT or :PORT with a port "
                  "from 1 to 65535",
                  addr);
        return -1;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV },
                    *res;
    int e = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (e) {
        error_msg("top: --prometheus %s: %s", addr, e == EAI_SYSTEM ? strerror(errno)
                                                                    : gai_strerror(e));
        return -1;
    }
    int err = 0;
    bool fatal = false;
    for (struct addrinfo *ai = res; ai && !fatal && l->n < MAX_LISTENERS; ai = ai->ai_next) {
        bool seen = false; /* a name listed twice in /etc/hosts */
        for (struct addrinfo *b = res; b != ai && !seen; b = b->ai_next)
            seen = b->ai_addrlen == ai->ai_addrlen &&
                   memcmp(b->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0;
        if (seen)
            continue;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
        int one = 1;
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (ai->ai_family == AF_INET6) /* the IPv4 address gets its own socket */
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        }
        if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
            err = errno;
            fatal = err != EAFNOSUPPORT && err != EADDRNOTAVAIL;
            if (fd >= 0)
                close(fd);
            continue;
        }
        l->fd[l->n++] = fd;
    }
    freeaddrinfo(res);
    if (fatal || l->n == 0) {
        error_msg("top: --prometheus %s: cannot listen: %s", addr, strerror(err));
        for (unsigned i = 0; i < l->n; i++)
            close(l->fd[i]);
        l->n = 0;
        return -1;
    }
    return 0;
}

int
top_prom_serve(struct top_source *src, const char *addr)
{
    struct listeners l;
    if (listen_addr(addr, &l) < 0)
        return 1;

    /* SIGINT and SIGTERM are let through only while waiting, so one that
     * comes while a scrape is served is seen by the next wait and none is
     * missed between a check of top_stop and the wait. */
    sigset_t block, orig, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &orig);
    waitmask = orig;
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);

    fprintf(stderr, "topcow top: serving http://%s%s/metrics\n", addr[0] == ':' ? "*" : "", addr);
    int rc = 0;
    while (!top_stop) {
        struct pollfd p[MAX_LISTENERS];
        for (unsigned i = 0; i < l.n; i++)
            p[i] = (struct pollfd){ .fd = l.fd[i], .events = POLLIN };
        if (ppoll(p, l.n, NULL, &waitmask) < 0) {
            if (errno == EINTR)
                continue;
            error_msg("top: --prometheus: poll: %s", strerror(errno));
            rc = 1;
            break;
        }
        for (unsigned i = 0; i < l.n && !top_stop; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int c = accept4(l.fd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c >= 0) {
                serve_client(c, src, &waitmask);
            } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                       errno == ENOMEM) {
                /* The connection stays queued: try again a little later
                 * rather than spin. */
                struct timespec ts = { 0, 100 * 1000000 };
                ppoll(NULL, 0, &ts, &waitmask);
            }
        }
    }
    sigprocmask(SIG_SETMASK, &orig, NULL);
    for (unsigned i = 0; i < l.n; i++)
        close(l.fd[i]);
    return rc;
}
