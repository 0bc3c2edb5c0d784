// SPDX-License-Identifier: MIT
/* The full-screen view of `topcow top` (ncurses), in the spirit of top and
 * iotop: one row per open image, refreshed every -d seconds and sortable by
 * key, and a detail view of the selected image with its layers, its totals
 * and two heat maps of where the guest reads and writes.  Keys are read
 * between refreshes (ppoll on the terminal), so the screen answers at once;
 * q, SIGINT and SIGTERM leave with the terminal restored. */
#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "top.h"

/* Colour pairs, when the terminal has colours and NO_COLOR is not set. */
enum {
    PAIR_TITLE = 1, /* the first line */
    PAIR_HEAD,      /* column titles */
    PAIR_ACTIVE,    /* rows of images that had requests */
    PAIR_STATUS,    /* messages from the sources */
    PAIR_HEAT1,     /* heat map, coolest to hottest */
    PAIR_HEAT2,
    PAIR_HEAT3,
    PAIR_HEAT4,
};

enum view { VIEW_LIST, VIEW_DETAIL };

struct screen {
    struct top_source *src;
    struct top_opts *o;
    struct top_sample cur;      /* the latest sample, sorted by o->sort */
    struct top_sample before;   /* the one before (the heat map of the last interval) */
    size_t *rows;               /* indexes into cur.v of the rows shown (after -o) */
    size_t nrows;
    size_t sel;                 /* the selected row */
    size_t first;               /* the row at the top of the table (scrolling) */
    char sel_key[TOP_KEY_MAX];  /* the selected image, followed across refreshes */
    enum view view;
    bool heat_interval;         /* detail heat map: last interval instead of since open */
    bool colors;
    int err_fd;                 /* read end of the pipe stderr points to, or -1 */
    char status[256];           /* the last line written on stderr */
};

static volatile sig_atomic_t got_signal;

static void
on_signal(int sig)
{
    got_signal = sig;
}

static const char *
sort_name(enum top_sort k)
{
    static const char *const names[] = { "io", "iops", "latency", "growth", "name", "pid" };
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* ---- drawing helpers ------------------------------------------------------ */

#define LINE_MAX_COLS 1024

static int
screen_width(void)
{
    return COLS < LINE_MAX_COLS ? COLS : LINE_MAX_COLS - 1;
}

/* Draw @text at row @y from column @x with @attr, clipped to the screen;
 * with @fill, pad the rest of the row (so highlighting spans it). */
static void
put(int y, int x, attr_t attr, const char *text, bool fill)
{
    int w = screen_width();
    if (y < 0 || y >= LINES || x >= w)
        return;
    attrset((int)attr);
    int n = (int)strlen(text);
    if (n > w - x)
        n = w - x;
    mvaddnstr(y, x, text, n);
    if (fill)
        for (int i = x + n; i < w; i++)
            addch(' ');
    attrset(A_NORMAL);
}

static void
putf(int y, int x, attr_t attr, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
putf(int y, int x, attr_t attr, const char *fmt, ...)
{
    char line[LINE_MAX_COLS];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    put(y, x, attr, line, false);
}

/* Append @text to @line (@n columns used so far, @width at most) as a field
 * of @w columns after one space: right-aligned unless @left, cut if longer.
 * @w 0 is the last field: the rest of the line, shortened from the left so
 * the end of a path (the file name) stays visible.  Returns the new length;
 * *@x gets the field's column. */
static int
field(char *line, int n, int width, const char *text, int w, bool left, int *x)
{
    if (n > 0 && n < width)
        line[n++] = ' ';
    *x = n;
    int room = width - n;
    line[n] = '\0';
    if (room <= 0)
        return n;
    int len = (int)strlen(text);
    if (w == 0) {
        if (len > room && room > 3) {
            const char *tail = text + len - (room - 3);
            while ((*tail & 0xc0) == 0x80) /* not in the middle of a UTF-8 character */
                tail++;
            return n + snprintf(line + n, (size_t)room + 1, "...%s", tail);
        }
        w = len;
    }
    if (w > room)
        w = room;
    if (len > w) {
        len = w;
        while (len > 0 && (text[len] & 0xc0) == 0x80)
            len--;
    }
    int pad = w - len;
    if (!left) {
        memset(line + n, ' ', (size_t)pad);
        n += pad;
    }
    memcpy(line + n, text, (size_t)len);
    n += len;
    if (left) {
        memset(line + n, ' ', (size_t)pad);
        n += pad;
    }
    line[n] = '\0';
    return n;
}

/* ---- the table ------------------------------------------------------------ */

#define CELL TOP_CELL

/* The command column grows on wide screens ("qemu-system-x86_64"). */
static int
col_width(int c)
{
    if (c == TOP_COL_CMD && screen_width() >= 130)
        return 18;
    return top_columns[c].width;
}

/* Lay out one row of cells; @x gets each column's position (may be NULL). */
static void
layout(char *line, char cells[TOP_NCOLS][CELL], const char *image, int *x)
{
    int width = screen_width(), n = 0, dummy;
    line[0] = '\0';
    for (int c = 0; c < TOP_NCOLS; c++)
        n = field(line, n, width, c == TOP_COL_IMAGE ? image : cells[c], col_width(c),
                  top_columns[c].left, x ? &x[c] : &dummy);
}

/* The columns @key sorts by, for highlighting their titles. */
static bool
sorts_by(enum top_sort key, int c)
{
    switch (key) {
    case TOP_SORT_IO: return c == TOP_COL_RBS || c == TOP_COL_WBS;
    case TOP_SORT_IOPS: return c == TOP_COL_RS || c == TOP_COL_WS;
    case TOP_SORT_LATENCY: return c == TOP_COL_P99;
    case TOP_SORT_GROWTH: return c == TOP_COL_GROW;
    case TOP_SORT_NAME: return c == TOP_COL_IMAGE;
    case TOP_SORT_PID: return c == TOP_COL_PID;
    }
    return false;
}

static attr_t
title_attr(const struct screen *s)
{
    return s->colors ? COLOR_PAIR(PAIR_TITLE) | A_BOLD : A_BOLD;
}

static attr_t
head_attr(const struct screen *s)
{
    return s->colors ? COLOR_PAIR(PAIR_HEAD) : A_REVERSE;
}

/* Lines 0 and 1: the clock, counts, sort key and interval; the totals. */
static void
draw_title(const struct screen *s)
{
    char clock[16];
    unsigned active = 0;
    double rs = 0, ws = 0, rbs = 0, wbs = 0;
    uint64_t inflight = 0, clients = 0;
    for (size_t i = 0; i < s->cur.n; i++) {
        const struct top_image *m = &s->cur.v[i];
        active += m->active;
        inflight += m->st.in_flight;
        clients += m->st.clients;
        if (m->has_rates) {
            rs += m->ops_per_s[TOPCOW_STATS_READ];
            ws += m->ops_per_s[TOPCOW_STATS_WRITE];
            rbs += m->bytes_per_s[TOPCOW_STATS_READ];
            wbs += m->bytes_per_s[TOPCOW_STATS_WRITE];
        }
    }
    top_fmt_clock(clock, sizeof clock, s->cur.time_ns);
    putf(0, 0, title_attr(s), "topcow top - %s  %zu image%s, %u active  sort: %s  refresh %gs%s",
         clock, s->cur.n, s->cur.n == 1 ? "" : "s", active, sort_name(s->o->sort),
         s->o->delay_s, s->o->only_active ? "  only active" : "");
    char r[16], w[16], rb[16], wb[16];
    top_fmt_count(r, sizeof r, rs);
    top_fmt_count(w, sizeof w, ws);
    top_fmt_bytes(rb, sizeof rb, rbs);
    top_fmt_bytes(wb, sizeof wb, wbs);
    putf(1, 0, A_NORMAL,
         "Total  R/s %s  W/s %s  RB/s %s  WB/s %s  in flight %" PRIu64 "  clients %" PRIu64, r,
         w, rb, wb, inflight, clients);
    if (s->status[0])
        put(2, 0, s->colors ? COLOR_PAIR(PAIR_STATUS) : A_BOLD, s->status, false);
}

static void
draw_help(const char *text)
{
    int w = screen_width();
    char line[LINE_MAX_COLS];
    snprintf(line, sizeof line, "%s", text);
    if ((int)strlen(line) >= w) /* the last column of the last line would scroll */
        line[w > 0 ? w - 1 : 0] = '\0';
    put(LINES - 1, 0, A_DIM, line, false);
}

/* Rows of the table between the column titles and the help line. */
static int
table_height(void)
{
    int h = LINES - 5;
    return h > 0 ? h : 0;
}

static void
draw_list(struct screen *s)
{
    char line[LINE_MAX_COLS], cells[TOP_NCOLS][CELL];
    int x[TOP_NCOLS];
    draw_title(s);
    for (int c = 0; c < TOP_NCOLS; c++)
        snprintf(cells[c], CELL, "%s", top_columns[c].title);
    layout(line, cells, top_columns[TOP_COL_IMAGE].title, x);
    put(3, 0, head_attr(s), line, true);
    for (int c = 0; c < TOP_NCOLS; c++)
        if (sorts_by(s->o->sort, c))
            mvchgat(3, x[c], c == TOP_COL_IMAGE ? 5 : col_width(c),
                    head_attr(s) | A_BOLD | A_UNDERLINE, s->colors ? PAIR_HEAD : 0, NULL);

    int h = table_height();
    if (s->nrows == 0)
        put(4, 0, A_NORMAL,
            s->o->only_active && s->cur.n ? "  (no active image; o shows all)"
                                          : "  (no open image)",
            false);
    for (int r = 0; r < h && s->first + (size_t)r < s->nrows; r++) {
        size_t row = s->first + (size_t)r;
        const struct top_image *m = &s->cur.v[s->rows[row]];
        top_row_cells(m, cells);
        layout(line, cells, top_image_name(m), NULL);
        attr_t a = A_NORMAL;
        if (m->active)
            a = s->colors ? COLOR_PAIR(PAIR_ACTIVE) | A_BOLD : A_BOLD;
        if (row == s->sel)
            a |= A_REVERSE;
        put(4 + r, 0, a, line, row == s->sel);
    }
    draw_help("q quit  i/p/l/g/n/P sort: io/iops/latency/growth/name/pid  o active only  "
              "Enter detail  j/k move");
}

/* ---- the detail view ------------------------------------------------------ */

static void
hours_string(char *buf, size_t len, double h)
{
    if (h < 48)
        snprintf(buf, len, "%.1f h", h);
    else
        snprintf(buf, len, "%.0f days", h / 24);
}

/* The figures above the layer table; returns the next free line. */
static int
draw_detail_figures(const struct top_image *m, int y)
{
    const struct topcow_stats *st = &m->st;
    const struct topcow_stats_layer *top = &st->layers[0];
    char a[16], b[16], c[16], d[16], e[16], f[16];

    top_fmt_bytes(a, sizeof a, (double)st->virtual_size);
    uint64_t up = st->sample_time_ns > st->open_time_ns && st->open_time_ns
                      ? (st->sample_time_ns - st->open_time_ns) / 1000000000u
                      : 0;
    putf(y++, 0, A_NORMAL,
         "Image   virtual %s  %s  %u layer%s  clients %" PRIu64 "  in flight %" PRIu64
         "  open %" PRIu64 ":%02" PRIu64 ":%02" PRIu64,
         a, st->read_only ? "read-only" : "read-write", st->nlayers, st->nlayers == 1 ? "" : "s",
         st->clients, st->in_flight, up / 3600, up / 60 % 60, up % 60);

    if (m->has_rates) {
        top_fmt_count(a, sizeof a, m->ops_per_s[TOPCOW_STATS_READ]);
        top_fmt_count(b, sizeof b, m->ops_per_s[TOPCOW_STATS_WRITE]);
        top_fmt_bytes(c, sizeof c, m->bytes_per_s[TOPCOW_STATS_READ]);
        top_fmt_bytes(d, sizeof d, m->bytes_per_s[TOPCOW_STATS_WRITE]);
        char p99[16] = "-", max[16] = "-", hit[16] = "-", amp[16] = "-";
        if (m->p99_ms >= 0)
            top_fmt_ms(p99, sizeof p99, m->p99_ms);
        if (m->max_ms >= 0)
            top_fmt_ms(max, sizeof max, m->max_ms);
        if (m->cache_hit_pct >= 0)
            snprintf(hit, sizeof hit, "%.1f%%", m->cache_hit_pct);
        if (m->write_amp >= 0)
            snprintf(amp, sizeof amp, "%.2f", m->write_amp);
        putf(y++, 0, A_NORMAL,
             "Now     R/s %s  W/s %s  RB/s %s  WB/s %s  p99 %s ms  max %s ms  hit %s  wamp %s",
             a, b, c, d, p99, max, hit, amp);
        top_fmt_bytes(a, sizeof a, m->cow_bytes_per_s);
        top_fmt_count(b, sizeof b, m->alloc_clusters_per_s);
        top_fmt_count(c, sizeof c, m->compressed_reads_per_s);
        top_fmt_count(d, sizeof d, m->ops_per_s[TOPCOW_STATS_FLUSH]);
        top_fmt_count(e, sizeof e, m->ops_per_s[TOPCOW_STATS_DISCARD]);
        top_fmt_count(f, sizeof f, m->ops_per_s[TOPCOW_STATS_ZERO]);
        putf(y++, 0, A_NORMAL,
             "        COW %s/s  clusters allocated %s/s  compressed reads %s/s  flush %s/s  "
             "discard %s/s  zero %s/s",
             a, b, c, d, e, f);
    } else {
        put(y++, 0, A_NORMAL, "Now     - (rates after the next refresh)", false);
        y++;
    }

    uint64_t errors = 0, freed = 0;
    for (int op = 0; op < TOPCOW_STATS_OPS; op++)
        errors += top->errors[op];
    for (unsigned i = 0; i < st->nlayers && i < TOPCOW_STATS_MAX_LAYERS; i++)
        freed += st->layers[i].discard_bytes;
    top_fmt_count(a, sizeof a, (double)top->ops[TOPCOW_STATS_READ]);
    top_fmt_bytes(b, sizeof b, (double)top->bytes[TOPCOW_STATS_READ]);
    top_fmt_count(c, sizeof c, (double)top->ops[TOPCOW_STATS_WRITE]);
    top_fmt_bytes(d, sizeof d, (double)top->bytes[TOPCOW_STATS_WRITE]);
    top_fmt_bytes(e, sizeof e, (double)st->zero_bytes_detected);
    top_fmt_bytes(f, sizeof f, (double)freed);
    putf(y++, 0, A_NORMAL,
         "Totals  reads %s (%s)  writes %s (%s)  zeros detected %s  discards %" PRIu64
         " (%s freed)  errors %" PRIu64,
         a, b, c, d, e, top->ops[TOPCOW_STATS_DISCARD], f, errors);

    if (m->from_qmp) {
        put(y++, 0, A_NORMAL, "File    - (a QEMU drive)", false);
        return y;
    }
    top_fmt_bytes(a, sizeof a, (double)m->file_size);
    top_fmt_bytes(b, sizeof b, (double)m->file_allocated);
    top_fmt_bytes(c, sizeof c, (double)m->fs_free);
    char grow[32] = "-", full[48] = "not growing";
    if (m->has_rates) {
        top_fmt_bytes(d, sizeof d, m->growth_per_h);
        snprintf(grow, sizeof grow, "%s/h", d);
    }
    if (m->full_in_h >= 0) {
        char h[24];
        hours_string(h, sizeof h, m->full_in_h);
        snprintf(full, sizeof full, "disk full in %s", h);
    }
    putf(y++, 0, m->full_in_h >= 0 && m->full_in_h < 24 ? A_BOLD : A_NORMAL,
         "File    size %s  allocated %s  fs free %s  growth %s  %s", a, b, c, grow, full);
    return y;
}

enum {
    L_DEP, L_FMT, L_READS, L_RBYTES, L_RES, L_HOSTW, L_L2H, L_L2M, L_RCH, L_RCM, L_ALLOC, L_COW,
    L_COMPR, L_FILE, NLCOLS
};

static const struct {
    const char *title;
    int width;
    bool left;
} lcolumns[NLCOLS] = {
    [L_DEP] = { "DEP", 3, false },     [L_FMT] = { "FORMAT", 6, true },
    [L_READS] = { "READS", 6, false }, [L_RBYTES] = { "RBYTES", 6, false },
    [L_RES] = { "RES%", 5, false },    [L_HOSTW] = { "HOSTWB", 6, false },
    [L_L2H] = { "L2HIT", 6, false },   [L_L2M] = { "L2MISS", 6, false },
    [L_RCH] = { "RCHIT", 6, false },   [L_RCM] = { "RCMISS", 6, false },
    [L_ALLOC] = { "ALLOC", 6, false }, [L_COW] = { "COWB", 6, false },
    [L_COMPR] = { "COMPR", 6, false }, [L_FILE] = { "FILE", 0, true },
};

static void
layout_layer(char *line, char cells[NLCOLS][CELL])
{
    int n = 0, x;
    line[0] = '\0';
    for (int c = 0; c < NLCOLS; c++)
        n = field(line, n, screen_width(), cells[c], lcolumns[c].width, lcolumns[c].left, &x);
}

/* One row per layer: what it received, what it answered, its host writes
 * and its metadata caches.  Returns the next free line. */
static int
draw_layers(const struct screen *s, const struct top_image *m, int y)
{
    char line[LINE_MAX_COLS], cells[NLCOLS][CELL];
    for (int c = 0; c < NLCOLS; c++)
        snprintf(cells[c], CELL, "%s", lcolumns[c].title);
    layout_layer(line, cells);
    put(y++, 0, head_attr(s), line, true);
    bool reads = m->has_rates && m->bytes_per_s[TOPCOW_STATS_READ] > 0;
    for (unsigned i = 0; i < m->st.nlayers && i < TOPCOW_STATS_MAX_LAYERS; i++) {
        const struct topcow_stats_layer *l = &m->st.layers[i];
        snprintf(cells[L_DEP], CELL, "%u", l->depth);
        snprintf(cells[L_FMT], CELL, "%s", l->format);
        top_fmt_count(cells[L_READS], CELL, (double)l->ops[TOPCOW_STATS_READ]);
        top_fmt_bytes(cells[L_RBYTES], CELL, (double)l->bytes[TOPCOW_STATS_READ]);
        if (reads)
            snprintf(cells[L_RES], CELL, "%.1f", m->resolved_pct[i]);
        else
            strcpy(cells[L_RES], "-");
        top_fmt_bytes(cells[L_HOSTW], CELL, (double)l->host_bytes[TOPCOW_STATS_HOST_WRITE]);
        top_fmt_count(cells[L_L2H], CELL, (double)l->l2_hits);
        top_fmt_count(cells[L_L2M], CELL, (double)l->l2_misses);
        top_fmt_count(cells[L_RCH], CELL, (double)l->refcount_hits);
        top_fmt_count(cells[L_RCM], CELL, (double)l->refcount_misses);
        top_fmt_count(cells[L_ALLOC], CELL, (double)l->clusters_allocated);
        top_fmt_bytes(cells[L_COW], CELL, (double)l->cow_bytes);
        top_fmt_count(cells[L_COMPR], CELL, (double)l->compressed_reads);
        int n = 0, x;
        line[0] = '\0';
        for (int c = 0; c < NLCOLS; c++)
            n = field(line, n, screen_width(), c == L_FILE ? l->filename : cells[c],
                      lcolumns[c].width, lcolumns[c].left, &x);
        put(y++, 0, A_NORMAL, line, false);
    }
    return y;
}

/* Heat map shading, from no bytes to the busiest cell. */
static const char shades[] = " .:-=+*#%@";
#define NSHADES ((int)sizeof shades - 1)

/* The shade of a cell holding @v bytes when the busiest holds @max: '@'
 * down to half of @max, each lighter shade half the one before, and '.'
 * for anything touched less; blank for untouched cells. */
static int
shade(uint64_t v, uint64_t max)
{
    if (v == 0 || max == 0)
        return 0;
    int level = NSHADES - 1;
    while (level > 1 && v * 2 <= max) {
        v *= 2;
        level--;
    }
    return level;
}

static attr_t
shade_attr(const struct screen *s, int level)
{
    if (!s->colors || level == 0)
        return A_NORMAL;
    static const int pair[NSHADES] = { 0,          PAIR_HEAT1, PAIR_HEAT1, PAIR_HEAT1,
                                       PAIR_HEAT2, PAIR_HEAT2, PAIR_HEAT3, PAIR_HEAT3,
                                       PAIR_HEAT4, PAIR_HEAT4 };
    return COLOR_PAIR(pair[level]) | (level >= 6 ? A_BOLD : 0);
}

static unsigned
pow2_floor(unsigned v)
{
    unsigned p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

#define HEAT_LABEL 8 /* columns of a row's offset label, then " |" */

/* One map: @rows lines of @cols cells, each row labelled with the guest
 * offset where it starts.  Returns the next free line. */
static int
draw_map(const struct screen *s, int y, const char *what, const uint64_t *v, unsigned rows,
         unsigned cols, uint64_t cell_bytes)
{
    uint64_t max = 0, total = 0;
    for (unsigned i = 0; i < rows * cols; i++) {
        total += v[i];
        if (v[i] > max)
            max = v[i];
    }
    char mx[16], tot[16];
    top_fmt_bytes(mx, sizeof mx, (double)max);
    top_fmt_bytes(tot, sizeof tot, (double)total);
    putf(y++, 0, A_BOLD, "%s: %s in all, busiest cell %s", what, tot, mx);
    for (unsigned r = 0; r < rows && y < LINES - 1; r++, y++) {
        char label[16];
        top_fmt_bytes(label, sizeof label, (double)(cell_bytes * cols * r));
        putf(y, 0, A_NORMAL, "%*s |", HEAT_LABEL, label);
        for (unsigned c = 0; c < cols; c++) {
            int level = shade(v[r * cols + c], max);
            attrset((int)shade_attr(s, level));
            mvaddch(y, HEAT_LABEL + 2 + (int)c, (chtype)(unsigned char)shades[level]);
        }
        attrset(A_NORMAL);
        mvaddch(y, HEAT_LABEL + 2 + (int)cols, '|');
    }
    return y;
}

/* The heat maps of reads and writes, in the lines from @y to the help line:
 * the 1,024 buckets folded into a grid whose cell count divides 1,024, so
 * every cell covers the same share of the disk. */
static void
draw_heat(const struct screen *s, const struct top_image *m, int y)
{
    if (m->from_qmp) {
        put(y, 0, A_NORMAL, "No heat map: QEMU does not report where its drives are accessed.",
            false);
        return;
    }
    int width = screen_width() - HEAT_LABEL - 3;
    int rows_room = (LINES - 1 - y - 3) / 2; /* a title line, then a name line per map */
    if (width < 1 || rows_room < 1) {
        put(y, 0, A_NORMAL, "(enlarge the window for the heat map)", false);
        return;
    }
    unsigned cols = pow2_floor((unsigned)width < TOPCOW_STATS_HEAT_BUCKETS
                                   ? (unsigned)width
                                   : TOPCOW_STATS_HEAT_BUCKETS);
    unsigned rows = pow2_floor((unsigned)rows_room);
    if (rows > TOPCOW_STATS_HEAT_BUCKETS / cols)
        rows = TOPCOW_STATS_HEAT_BUCKETS / cols;
    unsigned cells = rows * cols;

    static uint64_t rd[TOPCOW_STATS_HEAT_BUCKETS], wr[TOPCOW_STATS_HEAT_BUCKETS];
    static uint64_t prd[TOPCOW_STATS_HEAT_BUCKETS], pwr[TOPCOW_STATS_HEAT_BUCKETS];
    top_heat_fold(m, cells, rd, wr);
    const struct top_image *p = NULL;
    if (s->heat_interval && (p = top_sample_find(&s->before, m->key)) != NULL) {
        top_heat_fold(p, cells, prd, pwr);
        for (unsigned i = 0; i < cells; i++) {
            rd[i] = rd[i] >= prd[i] ? rd[i] - prd[i] : rd[i]; /* reopened: counts restart */
            wr[i] = wr[i] >= pwr[i] ? wr[i] - pwr[i] : wr[i];
        }
    }
    uint64_t bucket = (m->st.virtual_size + TOPCOW_STATS_HEAT_BUCKETS - 1) /
                      TOPCOW_STATS_HEAT_BUCKETS;
    uint64_t cell_bytes = bucket * (TOPCOW_STATS_HEAT_BUCKETS / cells);
    char cb[16], rb[16];
    top_fmt_bytes(cb, sizeof cb, (double)cell_bytes);
    top_fmt_bytes(rb, sizeof rb, (double)(cell_bytes * cols));
    putf(y++, 0, title_attr(s), "Heat map %s (t: %s)  cell %s, row %s  '%s' each shade x2",
         !s->heat_interval ? "since open" : p ? "of the last interval" : "(no interval yet)",
         s->heat_interval ? "since open" : "last interval", cb, rb, shades);
    y = draw_map(s, y, "Reads", rd, rows, cols, cell_bytes);
    draw_map(s, y, "Writes", wr, rows, cols, cell_bytes);
}

static void
draw_detail(struct screen *s)
{
    const struct top_image *m = top_sample_find(&s->cur, s->sel_key);
    char clock[16];
    top_fmt_clock(clock, sizeof clock, s->cur.time_ns);
    if (!m) {
        putf(0, 0, title_attr(s), "topcow top - %s  detail", clock);
        put(2, 0, A_NORMAL, "The image is gone (closed, or its process ended).", false);
        draw_help("Esc back  q quit");
        return;
    }
    putf(0, 0, title_attr(s), "topcow top - %s  PID %" PRIu64 "  %s  %s", clock, m->pid, m->source,
         top_image_name(m));
    if (s->status[0])
        put(1, 0, s->colors ? COLOR_PAIR(PAIR_STATUS) : A_BOLD, s->status, false);
    int y = draw_detail_figures(m, 2);
    y = draw_layers(s, m, y + 1);
    draw_heat(s, m, y + 1);
    draw_help("Esc back  q quit  t heat map since open / last interval  j/k other image");
}

static void
draw(struct screen *s)
{
    erase();
    if (COLS < 40 || LINES < 8)
        put(0, 0, A_NORMAL, "topcow top: window too small", false);
    else if (s->view == VIEW_DETAIL)
        draw_detail(s);
    else
        draw_list(s);
    refresh();
}

/* ---- model ---------------------------------------------------------------- */

/* Sort the sample, pick the rows -o shows and find the selection again. */
static int
arrange(struct screen *s)
{
    top_sample_sort(&s->cur, s->o->sort);
    size_t *rows = realloc(s->rows, (s->cur.n ? s->cur.n : 1) * sizeof *rows);
    if (!rows)
        return -1;
    s->rows = rows;
    s->nrows = 0;
    bool found = false;
    for (size_t i = 0; i < s->cur.n; i++) {
        if (s->o->only_active && !s->cur.v[i].active)
            continue;
        if (strcmp(s->cur.v[i].key, s->sel_key) == 0) {
            s->sel = s->nrows;
            found = true;
        }
        s->rows[s->nrows++] = i;
    }
    if (!found && s->sel >= s->nrows)
        s->sel = s->nrows ? s->nrows - 1 : 0;
    /* The detail view keeps its image, even when it leaves the rows or goes. */
    if (s->nrows && (s->view == VIEW_LIST || !s->sel_key[0]))
        snprintf(s->sel_key, sizeof s->sel_key, "%s", s->cur.v[s->rows[s->sel]].key);
    int h = table_height();
    if (s->sel < s->first)
        s->first = s->sel;
    if (h > 0 && s->sel >= s->first + (size_t)h)
        s->first = s->sel - (size_t)h + 1;
    if (s->first + (size_t)h > s->nrows)
        s->first = s->nrows > (size_t)h ? s->nrows - (size_t)h : 0;
    return 0;
}

static int
refresh_sample(struct screen *s)
{
    top_sample_free(&s->before);
    s->before = s->cur;
    memset(&s->cur, 0, sizeof s->cur);
    if (top_sample_take(s->src, &s->cur) < 0)
        return -1;
    return arrange(s);
}

/* Keep the last line the sources wrote on stderr, for the status line. */
static void
read_messages(struct screen *s)
{
    char buf[1024];
    ssize_t n;
    if (s->err_fd < 0)
        return;
    while ((n = read(s->err_fd, buf, sizeof buf - 1)) > 0) {
        buf[n] = '\0';
        char *save = NULL;
        for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            if (*l)
                snprintf(s->status, sizeof s->status, "%s", l);
    }
}

static void
select_row(struct screen *s, long delta)
{
    if (s->nrows == 0)
        return;
    long r = (long)s->sel + delta;
    if (r < 0)
        r = 0;
    if (r >= (long)s->nrows)
        r = (long)s->nrows - 1;
    s->sel = (size_t)r;
    snprintf(s->sel_key, sizeof s->sel_key, "%s", s->cur.v[s->rows[s->sel]].key);
}

/* What a key asks for, in increasing order of effect. */
enum key_result { RES_NONE, RES_REDRAW, RES_RESAMPLE, RES_QUIT };

static enum key_result
handle_key(struct screen *s, int ch)
{
    static const struct { int ch; enum top_sort key; } sort_keys[] = {
        { 'i', TOP_SORT_IO },     { 'p', TOP_SORT_IOPS }, { 'l', TOP_SORT_LATENCY },
        { 'g', TOP_SORT_GROWTH }, { 'n', TOP_SORT_NAME }, { 'P', TOP_SORT_PID },
    };
    for (size_t i = 0; i < sizeof sort_keys / sizeof sort_keys[0]; i++)
        if (ch == sort_keys[i].ch) {
            s->o->sort = sort_keys[i].key;
            return RES_REDRAW;
        }
    int page = table_height() > 1 ? table_height() - 1 : 1;
    switch (ch) {
    case 'q': case 'Q': return RES_QUIT;
    case 'o': s->o->only_active = !s->o->only_active; return RES_REDRAW;
    case KEY_UP: case 'k': select_row(s, -1); return RES_REDRAW;
    case KEY_DOWN: case 'j': select_row(s, 1); return RES_REDRAW;
    case KEY_PPAGE: select_row(s, -page); return RES_REDRAW;
    case KEY_NPAGE: select_row(s, page); return RES_REDRAW;
    case KEY_HOME: select_row(s, -(long)s->nrows); return RES_REDRAW;
    case KEY_END: select_row(s, (long)s->nrows); return RES_REDRAW;
    case '\r': case '\n': case KEY_ENTER: case 'd':
        if (s->nrows)
            s->view = VIEW_DETAIL;
        return RES_REDRAW;
    case 27: case KEY_BACKSPACE: case 127: case 8: case KEY_LEFT:
        s->view = VIEW_LIST;
        return RES_REDRAW;
    case 't': s->heat_interval = !s->heat_interval; return RES_REDRAW;
    case ' ': return RES_RESAMPLE;
    case KEY_RESIZE: return RES_REDRAW;
    case 12: /* ^L */ clearok(curscr, TRUE); return RES_REDRAW;
    default: return RES_NONE;
    }
}

/* ---- the loop ------------------------------------------------------------- */

static void
setup_colors(struct screen *s)
{
    const char *no = getenv("NO_COLOR");
    s->colors = has_colors() && !(no && *no) && start_color() == OK;
    if (!s->colors)
        return;
    short bg = use_default_colors() == OK ? -1 : COLOR_BLACK;
    init_pair(PAIR_TITLE, COLOR_CYAN, bg);
    init_pair(PAIR_HEAD, COLOR_BLACK, COLOR_CYAN);
    init_pair(PAIR_ACTIVE, COLOR_GREEN, bg);
    init_pair(PAIR_STATUS, COLOR_YELLOW, bg);
    init_pair(PAIR_HEAT1, COLOR_CYAN, bg);
    init_pair(PAIR_HEAT2, COLOR_GREEN, bg);
    init_pair(PAIR_HEAT3, COLOR_YELLOW, bg);
    init_pair(PAIR_HEAT4, COLOR_RED, bg);
}

/* While the screen is up, stderr goes to a pipe read into the status line
 * (a message printed over the screen would garble it).  Returns the saved
 * stderr, or -1 when it stays as it is. */
static int
capture_stderr(struct screen *s)
{
    int p[2], saved = dup(STDERR_FILENO);
    s->err_fd = -1;
    if (saved < 0)
        return -1;
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
        close(saved);
        return -1;
    }
    fflush(stderr);
    dup2(p[1], STDERR_FILENO); /* non-blocking: a full pipe drops messages */
    close(p[1]);
    s->err_fd = p[0];
    return saved;
}

static void
restore_stderr(struct screen *s, int saved)
{
    if (saved < 0)
        return;
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    read_messages(s);
    close(s->err_fd);
    s->err_fd = -1;
}

int
top_screen_run(struct top_source *src, struct top_opts *o)
{
    struct screen s = { .src = src, .o = o, .err_fd = -1 };
    setlocale(LC_CTYPE, ""); /* only the character set: numbers keep their '.' */

    SCREEN *scr = newterm(NULL, stdout, stdin);
    if (!scr) {
        const char *term = getenv("TERM");
        fprintf(stderr, "topcow: top: cannot drive terminal type '%s'; use -b\n",
                term ? term : "(unset)");
        return 1;
    }
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    setup_colors(&s);

    /* The signals that end the screen, and SIGWINCH (ncurses turns it into
     * KEY_RESIZE), are delivered only inside ppoll, so none is missed
     * between a check and the wait. */
    struct sigaction sa = { .sa_handler = on_signal }, old_int, old_term, old_hup;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    sigset_t block, orig, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGWINCH);
    sigprocmask(SIG_BLOCK, &block, &orig);
    waitmask = orig;
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGHUP);
    sigdelset(&waitmask, SIGWINCH);

    int saved_err = capture_stderr(&s);
    int rc = 0;
    bool first = true;
    double next = 0; /* the first sample at once */
    while (!got_signal) {
        double now = ((double)clock_ns(CLOCK_MONOTONIC) / 1e9);
        bool dirty = false;
        if (now >= next) {
            if (refresh_sample(&s) < 0) {
                rc = -1;
                break;
            }
            /* The first sample has no rates: the second comes sooner. */
            next = now + (first && o->delay_s > 1.0 ? 1.0 : o->delay_s);
            first = false;
            read_messages(&s);
            dirty = true;
        }
        int ch;
        enum key_result k = RES_NONE;
        while (k != RES_QUIT && (ch = getch()) != ERR) {
            enum key_result r = handle_key(&s, ch);
            if (r > k)
                k = r;
        }
        if (k == RES_QUIT)
            break;
        if (k == RES_RESAMPLE) {
            next = 0;
            continue;
        }
        if (k == RES_REDRAW && arrange(&s) < 0) {
            rc = -1;
            break;
        }
        if (dirty || k != RES_NONE)
            draw(&s);

        double wait = next - ((double)clock_ns(CLOCK_MONOTONIC) / 1e9);
        if (wait < 0)
            wait = 0;
        struct timespec ts = { (time_t)wait, (long)((wait - floor(wait)) * 1e9) };
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        if (ppoll(&pfd, 1, &ts, &waitmask) > 0 && (pfd.revents & (POLLHUP | POLLERR)))
            break; /* the terminal is gone */
    }

    /* Leave a clean terminal: without an alternate screen (vt100), the last
     * frame would stay. */
    erase();
    refresh();
    endwin();
    delscreen(scr);
    restore_stderr(&s, saved_err);
    sigprocmask(SIG_SETMASK, &orig, NULL); /* a signal still pending lands in on_signal */
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    top_sample_free(&s.cur);
    top_sample_free(&s.before);
    free(s.rows);
    if (rc < 0) {
        fprintf(stderr, "topcow: top: out of memory\n");
        return 1;
    }
    return 0;
}
