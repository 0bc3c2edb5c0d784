// SPDX-License-Identifier: MIT
/* The crash-simulating backend (test only; SQLite's test6.c is the model).
 * Everything written since the last flush lives in an ordered log plus a
 * sector overlay that reads consult; a flush replays the log onto the durable
 * store.  io_crash_simulate() models a power cut: every logged operation is
 * kept, dropped or torn at 512-byte sector granularity, and the survivors
 * reach the durable store in a random order.
 *
 * A sector that survives carries its content as of the operation that wrote
 * it, with every earlier logged operation on that sector applied (what a page
 * cache writes back), so sub-sector writes never surface without the earlier
 * writes to the same sector. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "minmax.h"
#include "error.h"
#include "io-test.h"

#define SECTOR 512u

/* ---- a map from sector index to sector contents --------------------------- */

struct sector_map {
    uint64_t *keys;  /* sector index + 1; 0 marks an empty slot */
    size_t *slots;   /* index into data */
    size_t cap;      /* hash slots, a power of two (0 before first use) */
    size_t n;        /* sectors stored */
    uint8_t *data;   /* n * SECTOR bytes */
    size_t data_cap; /* in sectors */
    /* Per stored sector, for io_crash_simulate's result map only: */
    uint64_t *rank;
    uint16_t *len;
    bool with_meta;
};

static size_t
map_hash(uint64_t idx, size_t cap)
{
    return (size_t)((idx * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static void
map_free(struct sector_map *m)
{
    free(m->keys);
    free(m->slots);
    free(m->data);
    free(m->rank);
    free(m->len);
    bool meta = m->with_meta;
    memset(m, 0, sizeof *m);
    m->with_meta = meta;
}

/* Index of the stored sector @idx, or SIZE_MAX. */
static size_t
map_find(const struct sector_map *m, uint64_t idx)
{
    if (m->cap == 0)
        return SIZE_MAX;
    for (size_t h = map_hash(idx, m->cap);; h = (h + 1) & (m->cap - 1)) {
        if (m->keys[h] == idx + 1)
            return m->slots[h];
        if (m->keys[h] == 0)
            return SIZE_MAX;
    }
}

static uint8_t *
map_data(const struct sector_map *m, size_t slot)
{
    return m->data + slot * SECTOR;
}

static int
map_rehash(struct sector_map *m, size_t cap)
{
    uint64_t *keys = calloc(cap, sizeof *keys);
    size_t *slots = malloc(cap * sizeof *slots);
    if (!keys || !slots) {
        free(keys);
        free(slots);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t h = map_hash(m->keys[i] - 1, cap);
        while (keys[h])
            h = (h + 1) & (cap - 1);
        keys[h] = m->keys[i];
        slots[h] = m->slots[i];
    }
    free(m->keys);
    free(m->slots);
    m->keys = keys;
    m->slots = slots;
    m->cap = cap;
    return 0;
}

/* Add sector @idx (not yet stored) with unspecified contents; its index goes
 * to *@slot.  Returns 0 or -ENOMEM.  Invalidates map_data() pointers. */
static int
map_insert(struct sector_map *m, uint64_t idx, size_t *slot)
{
    if ((m->n + 1) * 2 > m->cap) {
        int r = map_rehash(m, m->cap ? m->cap * 2 : 256);
        if (r < 0)
            return r;
    }
    if (m->n == m->data_cap) {
        size_t cap = m->data_cap ? m->data_cap * 2 : 64;
        uint8_t *d = realloc(m->data, cap * SECTOR);
        if (!d)
            return -ENOMEM;
        m->data = d;
        if (m->with_meta) {
            uint64_t *rk = realloc(m->rank, cap * sizeof *rk);
            if (!rk)
                return -ENOMEM;
            m->rank = rk;
            uint16_t *ln = realloc(m->len, cap * sizeof *ln);
            if (!ln)
                return -ENOMEM;
            m->len = ln;
        }
        m->data_cap = cap;
    }
    size_t h = map_hash(idx, m->cap);
    while (m->keys[h])
        h = (h + 1) & (m->cap - 1);
    m->keys[h] = idx + 1;
    m->slots[h] = m->n;
    *slot = m->n++;
    return 0;
}

/* ---- a view: the durable store with logged operations applied ------------- */

struct view {
    struct io *durable;
    struct sector_map map; /* sectors changed since the last flush */
    uint64_t size;         /* logical size */
    uint64_t zero_from;    /* durable bytes at or past this read as zeros (a shrink) */
};

/* One logged operation.  For truncates @off is the new size and @len 0. */
enum crash_op_kind { CRASH_WRITE, CRASH_ZERO, CRASH_DISCARD, CRASH_TRUNCATE };

struct crash_op {
    enum crash_op_kind kind;
    uint64_t off, len;
    uint8_t *data; /* CRASH_WRITE only */
};

static int
view_init(struct view *v, struct io *durable)
{
    memset(v, 0, sizeof *v);
    v->durable = durable;
    v->zero_from = UINT64_MAX;
    return io_get_size(durable, &v->size);
}

/* Read durable bytes as the view sees them (masked past zero_from). */
static int
view_base_read(struct view *v, uint8_t *buf, uint64_t off, size_t len)
{
    int r = io_pread(v->durable, buf, len, off);
    if (r < 0)
        return r;
    if (off + len > v->zero_from) {
        uint64_t from = MAX(off, v->zero_from);
        memset(buf + (from - off), 0, (size_t)(off + len - from));
    }
    return 0;
}

static int
view_read(struct view *v, uint8_t *buf, size_t len, uint64_t off)
{
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        uint64_t idx = pos / SECTOR;
        size_t slot = map_find(&v->map, idx);
        if (slot != SIZE_MAX) {
            size_t in = (size_t)(pos % SECTOR), n = (size_t)MIN(SECTOR - in, end - pos);
            memcpy(buf + (pos - off), map_data(&v->map, slot) + in, n);
            pos += n;
            continue;
        }
        /* A run of sectors the log has not touched: one durable read. */
        uint64_t run_end = MIN(end, (idx + 1) * SECTOR);
        while (run_end < end && map_find(&v->map, run_end / SECTOR) == SIZE_MAX)
            run_end = MIN(end, run_end + SECTOR);
        int r = view_base_read(v, buf + (pos - off), pos, (size_t)(run_end - pos));
        if (r < 0)
            return r;
        pos = run_end;
    }
    return 0;
}

/* The overlay sector @idx, created from the durable contents if needed
 * (@whole: the caller overwrites all of it, so skip the read). */
static int
view_sector(struct view *v, uint64_t idx, bool whole, uint8_t **p)
{
    size_t slot = map_find(&v->map, idx);
    if (slot == SIZE_MAX) {
        int r = map_insert(&v->map, idx, &slot);
        if (r < 0)
            return r;
        if (!whole && (r = view_base_read(v, map_data(&v->map, slot), idx * SECTOR, SECTOR)) < 0)
            return r;
    }
    *p = map_data(&v->map, slot);
    return 0;
}

/* Apply one operation to the view. */
static int
view_apply(struct view *v, const struct crash_op *op)
{
    if (op->kind == CRASH_TRUNCATE) {
        uint64_t nsize = op->off;
        if (nsize < v->size) {
            /* Overlay sectors past the new end read as zeros from now on. */
            for (size_t h = 0; h < v->map.cap; h++) {
                uint64_t key = v->map.keys[h]; /* sector index + 1 */
                if (!key || key * SECTOR <= nsize)
                    continue; /* empty, or ends before the new size */
                uint64_t idx = key - 1;
                uint64_t from = MAX(nsize, idx * SECTOR) - idx * SECTOR;
                memset(map_data(&v->map, v->map.slots[h]) + from, 0, SECTOR - (size_t)from);
            }
            v->zero_from = MIN(v->zero_from, nsize);
        }
        v->size = nsize;
        return 0;
    }
    uint64_t pos = op->off, end = op->off + op->len;
    while (pos < end) {
        uint64_t idx = pos / SECTOR;
        size_t in = (size_t)(pos % SECTOR), n = (size_t)MIN(SECTOR - in, end - pos);
        uint8_t *p;
        int r = view_sector(v, idx, n == SECTOR, &p);
        if (r < 0)
            return r;
        if (op->kind == CRASH_WRITE)
            memcpy(p + in, op->data + (pos - op->off), n);
        else
            memset(p + in, 0, n);
        pos += n;
    }
    if (op->kind != CRASH_DISCARD) /* discards are clipped to the size when logged */
        v->size = MAX(v->size, end);
    return 0;
}

/* ---- the backend ----------------------------------------------------------- */

struct crash_io {
    struct io base;
    struct view cur; /* durable store + log: what reads see */
    struct crash_op *log;
    size_t nlog, cap_log;
    uint64_t counted; /* counted operations issued */
    uint64_t trigger; /* cut the power at this count; 0: never */
    bool dead;
};

static struct crash_io *
to_crash(struct io *io)
{
    return (struct crash_io *)io;
}

static void
log_clear(struct crash_io *c)
{
    for (size_t i = 0; i < c->nlog; i++)
        free(c->log[i].data);
    c->nlog = 0;
    map_free(&c->cur.map);
    c->cur.zero_from = UINT64_MAX;
}

/* Count a mutating operation; refuse it if the power is (now) off. */
static int
gate(struct crash_io *c)
{
    if (c->dead)
        return -EIO;
    c->counted++;
    if (c->trigger && c->counted >= c->trigger)
        c->dead = true;
    return c->dead ? -EIO : 0;
}

/* Log @op (taking ownership of op->data) and apply it to the current view. */
static int
log_append(struct crash_io *c, struct crash_op op)
{
    if (c->nlog == c->cap_log) {
        size_t cap = c->cap_log ? c->cap_log * 2 : 64;
        struct crash_op *l = realloc(c->log, cap * sizeof *l);
        if (!l) {
            free(op.data);
            return -ENOMEM;
        }
        c->log = l;
        c->cap_log = cap;
    }
    int r = view_apply(&c->cur, &op);
    if (r < 0) {
        free(op.data);
        return r;
    }
    c->log[c->nlog++] = op;
    return 0;
}

static int
crash_pread(struct io *io, void *buf, size_t len, uint64_t off)
{
    struct crash_io *c = to_crash(io);
    if (c->dead)
        return -EIO;
    return view_read(&c->cur, buf, len, off);
}

static int
crash_pwrite(struct io *io, const void *buf, size_t len, uint64_t off)
{
    struct crash_io *c = to_crash(io);
    int r = gate(c);
    if (r < 0)
        return r;
    uint8_t *copy = malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, buf, len);
    return log_append(c, (struct crash_op){CRASH_WRITE, off, len, copy});
}

static int
crash_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags)
{
    (void)flags; /* zeroing is always cheap here */
    struct crash_io *c = to_crash(io);
    int r = gate(c);
    if (r < 0)
        return r;
    return log_append(c, (struct crash_op){CRASH_ZERO, off, len, NULL});
}

static int
crash_discard(struct io *io, uint64_t off, uint64_t len)
{
    struct crash_io *c = to_crash(io);
    int r = gate(c);
    if (r < 0)
        return r;
    if (off >= c->cur.size)
        return 0;
    len = MIN(len, c->cur.size - off);
    return log_append(c, (struct crash_op){CRASH_DISCARD, off, len, NULL});
}

static int
crash_truncate(struct io *io, uint64_t size)
{
    struct crash_io *c = to_crash(io);
    int r = gate(c);
    if (r < 0)
        return r;
    return log_append(c, (struct crash_op){CRASH_TRUNCATE, size, 0, NULL});
}

/* Space allocation changes no contents; only an extension is visible (as a
 * size change), so log that as a truncate. */
static int
crash_preallocate(struct io *io, uint64_t off, uint64_t len)
{
    struct crash_io *c = to_crash(io);
    int r = gate(c);
    if (r < 0 || off + len <= c->cur.size)
        return r;
    return log_append(c, (struct crash_op){CRASH_TRUNCATE, off + len, 0, NULL});
}

/* Apply the log to the durable store in order; *@applied counts the entries
 * that reached it (all of them unless it failed). */
static int
replay_in_order(struct crash_io *c, size_t *applied)
{
    struct io *d = c->cur.durable;
    int r = 0;
    size_t i;
    for (i = 0; i < c->nlog && r == 0; i++) {
        const struct crash_op *op = &c->log[i];
        switch (op->kind) {
        case CRASH_WRITE:
            r = io_pwrite(d, op->data, op->len, op->off);
            break;
        case CRASH_ZERO:
        case CRASH_DISCARD: /* the view zeroes discarded bytes; so must the store */
            r = io_write_zeroes(d, op->off, op->len, IO_ZERO_MAY_UNMAP);
            break;
        case CRASH_TRUNCATE:
            r = io_truncate(d, op->off);
            break;
        }
    }
    *applied = r < 0 ? i - 1 : i;
    return r;
}

static int
crash_flush(struct io *io)
{
    struct crash_io *c = to_crash(io);
    if (c->nlog == 0 && !c->dead) /* nothing to make durable: not a distinct crash point */
        return io_flush(c->cur.durable);
    int r = gate(c);
    if (r < 0)
        return r;
    size_t applied;
    r = replay_in_order(c, &applied);
    if (r < 0) {
        /* Keep what did not reach the store; the overlay still shows it. */
        for (size_t i = 0; i < applied; i++)
            free(c->log[i].data);
        memmove(c->log, c->log + applied, (c->nlog - applied) * sizeof *c->log);
        c->nlog -= applied;
        return r;
    }
    r = io_flush(c->cur.durable);
    if (r < 0)
        return r;
    log_clear(c);
    return 0;
}

static int
crash_get_size(struct io *io, uint64_t *size)
{
    struct crash_io *c = to_crash(io);
    if (c->dead)
        return -EIO;
    *size = c->cur.size;
    return 0;
}

static int
crash_allocated_size(struct io *io, uint64_t *bytes)
{
    return crash_get_size(io, bytes);
}

static void
crash_close(struct io *io)
{
    struct crash_io *c = to_crash(io);
    log_clear(c);
    free(c->log);
    io_base_fini(io);
    free(c);
}

static const struct io_ops io_crash_ops = {
    .struct_size = sizeof(struct io_ops),
    .name = "crash",
    .thread_model = IO_SERIALIZE,
    .close = crash_close,
    .pread = crash_pread,
    .pwrite = crash_pwrite,
    .flush = crash_flush,
    .get_size = crash_get_size,
    .truncate = crash_truncate,
    .write_zeroes = crash_write_zeroes,
    .discard = crash_discard,
    .preallocate = crash_preallocate,
    .allocated_size = crash_allocated_size,
};

int
io_crash_open(struct io *durable, struct io **out)
{
    struct crash_io *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(-ENOMEM, "out of memory");
    int r = io_base_init(&c->base, &io_crash_ops, durable->name, durable->flags & IO_RDONLY);
    if (r < 0) {
        free(c);
        return r;
    }
    r = view_init(&c->cur, durable);
    if (r < 0) {
        io_base_fini(&c->base);
        free(c);
        return r;
    }
    *out = &c->base;
    return 0;
}

/* The wrappers serialize calls on io->serialize; the control functions take
 * the same mutex so they never race with an operation. */
static void
lock(struct io *io)
{
    pthread_mutex_lock(io->serialize);
}

static void
unlock(struct io *io)
{
    pthread_mutex_unlock(io->serialize);
}

void
io_crash_set_trigger(struct io *io, uint64_t nth)
{
    lock(io);
    to_crash(io)->trigger = nth;
    unlock(io);
}

uint64_t
io_crash_op_count(struct io *io)
{
    lock(io);
    uint64_t n = to_crash(io)->counted;
    unlock(io);
    return n;
}

bool
io_crash_is_dead(struct io *io)
{
    lock(io);
    bool d = to_crash(io)->dead;
    unlock(io);
    return d;
}

/* ---- the power cut ---------------------------------------------------------- */

/* splitmix64: small, seedable, and good enough to pick fates. */
static uint64_t
next_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One thing to apply to the durable store: a surviving sector or truncate. */
struct crash_event {
    uint64_t rank;  /* random; events apply in increasing rank */
    size_t slot;    /* sector: index in the result map; SIZE_MAX for a truncate */
    uint64_t where; /* sector: its index; truncate: the new size */
};

static int
cmp_event(const void *a, const void *b)
{
    const struct crash_event *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->where < y->where ? -1 : x->where > y->where;
}

enum fate { FATE_KEEP, FATE_TEAR, FATE_DROP };

int
io_crash_simulate(struct io *io, uint64_t seed, const struct io_crash_model *model,
                  struct io_crash_report *rep)
{
    static const struct io_crash_model dflt = IO_CRASH_MODEL_DEFAULT;
    struct crash_io *c = to_crash(io);
    struct io_crash_report st = {0};
    struct view replay;
    struct sector_map result = {.with_meta = true};
    struct crash_event *ev = NULL;
    uint64_t *trunc_rank = NULL, *trunc_size = NULL;
    size_t ntrunc = 0;
    uint64_t rng = seed ^ 0x5eed5eed5eed5eedull;
    int r;

    if (!model)
        model = &dflt;
    lock(io);
    st.ops = c->nlog;
    r = view_init(&replay, c->cur.durable);
    if (r < 0)
        goto out;
    trunc_rank = malloc((c->nlog + 1) * sizeof *trunc_rank);
    trunc_size = malloc((c->nlog + 1) * sizeof *trunc_size);
    if (!trunc_rank || !trunc_size) {
        r = -ENOMEM;
        goto out;
    }

    /* Replay the log in order so each sector's surviving content is its
     * content right after the operation that wrote it. */
    for (size_t i = 0; i < c->nlog; i++) {
        const struct crash_op *op = &c->log[i];
        unsigned x = (unsigned)(next_rand(&rng) % 100);
        enum fate fate = x < model->keep_pct                     ? FATE_KEEP
                         : x < model->keep_pct + model->tear_pct ? FATE_TEAR
                                                                 : FATE_DROP;
        uint64_t rank = next_rand(&rng);
        r = view_apply(&replay, op);
        if (r < 0)
            goto out;
        if (op->kind == CRASH_TRUNCATE) {
            /* Atomic: a torn truncate is kept or dropped as a whole. */
            bool keep = fate == FATE_KEEP ||
                        (fate == FATE_TEAR && next_rand(&rng) % 100 < model->sector_pct);
            st.kept += keep;
            st.dropped += !keep;
            if (keep) {
                trunc_rank[ntrunc] = rank;
                trunc_size[ntrunc++] = op->off;
            }
            continue;
        }
        st.kept += fate == FATE_KEEP;
        st.torn += fate == FATE_TEAR;
        st.dropped += fate == FATE_DROP;
        if (fate == FATE_DROP)
            continue;
        for (uint64_t idx = op->off / SECTOR; idx * SECTOR < op->off + op->len; idx++) {
            if (fate == FATE_TEAR && next_rand(&rng) % 100 >= model->sector_pct)
                continue;
            size_t slot = map_find(&result, idx);
            if (slot != SIZE_MAX && result.rank[slot] > rank)
                continue; /* a later-landing survivor already owns it */
            if (slot == SIZE_MAX && (r = map_insert(&result, idx, &slot)) < 0)
                goto out;
            size_t rs = map_find(&replay.map, idx);
            memcpy(map_data(&result, slot), map_data(&replay.map, rs), SECTOR);
            result.rank[slot] = rank;
            result.len[slot] = (uint16_t)MIN(SECTOR, replay.size - idx * SECTOR);
        }
    }

    /* Land the survivors in rank order. */
    size_t nev = 0;
    ev = malloc((result.n + ntrunc + 1) * sizeof *ev);
    if (!ev) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t h = 0; h < result.cap; h++)
        if (result.keys[h])
            ev[nev++] = (struct crash_event){result.rank[result.slots[h]], result.slots[h],
                                             result.keys[h] - 1};
    for (size_t t = 0; t < ntrunc; t++)
        ev[nev++] = (struct crash_event){trunc_rank[t], SIZE_MAX, trunc_size[t]};
    qsort(ev, nev, sizeof *ev, cmp_event);
    for (size_t e = 0; e < nev && r == 0; e++) {
        if (ev[e].slot == SIZE_MAX) {
            r = io_truncate(c->cur.durable, ev[e].where);
            continue;
        }
        size_t len = result.len[ev[e].slot];
        if (len > 0)
            r = io_pwrite(c->cur.durable, map_data(&result, ev[e].slot), len, ev[e].where * SECTOR);
        st.sectors_written++;
    }
    if (r == 0)
        r = io_flush(c->cur.durable);

out:
    log_clear(c);
    c->dead = true;
    unlock(io);
    map_free(&replay.map);
    map_free(&result);
    free(ev);
    free(trunc_rank);
    free(trunc_size);
    if (rep)
        *rep = st;
    return r;
}
