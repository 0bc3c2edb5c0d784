// SPDX-License-Identifier: MIT
/* Plain views of a sample: the batch table (-b, like `top -b`) and one JSON
 * object per interval (--json), plus the number formatting the screen
 * shares. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "top.h"

void
top_fmt_count(char *buf, size_t len, double v)
{
    static const char units[] = " kMGTP";
    int u = 0;
    while (v >= 9999.5 && u < 5) {
        v /= 1000;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, v < 9.95 ? "%.1f%c" : "%.0f%c", v, units[u]);
}

void
top_fmt_bytes(char *buf, size_t len, double v)
{
    static const char units[] = "BKMGTPE";
    int u = 0;
    bool neg = v < 0;
    if (neg)
        v = -v;
    while (v >= 1023.5 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%s%.0f", neg ? "-" : "", v);
    else
        snprintf(buf, len, v < 9.95 ? "%s%.1f%c" : "%s%.0f%c", neg ? "-" : "", v, units[u]);
}

void
top_heat_fold(const struct top_image *img, unsigned cols, uint64_t *rd, uint64_t *wr)
{
    for (unsigned c = 0; c < cols; c++)
        rd[c] = wr[c] = 0;
    if (cols == 0)
        return;
    for (unsigned b = 0; b < TOPCOW_STATS_HEAT_BUCKETS; b++) {
        unsigned c = (unsigned)((uint64_t)b * cols / TOPCOW_STATS_HEAT_BUCKETS);
        rd[c] += img->st.heat_read[b];
        wr[c] += img->st.heat_write[b];
    }
}

void
top_fmt_clock(char *buf, size_t len, uint64_t ns)
{
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%H:%M:%S", &tm);
}

const char *const top_op_names[TOPCOW_STATS_OPS] = { "read", "write", "flush", "zero",
                                                     "discard" };
const char *const top_host_op_names[TOPCOW_STATS_HOST_OPS] = { "read", "write", "flush",
                                                               "zero", "discard", "truncate" };

const struct top_column top_columns[TOP_NCOLS] = {
    [TOP_COL_PID] = { "PID", 7, false },   [TOP_COL_CMD] = { "COMMAND", 12, true },
    [TOP_COL_RS] = { "R/s", 6, false },    [TOP_COL_WS] = { "W/s", 6, false },
    [TOP_COL_RBS] = { "RB/s", 6, false },  [TOP_COL_WBS] = { "WB/s", 6, false },
    [TOP_COL_P99] = { "P99ms", 6, false }, [TOP_COL_HIT] = { "HIT%", 5, false },
    [TOP_COL_AMP] = { "WAMP", 5, false },  [TOP_COL_GROW] = { "GROW/h", 6, false },
    [TOP_COL_DEP] = { "DEP", 3, false },   [TOP_COL_CLI] = { "CLI", 3, false },
    [TOP_COL_IMAGE] = { "IMAGE", 0, true },
};

void
top_fmt_ms(char *buf, size_t len, double ms)
{
    snprintf(buf, len, ms < 9.995 ? "%.2f" : ms < 99.95 ? "%.1f" : "%.0f", ms);
}

void
top_row_cells(const struct top_image *m, char cells[TOP_NCOLS][TOP_CELL])
{
    snprintf(cells[TOP_COL_PID], TOP_CELL, "%" PRIu64, m->pid);
    snprintf(cells[TOP_COL_CMD], TOP_CELL, "%s", m->source);
    for (int c = TOP_COL_RS; c <= TOP_COL_GROW; c++)
        strcpy(cells[c], "-");
    if (m->has_rates) {
        top_fmt_count(cells[TOP_COL_RS], TOP_CELL, m->ops_per_s[TOPCOW_STATS_READ]);
        top_fmt_count(cells[TOP_COL_WS], TOP_CELL, m->ops_per_s[TOPCOW_STATS_WRITE]);
        top_fmt_bytes(cells[TOP_COL_RBS], TOP_CELL, m->bytes_per_s[TOPCOW_STATS_READ]);
        top_fmt_bytes(cells[TOP_COL_WBS], TOP_CELL, m->bytes_per_s[TOPCOW_STATS_WRITE]);
        if (m->p99_ms >= 0)
            top_fmt_ms(cells[TOP_COL_P99], TOP_CELL, m->p99_ms);
        if (m->cache_hit_pct >= 0)
            snprintf(cells[TOP_COL_HIT], TOP_CELL, "%.1f", m->cache_hit_pct);
        if (m->write_amp >= 0)
            snprintf(cells[TOP_COL_AMP], TOP_CELL, m->write_amp < 99.5 ? "%.2f" : "%.0f",
                     m->write_amp);
        if (!m->from_qmp)
            top_fmt_bytes(cells[TOP_COL_GROW], TOP_CELL, m->growth_per_h);
    }
    snprintf(cells[TOP_COL_DEP], TOP_CELL, "%u", m->st.nlayers);
    snprintf(cells[TOP_COL_CLI], TOP_CELL, "%" PRIu64, m->st.clients);
    cells[TOP_COL_IMAGE][0] = '\0';
}

/* One line of the batch table: the cells at their widths (the command
 * column 18 wide, as on a wide screen), then the image in full. */
static void
batch_line(FILE *f, char cells[TOP_NCOLS][TOP_CELL], const char *image)
{
    for (int c = 0; c < TOP_COL_IMAGE; c++) {
        int w = c == TOP_COL_CMD ? 18 : top_columns[c].width;
        fprintf(f, top_columns[c].left ? "%-*.*s " : "%*.*s ", w, w, cells[c]);
    }
    fprintf(f, "%s\n", image);
}

void
top_print_batch(FILE *f, const struct top_sample *s, unsigned iteration)
{
    char clock[16], cells[TOP_NCOLS][TOP_CELL];
    top_fmt_clock(clock, sizeof clock, s->time_ns);
    unsigned active = 0;
    for (size_t i = 0; i < s->n; i++)
        active += s->v[i].active;
    fprintf(f, "topcow top - %s  sample %u, %zu images, %u active\n", clock, iteration, s->n,
            active);
    for (int c = 0; c < TOP_NCOLS; c++)
        snprintf(cells[c], TOP_CELL, "%s", top_columns[c].title);
    batch_line(f, cells, top_columns[TOP_COL_IMAGE].title);
    for (size_t i = 0; i < s->n; i++) {
        top_row_cells(&s->v[i], cells);
        batch_line(f, cells, top_image_name(&s->v[i]));
    }
    fputc('\n', f);
    fflush(f);
}

/* ---- JSON --------------------------------------------------------------- */

static void
json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void
json_num(FILE *f, const char *key, double v, bool known)
{
    fprintf(f, "\"%s\":", key);
    if (known)
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}


static void
json_layer(FILE *f, const struct top_image *m, unsigned i)
{
    const struct topcow_stats_layer *l = &m->st.layers[i];
    fprintf(f, "{\"depth\":%u,\"file\":", l->depth);
    json_str(f, l->filename);
    fputs(",\"format\":", f);
    json_str(f, l->format);
    for (int op = 0; op < TOPCOW_STATS_OPS; op++)
        fprintf(f, ",\"%s_ops\":%" PRIu64 ",\"%s_bytes\":%" PRIu64 ",\"%s_errors\":%" PRIu64,
                top_op_names[op], l->ops[op], top_op_names[op], l->bytes[op], top_op_names[op],
                l->errors[op]);
    fprintf(f, ",\"read_bytes_resolved\":%" PRIu64 ",", l->read_bytes_resolved);
    json_num(f, "read_resolved_pct", m->resolved_pct[i], m->has_rates);
    for (int op = 0; op < TOPCOW_STATS_HOST_OPS; op++)
        fprintf(f, ",\"host_%s_ops\":%" PRIu64 ",\"host_%s_bytes\":%" PRIu64, top_host_op_names[op],
                l->host_ops[op], top_host_op_names[op], l->host_bytes[op]);
    fprintf(f,
            ",\"l2_hits\":%" PRIu64 ",\"l2_misses\":%" PRIu64 ",\"refcount_hits\":%" PRIu64
            ",\"refcount_misses\":%" PRIu64 ",\"clusters_allocated\":%" PRIu64
            ",\"data_clusters_allocated\":%" PRIu64 ",\"cow_bytes\":%" PRIu64
            ",\"compressed_reads\":%" PRIu64 ",\"decompress_ns\":%" PRIu64
            ",\"discard_bytes\":%" PRIu64 "}",
            l->l2_hits, l->l2_misses, l->refcount_hits, l->refcount_misses,
            l->clusters_allocated, l->data_clusters_allocated, l->cow_bytes,
            l->compressed_reads, l->decompress_nsec, l->discard_bytes);
}

/* Non-zero buckets only, as [index, bytes] pairs. */
static void
json_heat(FILE *f, const char *key, const uint64_t *heat)
{
    fprintf(f, "\"%s\":[", key);
    bool first = true;
    for (unsigned b = 0; b < TOPCOW_STATS_HEAT_BUCKETS; b++)
        if (heat[b]) {
            fprintf(f, "%s[%u,%" PRIu64 "]", first ? "" : ",", b, heat[b]);
            first = false;
        }
    fputc(']', f);
}

static void
json_image(FILE *f, const struct top_image *m)
{
    const struct topcow_stats *st = &m->st;
    fputs("{\"key\":", f);
    json_str(f, m->key);
    fprintf(f, ",\"source\":\"%s\",\"pid\":%" PRIu64 ",\"command\":",
            m->from_qmp ? "qmp" : "topcow", m->pid);
    json_str(f, m->source);
    fputs(",\"name\":", f);
    json_str(f, top_image_name(m));
    fprintf(f,
            ",\"virtual_size\":%" PRIu64 ",\"read_only\":%s,\"depth\":%u,\"clients\":%" PRIu64
            ",\"in_flight\":%" PRIu64 ",\"zero_bytes_detected\":%" PRIu64,
            st->virtual_size, st->read_only ? "true" : "false", st->nlayers, st->clients,
            st->in_flight, st->zero_bytes_detected);
    fputs(",\"totals\":{", f);
    const struct topcow_stats_layer *l = &st->layers[0];
    for (int op = 0; op < TOPCOW_STATS_OPS; op++)
        fprintf(f, "%s\"%s_ops\":%" PRIu64 ",\"%s_bytes\":%" PRIu64 ",\"%s_errors\":%" PRIu64,
                op ? "," : "", top_op_names[op], l->ops[op], top_op_names[op], l->bytes[op],
                top_op_names[op], l->errors[op]);
    for (int op = 0; op < TOPCOW_STATS_OPS; op++)
        fprintf(f, ",\"%s_latency_ns\":%" PRIu64, top_op_names[op], st->latency_nsec[op]);
    fputs("},\"rates\":", f);
    if (!m->has_rates) {
        fputs("null", f);
    } else {
        fprintf(f, "{\"interval_s\":%.6g", m->interval_s);
        for (int op = 0; op < TOPCOW_STATS_OPS; op++)
            fprintf(f, ",\"%s_ops_per_s\":%.6g,\"%s_bytes_per_s\":%.6g", top_op_names[op],
                    m->ops_per_s[op], top_op_names[op], m->bytes_per_s[op]);
        fputc(',', f);
        json_num(f, "p99_ms", m->p99_ms, m->p99_ms >= 0);
        fputc(',', f);
        json_num(f, "max_ms", m->max_ms, m->max_ms >= 0);
        fputc(',', f);
        json_num(f, "cache_hit_pct", m->cache_hit_pct, m->cache_hit_pct >= 0);
        fputc(',', f);
        json_num(f, "write_amplification", m->write_amp, m->write_amp >= 0);
        fprintf(f,
                ",\"cow_bytes_per_s\":%.6g,\"clusters_allocated_per_s\":%.6g,"
                "\"compressed_reads_per_s\":%.6g,",
                m->cow_bytes_per_s, m->alloc_clusters_per_s, m->compressed_reads_per_s);
        json_num(f, "growth_bytes_per_h", m->growth_per_h, !m->from_qmp);
        fputc(',', f);
        json_num(f, "full_in_h", m->full_in_h, m->full_in_h >= 0);
        fputc('}', f);
    }
    if (!m->from_qmp)
        fprintf(f,
                ",\"file\":{\"size\":%" PRIu64 ",\"allocated\":%" PRIu64
                ",\"fs_free\":%" PRIu64 "}",
                m->file_size, m->file_allocated, m->fs_free);
    fputs(",\"layers\":[", f);
    for (unsigned i = 0; i < st->nlayers; i++) {
        if (i)
            fputc(',', f);
        json_layer(f, m, i);
    }
    fputc(']', f);
    if (!m->from_qmp) {
        fprintf(f, ",\"heat\":{\"buckets\":%d,\"bucket_bytes\":%" PRIu64 ",",
                TOPCOW_STATS_HEAT_BUCKETS,
                (st->virtual_size + TOPCOW_STATS_HEAT_BUCKETS - 1) / TOPCOW_STATS_HEAT_BUCKETS);
        json_heat(f, "read", st->heat_read);
        fputc(',', f);
        json_heat(f, "write", st->heat_write);
        fputc('}', f);
    }
    fputc('}', f);
}

void
top_print_json(FILE *f, const struct top_sample *s)
{
    fprintf(f, "{\"time_ns\":%" PRIu64 ",\"images\":[", s->time_ns);
    for (size_t i = 0; i < s->n; i++) {
        if (i)
            fputc(',', f);
        json_image(f, &s->v[i]);
    }
    fputs("]}\n", f);
    fflush(f);
}
