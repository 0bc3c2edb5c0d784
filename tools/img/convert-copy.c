// SPDX-License-Identifier: MIT
/* The copy engine of topcow convert (see convert.h).
 *
 * The target's address space is cut into units of CONVERT_UNIT bytes (or
 * one cluster, when compressing to bigger clusters), each with its own
 * buffer.  Reader threads (-m of them) claim units in order,
 * ask the sources' block status, read the data extents straight into the
 * unit's buffer and find zero runs inside the data; the result is a list of
 * writes: data, with pwrite from that same buffer; zeros, with write_zeroes
 * unless the target already reads as zeros; nothing where a backing file is
 * to show through.  A writer thread (the caller's) writes ready units: in
 * order mode strictly by claim order, so the target's layout is the same for
 * every run; out of order (-W) the oldest ready unit first.
 *
 * One writer, because buffered writes to one file are serialized by the
 * kernel anyway: a dedicated writer goes from one unit to the next without
 * waking another thread, while the readers keep the other CPUs busy.  With
 * parallel_writes (O_DIRECT targets) several writers run.  A unit that ends
 * in a zero extent may swallow the following units of that extent while
 * nobody has claimed them, so long holes cost one request.
 *
 * Compressed output (-c): readers also compress, cluster by cluster, so the
 * compression runs on all of them in parallel, and the writer stores the
 * streams in unit order: the file gets them in guest order, as from a
 * sequential writer. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf-scan.h"
#include "convert.h"
#include "util.h"

#define ALIGN_DOWN_POW2(x, a) ((x) & ~((uint64_t)(a) - 1))
#define MIN_U64(a, b) ((a) < (b) ? (a) : (b))
#define MAX_U64(a, b) ((a) > (b) ? (a) : (b))

/* How far one look-ahead block status query reaches when a unit tries to
 * swallow the rest of a zero extent (bounds the cost of one query). */
#define LOOKAHEAD (1ull << 30)

enum op_kind {
    OP_DATA, /* bytes from a source (or, with -S 0, zeros in the buffer) */
    OP_ZERO, /* reads as zeros */
    OP_KEEP, /* unallocated in the source's top layer: the target's backing shows */
    OP_CDATA, /* compressed clusters, ready to be stored */
};

/* A run of target bytes of one kind. */
struct op {
    uint64_t off; /* target offset */
    uint64_t len;
    enum op_kind kind;
    size_t src;   /* OP_DATA in a plan: the source holding the bytes */
    struct topcow_compressed *c; /* OP_CDATA: owned by the op until written */
};

struct oplist {
    struct op *v;
    size_t n, cap;
};

enum unit_state {
    UNIT_FREE,
    UNIT_FILLING, /* a reader prepares it */
    UNIT_READY,   /* its writes are planned and its data read */
    UNIT_WRITING,
};

/* A unit of work, carried from the reader that prepares it to the writer. */
struct unit {
    enum unit_state state;
    uint64_t seq;         /* claim order */
    uint64_t start, end;  /* target range */
    uint8_t *buf;         /* e->unit bytes; buf[0] is target byte start */
    struct oplist writes; /* what goes to the target */
};

/* The last block status answer for one source, in source offsets: one
 * query usually covers many units, and on some file systems (tmpfs) every
 * SEEK_DATA/SEEK_HOLE costs a scan of the page cache. */
struct status_cache {
    uint64_t start, end;
    enum op_kind kind;
};

struct engine {
    const struct convert_job *job;
    pthread_mutex_t status_lock; /* protects status[] */
    struct status_cache *status; /* one per source */
    uint64_t unit;              /* bytes per unit: CONVERT_UNIT, or a cluster if bigger */
    pthread_mutex_t lock;       /* protects everything below */
    pthread_cond_t slot_free;   /* a unit became free, or the work ended */
    pthread_cond_t unit_ready;  /* a unit became ready, or the work ended */
    struct unit *units;         /* a ring: unit number seq lives in units[seq % nunits] */
    unsigned nunits;
    unsigned readers_left;      /* readers that may still claim units */
    uint64_t next_start;        /* first target byte nobody has claimed */
    uint64_t next_seq;          /* sequence number of the next claim */
    uint64_t commit_seq;        /* in order mode: the unit to write next */
    uint64_t done;              /* bytes written */
    int err;                    /* first failure; every thread stops */
    char *msg;                  /* its description (the caller's buffer) */
    size_t msglen;
};

struct reader {
    struct engine *e;
    struct oplist plan; /* what the sources hold in the unit at hand */
    pthread_t tid;
};

/* Record the first failure, describe it as "error while WHAT at byte OFF: why" (why:
 * the library's message, or strerror for failures of the tool itself) and
 * wake every waiter.  Returns @r. */
static int
fail(struct engine *e, int r, const char *what, uint64_t off)
{
    pthread_mutex_lock(&e->lock);
    if (!e->err) {
        e->err = r;
        snprintf(e->msg, e->msglen, "error while %s at byte %llu: %s", what,
                 (unsigned long long)off, r == -ENOMEM ? strerror(ENOMEM) : topcow_last_error());
    }
    pthread_cond_broadcast(&e->slot_free);
    pthread_cond_broadcast(&e->unit_ready);
    pthread_mutex_unlock(&e->lock);
    return r;
}

/* Append a run; with @merge, fold it into the previous one when they touch
 * and agree. */
static int
add_op(struct oplist *l, uint64_t off, uint64_t len, enum op_kind kind, size_t src, bool merge)
{
    if (len == 0)
        return 0;
    if (merge && l->n > 0) {
        struct op *last = &l->v[l->n - 1];
        if (last->kind == kind && last->src == src && last->off + last->len == off) {
            last->len += len;
            return 0;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct op *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (struct op){ off, len, kind, src, NULL };
    return 0;
}

static enum op_kind
classify(unsigned flags, bool top_only)
{
    if (flags & TOPCOW_EXTENT_ZERO)
        return OP_ZERO;
    if (flags & (TOPCOW_EXTENT_DATA | TOPCOW_EXTENT_ALLOCATED))
        return OP_DATA;
    /* Not defined by the top layer (only reported with TOPCOW_BS_TOP_ONLY). */
    return top_only ? OP_KEEP : OP_DATA;
}

/* The source covering target offset @off (sources are consecutive). */
static size_t
source_at(const struct convert_job *job, uint64_t off)
{
    size_t lo = 0, hi = job->nsrcs - 1;
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (job->srcs[mid].start <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Move the claim point; once everything is claimed, readers waiting for a
 * free slot have nothing left to wait for.  Needs e->lock. */
static void
set_next_start(struct engine *e, uint64_t next)
{
    e->next_start = next;
    if (next >= e->job->size)
        pthread_cond_broadcast(&e->slot_free);
}

/* Whether nobody has claimed anything past @end yet. */
static bool
last_claimed(struct engine *e, uint64_t end)
{
    pthread_mutex_lock(&e->lock);
    bool last = e->next_start == end;
    pthread_mutex_unlock(&e->lock);
    return last;
}

/* The unit [.., end) ends inside a zero (or keep) extent that continues to
 * @ext_end: take the following whole units of it too, if no other worker
 * has claimed them meanwhile.  Returns the unit's new end. */
static uint64_t
extend_unit(struct engine *e, uint64_t end, uint64_t ext_end)
{
    uint64_t want = ALIGN_DOWN_POW2(ext_end, e->unit);
    if (want <= end)
        return end;
    pthread_mutex_lock(&e->lock);
    if (e->next_start == end) {
        set_next_start(e, want);
        end = want;
    }
    pthread_mutex_unlock(&e->lock);
    return end;
}

/* One block status query of source @si for target range [pos, pos+len):
 * the kind of the run starting at pos and its length (<= len). */
static int
query(struct engine *e, size_t si, uint64_t pos, uint64_t len, enum op_kind *kind,
      uint64_t *n)
{
    const struct convert_job *job = e->job;
    const struct convert_source *s = &job->srcs[si];
    uint64_t spos = pos - s->start;
    if (spos >= s->size) { /* padding up to the 512-byte boundary */
        *kind = OP_ZERO;
        *n = MIN_U64(len, s->span - spos);
        return 0;
    }
    struct status_cache *c = &e->status[si];
    pthread_mutex_lock(&e->status_lock);
    bool hit = c->start <= spos && spos < c->end;
    if (hit) {
        *kind = c->kind;
        *n = MIN_U64(len, c->end - spos);
    }
    pthread_mutex_unlock(&e->status_lock);
    if (hit)
        return 0;
    /* Ask beyond the range at hand (bounded, like any one query), so that
     * the next units of a long extent are answered from the cache. */
    struct topcow_extent ext;
    int r = topcow_image_block_status(s->img, spos,
                                      MIN_U64(MAX_U64(len, LOOKAHEAD), s->size - spos),
                                      job->top_only ? TOPCOW_BS_TOP_ONLY : 0, &ext);
    if (r < 0)
        return fail(e, r, "reading block status", pos);
    *kind = classify(ext.flags, job->top_only);
    *n = MIN_U64(len, ext.length);
    pthread_mutex_lock(&e->status_lock);
    *c = (struct status_cache){ spos, spos + ext.length, *kind };
    pthread_mutex_unlock(&e->status_lock);
    return 0;
}

/* Fill rd->plan with the runs of the unit, possibly moving u->end on (see
 * extend_unit). */
static int
plan_unit(struct reader *rd, struct unit *u)
{
    struct engine *e = rd->e;
    const struct convert_job *job = e->job;
    size_t si = source_at(job, u->start);
    uint64_t pos = u->start, *end = &u->end;
    int r;
    rd->plan.n = 0;
    while (pos < *end) {
        while (pos >= job->srcs[si].start + job->srcs[si].span)
            si++;
        const struct convert_source *s = &job->srcs[si];
        uint64_t src_end = s->start + s->span;
        enum op_kind kind;
        uint64_t n;
        if ((r = query(e, si, pos, MIN_U64(*end, src_end) - pos, &kind, &n)) < 0)
            return r;
        /* A zero run reaching the unit's end: look how far it goes.  Not with
         * -S 0, which writes zeros from the buffer. */
        if (pos + n == *end && kind != OP_DATA && job->min_sparse && *end < src_end &&
            *end % e->unit == 0 && last_claimed(e, *end)) {
            enum op_kind k2;
            uint64_t n2;
            if ((r = query(e, si, *end, MIN_U64(src_end - *end, LOOKAHEAD), &k2, &n2)) < 0)
                return r;
            if (k2 == kind)
                *end = extend_unit(e, *end, *end + n2);
            n = *end - pos;
        }
        /* Data runs stay separate, so a read error names the failing extent. */
        if (add_op(&rd->plan, pos, n, kind, si, kind != OP_DATA) < 0)
            return fail(e, -ENOMEM, "planning", pos);
        pos += n;
    }
    return 0;
}

/* Read the unit's data runs into its buffer. */
static int
read_unit(struct reader *rd, struct unit *u)
{
    const struct convert_job *job = rd->e->job;
    for (size_t i = 0; i < rd->plan.n; i++) {
        const struct op *o = &rd->plan.v[i];
        if (o->kind != OP_DATA)
            continue;
        const struct convert_source *s = &job->srcs[o->src];
        uint64_t spos = o->off - s->start;
        /* The part past the source's end is padding. */
        uint64_t n = spos < s->size ? MIN_U64(o->len, s->size - spos) : 0;
        if (n > 0) {
            int r = topcow_image_pread(s->img, u->buf + (o->off - u->start), (size_t)n, spos);
            if (r < 0)
                return fail(rd->e, r, "reading", o->off);
        }
        memset(u->buf + (o->off - u->start) + n, 0, (size_t)(o->len - n));
    }
    return 0;
}

static int
emit(const struct convert_job *job, struct unit *u, uint64_t off, uint64_t len,
     enum op_kind kind)
{
    if (kind == OP_KEEP || (kind == OP_ZERO && job->zero_init))
        return 0;
    return add_op(&u->writes, off, len, kind, 0, true);
}

/* Zeros found in data read: written as zeros when the run is at least
 * @min long (and counted in the target's statistics), as data otherwise. */
static int
emit_found_zeros(const struct convert_job *job, struct unit *u, uint64_t off, uint64_t len,
                 uint64_t min)
{
    if (len < min)
        return emit(job, u, off, len, OP_DATA);
    topcow_image_stats_note(job->dst, TOPCOW_STATS_NOTE_ZEROS_DETECTED, (int64_t)len);
    return emit(job, u, off, len, OP_ZERO);
}

/* Split a data run into data and zero runs.  Zero detection looks at whole
 * granules of the target (the edges of the run count as granule edges); a
 * run of zero granules is treated as zeros when it is at least min_sparse
 * long, or spans the whole data run. */
static int
split_data(const struct convert_job *job, struct unit *u, const struct op *o)
{
    const uint64_t g = job->granule;
    const uint64_t min = MIN_U64(job->min_sparse, o->len);
    const uint8_t *p = u->buf + (o->off - u->start);
    uint64_t pos = o->off, end = o->off + o->len, zstart = 0;
    bool in_zero = false;
    int r = 0;
    while (pos < end && r == 0) {
        uint64_t ge = MIN_U64(ALIGN_DOWN_POW2(pos, g) + g, end);
        bool z = buf_is_zero(p + (pos - o->off), (size_t)(ge - pos));
        if (z && !in_zero) {
            zstart = pos;
            in_zero = true;
        } else if (!z) {
            if (in_zero)
                r = emit_found_zeros(job, u, zstart, pos - zstart, min);
            in_zero = false;
            if (r == 0)
                r = emit(job, u, pos, ge - pos, OP_DATA);
        }
        pos = ge;
    }
    if (r == 0 && in_zero)
        r = emit_found_zeros(job, u, zstart, end - zstart, min);
    return r;
}

/* Turn the plan (data read) into u->writes. */
static int
build_writes(struct reader *rd, struct unit *u)
{
    const struct convert_job *job = rd->e->job;
    u->writes.n = 0;
    for (size_t i = 0; i < rd->plan.n; i++) {
        const struct op *o = &rd->plan.v[i];
        int r = 0;
        switch (o->kind) {
        case OP_DATA:
            r = job->min_sparse ? split_data(job, u, o) : emit(job, u, o->off, o->len, OP_DATA);
            break;
        case OP_ZERO:
            if (job->min_sparse) {
                r = emit(job, u, o->off, o->len, OP_ZERO);
            } else { /* -S 0: allocate everything, as qemu-img does */
                memset(u->buf + (o->off - u->start), 0, (size_t)o->len);
                r = emit(job, u, o->off, o->len, OP_DATA);
            }
            break;
        case OP_KEEP:
        case OP_CDATA: /* not in plans */
            break;
        }
        if (r < 0)
            return fail(rd->e, -ENOMEM, "planning", o->off);
    }
    return 0;
}

/* Release the compressed clusters a write list still owns. */
static void
free_compressed(struct oplist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        topcow_compressed_free(l->v[i].c);
        l->v[i].c = NULL;
    }
}

/* What the plan says about target range [start, end): which kinds occur. */
struct kinds {
    bool data, zero, keep;
};

static struct kinds
kinds_in(const struct oplist *plan, size_t *i, uint64_t start, uint64_t end)
{
    struct kinds k = { false, false, false };
    while (*i < plan->n && plan->v[*i].off + plan->v[*i].len <= start)
        (*i)++;
    for (size_t j = *i; j < plan->n && plan->v[j].off < end; j++) {
        k.data |= plan->v[j].kind == OP_DATA;
        k.zero |= plan->v[j].kind == OP_ZERO;
        k.keep |= plan->v[j].kind == OP_KEEP;
    }
    return k;
}

/* Complete cluster [start, end) of the unit, whose data runs are read: zero
 * runs become zeros in the buffer, and runs the top layer leaves to the
 * backing file (-B) are read through the source's chain, since the cluster
 * is written whole. */
static int
fill_cluster(struct reader *rd, struct unit *u, size_t i, uint64_t start, uint64_t end)
{
    const struct convert_job *job = rd->e->job;
    for (; i < rd->plan.n && rd->plan.v[i].off < end; i++) {
        const struct op *o = &rd->plan.v[i];
        uint64_t a = MAX_U64(o->off, start), b = MIN_U64(o->off + o->len, end);
        if (a >= b || o->kind == OP_DATA)
            continue;
        uint8_t *p = u->buf + (a - u->start);
        if (o->kind == OP_ZERO) {
            memset(p, 0, (size_t)(b - a));
            continue;
        }
        const struct convert_source *s = &job->srcs[o->src];
        uint64_t spos = a - s->start;
        uint64_t n = spos < s->size ? MIN_U64(b - a, s->size - spos) : 0;
        int r = n ? topcow_image_pread(s->img, p, (size_t)n, spos) : 0;
        if (r < 0)
            return fail(rd->e, r, "reading", a);
        memset(p + n, 0, (size_t)(b - a - n));
    }
    return 0;
}

/* Compress the clusters [start, end) of the unit into one OP_CDATA. */
static int
add_compressed(struct reader *rd, struct unit *u, uint64_t start, uint64_t end)
{
    const struct convert_job *job = rd->e->job;
    if (start == end)
        return 0;
    struct topcow_compressed *c;
    int r = topcow_image_compress(job->dst, u->buf + (start - u->start), (size_t)(end - start),
                                  start, &c);
    if (r < 0)
        return fail(rd->e, r, "compressing", start);
    if (add_op(&u->writes, start, end - start, OP_CDATA, 0, false) < 0) {
        topcow_compressed_free(c);
        return fail(rd->e, -ENOMEM, "planning", start);
    }
    u->writes.v[u->writes.n - 1].c = c;
    return 0;
}

/* Emit the zero runs of plan ops inside [start, end) (a cluster holding no
 * data); runs left to the backing file emit nothing. */
static int
emit_zero_runs(struct reader *rd, struct unit *u, size_t i, uint64_t start, uint64_t end)
{
    const struct convert_job *job = rd->e->job;
    for (; i < rd->plan.n && rd->plan.v[i].off < end; i++) {
        const struct op *o = &rd->plan.v[i];
        uint64_t a = MAX_U64(o->off, start), b = MIN_U64(o->off + o->len, end);
        if (a < b && o->kind == OP_ZERO && emit(job, u, a, b - a, OP_ZERO) < 0)
            return fail(rd->e, -ENOMEM, "planning", a);
    }
    return 0;
}

/* The plan (data read) as compressed writes: a cluster holding any data is
 * compressed whole, unless it reads as zeros (then it is a zero run, as
 * with uncompressed output; -S 0 compresses those too); what the top layer
 * leaves to the backing file (-B) in clusters without data is skipped. */
static int
build_compressed(struct reader *rd, struct unit *u)
{
    const struct convert_job *job = rd->e->job;
    const uint64_t cs = job->granule, dst_size = topcow_image_size(job->dst);
    uint64_t run = u->start; /* start of the clusters to compress together */
    size_t i = 0;
    int r = 0;
    u->writes.n = 0;
    for (uint64_t cst = u->start; cst < u->end && r == 0; cst += cs) {
        uint64_t cend = MIN_U64(cst + cs, u->end);
        size_t first = i;
        struct kinds k = kinds_in(&rd->plan, &i, cst, cend);
        bool data = k.data || (k.zero && !job->min_sparse);
        bool zeros = false; /* data that reads as zeros */
        if (data && (r = fill_cluster(rd, u, first, cst, cend)) < 0)
            break;
        if (data && job->min_sparse && buf_is_zero(u->buf + (cst - u->start), cend - cst)) {
            data = false, zeros = true;
            topcow_image_stats_note(job->dst, TOPCOW_STATS_NOTE_ZEROS_DETECTED,
                                    (int64_t)(cend - cst));
        }
        /* A short last cluster is compressed only at the target's end. */
        if (data && (cend - cst == cs || cend == dst_size))
            continue; /* joins the run */
        if ((r = add_compressed(rd, u, run, cst)) < 0)
            break;
        run = cend;
        if (data || zeros) {
            if (emit(job, u, cst, cend - cst, data ? OP_DATA : OP_ZERO) < 0)
                r = fail(rd->e, -ENOMEM, "planning", cst);
        } else {
            r = emit_zero_runs(rd, u, first, cst, cend);
        }
    }
    if (r == 0)
        r = add_compressed(rd, u, run, u->end);
    return r;
}

static int
write_unit(struct engine *e, struct unit *u)
{
    const struct convert_job *job = e->job;
    for (size_t i = 0; i < u->writes.n; i++) {
        struct op *o = &u->writes.v[i];
        int r;
        if (o->kind == OP_CDATA) {
            r = topcow_image_write_compressed(job->dst, o->c);
            topcow_compressed_free(o->c);
            o->c = NULL;
        } else if (o->kind == OP_DATA)
            r = topcow_image_pwrite(job->dst, u->buf + (o->off - u->start), (size_t)o->len,
                                    o->off, 0);
        else
            r = topcow_image_write_zeroes(job->dst, o->off, o->len, TOPCOW_ZERO_MAY_UNMAP);
        if (r < 0)
            return fail(e, r, "writing", o->off);
    }
    return 0;
}

/* Claim the next unit into its ring slot, waiting for the slot to be free.
 * NULL when everything is claimed or a thread failed.  Needs e->lock. */
static struct unit *
claim(struct engine *e)
{
    const uint64_t size = e->job->size;
    while (!e->err && e->next_start < size &&
           e->units[e->next_seq % e->nunits].state != UNIT_FREE)
        pthread_cond_wait(&e->slot_free, &e->lock);
    if (e->err || e->next_start >= size)
        return NULL;
    struct unit *u = &e->units[e->next_seq % e->nunits];
    u->state = UNIT_FILLING;
    u->seq = e->next_seq++;
    u->start = e->next_start;
    u->end = MIN_U64(ALIGN_DOWN_POW2(u->start, e->unit) + e->unit, size);
    set_next_start(e, u->end);
    /* The next slot may have been freed while no reader was waiting. */
    if (e->next_start < size && e->units[e->next_seq % e->nunits].state == UNIT_FREE)
        pthread_cond_signal(&e->slot_free);
    return u;
}

static void *
reader_main(void *arg)
{
    struct reader *rd = arg;
    struct engine *e = rd->e;
    struct unit *u;
#ifdef SCHED_BATCH
    /* Readers are throughput work: as batch threads they take the CPU only
     * when the scheduler has it to spare and never preempt the writer, which
     * is the critical path.  Best effort; the policy needs no privilege. */
    struct sched_param sp = { 0 };
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
    pthread_mutex_lock(&e->lock);
    while ((u = claim(e))) {
        pthread_mutex_unlock(&e->lock);
        int r = plan_unit(rd, u);
        if (r == 0)
            r = read_unit(rd, u);
        if (r == 0)
            r = e->job->compress ? build_compressed(rd, u) : build_writes(rd, u);
        pthread_mutex_lock(&e->lock);
        u->state = r < 0 ? UNIT_FREE : UNIT_READY;
        pthread_cond_signal(&e->unit_ready);
    }
    /* The writers finish once no reader can produce more units. */
    e->readers_left--;
    pthread_cond_broadcast(&e->unit_ready);
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* The unit to write next, marked as being written: in order mode the one
 * whose turn it is, otherwise the oldest ready one.  Waits for it; NULL when
 * all units are written or a thread failed.  Needs e->lock. */
static struct unit *
next_ready(struct engine *e)
{
    for (;;) {
        if (e->err)
            return NULL;
        struct unit *best = NULL;
        if (!e->job->out_of_order) {
            struct unit *u = &e->units[e->commit_seq % e->nunits];
            if (u->state == UNIT_READY && u->seq == e->commit_seq)
                best = u;
        } else {
            for (unsigned i = 0; i < e->nunits; i++) {
                struct unit *u = &e->units[i];
                if (u->state == UNIT_READY && (!best || u->seq < best->seq))
                    best = u;
            }
        }
        if (best) {
            best->state = UNIT_WRITING;
            return best;
        }
        bool pending = e->readers_left > 0;
        for (unsigned i = 0; i < e->nunits && !pending; i++)
            pending = e->units[i].state == UNIT_FILLING || e->units[i].state == UNIT_READY;
        if (!pending)
            return NULL;
        pthread_cond_wait(&e->unit_ready, &e->lock);
    }
}

static void *
writer_main(void *arg)
{
    struct engine *e = arg;
    struct unit *u;
    pthread_mutex_lock(&e->lock);
    while ((u = next_ready(e))) {
        pthread_mutex_unlock(&e->lock);
        int r = write_unit(e, u);
        pthread_mutex_lock(&e->lock);
        u->state = UNIT_FREE;
        /* One slot, one reader: waking them all would only have them fight
         * the writer for the CPU. */
        pthread_cond_signal(&e->slot_free);
        if (r < 0)
            break;
        e->commit_seq++;
        e->done += u->end - u->start;
        if (e->job->progress)
            e->job->progress(e->job->opaque, e->done, e->job->size);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

int
convert_run(const struct convert_job *job, char *msg, size_t msglen)
{
    unsigned nreaders = job->workers ? job->workers : 1;
    /* Compressing readers are CPU bound: more of them than CPUs only
     * contend (measured: -m 8 is 10-20% slower than -m 2 on 2 CPUs). */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (job->compress && ncpu > 0 && nreaders > (unsigned)ncpu)
        nreaders = (unsigned)ncpu;
    const unsigned nwriters = job->out_of_order && job->parallel_writes ? nreaders : 1;
    struct engine e = { .job = job, .nunits = nreaders + nwriters, .msg = msg,
                        .msglen = msglen, .unit = CONVERT_UNIT };
    if (job->compress && job->granule > e.unit)
        e.unit = job->granule;
    pthread_mutex_init(&e.lock, NULL);
    pthread_mutex_init(&e.status_lock, NULL);
    pthread_cond_init(&e.slot_free, NULL);
    pthread_cond_init(&e.unit_ready, NULL);
    struct reader *rds = calloc(nreaders, sizeof *rds);
    pthread_t *wts = calloc(nwriters, sizeof *wts);
    e.units = calloc(e.nunits, sizeof *e.units);
    e.status = calloc(job->nsrcs, sizeof *e.status);
    int r = rds && wts && e.units && e.status ? 0 : -ENOMEM;
    for (unsigned i = 0; i < e.nunits && r == 0; i++)
        /* Page aligned, so O_DIRECT targets (-t none) need no bounce buffers. */
        if (posix_memalign((void **)&e.units[i].buf, 4096, e.unit) != 0)
            r = -ENOMEM;
    /* The threads wait for the lock until all of them are started. */
    unsigned nr = 0, nw = 1; /* writer 0 is this thread */
    pthread_mutex_lock(&e.lock);
    for (; r == 0 && nr < nreaders; nr++) {
        rds[nr].e = &e;
        if (pthread_create(&rds[nr].tid, NULL, reader_main, &rds[nr]) != 0)
            break;
    }
    for (; r == 0 && nr == nreaders && nw < nwriters; nw++)
        if (pthread_create(&wts[nw], NULL, writer_main, &e) != 0)
            break;
    e.readers_left = nr;
    if (r == 0 && (nr < nreaders || nw < nwriters))
        r = -EAGAIN;
    if (r < 0) {
        e.err = r;
        snprintf(msg, msglen, "could not start the copy threads: %s", strerror(-r));
    }
    pthread_mutex_unlock(&e.lock);
    if (r == 0)
        writer_main(&e);
    for (unsigned i = 0; i < nr; i++)
        pthread_join(rds[i].tid, NULL);
    for (unsigned i = 1; i < nw; i++)
        pthread_join(wts[i], NULL);
    for (unsigned i = 0; e.units && i < e.nunits; i++) {
        free(e.units[i].buf);
        free_compressed(&e.units[i].writes);
        free(e.units[i].writes.v);
    }
    for (unsigned i = 0; rds && i < nreaders; i++)
        free(rds[i].plan.v);
    free(e.units);
    free(e.status);
    free(rds);
    free(wts);
    pthread_cond_destroy(&e.unit_ready);
    pthread_cond_destroy(&e.slot_free);
    pthread_mutex_destroy(&e.status_lock);
    pthread_mutex_destroy(&e.lock);
    return e.err;
}
