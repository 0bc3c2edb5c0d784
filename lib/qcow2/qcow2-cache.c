// SPDX-License-Identifier: MIT
/* A bounded write-back cache of cluster-sized metadata tables (L2 tables and
 * refcount blocks), keyed by host offset, with LRU eviction.  Writing back a
 * dirty L2 table first makes everything it may point at durable
 * (qcow2_prepare_l2_write), which is what keeps a crash from leaving an L2
 * entry pointing at an unrefcounted or unwritten cluster.
 *
 * All functions need s->lock.  Tables are pinned between get and put, so a
 * caller may hold a few at once (e.g. an L2 table while allocating). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

#define DATA_PREFIX 64 /* keeps tables 64-byte aligned */

struct cache_entry {
    uint64_t offset;   /* 0: slot empty */
    uint8_t *data;
    unsigned pins;
    bool dirty;
    int hnext;         /* next slot in the hash chain, -1 ends */
    int prev, next;    /* LRU list, most recent first; -1 ends */
};

struct qcow2_cache {
    struct qcow2_state *s;
    enum qcow2_cache_kind kind;
    size_t n;
    struct cache_entry *e;
    int *buckets;       /* hash heads */
    size_t nbuckets;
    size_t ndirty;
    int head, tail;     /* LRU list of all slots (empty ones at the tail) */
};

static void
lru_unlink(struct qcow2_cache *c, int i)
{
    struct cache_entry *e = &c->e[i];
    if (e->prev >= 0)
        c->e[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next >= 0)
        c->e[e->next].prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = -1;
}

static void
lru_push_front(struct qcow2_cache *c, int i)
{
    struct cache_entry *e = &c->e[i];
    e->prev = -1;
    e->next = c->head;
    if (c->head >= 0)
        c->e[c->head].prev = i;
    c->head = i;
    if (c->tail < 0)
        c->tail = i;
}

static void
lru_push_back(struct qcow2_cache *c, int i)
{
    struct cache_entry *e = &c->e[i];
    e->next = -1;
    e->prev = c->tail;
    if (c->tail >= 0)
        c->e[c->tail].next = i;
    c->tail = i;
    if (c->head < 0)
        c->head = i;
}

static size_t
bucket_of(const struct qcow2_cache *c, uint64_t offset)
{
    uint64_t k = offset >> c->s->cluster_bits;
    k *= 0x9e3779b97f4a7c15ull;
    return (size_t)(k >> 32) % c->nbuckets;
}

int
qcow2_cache_new(struct qcow2_state *s, enum qcow2_cache_kind kind, size_t nentries,
                struct qcow2_cache **out)
{
    struct qcow2_cache *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(-ENOMEM, "out of memory");
    c->s = s;
    c->kind = kind;
    c->n = MAX(nentries, 2);
    c->nbuckets = c->n * 2 + 1;
    c->e = calloc(c->n, sizeof *c->e);
    c->buckets = malloc(c->nbuckets * sizeof *c->buckets);
    if (!c->e || !c->buckets) {
        qcow2_cache_free(c);
        return err_set(-ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < c->nbuckets; i++)
        c->buckets[i] = -1;
    c->head = c->tail = -1;
    for (size_t i = 0; i < c->n; i++) {
        c->e[i].hnext = -1;
        lru_push_back(c, (int)i);
    }
    *out = c;
    return 0;
}

void
qcow2_cache_free(struct qcow2_cache *c)
{
    if (!c)
        return;
    if (c->e)
        for (size_t i = 0; i < c->n; i++)
            if (c->e[i].data)
                free(c->e[i].data - DATA_PREFIX);
    free(c->e);
    free(c->buckets);
    free(c);
}

static int
find(const struct qcow2_cache *c, uint64_t offset)
{
    for (int i = c->buckets[bucket_of(c, offset)]; i >= 0; i = c->e[i].hnext)
        if (c->e[i].offset == offset)
            return i;
    return -1;
}

static void
unhash(struct qcow2_cache *c, int i)
{
    int *pp = &c->buckets[bucket_of(c, c->e[i].offset)];
    while (*pp != i)
        pp = &c->e[*pp].hnext;
    *pp = c->e[i].hnext;
    c->e[i].hnext = -1;
    c->e[i].offset = 0;
}

static void
rehash(struct qcow2_cache *c, int i, uint64_t offset)
{
    size_t b = bucket_of(c, offset);
    c->e[i].offset = offset;
    c->e[i].hnext = c->buckets[b];
    c->buckets[b] = i;
}

static int
write_entry(struct qcow2_cache *c, struct cache_entry *e)
{
    struct qcow2_state *s = c->s;
    if (c->kind == QCOW2_CACHE_L2) {
        int r = qcow2_prepare_l2_write(s);
        if (r < 0)
            return r;
        s->tables_unsynced = true;
    } else {
        s->deps_unsynced = true;
    }
    int r = io_pwrite(s->file, e->data, s->cluster_size, e->offset);
    if (r < 0)
        return r;
    e->dirty = false;
    c->ndirty--;
    return 0;
}

/* Pick a slot for a new table: the least recently used unpinned one (empty
 * slots sit at the tail), written back first if dirty. */
static int
victim(struct qcow2_cache *c, int *slot)
{
    int best = c->tail;
    while (best >= 0 && c->e[best].pins > 0)
        best = c->e[best].prev;
    if (best < 0)
        return err_set(-ENOMEM, "internal: qcow2 metadata cache has no unpinned entry");
    struct cache_entry *e = &c->e[best];
    if (e->offset != 0) {
        if (e->dirty) {
            int r = write_entry(c, e);
            if (r < 0)
                return r;
        }
        unhash(c, best);
    }
    *slot = best;
    return 0;
}

int
qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, bool fresh, uint8_t **data)
{
    struct qcow2_state *s = c->s;
    int i = find(c, offset);
    struct stats_layer *st = s->img->stats;
    if (c->kind == QCOW2_CACHE_L2) {
        STATS_ADD(st, l2_hits, i >= 0);
        STATS_ADD(st, l2_misses, i < 0);
    } else {
        STATS_ADD(st, refcount_hits, i >= 0);
        STATS_ADD(st, refcount_misses, i < 0);
    }
    if (i < 0) {
        int r = victim(c, &i);
        if (r < 0)
            return r;
        struct cache_entry *e = &c->e[i];
        if (!e->data) {
            /* A prefix before the table records the slot, so put and
             * mark_dirty find the entry from the data pointer in O(1). */
            uint8_t *base = malloc(DATA_PREFIX + s->cluster_size);
            if (!base)
                return err_set(-ENOMEM, "out of memory");
            *(size_t *)base = (size_t)i;
            e->data = base + DATA_PREFIX;
        }
        if (fresh) {
            memset(e->data, 0, s->cluster_size);
        } else {
            r = io_pread(s->file, e->data, s->cluster_size, offset);
            if (r < 0)
                return r;
        }
        e->dirty = false;
        e->pins = 0;
        rehash(c, i, offset);
    } else if (fresh) {
        memset(c->e[i].data, 0, s->cluster_size);
    }
    struct cache_entry *e = &c->e[i];
    e->pins++;
    if (c->head != i) {
        lru_unlink(c, i);
        lru_push_front(c, i);
    }
    *data = e->data;
    return 0;
}

static struct cache_entry *
entry_of(struct qcow2_cache *c, const uint8_t *data)
{
    size_t i = *(const size_t *)(data - DATA_PREFIX);
    return i < c->n && c->e[i].data == data ? &c->e[i] : NULL;
}

void
qcow2_cache_put(struct qcow2_cache *c, uint8_t *data)
{
    if (!data)
        return;
    struct cache_entry *e = entry_of(c, data);
    if (e && e->pins > 0)
        e->pins--;
}

void
qcow2_cache_mark_dirty(struct qcow2_cache *c, uint8_t *data)
{
    struct cache_entry *e = entry_of(c, data);
    if (e && !e->dirty) {
        e->dirty = true;
        c->ndirty++;
    }
}

bool
qcow2_cache_has_dirty(struct qcow2_cache *c)
{
    return c->ndirty > 0;
}

static int
cmp_offset(const void *a, const void *b)
{
    const struct cache_entry *x = *(struct cache_entry *const *)a;
    const struct cache_entry *y = *(struct cache_entry *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int
qcow2_cache_flush(struct qcow2_cache *c)
{
    if (c->ndirty == 0)
        return 0;
    /* Write in offset order: sequential I/O and a deterministic layout. */
    struct cache_entry **list = malloc(c->ndirty * sizeof *list);
    if (!list)
        return err_set(-ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].dirty)
            list[n++] = &c->e[i];
    qsort(list, n, sizeof *list, cmp_offset);
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++)
        if (list[i]->dirty)
            r = write_entry(c, list[i]);
    free(list);
    return r;
}

void
qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
    int i = find(c, offset);
    if (i < 0)
        return;
    if (c->e[i].dirty) {
        c->e[i].dirty = false;
        c->ndirty--;
    }
    unhash(c, i);
    lru_unlink(c, i);
    lru_push_back(c, i);
}
