// SPDX-License-Identifier: MIT
/* `topcow top`: the model every view shares.
 *
 * A sample is the list of images seen at one moment: images published by
 * topcow processes (topcow_stats_scan) and drives of QEMU processes reached
 * over QMP.  Each image carries its counters since it was opened (struct
 * topcow_stats; for a QEMU drive, the part QEMU reports) and the figures the
 * views show, computed from the difference with the previous sample of the
 * same image.  Views (batch text, JSON, Prometheus, the screen) only format
 * a sample; they never read the sources themselves. */
#ifndef TOPCOW_TOOLS_TOP_H
#define TOPCOW_TOOLS_TOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "topcow.h"

#define TOP_KEY_MAX 160

/* One image (a topcow chain or a QEMU drive) in a sample. */
struct top_image {
    char key[TOP_KEY_MAX];     /* stable across samples: "PID/ID" or "qmp:SOCKET:DEVICE" */
    bool from_qmp;
    char source[48];           /* the process: "topcow serve", "qemu-system-x86_64" */
    uint64_t pid;              /* 0 when unknown */
    char qmp_name[TOPCOW_STATS_NAME_MAX + 64]; /* a QEMU drive's "DEVICE (FILE)" */
    struct topcow_stats st;    /* totals.  A QEMU drive fills what QEMU reports: the
                                * top layer's ops, bytes, errors, latency_nsec
                                * (read, write, flush, discard), command, pid,
                                * virtual_size and the layers' names and depth */

    /* Over the last interval (valid when has_rates). */
    bool has_rates;
    double interval_s;
    double ops_per_s[TOPCOW_STATS_OPS];
    double bytes_per_s[TOPCOW_STATS_OPS];
    double p99_ms;             /* of reads and writes together; < 0: no requests */
    double max_ms;             /* largest since open, reads and writes; < 0: not known */
    double cache_hit_pct;      /* L2 + refcount cache, all layers; < 0: no lookups */
    double write_amp;          /* host bytes written / guest bytes written; < 0: no writes */
    double cow_bytes_per_s;
    double alloc_clusters_per_s;
    double compressed_reads_per_s;
    double resolved_pct[TOPCOW_STATS_MAX_LAYERS]; /* share of read bytes each layer answered */

    /* The top layer's host file (stat(2) by top; 0 when not reachable). */
    uint64_t file_size;        /* st_size */
    uint64_t file_allocated;   /* st_blocks * 512 */
    uint64_t fs_free;          /* free bytes of its file system (statvfs f_bavail) */
    double growth_per_h;       /* allocated bytes per hour over the interval (< 0: shrinking) */
    double full_in_h;          /* hours until the file system is full at that rate; < 0:
                                * not growing */
    bool active;               /* it had requests in the interval (or requests in flight) */
};

/* The columns the table can be sorted by (the screen's keys). */
enum top_sort {
    TOP_SORT_IO,       /* read + write bytes per second (default) */
    TOP_SORT_IOPS,     /* read + write requests per second */
    TOP_SORT_LATENCY,  /* p99 */
    TOP_SORT_GROWTH,   /* growth per hour */
    TOP_SORT_NAME,
    TOP_SORT_PID,
};

struct top_sample {
    struct top_image *v;
    size_t n;
    uint64_t time_ns;          /* CLOCK_REALTIME when taken */
};

/* Where a sample comes from and what was seen before. */
struct top_source {
    const char *stats_dir;     /* NULL: topcow_stats_dir() */
    char **qmp_sockets;        /* --qmp SOCKET, repeatable */
    size_t n_qmp;
    struct top_qmp **qmp;      /* one connection per socket (top-qmp.c); NULL entries
                                * are reconnected on the next sample */
    struct top_sample prev;    /* the previous sample, for rates */
    char **qmp_err;            /* per socket: the last error printed (NULL: none) */
    char status[512];          /* the latest source error ("" when the last sample had none) */
};

/* Take a new sample into *@out (freed with top_sample_free): every image
 * found now, with rates against the previous sample of @src, which then
 * keeps a copy of this one.  Sources that fail are skipped; their message
 * goes to src->status and to stderr when it differs from the one printed
 * last for that source.  Returns 0 or -1 (out of memory). */
int top_sample_take(struct top_source *src, struct top_sample *out);
void top_sample_free(struct top_sample *s);
/* Room for one more image at the end of @s, zeroed (for sources filling a
 * sample); NULL when out of memory.  Earlier pointers into s->v may move. */
struct top_image *top_sample_add(struct top_sample *s);
void top_source_free(struct top_source *src);

/* The image of @s with @key, or NULL. */
const struct top_image *top_sample_find(const struct top_sample *s, const char *key);

/* What the image is called: its top layer's file, or a QEMU drive's name. */
const char *top_image_name(const struct top_image *img);

/* Sort @s by @key (descending for figures, ascending for name and pid). */
void top_sample_sort(struct top_sample *s, enum top_sort key);

/* Keep only active images (-o). */
void top_sample_only_active(struct top_sample *s);

/* QMP (top-qmp.c): add the drives of the QEMU at @socket to @out (growing
 * out->v).  @conn keeps the connection across samples (*@conn NULL at
 * first).  Returns 0, or -1 with a one-line message in @err. */
struct top_qmp;
int top_qmp_collect(struct top_qmp **conn, const char *socket, struct top_sample *out,
                    char *err, size_t errlen);
void top_qmp_close(struct top_qmp *conn);

/* Views. */
void top_print_batch(FILE *f, const struct top_sample *s, unsigned iteration);
void top_print_json(FILE *f, const struct top_sample *s);
/* Prometheus text exposition of @s (top-prom.c). */
void top_print_prometheus(FILE *f, const struct top_sample *s);

/* The heat map of @img folded into @cols columns: per column, read and
 * write bytes (for views that draw it).  @rd and @wr hold @cols values. */
void top_heat_fold(const struct top_image *img, unsigned cols, uint64_t *rd, uint64_t *wr);

/* Options every mode shares. */
struct top_opts {
    double delay_s;            /* -d */
    long iterations;           /* -n; 0: until interrupted */
    bool only_active;          /* -o */
    enum top_sort sort;        /* -s / the screen's keys */
};

/* Set by SIGINT and SIGTERM (cmd-top.c, whose handler is in place before
 * any mode starts); every mode's loop ends when it is set. */
extern volatile sig_atomic_t top_stop;

/* The full-screen view (top-screen.c): runs until `q`.  Returns the exit
 * code. */
int top_screen_run(struct top_source *src, struct top_opts *o);

/* Serve GET /metrics at @addr ("HOST:PORT", "[V6]:PORT" or ":PORT") until
 * interrupted (top-prom.c).  Returns the exit code: 0 after SIGINT or
 * SIGTERM, 1 when @addr cannot be listened on (one line on stderr). */
int top_prom_serve(struct top_source *src, const char *addr);

/* Names of enum topcow_stats_op and enum topcow_stats_host_op values
 * ("read", "write", ...), for JSON keys and metric labels. */
extern const char *const top_op_names[TOPCOW_STATS_OPS];
extern const char *const top_host_op_names[TOPCOW_STATS_HOST_OPS];

/* The table's columns, shared by the batch view and the screen. */
enum top_col {
    TOP_COL_PID, TOP_COL_CMD, TOP_COL_RS, TOP_COL_WS, TOP_COL_RBS, TOP_COL_WBS, TOP_COL_P99,
    TOP_COL_HIT, TOP_COL_AMP, TOP_COL_GROW, TOP_COL_DEP, TOP_COL_CLI, TOP_COL_IMAGE, TOP_NCOLS
};
#define TOP_CELL 64
struct top_column {
    const char *title;
    int width;                 /* 0: the rest of the line */
    bool left;                 /* left-aligned */
};
extern const struct top_column top_columns[TOP_NCOLS];

/* The cells of @m's row ("-" where a figure is not known); the image
 * column's cell is left empty (callers use top_image_name, which may be
 * longer than a cell). */
void top_row_cells(const struct top_image *m, char cells[TOP_NCOLS][TOP_CELL]);

/* Figures for display: "12.3k", "1.2M" style with at most 5 characters. */
void top_fmt_count(char *buf, size_t len, double v);
void top_fmt_bytes(char *buf, size_t len, double v); /* "4.0K" "12M" "1.5G" */
void top_fmt_ms(char *buf, size_t len, double ms); /* at most 6 characters */
void top_fmt_clock(char *buf, size_t len, uint64_t realtime_ns); /* "12:34:56" local */

#endif
