// SPDX-License-Identifier: MIT
/* The seeded crash test.  Each seed picks an image configuration (cluster
 * size, refcount width, compat, extended L2, lazy refcounts, backing file,
 * cache size, threads), runs a random workload on it through the crash
 * backend, cuts the power at a random operation, and requires that the disk
 * left behind is consistent (topcow check and qemu-img check: no corruption,
 * leaks allowed), holds every write flushed before the crash, and reads as
 * some value written since the last flush everywhere else.
 *
 * Usage: crash-test [--seeds N] [--start S] [--seed S] [--points K] [--point P]
 *                   [-v] [--keep]
 * Each seed runs K (default 3) crash points: the same workload with the
 * power cut at different operations.  A failure prints its seed and point
 * and a command that replays it.  Seeds with several threads replay the
 * configuration and the workload, but the interleaving (and so what the
 * crash point hits) may differ. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crash-harness.h"
#include "error.h"
#include "image.h"
#include "io-test.h"

#define MAX_THREADS 4

struct config {
    uint32_t cluster_size;
    unsigned refcount_bits;
    unsigned compat; /* 2: 0.10, 3: 1.1 */
    bool ext_l2;
    bool lazy;
    const char *backing_fmt; /* NULL: no backing file */
    uint64_t size;
    uint64_t backing_size;
    uint64_t l2_cache; /* 0: the default */
    bool writethrough;
    bool compress;            /* some writes are compressed writes */
    bool encrypt;             /* LUKS (compressed writes then fall back: refused) */
    enum topcow_compression compression_type;
    unsigned nthreads;
    unsigned nops; /* per thread */
    struct io_crash_model model;
    const char *model_name;
};

static bool verbose;
static bool keep_dirs;
/* Compressed clusters found in crashed images, and seeds that wrote some:
 * the workload must really leave compressed clusters to crash among. */
static uint64_t compressed_seen, compress_seeds;
#define CRASH_SECRET "crash-test-passphrase"
static const char *argv0;

static struct config
choose_config(uint64_t seed)
{
    struct config c = {0};
    uint64_t rng = seed * 0x2545f4914f6cdd1dull + 0x1234;
    uint64_t x = h_below(&rng, 100), nclusters;
    if (x < 25) {
        c.cluster_size = 512;
        nclusters = 1024 + h_below(&rng, 1024);
    } else if (x < 60) {
        c.cluster_size = 4096;
        nclusters = 256 + h_below(&rng, 768);
    } else if (x < 90) {
        c.cluster_size = 65536;
        nclusters = 32 + h_below(&rng, 96);
    } else {
        c.cluster_size = 2u << 20;
        nclusters = 4 + h_below(&rng, 8);
    }
    c.compat = h_below(&rng, 100) < 20 ? 2 : 3;
    c.refcount_bits = 16;
    if (c.compat == 3) {
        x = h_below(&rng, 100);
        c.refcount_bits = x < 25 ? 1 : x < 75 ? 16 : 64;
        c.ext_l2 = c.cluster_size >= 16384 && h_below(&rng, 100) < 40;
        c.lazy = h_below(&rng, 100) < 35;
    }
    x = h_below(&rng, 100);
    c.backing_fmt = x < 30 ? "raw" : x < 45 ? "qcow2" : NULL;
    c.size = nclusters * c.cluster_size;
    if (c.cluster_size > H_SECTOR && h_below(&rng, 3) == 0) /* a partial last cluster */
        c.size -= H_SECTOR * (1 + h_below(&rng, 16));
    if (c.backing_fmt)
        c.backing_size = h_below(&rng, 3) == 0 ? c.size * 3 / 4 / H_SECTOR * H_SECTOR : c.size;
    if (h_below(&rng, 100) < 30)
        c.l2_cache = (uint64_t)c.cluster_size * (2 + h_below(&rng, 3));
    c.writethrough = h_below(&rng, 100) < 5;
    c.nthreads = h_below(&rng, 100) < 30 ? 2 + (unsigned)h_below(&rng, MAX_THREADS - 1) : 1;
    c.nops = 20 + (unsigned)h_below(&rng, 60);
    x = h_below(&rng, 100);
    if (x < 10) {
        c.model = (struct io_crash_model){0, 0, 0};
        c.model_name = "drop-all";
    } else if (x < 20) {
        c.model = (struct io_crash_model){100, 0, 0};
        c.model_name = "keep-all";
    } else if (x < 35) {
        c.model = (struct io_crash_model){10, 80, 50};
        c.model_name = "tear-heavy";
    } else {
        c.model = (struct io_crash_model)IO_CRASH_MODEL_DEFAULT;
        c.model_name = "default";
    }
    /* Drawn last, so that the choices above stay what they were per seed. */
    c.compress = h_below(&rng, 100) < 40;
    if (c.compat == 3 && h_below(&rng, 2))
        c.compression_type = TOPCOW_COMPRESSION_ZSTD;
    c.encrypt = h_below(&rng, 100) < 15;
    if (c.encrypt)
        c.compress = false; /* encrypted clusters are never compressed */
    return c;
}

static void
print_config(FILE *f, uint64_t seed, const struct config *c)
{
    fprintf(f,
            "seed %" PRIu64 ": cluster_size=%u refcount_bits=%u compat=%s%s%s size=%" PRIu64
            " backing=%s",
            seed, c->cluster_size, c->refcount_bits, c->compat == 2 ? "0.10" : "1.1",
            c->ext_l2 ? " extended_l2" : "", c->lazy ? " lazy_refcounts" : "", c->size,
            c->backing_fmt ? c->backing_fmt : "none");
    if (c->backing_fmt)
        fprintf(f, "(%" PRIu64 " bytes)", c->backing_size);
    fprintf(f, " l2_cache=%" PRIu64 "%s%s threads=%u ops=%u model=%s\n", c->l2_cache,
            c->writethrough ? (c->encrypt ? " writethrough luks" : " writethrough")
                            : (c->encrypt ? " luks" : ""),
            !c->compress                                      ? ""
            : c->compression_type == TOPCOW_COMPRESSION_ZSTD ? " compress=zstd"
                                                              : " compress=zlib",
            c->nthreads, c->nops, c->model_name);
}

/* ---- the workload --------------------------------------------------------- */

struct run {
    const struct config *cfg;
    struct h_guest g;
    struct topcow_image *img;
    struct io *crash;
    struct h_live live;
    _Atomic uint64_t clock;
    _Atomic uint64_t next_value;
    _Atomic bool bug; /* an engine bug was seen: everyone stops */
    uint64_t chunk;   /* bytes per ownership chunk (cluster aligned) */
    uint64_t nchunks;
    const char *tag;
};

struct worker {
    struct run *run;
    unsigned id;
    uint64_t rng;
    struct h_op *ops;
    size_t nops, cap;
};

static struct h_op *
new_op(struct worker *w, enum h_kind kind, uint64_t off, uint64_t len, unsigned flags)
{
    if (w->nops == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct h_op *p = realloc(w->ops, cap * sizeof *p);
        if (!p)
            return NULL;
        w->ops = p;
        w->cap = cap;
    }
    struct h_op *op = &w->ops[w->nops++];
    *op = (struct h_op){.kind = kind, .off = off, .len = len, .flags = flags, .thread = w->id};
    return op;
}

/* A random sector-aligned range inside [lo, hi) starting at @off (or a
 * random sector when @off is UINT64_MAX), of up to @max_sectors sectors. */
static void
pick_range(struct worker *w, uint64_t lo, uint64_t hi, uint64_t off, uint64_t max_sectors,
           uint64_t *o, uint64_t *l)
{
    if (off == UINT64_MAX)
        off = lo + h_below(&w->rng, (hi - lo) / H_SECTOR) * H_SECTOR;
    uint64_t n = 1 + h_below(&w->rng, max_sectors);
    uint64_t room = (hi - off) / H_SECTOR;
    *o = off;
    *l = (n < room ? n : room) * H_SECTOR;
}

static uint64_t
length_class(struct worker *w, uint64_t cs)
{
    uint64_t x = h_below(&w->rng, 100), per = cs / H_SECTOR;
    if (x < 55)
        return 8;
    if (x < 85)
        return 2 * per;
    return 8 * per < 2048 ? 8 * per : 2048;
}

/* Run one operation; returns false when the worker must stop. */
static bool
one_op(struct worker *w, uint8_t **buf, size_t *bufsize)
{
    struct run *run = w->run;
    const struct config *cfg = run->cfg;
    const uint64_t cs = cfg->cluster_size;
    uint64_t mine = run->nchunks > w->id ? (run->nchunks - 1 - w->id) / cfg->nthreads + 1 : 0;
    uint64_t x = h_below(&w->rng, 100);
    if (mine == 0)
        x = 99; /* nothing of my own to touch: flush */
    uint64_t chunk = w->id + cfg->nthreads * (mine ? h_below(&w->rng, mine) : 0);
    uint64_t lo = chunk * run->chunk;
    uint64_t hi = lo + run->chunk < run->g.size ? lo + run->chunk : run->g.size;
    unsigned fua = cfg->writethrough ? TOPCOW_WRITE_FUA : 0;
    struct h_op *op;

    /* Often go where an earlier write of mine went: overwrites, and zero
     * writes and discards that free allocated clusters. */
    uint64_t start = UINT64_MAX;
    if (h_below(&w->rng, 100) < (x < 45 ? 40 : 60))
        for (size_t i = w->nops; i-- > 0;)
            if ((w->ops[i].kind == H_WRITE || w->ops[i].kind == H_CWRITE) &&
                h_below(&w->rng, 3) == 0) {
                start = w->ops[i].off;
                break;
            }
    if (start != UINT64_MAX) { /* stay inside that write's chunk */
        lo = start / run->chunk * run->chunk;
        hi = lo + run->chunk < run->g.size ? lo + run->chunk : run->g.size;
    }

    if (x < 45) {
        uint64_t off, len;
        pick_range(w, lo, hi, start, length_class(w, cs), &off, &len);
        if (h_below(&w->rng, 100) < 10)
            fua = TOPCOW_WRITE_FUA;
        if (cfg->compress && h_below(&w->rng, 100) < 40) {
            /* Whole clusters of the chunk (the disk's end may cut the last). */
            off = off / cs * cs;
            len = cs * (1 + h_below(&w->rng, 3));
            len = len < hi - off ? len : hi - off;
            if (len % cs && off + len != run->g.size)
                len = len / cs * cs;
            op = len ? new_op(w, H_CWRITE, off, len, 0) : new_op(w, H_WRITE, off, H_SECTOR, fua);
        } else {
            op = new_op(w, H_WRITE, off, len, fua);
        }
        if (!op)
            return false;
        op->value = atomic_fetch_add(&run->next_value, 1);
    } else if (x < 61) {
        uint64_t off, len;
        bool aligned = h_below(&w->rng, 100) < (x < 53 ? 50 : 60);
        if (aligned) {
            off = start != UINT64_MAX ? start / cs * cs
                                      : lo + h_below(&w->rng, (hi - lo + cs - 1) / cs) * cs;
            len = cs * (1 + h_below(&w->rng, 3));
            len = len < hi - off ? len : hi - off;
        } else {
            pick_range(w, lo, hi, start, length_class(w, cs), &off, &len);
        }
        if (x < 53) {
            unsigned flags = fua | (h_below(&w->rng, 2) ? TOPCOW_ZERO_MAY_UNMAP : 0);
            op = new_op(w, H_ZERO, off, len, flags);
        } else {
            op = new_op(w, H_DISCARD, off, len, 0);
        }
        if (!op)
            return false;
    } else if (x < 80) {
        uint64_t off, len;
        pick_range(w, lo, hi, UINT64_MAX, 64, &off, &len);
        op = new_op(w, H_READ, off, len, 0);
        if (!op)
            return false;
    } else {
        op = new_op(w, H_FLUSH, 0, 0, 0);
        if (!op)
            return false;
    }

    if (op->len > *bufsize) {
        free(*buf);
        *bufsize = op->len;
        *buf = malloc(*bufsize);
        if (!*buf)
            return false;
    }
    if (op->kind == H_WRITE || op->kind == H_CWRITE)
        h_fill(*buf, op->value, op->off / H_SECTOR, op->len / H_SECTOR);

    op->io_start = io_crash_op_count(run->crash);
    op->seq_start = atomic_fetch_add(&run->clock, 1);
    int r = 0;
    switch (op->kind) {
    case H_WRITE:
        r = topcow_image_pwrite(run->img, *buf, op->len, op->off, op->flags);
        break;
    case H_CWRITE:
        r = topcow_image_pwrite_compressed(run->img, *buf, op->len, op->off);
        break;
    case H_ZERO:
        r = topcow_image_write_zeroes(run->img, op->off, op->len, op->flags);
        break;
    case H_DISCARD:
        r = topcow_image_discard(run->img, op->off, op->len);
        break;
    case H_READ:
        r = topcow_image_pread(run->img, *buf, op->len, op->off);
        break;
    default:
        r = topcow_image_flush(run->img);
        break;
    }
    op->seq_end = atomic_fetch_add(&run->clock, 1);
    op->io_end = io_crash_op_count(run->crash);
    op->result = r;
    op->done = true;
    if (verbose)
        h_print_op("  ", op);

    if (r < 0) {
        if (!io_crash_is_dead(run->crash)) {
            fprintf(stderr, "%s: %s failed before the crash: %s\n", run->tag, h_kind_name(op->kind),
                    topcow_last_error());
            h_print_op("    ", op);
            atomic_store(&run->bug, true);
        }
        return false;
    }
    if (op->kind == H_READ) {
        char who[64];
        snprintf(who, sizeof who, "%s thread %u", run->tag, w->id);
        if (!h_live_check(&run->live, *buf, op->off, op->len, who)) {
            atomic_store(&run->bug, true);
            return false;
        }
    } else {
        h_live_apply(&run->live, op);
    }
    return true;
}

static void *
work(void *arg)
{
    struct worker *w = arg;
    uint8_t *buf = NULL;
    size_t bufsize = 0;
    for (unsigned i = 0; i < w->run->cfg->nops && !atomic_load(&w->run->bug); i++)
        if (!one_op(w, &buf, &bufsize))
            break;
    free(buf);
    return NULL;
}

/* ---- one seed ----------------------------------------------------------------- */

struct outcome {
    uint64_t total_ops; /* counted io operations of the whole run */
    bool bug;           /* the live run already failed */
    /* Dry run: the counted io operations of each guest operation that
     * issued several (flushes, evictions, allocating writes): ranges
     * (start, end], two entries each. */
    uint64_t *multi;
    size_t nmulti;
};

/* Run the workload on a copy of @fresh (the image at @path) through the crash
 * backend.  @point < 0 is the dry run: no power cut, nothing written back,
 * and out->multi describes the run.  Otherwise cut the power before counted
 * operation @trigger, crash with @crash_seed, write the durable bytes back
 * to @path and verify them.  Returns 0 on success, 1 on a failure (already
 * reported). */
static int
run_once(uint64_t seed, int point, const struct config *cfg, struct io *fresh, const char *path,
         uint64_t trigger, uint64_t crash_seed, struct outcome *out)
{
    bool dry = point < 0;
    char tag[64];
    if (dry)
        snprintf(tag, sizeof tag, "seed %" PRIu64 " (dry run)", seed);
    else
        snprintf(tag, sizeof tag, "seed %" PRIu64 " point %d", seed, point);
    struct run run = {.cfg = cfg, .tag = tag};
    run.g.size = cfg->size;
    run.g.cluster_size = cfg->cluster_size;
    run.g.v3 = cfg->compat == 3;
    run.g.backing_size = cfg->backing_size;
    atomic_init(&run.clock, 1);
    atomic_init(&run.next_value, H_VAL_FIRST_WRITE);
    atomic_init(&run.bug, false);
    run.chunk = cfg->nthreads == 1
                    ? cfg->size
                    : (uint64_t)cfg->cluster_size *
                          (cfg->cluster_size >= 65536 ? 1 : 65536 / cfg->cluster_size);
    run.nchunks = (cfg->size + run.chunk - 1) / run.chunk;

    struct worker workers[MAX_THREADS + 1] = {0};
    struct h_op *opl[MAX_THREADS + 1];
    size_t nopl[MAX_THREADS + 1];
    struct h_allowed allowed = {0};
    struct io *mem = NULL, *crash = NULL, *shim = NULL;
    int fail = 1;

    if (h_live_init(&run.live, &run.g) < 0)
        goto out;
    int r = h_mem_copy(fresh, path, &mem);
    if (r == 0)
        r = io_crash_open(mem, &crash);
    /* An unarmed fault injector lets the crash backend outlive the image
     * handle (the handle owns it), so the power can go out during close. */
    if (r == 0)
        r = io_faulty_open(crash, &shim);
    if (r < 0) {
        fprintf(stderr, "%s: setup failed: %s\n", tag, strerror(-r));
        goto out;
    }
    run.crash = crash;
    io_crash_set_trigger(crash, trigger);

    struct topcow_open_opts oo = TOPCOW_OPEN_OPTS_INIT;
    oo.format = "qcow2";
    oo.l2_cache_size = cfg->l2_cache;
    oo.flags = cfg->writethrough ? TOPCOW_OPEN_WRITETHROUGH : 0;
    if (cfg->encrypt) {
        oo.secret = CRASH_SECRET;
        oo.secret_len = strlen(CRASH_SECRET);
    }
    err_begin("open");
    r = image_open_io(&run.img, shim, path, &oo);
    shim = NULL; /* owned by the image now, even on failure */
    if (r < 0 && !io_crash_is_dead(crash)) {
        fprintf(stderr, "%s: open failed: %s\n", tag, topcow_last_error());
        goto out;
    }

    unsigned nt = cfg->nthreads;
    pthread_t tids[MAX_THREADS];
    for (unsigned t = 0; t < nt; t++)
        workers[t] = (struct worker){
            .run = &run, .id = t, .rng = seed * 0x9e3779b97f4a7c15ull + t * 7919 + 1};
    if (run.img) {
        bool started[MAX_THREADS];
        for (unsigned t = 0; t < nt; t++) {
            started[t] = nt > 1 && pthread_create(&tids[t], NULL, work, &workers[t]) == 0;
            if (!started[t])
                work(&workers[t]); /* one thread, or no thread to be had: run it here */
        }
        for (unsigned t = 0; t < nt; t++)
            if (started[t])
                pthread_join(tids[t], NULL);
        /* Close is the final flush; the power may go out during it too. */
        workers[nt].id = nt;
        struct h_op *op = new_op(&workers[nt], H_CLOSE, 0, 0, 0);
        if (!op)
            goto out;
        op->io_start = io_crash_op_count(crash);
        op->seq_start = atomic_fetch_add(&run.clock, 1);
        op->result = topcow_image_close(run.img);
        op->seq_end = atomic_fetch_add(&run.clock, 1);
        op->io_end = io_crash_op_count(crash);
        op->done = true;
        run.img = NULL;
        if (verbose)
            h_print_op("  ", op);
        if (op->result < 0 && !io_crash_is_dead(crash)) {
            fprintf(stderr, "%s: close failed before the crash: %s\n", tag, topcow_last_error());
            atomic_store(&run.bug, true);
        }
    }
    out->total_ops = io_crash_op_count(crash);
    out->bug = atomic_load(&run.bug);
    if (out->bug)
        goto out;
    if (dry) {
        size_t n = 0;
        for (unsigned t = 0; t <= nt; t++)
            n += workers[t].nops;
        out->multi = malloc((2 * n + 1) * sizeof *out->multi);
        if (!out->multi)
            goto out;
        for (unsigned t = 0; t <= nt; t++)
            for (size_t i = 0; i < workers[t].nops; i++) {
                const struct h_op *op = &workers[t].ops[i];
                if (op->io_end >= op->io_start + 2) {
                    out->multi[2 * out->nmulti] = op->io_start;
                    out->multi[2 * out->nmulti++ + 1] = op->io_end;
                }
            }
        fail = 0;
        goto out;
    }

    struct io_crash_report rep;
    r = io_crash_simulate(crash, crash_seed, &cfg->model, &rep);
    if (r == 0)
        r = h_mem_save(mem, path);
    if (r < 0) {
        fprintf(stderr, "%s: crash simulation failed: %s\n", tag, strerror(-r));
        goto out;
    }
    if (verbose)
        fprintf(stderr,
                "%s: power cut after %" PRIu64 " io operations: %" PRIu64 " unflushed (%" PRIu64
                " kept, %" PRIu64 " torn, %" PRIu64 " dropped), %" PRIu64 " sectors landed\n",
                tag, out->total_ops, rep.ops, rep.kept, rep.torn, rep.dropped, rep.sectors_written);
    for (unsigned t = 0; t <= nt; t++) {
        opl[t] = workers[t].ops;
        nopl[t] = workers[t].nops;
    }
    if (h_allowed_build(&allowed, &run.g, opl, nopl, nt + 1) < 0) {
        fprintf(stderr, "%s: out of memory\n", tag);
        goto out;
    }
    struct h_verify v = {.path = path,
                         .tag = tag,
                         .allowed = &allowed,
                         .ops = opl,
                         .nops = nopl,
                         .nthreads = nt + 1,
                         .run_qemu = true,
                         .post_write = true,
                         .seed = seed,
                         .verbose = verbose,
                         .compressed = &compressed_seen};
    fail = h_verify_image(&v);

out:
    if (fail && !dry && run.live.cur && !verbose) {
        /* The operations, for the report. */
        fprintf(stderr, "%s: operations:\n", tag);
        for (unsigned t = 0; t <= MAX_THREADS; t++)
            for (size_t i = 0; i < workers[t].nops; i++)
                h_print_op("    ", &workers[t].ops[i]);
    }
    if (run.img)
        topcow_image_close(run.img);
    io_close(shim);
    io_close(crash);
    io_close(mem);
    h_allowed_free(&allowed);
    h_live_free(&run.live);
    for (unsigned t = 0; t <= MAX_THREADS; t++)
        free(workers[t].ops);
    return fail;
}

static void
remove_dir(const char *dir)
{
    static const char *const names[] = {"img.qcow2", "base.raw", "base.qcow2"};
    char p[700];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Create the image (and backing file) for @cfg in @dir. */
static int
make_image(const char *dir, const struct config *cfg, char *path, size_t pathlen)
{
    char bpath[700];
    const char *bname = NULL;
    if (cfg->backing_fmt) {
        bname = strcmp(cfg->backing_fmt, "raw") == 0 ? "base.raw" : "base.qcow2";
        snprintf(bpath, sizeof bpath, "%s/%s", dir, bname);
        int r = h_make_backing(bpath, cfg->backing_fmt, cfg->backing_size);
        if (r < 0) {
            fprintf(stderr, "cannot make the backing file: %s\n", topcow_last_error());
            return r;
        }
    }
    snprintf(path, pathlen, "%s/img.qcow2", dir);
    struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
    co.size = cfg->size;
    co.compat = cfg->compat;
    co.cluster_size = cfg->cluster_size;
    co.refcount_bits = cfg->refcount_bits;
    co.extended_l2 = cfg->ext_l2;
    co.lazy_refcounts = cfg->lazy;
    co.compression_type = cfg->compression_type;
    if (cfg->encrypt) {
        co.encrypt_format = "luks";
        co.encrypt_secret = CRASH_SECRET;
        co.encrypt_secret_len = strlen(CRASH_SECRET);
        co.encrypt_iter_time_ms = 1; /* the floor of 1000 iterations applies */
    }
    co.backing_file = bname;
    co.backing_format = cfg->backing_fmt;
    int r = topcow_image_create(path, &co);
    if (r < 0)
        fprintf(stderr, "cannot create the image: %s\n", topcow_last_error());
    return r;
}

static unsigned points_per_seed = 3;
static int only_point = -1;

/* Where to cut the power: half the time anywhere in the run, half the time
 * inside a guest operation that issues several io operations (the write
 * ordering of flushes, evictions and allocations lives there), after at
 * least one of them. */
static uint64_t
choose_trigger(uint64_t *rng, const struct outcome *dry)
{
    if (dry->nmulti > 0 && h_below(rng, 2) == 0) {
        size_t k = (size_t)h_below(rng, dry->nmulti);
        uint64_t a = dry->multi[2 * k], b = dry->multi[2 * k + 1];
        return a + 2 + h_below(rng, b - a - 1);
    }
    return 1 + h_below(rng, dry->total_ops + 1);
}

static int
run_seed(const char *tmp, uint64_t seed, uint64_t *points)
{
    struct config cfg = choose_config(seed);
    compress_seeds += cfg.compress;
    h_secret = cfg.encrypt ? CRASH_SECRET : NULL;
    if (verbose)
        print_config(stderr, seed, &cfg);
    char dir[600], path[640];
    snprintf(dir, sizeof dir, "%s/seed-%" PRIu64, tmp, seed);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    int fail = make_image(dir, &cfg, path, sizeof path) < 0;

    /* A dry run counts the io operations, so the power cut can land
     * anywhere in the run (including open and close). */
    struct outcome dry = {0};
    uint64_t rng = seed ^ 0xc4a5b00cull;
    struct io *fresh = NULL; /* every run starts from the fresh image */
    if (!fail && h_mem_load(path, path, &fresh) < 0)
        fail = 1;
    if (!fail)
        fail = run_once(seed, -1, &cfg, fresh, path, 0, 0, &dry) | dry.bug;
    int bad_point = -1;
    for (unsigned p = 0; !fail && p < points_per_seed; p++) {
        uint64_t trigger = choose_trigger(&rng, &dry), crash_seed = h_rand(&rng);
        if (only_point >= 0 && (int)p != only_point)
            continue;
        if (verbose)
            fprintf(stderr,
                    "seed %" PRIu64 " point %u: %" PRIu64 " io operations in the dry "
                    "run; power cut before operation %" PRIu64 "\n",
                    seed, p, dry.total_ops, trigger);
        struct outcome real = {0};
        fail = run_once(seed, (int)p, &cfg, fresh, path, trigger, crash_seed, &real) | real.bug;
        ++*points;
        if (fail)
            bad_point = (int)p;
    }
    free(dry.multi);
    io_close(fresh);
    if (fail) {
        if (!verbose)
            print_config(stderr, seed, &cfg);
        fprintf(stderr, "FAIL seed %" PRIu64 " point %d; files kept in %s\n", seed, bad_point, dir);
        fprintf(stderr, "replay: %s --seed %" PRIu64 " --point %d -v\n", argv0, seed, bad_point);
    } else if (!keep_dirs) {
        remove_dir(dir);
    }
    return fail;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: %s [--seeds N] [--start S] [--seed S] [--points K] [--point P] [-v] "
            "[--keep]\n",
            argv0);
    exit(2);
}

int
main(int argc, char **argv)
{
    uint64_t start = 0, seeds = 50;
    argv0 = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) {
            seeds = strtoull(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "--start") == 0 && i + 1 < argc) {
            start = strtoull(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            start = strtoull(argv[++i], NULL, 0);
            seeds = 1;
        } else if (strcmp(argv[i], "--points") == 0 && i + 1 < argc) {
            points_per_seed = (unsigned)strtoul(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "--point") == 0 && i + 1 < argc) {
            only_point = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-v") == 0) {
            verbose = true;
        } else if (strcmp(argv[i], "--keep") == 0) {
            keep_dirs = true;
        } else {
            usage();
        }
    }
    if (!h_have_qemu_img()) {
        fprintf(stderr, "SKIP: qemu-img not installed\n");
        return 77;
    }
    const char *t = getenv("TMPDIR");
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/topcow-crash.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t failed = 0, points = 0;
    if (only_point >= 0 && (unsigned)only_point >= points_per_seed)
        points_per_seed = (unsigned)only_point + 1;
    for (uint64_t s = start; s < start + seeds; s++)
        failed += run_seed(tmp, s, &points);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (!failed && !keep_dirs)
        rmdir(tmp);
    printf("crash-test: seeds %" PRIu64 "..%" PRIu64 ": %" PRIu64 " crash points in %.1f s "
           "(%.1f per second), %" PRIu64 " seeds failed; %" PRIu64 " seeds wrote compressed, "
           "%" PRIu64 " compressed clusters in the crashed images\n",
           start, start + seeds - 1, points, secs, secs > 0 ? (double)points / secs : 0.0, failed,
           compress_seeds, compressed_seen);
    if (compress_seeds >= 10 && compressed_seen == 0) {
        fprintf(stderr, "crash-test: compressed writes left no compressed cluster behind\n");
        return 1;
    }
    return failed ? 1 : 0;
}
