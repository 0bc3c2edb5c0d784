// SPDX-License-Identifier: MIT
/* The copy engine of topcow commit and rebase (see chain-copy.h), and their
 * shared helpers.
 *
 * Readers claim units in address order from a ring of buffers.  Claiming
 * runs the job's plan callback under the engine lock: runs with nothing to
 * do are skipped there, so a unit starts at the first byte that needs work
 * and long untouched stretches cost a few block status queries, not a unit
 * each.  The reader then reads (and compares) outside the lock, and the
 * writer, the caller's thread, writes units strictly in claim order, so the
 * destination's new clusters are laid out in guest order. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain-copy.h"
#include "util.h"

#define ALIGN_DOWN_POW2(x, a) ((x) & ~((uint64_t)(a) - 1))
#define MIN_U64(a, b) ((a) < (b) ? (a) : (b))

/* How far one block status query reaches (bounds the cost of one query;
 * the answer is cached, so the units that follow need no query). */
#define LOOKAHEAD (1ull << 30)

enum unit_state { UNIT_FREE, UNIT_FILLING, UNIT_READY, UNIT_WRITING };

struct engine {
    const struct chain_job *job;
    pthread_mutex_t lock;      /* protects everything below */
    pthread_cond_t slot_free;  /* a unit became free, or the work ended */
    pthread_cond_t unit_ready; /* a unit became ready, or the work ended */
    struct chain_unit *units;  /* ring: claim number seq lives in units[seq % nunits] */
    unsigned nunits;
    unsigned readers_left;     /* readers that may still claim units */
    uint64_t cursor;           /* first byte not planned yet */
    bool planned;              /* the whole address space is planned */
    uint64_t next_seq;         /* number of the next claim */
    uint64_t commit_seq;       /* the unit to write next */
    uint64_t pc_start, pc_end; /* the last plan answer: [pc_start, pc_end) is pc_kind */
    unsigned pc_kind;
    int err;                   /* first failure; every thread stops */
};

/* Record the first failure and print it; wake everybody.  Needs e->lock. */
static void
fail_locked(struct engine *e, int r, const char *what, uint64_t off)
{
    if (!e->err) {
        e->err = r;
        error_msg("error while %s at byte %llu: %s", what, (unsigned long long)off,
                  r == -ENOMEM ? strerror(ENOMEM) : topcow_last_error());
    }
    pthread_cond_broadcast(&e->slot_free);
    pthread_cond_broadcast(&e->unit_ready);
}

/* The capacity after @cap when an array of @elem-byte elements is full, or
 * 0 on overflow. */
static size_t
next_cap(size_t cap, size_t elem)
{
    size_t ncap = cap ? 2 * cap : 32;
    return ncap > SIZE_MAX / elem ? 0 : ncap;
}

int
chain_add_write(struct chain_unit *u, uint64_t off, uint64_t len, const uint8_t *data)
{
    if (len == 0)
        return 0;
    if (u->nwrites > 0) { /* merge with the previous write when they touch */
        struct chain_write *w = &u->writes[u->nwrites - 1];
        if (w->off + w->len == off && !w->data == !data &&
            (!data || w->data + w->len == data)) {
            w->len += len;
            return 0;
        }
    }
    if (u->nwrites == u->writes_cap) {
        size_t cap = next_cap(u->writes_cap, sizeof *u->writes);
        struct chain_write *v = cap ? realloc(u->writes, cap * sizeof *v) : NULL;
        if (!v)
            return -ENOMEM;
        u->writes = v;
        u->writes_cap = cap;
    }
    u->writes[u->nwrites++] = (struct chain_write){ off, len, data };
    return 0;
}

int
chain_pread(struct chain_unit *u, struct topcow_image *img, void *buf, size_t len, uint64_t off,
            const char *what)
{
    int r = topcow_image_pread(img, buf, len, off);
    if (r == 0)
        return 0;
    u->fail_what = what;
    u->fail_off = off;
    /* Narrow it down; the last failure's message is the one printed. */
    const size_t piece = 65536;
    for (size_t done = 0; done < len; done += piece) {
        size_t n = len - done < piece ? len - done : piece;
        int r2 = topcow_image_pread(img, (uint8_t *)buf + done, n, off + done);
        if (r2 < 0) {
            u->fail_off = off + done;
            return r2;
        }
    }
    return r;
}

static int
add_seg(struct chain_unit *u, uint64_t off, uint64_t len, unsigned kind)
{
    if (u->nsegs > 0) {
        struct chain_seg *s = &u->segs[u->nsegs - 1];
        if (s->kind == kind && s->off + s->len == off) {
            s->len += len;
            return 0;
        }
    }
    if (u->nsegs == u->segs_cap) {
        size_t cap = next_cap(u->segs_cap, sizeof *u->segs);
        struct chain_seg *v = cap ? realloc(u->segs, cap * sizeof *v) : NULL;
        if (!v)
            return -ENOMEM;
        u->segs = v;
        u->segs_cap = cap;
    }
    u->segs[u->nsegs++] = (struct chain_seg){ off, len, kind };
    return 0;
}

/* The kind of the run at @pos and its length, at most @max.  Needs e->lock. */
static int
plan_at(struct engine *e, uint64_t pos, uint64_t max, unsigned *kind, uint64_t *n)
{
    const struct chain_job *job = e->job;
    if (!(e->pc_start <= pos && pos < e->pc_end)) {
        uint64_t len = MIN_U64(job->size - pos, LOOKAHEAD), got = 0;
        unsigned k = 0;
        int r = job->plan(job->opaque, pos, len, &k, &got);
        if (r < 0) {
            fail_locked(e, r, "reading block status", pos);
            return r;
        }
        e->pc_start = pos;
        e->pc_end = pos + (got && got <= len ? got : len);
        e->pc_kind = k;
    }
    *kind = e->pc_kind;
    *n = MIN_U64(e->pc_end - pos, max);
    return 0;
}

/* Claim the next unit that has work, planning it; waits for its ring slot.
 * NULL when everything is planned or a thread failed.  Needs e->lock. */
static struct chain_unit *
claim(struct engine *e)
{
    const uint64_t size = e->job->size;
    struct chain_unit *u;
    for (;;) {
        if (e->err || e->planned)
            return NULL;
        u = &e->units[e->next_seq % e->nunits];
        if (u->state == UNIT_FREE)
            break;
        pthread_cond_wait(&e->slot_free, &e->lock);
    }
    uint64_t pos = e->cursor, n = 0;
    unsigned kind = 0;
    while (pos < size) {
        if (plan_at(e, pos, size - pos, &kind, &n) < 0)
            return NULL;
        if (kind)
            break;
        pos += n;
    }
    if (pos >= size) {
        e->cursor = size;
        e->planned = true;
        pthread_cond_broadcast(&e->slot_free);
        pthread_cond_broadcast(&e->unit_ready);
        return NULL;
    }
    u->start = pos;
    u->end = MIN_U64(ALIGN_DOWN_POW2(pos, CHAIN_UNIT) + CHAIN_UNIT, size);
    u->nsegs = u->nwrites = 0;
    u->fail_what = NULL;
    while (pos < u->end) {
        if (plan_at(e, pos, u->end - pos, &kind, &n) < 0)
            return NULL;
        if (kind && add_seg(u, pos, n, kind) < 0) {
            fail_locked(e, -ENOMEM, "planning", pos);
            return NULL;
        }
        pos += n;
    }
    e->cursor = u->end;
    u->state = UNIT_FILLING;
    u->seq = e->next_seq++;
    return u;
}

static void *
reader_main(void *arg)
{
    struct engine *e = arg;
    const struct chain_job *job = e->job;
    struct chain_unit *u;
    pthread_mutex_lock(&e->lock);
    while ((u = claim(e))) {
        pthread_mutex_unlock(&e->lock);
        int r = job->work(job->opaque, u);
        pthread_mutex_lock(&e->lock);
        if (r < 0) {
            fail_locked(e, r, u->fail_what ? u->fail_what : "reading", u->fail_off);
            u->state = UNIT_FREE;
            break;
        }
        u->state = UNIT_READY;
        pthread_cond_broadcast(&e->unit_ready);
    }
    e->readers_left--;
    pthread_cond_broadcast(&e->unit_ready);
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

static int
write_unit(const struct chain_job *job, const struct chain_unit *u, uint64_t *failed_at)
{
    for (size_t i = 0; i < u->nwrites; i++) {
        const struct chain_write *w = &u->writes[i];
        int r = w->data ? topcow_image_pwrite(job->dst, w->data, (size_t)w->len, w->off, 0)
                        : topcow_image_write_zeroes(job->dst, w->off, w->len, job->zero_flags);
        if (r < 0) {
            *failed_at = w->off;
            return r;
        }
    }
    return 0;
}

/* Write units in claim order until all are written or a thread failed. */
static void
writer_main(struct engine *e)
{
    const struct chain_job *job = e->job;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        struct chain_unit *u = &e->units[e->commit_seq % e->nunits];
        bool ready = e->commit_seq < e->next_seq && u->state == UNIT_READY;
        if (e->err)
            break;
        if (!ready) {
            /* Nothing more can come once planning ended or the readers left. */
            if (e->commit_seq == e->next_seq && (e->planned || e->readers_left == 0))
                break;
            pthread_cond_wait(&e->unit_ready, &e->lock);
            continue;
        }
        u->state = UNIT_WRITING;
        pthread_mutex_unlock(&e->lock);
        uint64_t at = 0;
        int r = write_unit(job, u, &at);
        pthread_mutex_lock(&e->lock);
        u->state = UNIT_FREE;
        pthread_cond_broadcast(&e->slot_free);
        if (r < 0) {
            fail_locked(e, r, "writing", at);
            break;
        }
        e->commit_seq++;
        if (job->progress)
            job->progress(job->progress_opaque, u->end, job->size);
    }
    pthread_mutex_unlock(&e->lock);
}

int
chain_copy_run(const struct chain_job *job)
{
    const unsigned nreaders = job->workers ? job->workers : 1;
    struct engine e = { .job = job, .nunits = nreaders + 2 };
    pthread_mutex_init(&e.lock, NULL);
    pthread_cond_init(&e.slot_free, NULL);
    pthread_cond_init(&e.unit_ready, NULL);
    pthread_t *tids = calloc(nreaders, sizeof *tids);
    e.units = calloc(e.nunits, sizeof *e.units);
    int r = tids && e.units ? 0 : -ENOMEM;
    for (unsigned i = 0; i < e.nunits && r == 0; i++)
        for (unsigned b = 0; b < 2 && r == 0; b++)
            /* Page aligned, so O_DIRECT images (-t none) need no bounce buffers. */
            if (posix_memalign((void **)&e.units[i].buf[b], 4096, CHAIN_UNIT) != 0)
                r = -ENOMEM;
    unsigned nr = 0;
    pthread_mutex_lock(&e.lock);
    for (; r == 0 && nr < nreaders; nr++)
        if (pthread_create(&tids[nr], NULL, reader_main, &e) != 0)
            break;
    e.readers_left = nr;
    if (r == 0 && nr == 0)
        r = -EAGAIN;
    if (r < 0) {
        e.err = r;
        error_msg("could not start the copy: %s", strerror(-r));
    }
    pthread_mutex_unlock(&e.lock);
    if (r == 0)
        writer_main(&e);
    for (unsigned i = 0; i < nr; i++)
        pthread_join(tids[i], NULL);
    for (unsigned i = 0; e.units && i < e.nunits; i++) {
        free(e.units[i].buf[0]);
        free(e.units[i].buf[1]);
        free(e.units[i].segs);
        free(e.units[i].writes);
    }
    free(e.units);
    free(tids);
    pthread_cond_destroy(&e.unit_ready);
    pthread_cond_destroy(&e.slot_free);
    pthread_mutex_destroy(&e.lock);
    return e.err;
}

/* ---- helpers shared by commit and rebase -------------------------------- */

char *
chain_resolve(const char *overlay, const char *name)
{
    const char *slash = strrchr(overlay, '/');
    if (name[0] == '/' || !slash)
        return strdup(name);
    size_t dirlen = (size_t)(slash - overlay) + 1, n = strlen(name);
    char *p = malloc(dirlen + n + 1);
    if (p) {
        memcpy(p, overlay, dirlen);
        memcpy(p + dirlen, name, n + 1);
    }
    return p;
}

/* Whether realpath(@a) and realpath(@b) exist and are equal. */
static bool
same_file(const char *a, const char *b)
{
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool same = ra && rb && !strcmp(ra, rb);
    free(ra);
    free(rb);
    return same;
}

bool
chain_names(const char *overlay, const char *backing, const char *name)
{
    char *cand = chain_resolve(overlay, name);
    bool same = cand && same_file(cand, backing);
    free(cand);
    return same;
}

unsigned
chain_depth_of(struct topcow_image *top, const char *path)
{
    unsigned d = 0;
    for (struct topcow_image *cur = topcow_image_backing(top); cur;
         cur = topcow_image_backing(cur)) {
        d++;
        struct topcow_info info = { .struct_size = sizeof info };
        if (topcow_image_get_info(cur, &info) == 0 && same_file(path, info.filename))
            return d;
    }
    return 0;
}

void
chain_progress(void *opaque, uint64_t done, uint64_t total)
{
    double *shown = opaque;
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (pct - *shown >= 1.0) {
        *shown = pct;
        progress_print(pct);
    }
}
