// SPDX-License-Identifier: MIT
/* Taking a sample: images published by topcow processes plus QEMU drives,
 * and the figures computed against the previous sample (top.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "clock.h"
#include "top.h"

struct top_image *
top_sample_add(struct top_sample *s)
{
    if ((s->n & (s->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = s->n ? s->n * 2 : 4;
        struct top_image *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return NULL;
        s->v = v;
    }
    struct top_image *img = &s->v[s->n++];
    memset(img, 0, sizeof *img);
    return img;
}

static int
add_published(void *opaque, const struct topcow_stats *st)
{
    struct top_sample *s = opaque;
    struct top_image *img = top_sample_add(s);
    if (!img)
        return -ENOMEM;
    img->st = *st;
    snprintf(img->key, sizeof img->key, "%llu/%llu", (unsigned long long)st->pid,
             (unsigned long long)st->id);
    snprintf(img->source, sizeof img->source, "%s", st->command);
    img->pid = st->pid;
    return 0;
}

const char *
top_image_name(const struct top_image *img)
{
    if (img->from_qmp)
        return img->qmp_name;
    return img->st.nlayers ? img->st.layers[0].filename : "?";
}

const struct top_image *
top_sample_find(const struct top_sample *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].key, key) == 0)
            return &s->v[i];
    return NULL;
}

static double
delta(uint64_t now, uint64_t before)
{
    return now >= before ? (double)(now - before) : 0.0; /* counters restart with a new open */
}

/* The 99th percentile of reads and writes in the interval, from the
 * histograms' difference, interpolated inside the bucket. */
static double
p99_ms(const struct topcow_stats *a, const struct topcow_stats *b)
{
    double h[TOPCOW_STATS_LAT_BUCKETS], total = 0;
    for (int i = 0; i < TOPCOW_STATS_LAT_BUCKETS; i++) {
        h[i] = 0;
        for (int op = TOPCOW_STATS_READ; op <= TOPCOW_STATS_WRITE; op++)
            h[i] += delta(a->latency[op][i], b ? b->latency[op][i] : 0);
        total += h[i];
    }
    if (total <= 0)
        return -1;
    double want = total * 0.99, seen = 0;
    for (int i = 0; i < TOPCOW_STATS_LAT_BUCKETS; i++) {
        if (seen + h[i] >= want) {
            double lo = i ? ldexp(1, i) : 0, hi = ldexp(1, i + 1);
            double frac = h[i] > 0 ? (want - seen) / h[i] : 1;
            return (lo + frac * (hi - lo)) / 1e6;
        }
        seen += h[i];
    }
    return ldexp(1, TOPCOW_STATS_LAT_BUCKETS) / 1e6;
}

/* The top layer's file on the host, for size and growth. */
static void
stat_file(struct top_image *img)
{
    if (img->st.nlayers == 0 || img->from_qmp)
        return;
    struct stat sb;
    struct statvfs vb;
    const char *f = img->st.layers[0].filename;
    if (stat(f, &sb) == 0) {
        img->file_size = (uint64_t)sb.st_size;
        img->file_allocated = (uint64_t)sb.st_blocks * 512;
    }
    if (statvfs(f, &vb) == 0)
        img->fs_free = (uint64_t)vb.f_bavail * vb.f_frsize;
}

static void
compute_rates(struct top_image *img, const struct top_image *p)
{
    const struct topcow_stats *a = &img->st;
    img->p99_ms = -1;
    img->cache_hit_pct = -1;
    img->write_amp = -1;
    img->full_in_h = -1;
    uint64_t wmax = a->latency_max_ns[TOPCOW_STATS_WRITE];
    uint64_t rmax = a->latency_max_ns[TOPCOW_STATS_READ];
    img->max_ms = img->from_qmp ? -1 : (double)(rmax > wmax ? rmax : wmax) / 1e6;
    img->active = a->in_flight > 0;
    if (!p)
        return;
    const struct topcow_stats *b = &p->st;
    double secs = img->from_qmp ? img->interval_s
                                : ((double)a->sample_time_ns - (double)b->sample_time_ns) / 1e9;
    if (secs <= 0)
        return;
    img->has_rates = true;
    img->interval_s = secs;
    const struct topcow_stats_layer *la = &a->layers[0], *lb = &b->layers[0];
    for (int op = 0; op < TOPCOW_STATS_OPS; op++) {
        img->ops_per_s[op] = delta(la->ops[op], lb->ops[op]) / secs;
        img->bytes_per_s[op] = delta(la->bytes[op], lb->bytes[op]) / secs;
        if (img->ops_per_s[op] > 0)
            img->active = true;
    }
    if (!img->from_qmp)
        img->p99_ms = p99_ms(a, b);
    else if (img->ops_per_s[TOPCOW_STATS_READ] + img->ops_per_s[TOPCOW_STATS_WRITE] > 0)
        /* QEMU reports total time only: show the mean instead. */
        img->p99_ms = (delta(a->latency_nsec[0], b->latency_nsec[0]) +
                       delta(a->latency_nsec[1], b->latency_nsec[1])) /
                      ((delta(la->ops[0], lb->ops[0]) + delta(la->ops[1], lb->ops[1])) * 1e6);

    double hits = 0, lookups = 0, host_w = 0, cow = 0, alloc = 0, comp = 0;
    unsigned n = a->nlayers < b->nlayers ? a->nlayers : b->nlayers;
    for (unsigned i = 0; i < n; i++) {
        const struct topcow_stats_layer *x = &a->layers[i], *y = &b->layers[i];
        double h = delta(x->l2_hits, y->l2_hits) + delta(x->refcount_hits, y->refcount_hits);
        double m = delta(x->l2_misses, y->l2_misses) +
                   delta(x->refcount_misses, y->refcount_misses);
        hits += h;
        lookups += h + m;
        host_w += delta(x->host_bytes[TOPCOW_STATS_HOST_WRITE],
                        y->host_bytes[TOPCOW_STATS_HOST_WRITE]);
        cow += delta(x->cow_bytes, y->cow_bytes);
        alloc += delta(x->clusters_allocated, y->clusters_allocated);
        comp += delta(x->compressed_reads, y->compressed_reads);
    }
    if (lookups > 0)
        img->cache_hit_pct = 100.0 * hits / lookups;
    double guest_w = delta(la->bytes[TOPCOW_STATS_WRITE], lb->bytes[TOPCOW_STATS_WRITE]);
    if (guest_w > 0 && !img->from_qmp)
        img->write_amp = host_w / guest_w;
    img->cow_bytes_per_s = cow / secs;
    img->alloc_clusters_per_s = alloc / secs;
    img->compressed_reads_per_s = comp / secs;
    double rd = delta(la->bytes[TOPCOW_STATS_READ], lb->bytes[TOPCOW_STATS_READ]);
    for (unsigned i = 0; i < n && rd > 0; i++)
        img->resolved_pct[i] =
            100.0 * delta(a->layers[i].read_bytes_resolved, b->layers[i].read_bytes_resolved) /
            rd;

    if (!img->from_qmp && p->file_allocated && img->file_allocated) {
        img->growth_per_h =
            ((double)img->file_allocated - (double)p->file_allocated) * 3600.0 / secs;
        if (img->growth_per_h > 0 && img->fs_free)
            img->full_in_h = (double)img->fs_free / img->growth_per_h;
    }
}

/* A source failed with @msg: keep it as the status, and print it unless it
 * was printed already (*@told).  (The screen shows stderr on its status
 * line.) */
static void
report(struct top_source *src, bool *told, const char *msg)
{
    snprintf(src->status, sizeof src->status, "%s", msg);
    if (!*told)
        fprintf(stderr, "topcow top: %s\n", msg);
    *told = true;
}

int
top_sample_take(struct top_source *src, struct top_sample *out)
{
    memset(out, 0, sizeof *out);
    out->time_ns = clock_ns(CLOCK_REALTIME);
    int r = topcow_stats_scan(src->stats_dir, add_published, out);
    if (r == -ENOMEM) {
        top_sample_free(out);
        return -1;
    }
    src->status[0] = '\0';
    if (r < 0) {
        static bool told;
        report(src, &told, topcow_last_error());
    }
    if (src->n_qmp && !src->qmp_err && !(src->qmp_err = calloc(src->n_qmp, sizeof(char *)))) {
        top_sample_free(out);
        return -1;
    }
    for (size_t i = 0; i < src->n_qmp; i++) {
        char err[512];
        if (top_qmp_collect(&src->qmp[i], src->qmp_sockets[i], out, err, sizeof err) < 0) {
            bool same = src->qmp_err[i] && strcmp(src->qmp_err[i], err) == 0;
            report(src, &same, err);
            if (!src->qmp_err[i] || strcmp(src->qmp_err[i], err) != 0) {
                free(src->qmp_err[i]);
                src->qmp_err[i] = strdup(err);
            }
        } else {
            free(src->qmp_err[i]); /* working again: a new failure is news */
            src->qmp_err[i] = NULL;
        }
    }
    for (size_t i = 0; i < out->n; i++) {
        struct top_image *img = &out->v[i];
        if (!img->from_qmp) {
            stat_file(img);
        } else {
            if (img->st.sample_time_ns == 0)
                img->st.sample_time_ns = out->time_ns;
            const struct top_image *p = top_sample_find(&src->prev, img->key);
            img->interval_s = p ? (double)(out->time_ns - src->prev.time_ns) / 1e9 : 0;
        }
        compute_rates(img, top_sample_find(&src->prev, img->key));
    }

    /* Keep a copy for the next rates. */
    struct top_sample keep = { .n = out->n, .time_ns = out->time_ns };
    keep.v = out->n ? malloc(out->n * sizeof *keep.v) : NULL;
    if (out->n && !keep.v) {
        top_sample_free(out);
        return -1;
    }
    if (out->n)
        memcpy(keep.v, out->v, out->n * sizeof *keep.v);
    top_sample_free(&src->prev);
    src->prev = keep;
    return 0;
}

void
top_sample_free(struct top_sample *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

void
top_source_free(struct top_source *src)
{
    for (size_t i = 0; i < src->n_qmp; i++) {
        top_qmp_close(src->qmp ? src->qmp[i] : NULL);
        if (src->qmp_err)
            free(src->qmp_err[i]);
    }
    free(src->qmp_err);
    free(src->qmp);
    top_sample_free(&src->prev);
}

static enum top_sort sort_key;

static double
sort_value(const struct top_image *i)
{
    switch (sort_key) {
    case TOP_SORT_IO:
        return i->bytes_per_s[TOPCOW_STATS_READ] + i->bytes_per_s[TOPCOW_STATS_WRITE];
    case TOP_SORT_IOPS:
        return i->ops_per_s[TOPCOW_STATS_READ] + i->ops_per_s[TOPCOW_STATS_WRITE];
    case TOP_SORT_LATENCY:
        return i->p99_ms;
    case TOP_SORT_GROWTH:
        return i->growth_per_h;
    default:
        return 0;
    }
}

static int
cmp_images(const void *pa, const void *pb)
{
    const struct top_image *a = pa, *b = pb;
    int c = 0;
    if (sort_key == TOP_SORT_NAME) {
        c = strcmp(top_image_name(a), top_image_name(b));
    } else if (sort_key == TOP_SORT_PID) {
        c = a->pid < b->pid ? -1 : a->pid > b->pid;
    } else {
        double x = sort_value(a), y = sort_value(b);
        c = x > y ? -1 : x < y;
    }
    return c ? c : strcmp(a->key, b->key); /* stable order between refreshes */
}

void
top_sample_sort(struct top_sample *s, enum top_sort key)
{
    sort_key = key;
    if (s->n > 1)
        qsort(s->v, s->n, sizeof *s->v, cmp_images);
}

void
top_sample_only_active(struct top_sample *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].active)
            s->v[k++] = s->v[i];
    s->n = k;
}
