// SPDX-License-Identifier: MIT
/* The remote's own commands (topcow.h): list the images of a store, show
 * an image's generations, point HEAD back at an older one, and collect the
 * chunks no manifest names (the rules in docs/internals/cloud-layout.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "remote.h"
#include "topcow.h"

static void
gen_info(const struct manifest *m, bool is_head, struct topcow_remote_gen_info *g)
{
    memset(g, 0, sizeof *g);
    g->name = m->name;
    g->generation = m->gen;
    g->parent = m->parent;
    g->is_head = is_head;
    g->size = m->size;
    g->chunk_size = m->chunk_size;
    g->chunks = m->n_chunks;
    for (uint64_t i = 0; i < m->n_chunks; i++)
        g->chunks_zero += cloud_hash_is_zero(&m->chunks[i]);
    g->created = m->created;
    g->host = m->host;
    g->user = m->user;
    g->lease_holder = g->lease_op = "";
}

/* What topcow_remote_list and topcow_remote_log walk with. */
struct walk_ctx {
    struct remote *rm;
    const char *head; /* log: the image's HEAD generation */
    topcow_remote_gen_fn fn;
    void *opaque;
};

/* Read generation @gen of the image rm->name names and hand it to the
 * caller's function, with the image's lease when @with_lease. */
static int
emit_gen(struct walk_ctx *c, const char *gen, bool is_head, bool with_lease)
{
    struct manifest m;
    int r = remote_read_manifest(c->rm, gen, &m);
    if (r < 0)
        return r;
    struct topcow_remote_gen_info g;
    gen_info(&m, is_head, &g);
    struct lease_info li;
    if (with_lease) {
        char key[STORE_KEY_MAX + 1];
        remote_key_lease(c->rm, key);
        r = lease_read(c->rm->st, key, &li, NULL);
        if (r == 0) {
            g.lease_holder = li.holder;
            g.lease_op = li.op;
            g.lease_expires = lease_is_held(&li) ? li.expires : 0;
        } else if (r != -ENOENT) {
            manifest_free(&m);
            return r;
        }
    }
    r = c->fn(c->opaque, &g);
    manifest_free(&m);
    return r;
}

static int
list_one(void *opaque, const char *name)
{
    struct walk_ctx *c = opaque;
    snprintf(c->rm->name, sizeof c->rm->name, "%s", name);
    char gen[CLOUD_GEN_MAX];
    int r = remote_read_head(c->rm, gen, NULL);
    return r < 0 ? r : emit_gen(c, gen, true, true);
}

int
topcow_remote_list(const char *store, const struct topcow_remote_opts *opts,
                   topcow_remote_gen_fn fn, void *opaque)
{
    err_begin("remote ls");
    struct store_opts so = {opts ? opts->endpoint : NULL, opts ? opts->profile : NULL};
    struct remote rm;
    int r = remote_open(store, false, NULL, &so, &rm);
    if (r < 0)
        return r;
    struct walk_ctx c = {&rm, NULL, fn, opaque};
    r = remote_list_images(&rm, list_one, &c);
    remote_close(&rm);
    return r;
}

static int
log_one(void *opaque, const char *gen)
{
    struct walk_ctx *c = opaque;
    return emit_gen(c, gen, strcmp(gen, c->head) == 0, false);
}

int
topcow_remote_log(const char *remote, const struct topcow_remote_opts *opts,
                  topcow_remote_gen_fn fn, void *opaque)
{
    err_begin("remote log");
    struct store_opts so = {opts ? opts->endpoint : NULL, opts ? opts->profile : NULL};
    struct remote rm;
    int r = remote_open(remote, true, NULL, &so, &rm);
    if (r < 0)
        return r;
    char head[CLOUD_GEN_MAX];
    r = remote_read_head(&rm, head, NULL);
    if (r == 0) {
        struct walk_ctx c = {&rm, head, fn, opaque};
        r = remote_list_gens(&rm, log_one, &c);
    }
    remote_close(&rm);
    return r;
}

struct find_ctx {
    const char *prefix;
    char found[CLOUD_GEN_MAX];
    unsigned matches;
};

static int
find_one(void *opaque, const char *gen)
{
    struct find_ctx *c = opaque;
    if (strncmp(gen, c->prefix, strlen(c->prefix)) == 0) {
        snprintf(c->found, sizeof c->found, "%s", gen);
        c->matches++;
    }
    return 0;
}

int
topcow_remote_rollback(const char *remote, const char *generation,
                       const struct topcow_remote_opts *opts)
{
    err_begin("remote rollback");
    static const struct topcow_remote_opts defaults = TOPCOW_REMOTE_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    struct store_opts so = {opts->endpoint, opts->profile};
    struct remote rm;
    struct lease lease;
    int r = remote_open(remote, true, NULL, &so, &rm);
    if (r < 0)
        return r;
    struct find_ctx fc = {.prefix = generation};
    char head[CLOUD_GEN_MAX], etag[STORE_ETAG_MAX];
    if (!*generation) {
        r = err_set(-EINVAL, "cloud: no generation given");
        goto out;
    }
    if ((r = remote_list_gens(&rm, find_one, &fc)) < 0)
        goto out;
    if (fc.matches != 1) {
        r = err_set(fc.matches ? -EINVAL : -ENOENT, "cloud: %s: %s generation %s '%s' (see topcow "
                    "remote log)", rm.url, fc.matches ? "more than one" : "no",
                    fc.matches ? "starts with" : "is", generation);
        goto out;
    }
    struct manifest m;
    if ((r = remote_read_manifest(&rm, fc.found, &m)) < 0) /* it must be whole */
        goto out;
    manifest_free(&m);
    r = lease_acquire(&rm, &so, "rollback", opts->lease_ttl,
                      (opts->flags & TOPCOW_REMOTE_TAKE_LEASE) ? LEASE_TAKE_OVER : 0, &lease);
    if (r < 0)
        goto out;
    r = remote_read_head(&rm, head, etag);
    if (r == 0)
        r = remote_set_head(&rm, fc.found, etag);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", topcow_last_error());
    int lr = lease_release(&lease);
    if (r < 0)
        err_restore(r, msg);
    else
        r = lr;
out:
    remote_close(&rm);
    return r;
}

/* ---- gc ------------------------------------------------------------------ */

struct gc {
    struct remote *rm;
    struct cloud_hash *refs; /* every chunk a manifest names, sorted */
    size_t n_refs, cap_refs;
    uint64_t manifests;
    char held[300];          /* a held image lease, for the message */
};

static int
cmp_hash(const void *a, const void *b)
{
    return memcmp(a, b, CLOUD_HASH_LEN);
}

static int
gc_gen(void *opaque, const char *gen)
{
    struct gc *g = opaque;
    struct manifest m;
    int r = remote_read_manifest(g->rm, gen, &m);
    if (r < 0)
        return r;
    if (g->n_refs + m.n_chunks > g->cap_refs) {
        size_t cap = (g->n_refs + m.n_chunks) * 2 + 64;
        void *v = realloc(g->refs, cap * sizeof *g->refs);
        if (!v) {
            manifest_free(&m);
            return err_set(-ENOMEM, "cloud: out of memory");
        }
        g->refs = v;
        g->cap_refs = cap;
    }
    for (uint64_t i = 0; i < m.n_chunks; i++)
        if (!cloud_hash_is_zero(&m.chunks[i]))
            g->refs[g->n_refs++] = m.chunks[i];
    g->manifests++;
    manifest_free(&m);
    return 0;
}

/* For each image: are its generations readable, and is its lease free? */
static int
gc_image(void *opaque, const char *name)
{
    struct gc *g = opaque;
    snprintf(g->rm->name, sizeof g->rm->name, "%s", name);
    char key[STORE_KEY_MAX + 1];
    struct lease_info li;
    remote_key_lease(g->rm, key);
    int r = lease_read(g->rm->st, key, &li, NULL);
    if (r == 0 && lease_is_held(&li)) {
        snprintf(g->held, sizeof g->held, "%s is leased to %s (%s)", name, li.holder, li.op);
        return -EBUSY;
    }
    if (r < 0 && r != -ENOENT)
        return r;
    return 0;
}

/* Every manifest in the store, of images with or without a HEAD. */
static int
gc_any_manifest(void *opaque, const struct store_entry *e)
{
    struct gc *g = opaque;
    const char *p = e->key + strlen("images/"), *slash = strchr(p, '/');
    if (!slash || strncmp(slash, "/gen/", 5) != 0)
        return 0;
    size_t n = (size_t)(slash - p);
    if (n > CLOUD_NAME_MAX || !cloud_gen_valid(slash + 5))
        return 0;
    memcpy(g->rm->name, p, n);
    g->rm->name[n] = '\0';
    return gc_gen(g, slash + 5);
}

struct sweep {
    struct gc *g;
    int64_t cutoff;
    bool dry_run;
    struct topcow_remote_gc_result *res;
};

static int
gc_chunk(void *opaque, const struct store_entry *e)
{
    struct sweep *s = opaque;
    const char *hex = strrchr(e->key, '/');
    struct cloud_hash h;
    if (!hex || !cloud_hash_parse(hex + 1, &h))
        return 0; /* not a chunk of ours */
    s->res->chunks++;
    if (s->g->n_refs && bsearch(&h, s->g->refs, s->g->n_refs, sizeof h, cmp_hash)) {
        s->res->chunks_referenced++;
        return 0;
    }
    if (e->mtime == 0 || e->mtime > s->cutoff) {
        s->res->chunks_young++;
        return 0;
    }
    s->res->chunks_deleted++;
    s->res->bytes_deleted += e->size;
    return s->dry_run ? 0 : store_delete(s->g->rm->st, e->key);
}

int
topcow_remote_gc(const char *store, const struct topcow_remote_opts *opts,
                 struct topcow_remote_gc_result *res)
{
    err_begin("remote gc");
    static const struct topcow_remote_opts defaults = TOPCOW_REMOTE_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    struct topcow_remote_gc_result local = {.struct_size = sizeof local};
    if (!res || res->struct_size < sizeof *res)
        res = &local;
    size_t keep = res->struct_size;
    memset(res, 0, sizeof *res);
    res->struct_size = keep;
    struct store_opts so = {opts->endpoint, opts->profile};
    struct remote rm;
    struct lease lease;
    struct gc g = {.rm = &rm};
    int r = remote_open(store, false, NULL, &so, &rm);
    if (r < 0)
        return r;
    r = lease_acquire(&rm, &so, "gc", opts->lease_ttl,
                      (opts->flags & TOPCOW_REMOTE_TAKE_LEASE) ? LEASE_TAKE_OVER : 0, &lease);
    if (r < 0)
        goto out_close;
    /* After our lease is written: any writer that starts now sees it. */
    r = remote_list_images(&rm, gc_image, &g);
    if (r == -EBUSY) {
        r = err_set(-EBUSY, "cloud: %s; gc runs only while no image is being written", g.held);
        goto out;
    }
    if (r < 0)
        goto out;
    if ((r = store_list(rm.st, "images/", gc_any_manifest, &g)) < 0)
        goto out;
    rm.name[0] = '\0';
    if (g.n_refs)
        qsort(g.refs, g.n_refs, sizeof *g.refs, cmp_hash);
    res->manifests = g.manifests;
    uint64_t grace = opts->gc_grace ? opts->gc_grace : 86400;
    struct sweep s = {&g, (int64_t)time(NULL) - (int64_t)grace,
                      (opts->flags & TOPCOW_REMOTE_DRY_RUN) != 0, res};
    if (!lease_ok(&lease)) {
        r = err_set(-EBUSY, "cloud: the gc lease was lost; nothing deleted");
        goto out;
    }
    r = store_list(rm.st, "chunks/", gc_chunk, &s);
out: {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", topcow_last_error());
    int lr = lease_release(&lease);
    if (r < 0)
        err_restore(r, msg);
    else
        r = lr;
}
out_close:
    free(g.refs);
    remote_close(&rm);
    return r;
}
