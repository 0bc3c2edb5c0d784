// SPDX-License-Identifier: MIT
/* Publishing an open image's statistics (stats.h): the region's life from
 * open to close, accounting of guest requests, and copying a region into the
 * public struct topcow_stats. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "minmax.h"
#include "error.h"
#include "image.h"
#include "stats.h"

/* A region and what withdrawing it needs. */
struct published {
    struct stats_region *region; /* mapped from the file, or calloc'd */
    int fd;                   /* -1: private memory */
    char *path;               /* the file, or NULL */
    struct published *next;   /* in the process's list, for fork */
};

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct published *list_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t next_id = 1;

/* A child of fork() inherits the files (and the locks that keep them
 * alive), so it becomes their owner: `serve --fork` opens its image before
 * the parent exits. */
static void
after_fork_child(void)
{
    uint64_t pid = (uint64_t)getpid();
    for (struct published *p = list_head; p; p = p->next)
        atomic_store_explicit(&p->region->pid, pid, memory_order_relaxed);
    pthread_mutex_init(&list_lock, NULL);
}

static void
register_atfork(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

static bool
stats_enabled(void)
{
    const char *v = getenv("TOPCOW_STATS");
    return !v || !(strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0);
}

const char *
topcow_stats_dir(void)
{
    static _Thread_local char buf[PATH_MAX];
    const char *v = getenv("TOPCOW_STATS_DIR");
    if (v && *v)
        snprintf(buf, sizeof buf, "%s", v);
    else if ((v = getenv("XDG_RUNTIME_DIR")) && *v)
        snprintf(buf, sizeof buf, "%s/topcow", v);
    else if (geteuid() == 0)
        snprintf(buf, sizeof buf, "/run/topcow");
    else
        snprintf(buf, sizeof buf, "/tmp/topcow-%u", (unsigned)geteuid());
    return buf;
}

/* The program and its first argument, from /proc/self/cmdline. */
static void
read_command(char *out, size_t size)
{
    char buf[256];
    out[0] = '\0';
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    const char *prog = buf, *slash = strrchr(prog, '/');
    if (slash)
        prog = slash + 1;
    size_t l0 = strlen(buf);
    const char *arg = (size_t)n > l0 + 1 ? buf + l0 + 1 : "";
    size_t len = 0;
    for (const char *part[] = { prog, *arg ? " " : "", arg }, **q = part; q < part + 3; q++)
        for (const char *c = *q; *c && len + 1 < size; c++)
            out[len++] = *c;
    out[len] = '\0';
}

/* Map a new region from a file of the statistics directory into @p; the
 * file is left under a temporary name (@tmp).  Returns false if any step
 * fails (and leaves nothing behind). */
static bool
create_file(struct published *p, uint64_t id, char *tmp, size_t tmpsize)
{
    const char *dir = topcow_stats_dir();
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return false;
    char path[PATH_MAX];
    if (snprintf(tmp, tmpsize, "%s/.%ld-%llu.tmp", dir, (long)getpid(),
                 (unsigned long long)id) >= (int)tmpsize ||
        snprintf(path, sizeof path, "%s/%ld-%llu%s", dir, (long)getpid(),
                 (unsigned long long)id, STATS_SUFFIX) >= (int)sizeof path)
        return false;
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    void *m = MAP_FAILED;
    if (ftruncate(fd, sizeof(struct stats_region)) == 0)
        m = mmap(NULL, sizeof(struct stats_region), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    /* The owner's shared lock is what tells readers the file is alive;
     * it is taken before the file appears under its final name. */
    if (m == MAP_FAILED || flock(fd, LOCK_SH) < 0 || !(p->path = strdup(path))) {
        if (m != MAP_FAILED)
            munmap(m, sizeof(struct stats_region));
        unlink(tmp);
        close(fd);
        return false;
    }
    p->region = m;
    p->fd = fd;
    return true;
}

static void
fill_layer(struct stats_layer *l, struct topcow_image *img, unsigned depth)
{
    char *abs = realpath(img->filename, NULL);
    snprintf(l->filename, sizeof l->filename, "%s", abs ? abs : img->filename);
    free(abs);
    snprintf(l->format, sizeof l->format, "%s", img->ops->name);
    l->depth = depth;
}

void
stats_publish(struct topcow_image *img)
{
    if (!stats_enabled())
        return;
    pthread_once(&atfork_once, register_atfork);
    uint64_t id = atomic_fetch_add(&next_id, 1);
    struct published *p = calloc(1, sizeof *p);
    if (!p)
        return;
    char tmp[PATH_MAX];
    if (!create_file(p, id, tmp, sizeof tmp)) {
        p->fd = -1;
        p->region = calloc(1, sizeof *p->region);
        if (!p->region) {
            free(p);
            return;
        }
    }
    struct stats_region *r = p->region;
    memcpy(r->magic, STATS_MAGIC, sizeof r->magic);
    r->version = STATS_VERSION;
    r->size = sizeof *r;
    r->pid = (uint64_t)getpid();
    r->id = id;
    r->open_time_ns = clock_ns(CLOCK_REALTIME);
    read_command(r->command, sizeof r->command);
    r->virtual_size = img->size;
    r->read_only = img->read_only;
    unsigned depth = 0;
    for (struct topcow_image *i = img; i && depth < TOPCOW_STATS_MAX_LAYERS;
         i = i->backing, depth++) {
        struct stats_layer *l = &r->layers[depth];
        fill_layer(l, i, depth);
        l->host = *i->file->stats; /* what opening it cost */
        i->file->stats = &l->host;
        i->stats = l;
    }
    r->nlayers = depth;
    img->stats_region = r;

    if (p->fd >= 0) {
        if (rename(tmp, p->path) < 0) {
            unlink(tmp);
            free(p->path);
            p->path = NULL;
        }
    }
    pthread_mutex_lock(&list_lock);
    p->next = list_head;
    list_head = p;
    pthread_mutex_unlock(&list_lock);
}

void
stats_unpublish(struct stats_region *region)
{
    if (!region)
        return;
    struct published *p = NULL;
    pthread_mutex_lock(&list_lock);
    for (struct published **pp = &list_head; *pp; pp = &(*pp)->next)
        if ((*pp)->region == region) {
            p = *pp;
            *pp = p->next;
            break;
        }
    pthread_mutex_unlock(&list_lock);
    if (!p)
        return;
    if (p->fd < 0) {
        free(p->region);
    } else {
        if (p->path)
            unlink(p->path);
        munmap(p->region, sizeof *p->region);
        close(p->fd);
    }
    free(p->path);
    free(p);
}

/* ---- accounting --------------------------------------------------------- */

static unsigned
latency_bucket(uint64_t ns)
{
    unsigned b = ns ? 63 - (unsigned)__builtin_clzll(ns) : 0;
    return MIN(b, TOPCOW_STATS_LAT_BUCKETS - 1u);
}

/* Spread @len bytes at @off over the heat map's buckets. */
static void
heat_add(_Atomic uint64_t *heat, uint64_t vsize, uint64_t off, uint64_t len)
{
    if (vsize == 0 || len == 0)
        return;
    uint64_t bsize = (vsize + TOPCOW_STATS_HEAT_BUCKETS - 1) / TOPCOW_STATS_HEAT_BUCKETS;
    uint64_t end = off + len;
    for (uint64_t b = off / bsize; b < TOPCOW_STATS_HEAT_BUCKETS && off < end; b++) {
        uint64_t bend = MIN(end, (b + 1) * bsize);
        stats_add(&heat[b], bend - off);
        off = bend;
    }
}

void
stats_request_done(struct stats_region *r, struct stats_layer *l, enum topcow_stats_op op,
                   uint64_t off, uint64_t len, int ret, uint64_t t0)
{
    uint64_t ns = clock_ns(CLOCK_MONOTONIC) - t0;
    atomic_fetch_sub_explicit(&r->in_flight, 1, memory_order_relaxed);
    stats_add(&l->ops[op], 1);
    if (ret < 0) {
        stats_add(&l->errors[op], 1);
    } else {
        stats_add(&l->bytes[op], len);
        uint64_t vsize = atomic_load_explicit(&r->virtual_size, memory_order_relaxed);
        if (op == TOPCOW_STATS_READ)
            heat_add(r->heat_read, vsize, off, len);
        else if (op == TOPCOW_STATS_WRITE)
            heat_add(r->heat_write, vsize, off, len);
    }
    stats_add(&r->latency[op][latency_bucket(ns)], 1);
    stats_add(&r->latency_nsec[op], ns);
    uint64_t max = atomic_load_explicit(&r->latency_max_ns[op], memory_order_relaxed);
    while (ns > max && !atomic_compare_exchange_weak_explicit(
                           &r->latency_max_ns[op], &max, ns, memory_order_relaxed,
                           memory_order_relaxed)) {
    }
}

/* ---- reading ------------------------------------------------------------ */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void
copy_layer(const struct stats_layer *l, struct topcow_stats_layer *o)
{
    memcpy(o->filename, l->filename, sizeof o->filename);
    o->filename[sizeof o->filename - 1] = '\0';
    memcpy(o->format, l->format, sizeof o->format);
    o->format[sizeof o->format - 1] = '\0';
    o->depth = l->depth;
    for (int k = 0; k < TOPCOW_STATS_OPS; k++) {
        o->ops[k] = LOAD(l->ops[k]);
        o->bytes[k] = LOAD(l->bytes[k]);
        o->errors[k] = LOAD(l->errors[k]);
    }
    uint64_t down = LOAD(l->read_passed_down);
    uint64_t rd = o->bytes[TOPCOW_STATS_READ];
    o->read_bytes_resolved = rd > down ? rd - down : 0;
    /* The io op kinds and the public host op kinds are the same list. */
    _Static_assert((int)IO_OP_KINDS == (int)TOPCOW_STATS_HOST_OPS, "host op kinds");
    for (int k = 0; k < TOPCOW_STATS_HOST_OPS; k++) {
        o->host_ops[k] = LOAD(l->host.ops[k]);
        o->host_bytes[k] = LOAD(l->host.bytes[k]);
        o->host_nsec[k] = LOAD(l->host.nsec[k]);
    }
    o->l2_hits = LOAD(l->l2_hits);
    o->l2_misses = LOAD(l->l2_misses);
    o->refcount_hits = LOAD(l->refcount_hits);
    o->refcount_misses = LOAD(l->refcount_misses);
    o->clusters_allocated = LOAD(l->clusters_allocated);
    o->data_clusters_allocated = LOAD(l->data_clusters_allocated);
    o->cow_bytes = LOAD(l->cow_bytes);
    o->compressed_reads = LOAD(l->compressed_reads);
    o->decompress_nsec = LOAD(l->decompress_nsec);
    o->discard_bytes = LOAD(l->discard_bytes);
}

static void
copy_full(const struct stats_region *r, struct topcow_stats *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->pid = LOAD(r->pid);
    o->id = r->id;
    memcpy(o->command, r->command, sizeof o->command);
    o->command[sizeof o->command - 1] = '\0';
    o->open_time_ns = r->open_time_ns;
    o->sample_time_ns = clock_ns(CLOCK_REALTIME);
    o->virtual_size = LOAD(r->virtual_size);
    o->read_only = r->read_only != 0;
    o->clients = LOAD(r->clients);
    o->in_flight = LOAD(r->in_flight);
    o->zero_bytes_detected = LOAD(r->zero_bytes_detected);
    for (int k = 0; k < TOPCOW_STATS_OPS; k++) {
        for (int b = 0; b < TOPCOW_STATS_LAT_BUCKETS; b++)
            o->latency[k][b] = LOAD(r->latency[k][b]);
        o->latency_max_ns[k] = LOAD(r->latency_max_ns[k]);
        o->latency_nsec[k] = LOAD(r->latency_nsec[k]);
    }
    for (int b = 0; b < TOPCOW_STATS_HEAT_BUCKETS; b++) {
        o->heat_read[b] = LOAD(r->heat_read[b]);
        o->heat_write[b] = LOAD(r->heat_write[b]);
    }
    o->nlayers = MIN(r->nlayers, (uint32_t)TOPCOW_STATS_MAX_LAYERS);
    for (unsigned i = 0; i < o->nlayers; i++)
        copy_layer(&r->layers[i], &o->layers[i]);
}

void
stats_region_copy(const struct stats_region *r, struct topcow_stats *st)
{
    size_t want = st->struct_size;
    if (want >= sizeof *st) {
        copy_full(r, st);
        return;
    }
    /* An older, shorter struct: fill what its caller knew about. */
    struct topcow_stats *full = malloc(sizeof *full);
    if (!full)
        return;
    copy_full(r, full);
    memcpy(st, full, want);
    st->struct_size = want;
    free(full);
}

/* ---- public entry points ------------------------------------------------- */

int
topcow_image_get_stats(struct topcow_image *img, struct topcow_stats *st)
{
    err_begin("get stats");
    RETURN_ERR_IF(!img || !st || st->struct_size < offsetof(struct topcow_stats, pid), -EINVAL,
                  "NULL argument or struct_size not set");
    if (img->stats_region) {
        stats_region_copy(img->stats_region, st);
        return 0;
    }
    size_t want = st->struct_size;
    memset(st, 0, MIN(want, sizeof *st));
    st->struct_size = want;
    if (want >= offsetof(struct topcow_stats, virtual_size) + sizeof st->virtual_size)
        st->virtual_size = img->size;
    return 0;
}

void
topcow_image_stats_note(struct topcow_image *img, enum topcow_stats_note what, int64_t n)
{
    struct stats_region *r = img ? img->stats_region : NULL;
    if (!r)
        return;
    switch (what) {
    case TOPCOW_STATS_NOTE_CLIENTS:
        atomic_fetch_add_explicit(&r->clients, (uint64_t)n, memory_order_relaxed);
        break;
    case TOPCOW_STATS_NOTE_ZEROS_DETECTED:
        if (n > 0)
            stats_add(&r->zero_bytes_detected, (uint64_t)n);
        break;
    }
}
