// SPDX-License-Identifier: MIT
/* Live statistics through the public API (topcow.h, "Live statistics"):
 * known requests on a real qcow2 file and its backing file, then the
 * counters, the latency histogram, the heat map (buckets computed here from
 * the request offsets), the published file as topcow_stats_scan reads it,
 * an older caller's shorter struct, a resize, close, and TOPCOW_STATS=off. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "topcow.h"

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

static int failures;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void
must(int r, const char *what)
{
    if (r < 0) {
        printf("FAIL %s: %s\n", what, topcow_last_error());
        exit(1);
    }
}

static unsigned
count_files(const char *dir)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

struct seen {
    unsigned n;
    struct topcow_stats st;
};

static int
collect(void *opaque, const struct topcow_stats *st)
{
    struct seen *s = opaque;
    if (s->n++ == 0)
        s->st = *st;
    return 0;
}

/* Heat map bucket of guest offset @off on a disk of @size. */
static unsigned
bucket(uint64_t size, uint64_t off)
{
    uint64_t b = (size + TOPCOW_STATS_HEAT_BUCKETS - 1) / TOPCOW_STATS_HEAT_BUCKETS;
    return (unsigned)(off / b);
}

int
main(void)
{
    char dir[] = "/tmp/topcow-stats-test.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char statsdir[PATH_MAX], base[PATH_MAX], top[PATH_MAX];
    snprintf(statsdir, sizeof statsdir, "%s/stats", dir);
    snprintf(base, sizeof base, "%s/base.qcow2", dir);
    snprintf(top, sizeof top, "%s/top.qcow2", dir);
    setenv("TOPCOW_STATS_DIR", statsdir, 1);
    unsetenv("TOPCOW_STATS");
    EXPECT(strcmp(topcow_stats_dir(), statsdir) == 0, "stats dir %s", topcow_stats_dir());

    struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
    co.size = GIB;
    must(topcow_image_create(base, &co), "create base");
    co.size = 0;
    co.backing_file = base;
    co.backing_format = "qcow2";
    must(topcow_image_create(top, &co), "create top");

    struct topcow_image *img;
    must(topcow_image_open(&img, top, NULL), "open");
    EXPECT(count_files(statsdir) == 1, "one published file, found %u", count_files(statsdir));

    static uint8_t buf[256 * KIB];
    memset(buf, 0x42, sizeof buf);
    /* Writes: 64 KiB at 0, 128 KiB straddling the 1 MiB bucket boundary at
     * 2 MiB, 4 KiB at the last byte's bucket. */
    must(topcow_image_pwrite(img, buf, 64 * KIB, 0, 0), "write 1");
    must(topcow_image_pwrite(img, buf, 128 * KIB, 2 * MIB - 64 * KIB, 0), "write 2");
    must(topcow_image_pwrite(img, buf, 4 * KIB, GIB - 4 * KIB, 0), "write 3");
    /* Reads: 4 KiB written (the top layer answers), 8 KiB never written
     * (passed to the backing file). */
    must(topcow_image_pread(img, buf, 4 * KIB, 0), "read 1");
    must(topcow_image_pread(img, buf, 8 * KIB, 512 * MIB), "read 2");
    must(topcow_image_write_zeroes(img, 8 * MIB, 64 * KIB, 0), "zero");
    must(topcow_image_discard(img, 0, 64 * KIB), "discard");
    must(topcow_image_flush(img), "flush");
    EXPECT(topcow_image_pread(img, buf, 4 * KIB, GIB) == -EINVAL, "read past the end fails");

    struct topcow_stats *st = calloc(1, sizeof *st);
    st->struct_size = sizeof *st;
    must(topcow_image_get_stats(img, st), "get stats");
    const struct topcow_stats_layer *l0 = &st->layers[0], *l1 = &st->layers[1];
    EXPECT(st->pid == (uint64_t)getpid(), "pid %llu", (unsigned long long)st->pid);
    EXPECT(st->virtual_size == GIB, "virtual size");
    EXPECT(st->nlayers == 2, "layers %u", st->nlayers);
    EXPECT(strcmp(l0->format, "qcow2") == 0 && l1->depth == 1, "layer fields");
    char real[PATH_MAX];
    EXPECT(realpath(top, real) && strcmp(l0->filename, real) == 0, "filename %s", l0->filename);
    EXPECT(strstr(l1->filename, "base.qcow2") != NULL, "backing filename %s", l1->filename);
    EXPECT(l0->ops[TOPCOW_STATS_WRITE] == 3 && l0->bytes[TOPCOW_STATS_WRITE] == 196 * KIB,
           "writes %llu/%llu", (unsigned long long)l0->ops[TOPCOW_STATS_WRITE],
           (unsigned long long)l0->bytes[TOPCOW_STATS_WRITE]);
    EXPECT(l0->ops[TOPCOW_STATS_READ] == 2 && l0->bytes[TOPCOW_STATS_READ] == 12 * KIB,
           "reads (the refused one is not a request)");
    EXPECT(l0->ops[TOPCOW_STATS_ZERO] == 1 && l0->bytes[TOPCOW_STATS_ZERO] == 64 * KIB, "zero");
    EXPECT(l0->ops[TOPCOW_STATS_DISCARD] == 1, "discard ops");
    EXPECT(l0->ops[TOPCOW_STATS_FLUSH] == 1, "flush ops");
    EXPECT(l0->read_bytes_resolved == 4 * KIB, "top resolved %llu",
           (unsigned long long)l0->read_bytes_resolved);
    EXPECT(l1->ops[TOPCOW_STATS_READ] == 1 && l1->read_bytes_resolved == 8 * KIB,
           "backing resolved %llu", (unsigned long long)l1->read_bytes_resolved);
    /* 64K at 0, 64K+64K around 2M, 4K at the end: clusters 0, 31, 32, last. */
    EXPECT(l0->data_clusters_allocated == 4, "data clusters %llu",
           (unsigned long long)l0->data_clusters_allocated);
    EXPECT(l0->discard_bytes == 64 * KIB, "discard bytes %llu",
           (unsigned long long)l0->discard_bytes);
    EXPECT(l0->host_bytes[TOPCOW_STATS_HOST_WRITE] >= 196 * KIB, "host writes");
    EXPECT(l0->l2_hits + l0->l2_misses > 0, "L2 lookups counted");
    EXPECT(st->in_flight == 0, "in flight %llu", (unsigned long long)st->in_flight);

    uint64_t lat = 0;
    for (int op = 0; op < TOPCOW_STATS_OPS; op++)
        for (int b = 0; b < TOPCOW_STATS_LAT_BUCKETS; b++)
            lat += st->latency[op][b];
    EXPECT(lat == 8, "latency histogram holds %llu requests, 8 made", (unsigned long long)lat);
    EXPECT(st->latency_max_ns[TOPCOW_STATS_WRITE] > 0, "max write latency");

    uint64_t want_w[TOPCOW_STATS_HEAT_BUCKETS] = { 0 }, want_r[TOPCOW_STATS_HEAT_BUCKETS] = { 0 };
    want_w[bucket(GIB, 0)] += 64 * KIB;
    want_w[bucket(GIB, 2 * MIB - 64 * KIB)] += 64 * KIB;
    want_w[bucket(GIB, 2 * MIB)] += 64 * KIB;
    want_w[bucket(GIB, GIB - 4 * KIB)] += 4 * KIB;
    want_r[bucket(GIB, 0)] += 4 * KIB;
    want_r[bucket(GIB, 512 * MIB)] += 8 * KIB;
    EXPECT(memcmp(want_w, st->heat_write, sizeof want_w) == 0, "heat map of writes");
    EXPECT(memcmp(want_r, st->heat_read, sizeof want_r) == 0, "heat map of reads");

    /* The published file reads the same. */
    struct seen *seen = calloc(1, sizeof *seen);
    must(topcow_stats_scan(NULL, collect, seen), "scan");
    EXPECT(seen->n == 1, "scan saw %u images", seen->n);
    EXPECT(seen->st.id == st->id && seen->st.layers[0].bytes[TOPCOW_STATS_WRITE] == 196 * KIB &&
               memcmp(seen->st.heat_write, st->heat_write, sizeof st->heat_write) == 0,
           "scan and get_stats agree");

    /* A caller built against a shorter struct gets only what it knew. */
    struct topcow_stats *old = malloc(sizeof *old);
    memset(old, 0xee, sizeof *old);
    old->struct_size = offsetof(struct topcow_stats, heat_read);
    must(topcow_image_get_stats(img, old), "get stats (short)");
    EXPECT(old->virtual_size == GIB && old->heat_read[0] == 0xeeeeeeeeeeeeeeeeull &&
               old->struct_size == offsetof(struct topcow_stats, heat_read),
           "short struct");

    /* A resize shows. */
    must(topcow_image_resize(img, 2 * GIB, 0, TOPCOW_PREALLOC_OFF), "resize");
    must(topcow_image_get_stats(img, st), "get stats after resize");
    EXPECT(st->virtual_size == 2 * GIB, "virtual size after resize");

    /* Clients and zeros noted by a front end. */
    topcow_image_stats_note(img, TOPCOW_STATS_NOTE_CLIENTS, 2);
    topcow_image_stats_note(img, TOPCOW_STATS_NOTE_CLIENTS, -1);
    topcow_image_stats_note(img, TOPCOW_STATS_NOTE_ZEROS_DETECTED, 4096);
    must(topcow_image_get_stats(img, st), "get stats after notes");
    EXPECT(st->clients == 1 && st->zero_bytes_detected == 4096, "notes");

    must(topcow_image_close(img), "close");
    EXPECT(count_files(statsdir) == 0, "close removes the file (%u left)", count_files(statsdir));
    seen->n = 0;
    must(topcow_stats_scan(NULL, collect, seen), "scan after close");
    EXPECT(seen->n == 0, "nothing published after close");

    /* Statistics off: nothing published, nothing counted. */
    setenv("TOPCOW_STATS", "off", 1);
    must(topcow_image_open(&img, top, NULL), "open (stats off)");
    must(topcow_image_pwrite(img, buf, 4 * KIB, 0, 0), "write (stats off)");
    EXPECT(count_files(statsdir) == 0, "TOPCOW_STATS=off published");
    must(topcow_image_get_stats(img, st), "get stats (off)");
    EXPECT(st->layers[0].ops[TOPCOW_STATS_WRITE] == 0 && st->nlayers == 0 &&
               st->virtual_size == 2 * GIB,
           "TOPCOW_STATS=off counted");
    must(topcow_image_close(img), "close (off)");

    /* A directory nobody can create: the image opens and counts privately. */
    unsetenv("TOPCOW_STATS");
    char bad[PATH_MAX];
    snprintf(bad, sizeof bad, "%s/top.qcow2/stats", dir); /* under a file */
    setenv("TOPCOW_STATS_DIR", bad, 1);
    must(topcow_image_open(&img, top, NULL), "open (no stats dir)");
    must(topcow_image_pwrite(img, buf, 4 * KIB, 0, 0), "write (no stats dir)");
    must(topcow_image_get_stats(img, st), "get stats (private)");
    EXPECT(st->layers[0].ops[TOPCOW_STATS_WRITE] == 1, "private counters");
    must(topcow_image_close(img), "close (private)");

    free(st);
    free(old);
    free(seen);
    unlink(top);
    unlink(base);
    rmdir(statsdir);
    rmdir(dir);
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
