// SPDX-License-Identifier: MIT
/* The crash and fault tests' common model and checks: sector patterns that
 * name the write they came from, the set of values each guest sector may
 * hold after a crash, and the verification of a crashed image with topcow's
 * check, qemu-img check and a full read of the disk. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash-harness.h"

uint64_t
h_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t
h_below(uint64_t *state, uint64_t n)
{
    return h_rand(state) % n;
}

static uint64_t
mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A sector of @value's pattern: the value, the sector index, then 48 bytes
 * of noise repeated to the end (so that compressed writes compress: a
 * pattern stays unique to its value and sector, not random). */
#define NOISE_WORDS 6
static void
fill_sector(uint8_t *p, uint64_t value, uint64_t idx)
{
    uint64_t w[H_SECTOR / 8];
    w[0] = value;
    w[1] = idx;
    uint64_t k = value * 0x9e3779b97f4a7c15ull ^ idx * 0xc2b2ae3d27d4eb4full;
    for (size_t i = 2; i < 2 + NOISE_WORDS; i++)
        w[i] = mix(k + i);
    for (size_t i = 2 + NOISE_WORDS; i < H_SECTOR / 8; i++)
        w[i] = w[2 + (i - 2) % NOISE_WORDS];
    memcpy(p, w, H_SECTOR);
}

void
h_fill(uint8_t *buf, uint64_t value, uint64_t first, uint64_t nsectors)
{
    for (uint64_t i = 0; i < nsectors; i++) {
        if (value == H_VAL_ZERO)
            memset(buf + i * H_SECTOR, 0, H_SECTOR);
        else
            fill_sector(buf + i * H_SECTOR, value, first + i);
    }
}

uint64_t
h_identify(const uint8_t *sector, uint64_t idx)
{
    uint64_t w[2];
    memcpy(w, sector, sizeof w);
    bool zero = w[0] == 0 && w[1] == 0;
    for (size_t i = 16; zero && i < H_SECTOR; i++)
        zero = sector[i] == 0;
    if (zero)
        return H_VAL_ZERO;
    if (w[0] == H_VAL_ZERO || w[0] == H_VAL_GARBAGE || w[1] != idx)
        return H_VAL_GARBAGE;
    uint8_t expect[H_SECTOR];
    fill_sector(expect, w[0], idx);
    return memcmp(expect, sector, H_SECTOR) == 0 ? w[0] : H_VAL_GARBAGE;
}

bool
h_backing_has_data(uint64_t idx)
{
    return mix((idx / 8) ^ 0xbacc1e5ull) % 3 != 0;
}

uint64_t
h_initial(const struct h_guest *g, uint64_t idx)
{
    if (idx * H_SECTOR < g->backing_size && h_backing_has_data(idx))
        return H_VAL_BACKING;
    return H_VAL_ZERO;
}

int
h_make_backing(const char *path, const char *fmt, uint64_t size)
{
    uint8_t *buf = malloc(H_SECTOR);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    if (strcmp(fmt, "raw") == 0) {
        uint8_t *all = malloc(size ? size : 1);
        int fd = all ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
        if (fd < 0) {
            r = all ? -errno : -ENOMEM;
            free(all);
            free(buf);
            return r;
        }
        for (uint64_t idx = 0; idx * H_SECTOR < size; idx++)
            h_fill(all + idx * H_SECTOR, h_backing_has_data(idx) ? H_VAL_BACKING : H_VAL_ZERO, idx,
                   1);
        if (pwrite(fd, all, size, 0) != (ssize_t)size)
            r = -EIO;
        close(fd);
        free(all);
    } else {
        struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
        co.size = size;
        co.cluster_size = 4096;
        r = topcow_image_create(path, &co);
        struct topcow_image *img = NULL;
        if (r == 0)
            r = topcow_image_open(&img, path, NULL);
        for (uint64_t idx = 0; idx * H_SECTOR < size && r == 0; idx++) {
            if (!h_backing_has_data(idx))
                continue;
            h_fill(buf, H_VAL_BACKING, idx, 1);
            r = topcow_image_pwrite(img, buf, H_SECTOR, idx * H_SECTOR, 0);
        }
        int rc = topcow_image_close(img);
        r = r < 0 ? r : rc;
    }
    free(buf);
    return r;
}

const char *
h_kind_name(enum h_kind k)
{
    static const char *const names[] = {"write", "zero",  "discard", "flush",       "read",
                                        "close", "open",  "preallocate", "compressed write"};
    return k <= H_CWRITE ? names[k] : "?";
}

void
h_print_op(const char *prefix, const struct h_op *op)
{
    char what[160] = "";
    size_t n = 0;
    if ((op->kind <= H_READ && op->kind != H_FLUSH) || op->kind == H_CWRITE)
        n += (size_t)snprintf(what + n, sizeof what - n, " off=0x%" PRIx64 " len=0x%" PRIx64,
                              op->off, op->len);
    if (op->kind == H_WRITE || op->kind == H_CWRITE)
        n += (size_t)snprintf(what + n, sizeof what - n, " value=#%" PRIu64, op->value);
    if (op->flags & TOPCOW_WRITE_FUA)
        n += (size_t)snprintf(what + n, sizeof what - n, " fua");
    if (op->flags & TOPCOW_ZERO_MAY_UNMAP)
        snprintf(what + n, sizeof what - n, " may-unmap");
    const char *res = !op->done ? "not returned" : op->result == 0 ? "ok" : strerror(-op->result);
    fprintf(stderr, "%sthread %u %s%s [seq %" PRIu64 "..%" PRIu64 "] -> %s\n", prefix, op->thread,
            h_kind_name(op->kind), what, op->seq_start, op->seq_end, res);
}

void
h_op_range(const struct h_guest *g, const struct h_op *op, uint64_t *first, uint64_t *count)
{
    *first = *count = 0;
    switch (op->kind) {
    case H_WRITE:
    case H_CWRITE:
    case H_ZERO:
        *first = op->off / H_SECTOR;
        *count = op->len / H_SECTOR;
        return;
    case H_DISCARD: {
        /* Whole clusters only; the end of the disk counts as a boundary.
         * v2 over a backing file ignores discards (QEMU 7.2). */
        if (!g->v3 && g->backing_size)
            return;
        uint64_t cs = g->cluster_size, end = op->off + op->len;
        uint64_t a = (op->off + cs - 1) / cs * cs;
        uint64_t b = end == g->size ? (end + cs - 1) / cs * cs : end / cs * cs;
        b = b < g->size ? b : g->size;
        if (a < b) {
            *first = a / H_SECTOR;
            *count = (b - a) / H_SECTOR;
        }
        return;
    }
    default:
        return;
    }
}

uint64_t
h_op_value(const struct h_guest *g, const struct h_op *op, uint64_t idx)
{
    switch (op->kind) {
    case H_WRITE:
    case H_CWRITE:
        return op->value;
    case H_DISCARD:
        /* v3: zero clusters; v2 (only without a backing file): unallocated,
         * which reads as zeros. */
        (void)g;
        (void)idx;
        return H_VAL_ZERO;
    default:
        return H_VAL_ZERO;
    }
}

int
h_live_init(struct h_live *m, const struct h_guest *g)
{
    m->g = g;
    m->nsectors = g->size / H_SECTOR;
    m->cur = malloc(m->nsectors * sizeof *m->cur);
    m->alt = malloc(m->nsectors * sizeof *m->alt);
    if (!m->cur || !m->alt) {
        h_live_free(m);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < m->nsectors; i++) {
        m->cur[i] = h_initial(g, i);
        m->alt[i] = H_VAL_NONE;
    }
    return 0;
}

void
h_live_free(struct h_live *m)
{
    free(m->cur);
    free(m->alt);
    m->cur = NULL;
    m->alt = NULL;
}

void
h_live_apply(struct h_live *m, const struct h_op *op)
{
    uint64_t first, count;
    h_op_range(m->g, op, &first, &count);
    for (uint64_t i = first; i < first + count; i++) {
        m->cur[i] = h_op_value(m->g, op, i);
        m->alt[i] = H_VAL_NONE;
    }
}

void
h_live_fail(struct h_live *m, const struct h_op *op)
{
    uint64_t first, count;
    h_op_range(m->g, op, &first, &count);
    for (uint64_t i = first; i < first + count; i++) {
        uint64_t v = h_op_value(m->g, op, i);
        if (v == m->cur[i] || v == m->alt[i])
            continue;
        m->alt[i] = m->alt[i] == H_VAL_NONE ? v : H_VAL_ANY;
    }
}

static void
describe_value(char *out, size_t n, uint64_t v)
{
    if (v == H_VAL_ZERO)
        snprintf(out, n, "zeros");
    else if (v == H_VAL_BACKING)
        snprintf(out, n, "backing data");
    else if (v == H_VAL_GARBAGE)
        snprintf(out, n, "garbage (no known pattern)");
    else if (v == H_VAL_ANY)
        snprintf(out, n, "any pattern");
    else
        snprintf(out, n, "write #%" PRIu64, v);
}

bool
h_live_check(const struct h_live *m, const uint8_t *buf, uint64_t off, uint64_t len,
             const char *who)
{
    for (uint64_t i = 0; i < len / H_SECTOR; i++) {
        uint64_t idx = off / H_SECTOR + i;
        uint64_t v = h_identify(buf + i * H_SECTOR, idx), alt = m->alt[idx];
        if (v == m->cur[idx] || (alt != H_VAL_NONE && v == alt) ||
            (alt == H_VAL_ANY && v != H_VAL_GARBAGE))
            continue;
        char got[64], want[64], also[80] = "";
        describe_value(got, sizeof got, v);
        describe_value(want, sizeof want, m->cur[idx]);
        if (alt != H_VAL_NONE) {
            strcpy(also, " or (after a failed operation) ");
            describe_value(also + strlen(also), sizeof also - strlen(also), alt);
        }
        fprintf(stderr,
                "%s: live read: sector %" PRIu64 " (guest 0x%" PRIx64 ") reads %s, "
                "expected %s%s\n",
                who, idx, idx * H_SECTOR, got, want, also);
        return false;
    }
    return true;
}

static int
allowed_push(struct h_allowed *a, uint64_t idx, uint64_t v)
{
    if (v == a->base[idx])
        return 0;
    for (uint32_t k = 0; k < a->n[idx]; k++)
        if (a->vals[idx][k] == v)
            return 0;
    uint64_t *p = realloc(a->vals[idx], (a->n[idx] + 1) * sizeof *p);
    if (!p)
        return -ENOMEM;
    a->vals[idx] = p;
    p[a->n[idx]++] = v;
    return 0;
}

int
h_allowed_build(struct h_allowed *a, const struct h_guest *g, struct h_op *const *ops,
                const size_t *nops, unsigned nthreads)
{
    a->g = g;
    a->nsectors = g->size / H_SECTOR;
    a->base = malloc(a->nsectors * sizeof *a->base);
    a->n = calloc(a->nsectors, sizeof *a->n);
    a->vals = calloc(a->nsectors, sizeof *a->vals);
    if (!a->base || !a->n || !a->vals)
        return -ENOMEM;
    for (uint64_t i = 0; i < a->nsectors; i++)
        a->base[i] = h_initial(g, i);

    /* The latest start of a flush (or close) that succeeded. */
    uint64_t flushed = 0;
    for (unsigned t = 0; t < nthreads; t++)
        for (size_t i = 0; i < nops[t]; i++) {
            const struct h_op *op = &ops[t][i];
            if ((op->kind == H_FLUSH || op->kind == H_CLOSE) && op->done && op->result == 0 &&
                op->seq_start > flushed)
                flushed = op->seq_start;
        }

    for (unsigned t = 0; t < nthreads; t++)
        for (size_t i = 0; i < nops[t]; i++) {
            const struct h_op *op = &ops[t][i];
            uint64_t first, count;
            h_op_range(g, op, &first, &count);
            bool sure = op->done && op->result == 0 &&
                        (op->seq_end < flushed || (op->flags & TOPCOW_WRITE_FUA));
            for (uint64_t x = first; x < first + count; x++) {
                uint64_t v = h_op_value(g, op, x);
                if (sure) {
                    a->base[x] = v;
                    a->n[x] = 0;
                } else if (allowed_push(a, x, v) < 0) {
                    return -ENOMEM;
                }
            }
        }
    return 0;
}

void
h_allowed_free(struct h_allowed *a)
{
    if (a->vals)
        for (uint64_t i = 0; i < a->nsectors; i++)
            free(a->vals[i]);
    free(a->vals);
    free(a->base);
    free(a->n);
    a->vals = NULL;
    a->base = NULL;
    a->n = NULL;
}

/* ---- files ------------------------------------------------------------------ */

#define COPY_CHUNK (1u << 20)

int
h_mem_load(const char *path, const char *name, struct io **out)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    uint8_t *buf = malloc(COPY_CHUNK);
    struct io *mem = NULL;
    int r = buf ? io_mem_open(name, &mem) : -ENOMEM;
    for (uint64_t off = 0; r == 0;) {
        ssize_t n = pread(fd, buf, COPY_CHUNK, (off_t)off);
        if (n < 0)
            r = -errno;
        if (n <= 0)
            break;
        r = io_pwrite(mem, buf, (size_t)n, off);
        off += (uint64_t)n;
    }
    close(fd);
    free(buf);
    if (r < 0) {
        io_close(mem);
        return r;
    }
    *out = mem;
    return 0;
}

int
h_mem_copy(struct io *src, const char *name, struct io **out)
{
    uint64_t size;
    int r = io_get_size(src, &size);
    if (r < 0)
        return r;
    uint8_t *buf = malloc(COPY_CHUNK);
    struct io *mem = NULL;
    r = buf ? io_mem_open(name, &mem) : -ENOMEM;
    for (uint64_t off = 0; off < size && r == 0;) {
        size_t n = (size_t)(size - off < COPY_CHUNK ? size - off : COPY_CHUNK);
        r = io_pread(src, buf, n, off);
        if (r == 0)
            r = io_pwrite(mem, buf, n, off);
        off += n;
    }
    free(buf);
    if (r < 0) {
        io_close(mem);
        return r;
    }
    *out = mem;
    return 0;
}

int
h_mem_save(struct io *mem, const char *path)
{
    uint64_t size;
    int r = io_get_size(mem, &size);
    if (r < 0)
        return r;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -errno;
    uint8_t *buf = malloc(COPY_CHUNK);
    if (!buf)
        r = -ENOMEM;
    for (uint64_t off = 0; off < size && r == 0;) {
        size_t n = (size_t)(size - off < COPY_CHUNK ? size - off : COPY_CHUNK);
        r = io_pread(mem, buf, n, off);
        if (r == 0 && pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
            r = -EIO;
        off += n;
    }
    if (close(fd) < 0 && r == 0)
        r = -errno;
    free(buf);
    return r;
}

bool
h_have_qemu_img(void)
{
    return system("qemu-img --version >/dev/null 2>&1") == 0;
}

const char *h_secret;

int
h_qemu_check(const char *path, char *out, size_t outlen)
{
    char obj[256], spec[1200];
    if (h_secret) {
        snprintf(obj, sizeof obj, "secret,id=hsec,data=%s", h_secret);
        snprintf(spec, sizeof spec, "driver=qcow2,file.filename=%s,encrypt.key-secret=hsec", path);
    }
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        if (h_secret)
            execlp("qemu-img", "qemu-img", "check", "--object", obj, "--image-opts", spec,
                   (char *)NULL);
        else
            execlp("qemu-img", "qemu-img", "check", "-f", "qcow2", path, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    size_t used = 0;
    char sink[4096];
    for (;;) {
        ssize_t n = used + 1 < outlen ? read(pfd[0], out + used, outlen - 1 - used)
                                      : read(pfd[0], sink, sizeof sink);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (used + 1 < outlen)
            used += (size_t)n;
    }
    close(pfd[0]);
    if (outlen)
        out[used] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- verification ------------------------------------------------------------ */

/* Collects topcow check's report lines for a failure message. */
struct lines {
    char buf[4096];
    size_t used;
    unsigned count;
};

static void
collect(void *opaque, const char *line)
{
    struct lines *l = opaque;
    l->count++;
    if (l->count > 20 || l->used + strlen(line) + 2 >= sizeof l->buf)
        return;
    l->used += (size_t)snprintf(l->buf + l->used, sizeof l->buf - l->used, "    %s\n", line);
}

static int
read_header_features(const char *path, uint64_t *incompat)
{
    uint8_t h[80];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, h, sizeof h, 0);
    close(fd);
    if (n != (ssize_t)sizeof h)
        return -EIO;
    uint32_t version = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    *incompat = 0;
    if (version >= 3)
        for (int i = 0; i < 8; i++)
            *incompat = *incompat << 8 | h[72 + i];
    return 0;
}

/* Run topcow's check on an open image; 0 if it meets the bar. */
static int
topcow_check(const struct h_verify *v, struct topcow_image *img, bool allow_leaks, const char *when)
{
    struct topcow_check_result res = {.struct_size = sizeof res};
    struct lines l = {.used = 0};
    int r = topcow_image_check(img, 0, &res, collect, &l);
    if (r < 0) {
        fprintf(stderr, "%s: topcow check (%s) failed to run: %s\n", v->tag, when,
                topcow_last_error());
        return 1;
    }
    if (res.corruptions || res.check_errors || (!allow_leaks && res.leaks)) {
        fprintf(stderr,
                "%s: topcow check (%s): %" PRIu64 " corruptions, %" PRIu64 " leaks, %" PRIu64
                " check errors%s\n%s",
                v->tag, when, res.corruptions, res.leaks, res.check_errors,
                allow_leaks ? "" : " (must be clean)", l.buf);
        return 1;
    }
    if (v->verbose)
        fprintf(stderr, "%s: topcow check (%s): clean, %" PRIu64 " leaks, %" PRIu64
                        " compressed clusters\n",
                v->tag, when, res.leaks, res.compressed_clusters);
    if (v->compressed)
        *v->compressed += res.compressed_clusters;
    return 0;
}

static struct topcow_image *
open_image(const struct h_verify *v, unsigned flags, const char *why)
{
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.format = "qcow2";
    o.flags = flags;
    if (h_secret) {
        o.secret = h_secret;
        o.secret_len = strlen(h_secret);
    }
    struct topcow_image *img = NULL;
    int r = topcow_image_open(&img, v->path, &o);
    if (r < 0) {
        fprintf(stderr, "%s: %s: cannot open the crashed image: %s\n", v->tag, why,
                topcow_last_error());
        return NULL;
    }
    return img;
}

static void
explain_sector(const struct h_verify *v, uint64_t idx, uint64_t got)
{
    const struct h_allowed *a = v->allowed;
    char g[64], b[64];
    describe_value(g, sizeof g, got);
    describe_value(b, sizeof b, a->base[idx]);
    fprintf(stderr,
            "%s: sector %" PRIu64 " (guest 0x%" PRIx64 ") reads %s; allowed: %s "
            "(as of the last flush)",
            v->tag, idx, idx * H_SECTOR, g, b);
    for (uint32_t k = 0; k < a->n[idx]; k++) {
        describe_value(g, sizeof g, a->vals[idx][k]);
        fprintf(stderr, ", %s", g);
    }
    fprintf(stderr, "\n%s: operations on that sector:\n", v->tag);
    for (unsigned t = 0; v->ops && t < v->nthreads; t++)
        for (size_t i = 0; i < v->nops[t]; i++) {
            uint64_t first, count;
            h_op_range(a->g, &v->ops[t][i], &first, &count);
            if (idx >= first && idx < first + count)
                h_print_op("      ", &v->ops[t][i]);
        }
}

static int
verify_data(const struct h_verify *v)
{
    struct topcow_image *img = open_image(v, TOPCOW_OPEN_RDONLY, "data check");
    if (!img)
        return 1;
    const struct h_allowed *a = v->allowed;
    uint8_t *buf = malloc(COPY_CHUNK);
    int bad = 0, r = 0;
    for (uint64_t off = 0; buf && off < a->g->size && bad < 4; off += COPY_CHUNK) {
        uint64_t n = a->g->size - off < COPY_CHUNK ? a->g->size - off : COPY_CHUNK;
        r = topcow_image_pread(img, buf, n, off);
        if (r < 0) {
            fprintf(stderr, "%s: read of guest 0x%" PRIx64 " failed: %s\n", v->tag, off,
                    topcow_last_error());
            bad++;
            break;
        }
        for (uint64_t i = 0; i < n / H_SECTOR && bad < 4; i++) {
            uint64_t idx = off / H_SECTOR + i;
            uint64_t got = h_identify(buf + i * H_SECTOR, idx);
            bool ok = got == a->base[idx];
            for (uint32_t k = 0; !ok && k < a->n[idx]; k++)
                ok = got == a->vals[idx][k];
            if (!ok) {
                explain_sector(v, idx, got);
                bad++;
            }
        }
    }
    free(buf);
    topcow_image_close(img);
    return bad ? 1 : 0;
}

/* Use the recovered image: a few writes, flushes, a clean close, and the
 * check must still pass (leaked clusters must not be handed out twice).
 * Durability is not at stake here, so flushes skip the fsyncs (UNSAFE). */
static int
post_crash_writes(const struct h_verify *v)
{
    struct topcow_image *img = open_image(v, TOPCOW_OPEN_UNSAFE, "post-crash writes");
    if (!img)
        return 1;
    const struct h_guest *g = v->allowed->g;
    uint64_t rng = v->seed ^ 0x9057c8a5ull, nsec = g->size / H_SECTOR;
    uint8_t *buf = malloc(64 * H_SECTOR), *back = malloc(64 * H_SECTOR);
    int fail = !buf || !back;
    for (unsigned k = 0; k < 6 && !fail; k++) {
        uint64_t idx = h_below(&rng, nsec), n = 1 + h_below(&rng, 64);
        n = n < nsec - idx ? n : nsec - idx;
        uint64_t value = (1ull << 40) + k;
        h_fill(buf, value, idx, n);
        int r = topcow_image_pwrite(img, buf, n * H_SECTOR, idx * H_SECTOR, 0);
        if (r == 0 && k % 3 == 2)
            r = topcow_image_flush(img);
        if (r == 0)
            r = topcow_image_pread(img, back, n * H_SECTOR, idx * H_SECTOR);
        if (r < 0 || memcmp(buf, back, n * H_SECTOR) != 0) {
            fprintf(stderr,
                    "%s: post-crash write of %" PRIu64 " sectors at sector %" PRIu64 " %s: %s\n",
                    v->tag, n, idx, r < 0 ? "failed" : "reads back wrong",
                    r < 0 ? topcow_last_error() : "");
            fail = 1;
        }
    }
    free(buf);
    free(back);
    if (topcow_image_close(img) < 0 && !fail) {
        fprintf(stderr, "%s: close after post-crash writes failed: %s\n", v->tag,
                topcow_last_error());
        fail = 1;
    }
    if (fail)
        return 1;
    img = open_image(v, TOPCOW_OPEN_RDONLY, "check after post-crash writes");
    if (!img)
        return 1;
    fail = topcow_check(v, img, true, "after post-crash writes");
    topcow_image_close(img);
    return fail;
}

int
h_verify_image(const struct h_verify *v)
{
    uint64_t incompat = 0;
    int r = read_header_features(v->path, &incompat);
    if (r < 0) {
        fprintf(stderr, "%s: cannot read the crashed image's header: %s\n", v->tag, strerror(-r));
        return 1;
    }
    if (incompat & 2) {
        fprintf(stderr,
                "%s: the engine marked the image corrupt (incompatible features "
                "0x%" PRIx64 ")\n",
                v->tag, incompat);
        return 1;
    }
    bool dirty = incompat & 1;
    /* A dirty (lazy refcounts) image is repaired by a read-write open and
     * must then be exact; otherwise check the crashed bytes as they are. */
    struct topcow_image *img =
        open_image(v, dirty ? 0 : TOPCOW_OPEN_RDONLY,
                   dirty ? "read-write open of a dirty image" : "read-only open");
    if (!img)
        return 1;
    int fail = topcow_check(v, img, !dirty, dirty ? "after the dirty-image repair" : "crashed");
    struct h_verify later = *v; /* count the compressed clusters once */
    later.compressed = NULL;
    v = &later;
    r = topcow_image_close(img);
    if (r < 0) {
        fprintf(stderr, "%s: close after check failed: %s\n", v->tag, topcow_last_error());
        fail = 1;
    }
    if (fail)
        return 1;

    if (v->run_qemu) {
        char out[2048];
        int st = h_qemu_check(v->path, out, sizeof out);
        if (st != 0 && st != 3) {
            fprintf(stderr, "%s: qemu-img check exited %d%s:\n%s", v->tag, st,
                    st == 2 ? " (corruptions)" : "", out);
            return 1;
        }
        if (v->verbose)
            fprintf(stderr, "%s: qemu-img check: exit %d\n", v->tag, st);
    }
    if (verify_data(v))
        return 1;
    if (v->post_write && post_crash_writes(v))
        return 1;
    return 0;
}
