// SPDX-License-Identifier: MIT
/* Fault injection over a deterministic qcow2 workload (open, preallocation,
 * allocating writes, copy-on-write, flush, overwrites, zero writes, discards,
 * compressed writes, partial rewrites of compressed clusters, flush, close).
 * A clean run counts the io calls of each kind; then, for
 * every N, the Nth read / write / flush / truncate / zero-or-discard fails
 * with EIO, then ENOSPC, then EIO on every call from the Nth on.
 *
 * Each run requires: the API call during which the fault hit returns that
 * errno, and topcow_last_error() names the operation and the file; calls the
 * fault did not hit succeed and read what the model says; and the disk left
 * behind (after a simulated power cut that keeps, drops or scrambles what
 * was not flushed) passes topcow check and qemu-img check (leaks allowed)
 * and holds every write that was flushed successfully.
 *
 * Usage: test-qcow2-faults [--config NAME] [--kind KIND] [--nth N]
 *                          [--errno EIO|ENOSPC] [--persist] [--no-qemu] [-v] */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crash-harness.h"
#include "error.h"
#include "image.h"
#include "io-test.h"
#include "qcow2-internal.h"

struct fcfg {
    const char *name;
    unsigned compat;
    uint32_t cluster_size;
    unsigned refcount_bits;
    bool lazy, ext_l2;
    const char *backing_fmt; /* NULL: none */
    uint64_t size, backing_size;
    uint64_t l2_cache; /* 0: default */
    enum topcow_prealloc prealloc;
    bool luks; /* LUKS-encrypted (no compressed writes then) */
};

#define FAULT_SECRET "fault-test-passphrase"

static const struct fcfg configs[] = {
    /* Two cached L2 tables force evictions (dependency-ordered writes). */
    {"v3-4k-smallcache", 3, 4096, 16, false, false, NULL, 4u << 20, 0, 8192, TOPCOW_PREALLOC_OFF,
     false},
    {"v3-64k-lazy-extl2-backing", 3, 65536, 64, true, true, "qcow2", 1u << 20, 1u << 20, 0,
     TOPCOW_PREALLOC_OFF, false},
    {"v2-4k-raw-backing", 2, 4096, 16, false, false, "raw", 4u << 20, 3u << 20, 0,
     TOPCOW_PREALLOC_OFF, false},
    /* Preallocation is where truncate and fallocate happen after create. */
    {"v3-4k-falloc-rc1", 3, 4096, 1, false, false, NULL, 256u << 10, 0, 0, TOPCOW_PREALLOC_FALLOC,
     false},
    /* Encrypted: sector read-modify-write and re-encryption on copy-on-write. */
    {"v3-4k-luks-backing", 3, 4096, 16, false, false, "raw", 2u << 20, 2u << 20, 8192,
     TOPCOW_PREALLOC_OFF, true},
};

#define MAX_STEPS 24

static bool verbose, use_qemu = true;
static unsigned traces_printed;
static const char *argv0;
static char tmpdir[512];

/* The workload, in guest terms, for @c. */
static size_t
build_steps(const struct fcfg *c, struct h_op *s)
{
    const uint64_t cs = c->cluster_size;
    const uint64_t l2span = cs * (cs / (c->ext_l2 ? 16 : 8));
    size_t n = 0;
    uint64_t value = H_VAL_FIRST_WRITE;
#define STEP(k, o, l, f)                                                                           \
    (s[n++] = (struct h_op){.kind = (k),                                                           \
                            .off = (o),                                                            \
                            .len = (l),                                                            \
                            .flags = (f),                                                          \
                            .value = (k) == H_WRITE || (k) == H_CWRITE ? value++ : 0})
    STEP(H_OPEN, 0, 0, 0);
    if (c->prealloc != TOPCOW_PREALLOC_OFF)
        STEP(H_PREALLOC, 0, 0, 0);
    STEP(H_WRITE, 0, 3 * cs + 1024, 0);    /* allocating, several clusters */
    STEP(H_WRITE, 5 * cs + 1024, 2048, 0); /* partial: copy-on-write */
    if (l2span + cs / 2 <= c->size)
        STEP(H_WRITE, l2span - cs / 2, cs, 0); /* across two L2 tables */
    STEP(H_FLUSH, 0, 0, 0);
    STEP(H_READ, 0, 8 * cs, 0);
    STEP(H_WRITE, 512, 4096, 0); /* overwrite in place */
    STEP(H_WRITE, 7 * cs, 512, TOPCOW_WRITE_FUA);
    STEP(H_ZERO, cs, 2 * cs, TOPCOW_ZERO_MAY_UNMAP);
    STEP(H_ZERO, 3 * cs + 512, 1024, 0); /* explicit zeros */
    STEP(H_DISCARD, 0, cs, 0);
    STEP(H_DISCARD, 5 * cs, 3 * cs, 0);
    STEP(H_FLUSH, 0, 0, 0);
    STEP(H_WRITE, 9 * cs, 2 * cs, 0); /* reuses freed clusters */
    if (!c->luks) {
        STEP(H_CWRITE, 11 * cs, 2 * cs, 0); /* compressed, packed together */
        STEP(H_CWRITE, 0, cs, 0);           /* compressed over a normal cluster */
    }
    STEP(H_FLUSH, 0, 0, 0);
    STEP(H_WRITE, 11 * cs + 512, 1024, 0); /* part of a compressed cluster */
    STEP(H_READ, 0, 14 * cs, 0);
    STEP(H_CLOSE, 0, 0, 0);
#undef STEP
    return n;
}

/* The context err_begin() names for a step (NULL: close has none). */
static const char *
step_context(enum h_kind k)
{
    switch (k) {
    case H_WRITE:
        return "write";
    case H_CWRITE:
        return "write compressed";
    case H_ZERO:
        return "write zeroes";
    case H_DISCARD:
        return "discard";
    case H_FLUSH:
        return "flush";
    case H_READ:
        return "read";
    case H_OPEN:
        return "open";
    case H_PREALLOC:
        return "create";
    default:
        return NULL;
    }
}

struct fault {
    int kind; /* enum io_fault_kind, or -1 for a clean run */
    uint64_t nth;
    int err;
    unsigned flags;
};

static const char *
errno_name(int err)
{
    return err == -ENOSPC ? "ENOSPC" : err == -EIO ? "EIO" : "?";
}

static void
print_replay(const struct fcfg *c, const struct fault *f)
{
    fprintf(stderr, "replay: %s --config %s --kind %s --nth %" PRIu64 " --errno %s%s -v\n", argv0,
            c->name, io_fault_kind_name((enum io_fault_kind)f->kind), f->nth, errno_name(f->err),
            (f->flags & IO_FAULT_PERSIST) ? " --persist" : "");
}

/* One run of the workload with fault @f (kind -1: none).  @tmpl is the
 * fresh image; the run's disk is written to @path and verified.  Counts of
 * calls per kind go to @calls.  Returns 0 or 1 (failure, reported). */
static int
run_case(const struct fcfg *c, const char *tmpl, const char *path, const struct fault *f,
         uint64_t calls[IO_FAULT_KINDS])
{
    char tag[160];
    if (f->kind < 0)
        snprintf(tag, sizeof tag, "%s clean run", c->name);
    else
        snprintf(tag, sizeof tag, "%s %s #%" PRIu64 " %s%s", c->name,
                 io_fault_kind_name((enum io_fault_kind)f->kind), f->nth, errno_name(f->err),
                 (f->flags & IO_FAULT_PERSIST) ? " persistent" : "");
    struct h_guest g = {.size = c->size,
                        .cluster_size = c->cluster_size,
                        .v3 = c->compat == 3,
                        .backing_size = c->backing_size};
    struct h_op ops[MAX_STEPS];
    size_t nsteps = build_steps(c, ops), ndone = 0;
    struct h_live live = {0};
    struct h_allowed allowed = {0};
    struct io *mem = NULL, *crash = NULL, *faulty = NULL, *shim = NULL;
    struct topcow_image *img = NULL;
    uint8_t *buf = malloc(16 * c->cluster_size);
    uint64_t clock = 1;
    int fail = 1, r;

    if (!buf || h_live_init(&live, &g) < 0)
        goto out;
    r = h_mem_load(tmpl, path, &mem);
    if (r == 0)
        r = io_crash_open(mem, &crash);
    if (r == 0)
        r = io_faulty_open(crash, &faulty);
    /* An unarmed fault injector as the image's own handle: closing the
     * image leaves the armed one open for its counters. */
    if (r == 0)
        r = io_faulty_open(faulty, &shim);
    if (r < 0) {
        fprintf(stderr, "%s: setup failed: %s\n", tag, strerror(-r));
        goto out;
    }
    if (f->kind >= 0)
        io_faulty_arm(faulty, (enum io_fault_kind)f->kind, f->nth, f->err, f->flags);

    fail = 0;
    for (size_t i = 0; i < nsteps && !fail; i++) {
        struct h_op *op = &ops[ndone++];
        uint64_t before = io_faulty_injected(faulty);
        if (op->kind == H_WRITE || op->kind == H_CWRITE)
            h_fill(buf, op->value, op->off / H_SECTOR, op->len / H_SECTOR);
        op->seq_start = clock++;
        switch (op->kind) {
        case H_OPEN: {
            struct topcow_open_opts oo = TOPCOW_OPEN_OPTS_INIT;
            oo.format = "qcow2";
            oo.l2_cache_size = c->l2_cache;
            if (c->luks) {
                oo.secret = FAULT_SECRET;
                oo.secret_len = strlen(FAULT_SECRET);
            }
            err_begin("open"); /* what topcow_image_open does */
            r = image_open_io(&img, shim, path, &oo);
            shim = NULL;
            break;
        }
        case H_PREALLOC:
            err_begin("create"); /* the preallocation step of topcow_image_create */
            r = qcow2_preallocate(qcow2_state(img), c->prealloc, 0);
            break;
        case H_WRITE:
            r = topcow_image_pwrite(img, buf, op->len, op->off, op->flags);
            break;
        case H_CWRITE:
            r = topcow_image_pwrite_compressed(img, buf, op->len, op->off);
            break;
        case H_ZERO:
            r = topcow_image_write_zeroes(img, op->off, op->len, op->flags);
            break;
        case H_DISCARD:
            r = topcow_image_discard(img, op->off, op->len);
            break;
        case H_FLUSH:
            r = topcow_image_flush(img);
            break;
        case H_READ:
            r = topcow_image_pread(img, buf, op->len, op->off);
            break;
        default:
            r = topcow_image_close(img);
            img = NULL;
            break;
        }
        op->seq_end = clock++;
        op->result = r;
        op->done = true;
        uint64_t hits = io_faulty_injected(faulty) - before;
        const char *msg = topcow_last_error();
        if (verbose)
            h_print_op("  ", op);
        if (hits > 0 && r == 0 && f->kind == IO_FAULT_DISCARD) {
            /* Hole punching is advisory: the engine may carry on; the image
             * must still check clean and hold every flushed write. */
        } else if (hits > 0 && r != f->err) {
            fprintf(stderr, "%s: %s hit %" PRIu64 " injected %s fault(s) but returned %d (%s)\n",
                    tag, h_kind_name(op->kind), hits, errno_name(f->err), r,
                    r ? strerror(-r) : "success");
            fail = 1;
        } else if (hits > 0) {
            const char *ctx = step_context(op->kind);
            size_t cl = ctx ? strlen(ctx) : 0;
            if ((ctx && (strncmp(msg, ctx, cl) != 0 || strncmp(msg + cl, ": ", 2) != 0)) ||
                !strstr(msg, path)) {
                fprintf(stderr,
                        "%s: %s failed as it should, but the message does not name "
                        "the %s%s: \"%s\"\n",
                        tag, h_kind_name(op->kind), ctx ? "operation (" : "file", ctx ? ctx : "",
                        msg);
                fail = 1;
            } else if (verbose) {
                fprintf(stderr, "  -> \"%s\"\n", msg);
            }
        } else if (r < 0) {
            fprintf(stderr, "%s: %s failed although no fault hit it: %s\n", tag,
                    h_kind_name(op->kind), msg);
            fail = 1;
        }
        if (op->kind == H_READ && r == 0 && !h_live_check(&live, buf, op->off, op->len, tag))
            fail = 1;
        if (r == 0)
            h_live_apply(&live, op);
        else
            h_live_fail(&live, op);
        if (op->kind == H_OPEN && r < 0)
            break;
    }
    if (img) { /* a failure stopped the workload early */
        topcow_image_close(img);
        img = NULL;
    }
    for (int k = 0; k < IO_FAULT_KINDS; k++)
        calls[k] = io_faulty_calls(faulty, (enum io_fault_kind)k);
    if (f->kind >= 0 && io_faulty_injected(faulty) == 0) {
        fprintf(stderr, "%s: the fault never fired\n", tag);
        fail = 1;
    }

    /* Power cut: what was not flushed may be lost, kept or scrambled. */
    static const struct io_crash_model models[] = {{0, 0, 0}, {100, 0, 0}, IO_CRASH_MODEL_DEFAULT};
    uint64_t which = f->kind < 0 ? 0 : f->nth + (uint64_t)f->kind;
    r = io_crash_simulate(crash, which * 7919 + 17, &models[which % 3], NULL);
    if (r == 0)
        r = h_mem_save(mem, path);
    if (r < 0) {
        fprintf(stderr, "%s: saving the disk failed: %s\n", tag, strerror(-r));
        fail = 1;
        goto out;
    }
    size_t nops = ndone;
    struct h_op *opl = ops;
    if (h_allowed_build(&allowed, &g, &opl, &nops, 1) < 0) {
        fail = 1;
        goto out;
    }
    struct h_verify v = {.path = path,
                         .tag = tag,
                         .allowed = &allowed,
                         .ops = &opl,
                         .nops = &nops,
                         .nthreads = 1,
                         .run_qemu = use_qemu,
                         .post_write = f->kind < 0 || f->nth % 4 == 1,
                         .seed = f->nth,
                         .verbose = verbose};
    fail |= h_verify_image(&v);

out:
    if (fail) {
        /* The full trace for the first few failures; replays give the rest. */
        if (!verbose && ++traces_printed <= 5) {
            fprintf(stderr, "%s: operations:\n", tag);
            for (size_t i = 0; i < ndone; i++)
                h_print_op("    ", &ops[i]);
        }
        if (f->kind >= 0)
            print_replay(c, f);
        /* Keep the disk: later runs reuse the path. */
        char keep[900];
        snprintf(keep, sizeof keep, "%s.%s-%" PRIu64 "-%s%s.failed", path,
                 f->kind < 0 ? "clean" : io_fault_kind_name((enum io_fault_kind)f->kind), f->nth,
                 errno_name(f->err), (f->flags & IO_FAULT_PERSIST) ? "-persist" : "");
        if (rename(path, keep) == 0)
            fprintf(stderr, "%s: disk kept as %s\n", tag, keep);
    }
    topcow_image_close(img);
    io_close(shim);
    io_close(faulty);
    io_close(crash);
    io_close(mem);
    h_allowed_free(&allowed);
    h_live_free(&live);
    free(buf);
    return fail;
}

static int
make_template(const struct fcfg *c, char *tmpl, size_t n)
{
    char bname[64] = "";
    if (c->backing_fmt) {
        char bpath[700];
        snprintf(bname, sizeof bname, "%s.base.%s", c->name, c->backing_fmt);
        snprintf(bpath, sizeof bpath, "%s/%s", tmpdir, bname);
        if (h_make_backing(bpath, c->backing_fmt, c->backing_size) < 0) {
            fprintf(stderr, "%s: cannot make the backing file: %s\n", c->name, topcow_last_error());
            return -1;
        }
    }
    snprintf(tmpl, n, "%s/%s.template.qcow2", tmpdir, c->name);
    struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
    co.size = c->size;
    co.compat = c->compat;
    co.cluster_size = c->cluster_size;
    co.refcount_bits = c->refcount_bits;
    co.lazy_refcounts = c->lazy;
    co.extended_l2 = c->ext_l2;
    co.backing_file = c->backing_fmt ? bname : NULL;
    co.backing_format = c->backing_fmt;
    if (c->luks) {
        co.encrypt_format = "luks";
        co.encrypt_secret = FAULT_SECRET;
        co.encrypt_secret_len = strlen(FAULT_SECRET);
        co.encrypt_iter_time_ms = 1;
    }
    if (topcow_image_create(tmpl, &co) < 0) {
        fprintf(stderr, "%s: cannot create the image: %s\n", c->name, topcow_last_error());
        return -1;
    }
    return 0;
}

/* All fault runs of one configuration (or the one selected). */
static int
run_config(const struct fcfg *c, int only_kind, uint64_t only_nth, int only_err, int only_persist,
           unsigned *runs)
{
    char tmpl[700], path[700];
    h_secret = c->luks ? FAULT_SECRET : NULL; /* for the verification's opens */
    if (make_template(c, tmpl, sizeof tmpl) < 0)
        return 1;
    snprintf(path, sizeof path, "%s/%s.qcow2", tmpdir, c->name);

    uint64_t total[IO_FAULT_KINDS], calls[IO_FAULT_KINDS];
    struct fault clean = {.kind = -1};
    int failed = run_case(c, tmpl, path, &clean, total);
    ++*runs;
    if (failed) {
        fprintf(stderr, "%s: the clean run failed; no faults injected\n", c->name);
        return 1;
    }
    static const struct {
        int err;
        unsigned flags;
    } modes[] = {{-EIO, 0}, {-ENOSPC, 0}, {-EIO, IO_FAULT_PERSIST}};
    for (int k = 0; k < IO_FAULT_KINDS; k++) {
        if (only_kind >= 0 && k != only_kind)
            continue;
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            if (only_err && modes[m].err != only_err)
                continue;
            if (only_persist >= 0 && !!(modes[m].flags & IO_FAULT_PERSIST) != only_persist)
                continue;
            for (uint64_t nth = 1; nth <= total[k]; nth++) {
                if (only_nth && nth != only_nth)
                    continue;
                struct fault f = {k, nth, modes[m].err, modes[m].flags};
                failed += run_case(c, tmpl, path, &f, calls);
                ++*runs;
            }
        }
    }
    printf("%s: calls read=%" PRIu64 " write=%" PRIu64 " flush=%" PRIu64 " truncate=%" PRIu64
           " zero=%" PRIu64 "; %d failed\n",
           c->name, total[IO_FAULT_READ], total[IO_FAULT_WRITE], total[IO_FAULT_FLUSH],
           total[IO_FAULT_TRUNCATE], total[IO_FAULT_ZERO] + total[IO_FAULT_DISCARD], failed);
    return failed;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: %s [--config NAME] [--kind read|write|flush|truncate|zero] [--nth N] "
            "[--errno EIO|ENOSPC] [--persist|--once] [--no-qemu] [-v]\n",
            argv0);
    exit(2);
}

static void
remove_tmpdir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

int
main(int argc, char **argv)
{
    const char *only_config = NULL;
    int only_kind = -1, only_err = 0, only_persist = -1;
    uint64_t only_nth = 0;
    argv0 = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--config") == 0 && next) {
            only_config = next;
            i++;
        } else if (strcmp(a, "--kind") == 0 && next) {
            for (int k = 0; k < IO_FAULT_KINDS; k++)
                if (strcmp(next, io_fault_kind_name((enum io_fault_kind)k)) == 0)
                    only_kind = k;
            if (only_kind < 0)
                usage();
            i++;
        } else if (strcmp(a, "--nth") == 0 && next) {
            only_nth = strtoull(next, NULL, 0);
            i++;
        } else if (strcmp(a, "--errno") == 0 && next) {
            only_err = strcmp(next, "ENOSPC") == 0 ? -ENOSPC : -EIO;
            i++;
        } else if (strcmp(a, "--persist") == 0) {
            only_persist = 1;
        } else if (strcmp(a, "--once") == 0) {
            only_persist = 0;
        } else if (strcmp(a, "--no-qemu") == 0) {
            use_qemu = false;
        } else if (strcmp(a, "-v") == 0) {
            verbose = true;
        } else {
            usage();
        }
    }
    if (use_qemu && !h_have_qemu_img()) {
        fprintf(stderr, "SKIP: qemu-img not installed\n");
        return 77;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/topcow-faults.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    int failed = 0;
    unsigned runs = 0;
    bool found = false;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        if (only_config && strcmp(only_config, configs[i].name) != 0)
            continue;
        found = true;
        failed += run_config(&configs[i], only_kind, only_nth, only_err, only_persist, &runs);
    }
    if (!found)
        usage();
    printf("qcow2-faults: %u runs, %d failed\n", runs, failed);
    if (failed)
        fprintf(stderr, "files kept in %s\n", tmpdir);
    else
        remove_tmpdir();
    return failed ? 1 : 0;
}
