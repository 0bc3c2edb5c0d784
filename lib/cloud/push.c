// SPDX-License-Identifier: MIT
/* topcow_remote_push: upload the chunks the store lacks, then the manifest,
 * then swap HEAD (docs/internals/cloud-layout.md).  The order is the whole
 * crash story: HEAD only ever names a generation whose manifest and chunks
 * are complete, and a push killed anywhere leaves chunks that the next push
 * finds and does not send again. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chunk.h"
#include "error.h"
#include "io-remote.h"
#include "io.h"
#include "remote.h"
#include "topcow.h"
#include "xfer.h"

/* Hashes the store is known to hold (those of the manifests read), sorted
 * for bsearch. */
struct known {
    struct cloud_hash *v;
    size_t n;
};

static int
cmp_hash(const void *a, const void *b)
{
    return memcmp(a, b, CLOUD_HASH_LEN);
}

static int
known_add(struct known *k, const struct manifest *m)
{
    struct cloud_hash *v = realloc(k->v, (k->n + m->n_chunks + 1) * sizeof *v);
    RETURN_ERR_IF(!v, -ENOMEM, "cloud: out of memory");
    k->v = v;
    for (uint64_t i = 0; i < m->n_chunks; i++)
        if (!cloud_hash_is_zero(&m->chunks[i]))
            k->v[k->n++] = m->chunks[i];
    qsort(k->v, k->n, sizeof *k->v, cmp_hash);
    return 0;
}

static bool
known_has(const struct known *k, const struct cloud_hash *h)
{
    return k->n && bsearch(h, k->v, k->n, sizeof *k->v, cmp_hash);
}

struct push {
    struct io *file;
    bool compress;
    struct manifest m;
    struct known known;
};

static int
push_chunk(struct xfer *x, struct store *st, uint64_t i, void *buf)
{
    struct push *p = x->opaque;
    uint64_t len = xfer_chunk_len(x, i);
    int r = io_pread(p->file, buf, len, i * x->chunk_size);
    if (r < 0)
        return r;
    if (cloud_buf_is_zero(buf, len)) {
        memset(&p->m.chunks[i], 0, sizeof p->m.chunks[i]);
        atomic_fetch_add(&x->zero, 1);
        xfer_chunk_done(x, len);
        return 0;
    }
    struct cloud_hash h;
    if ((r = cloud_hash(buf, len, &h)) < 0)
        return r;
    p->m.chunks[i] = h;
    if (known_has(&p->known, &h)) {
        atomic_fetch_add(&x->present, 1);
        xfer_chunk_done(x, len);
        return 0;
    }
    char key[STORE_KEY_MAX + 1];
    cloud_chunk_key(&h, key, sizeof key);
    struct store_info info;
    r = store_head(st, key, &info);
    if (r == 0) {
        /* Another image's, or an earlier push's (objects appear whole). */
        atomic_fetch_add(&x->present, 1);
        xfer_chunk_done(x, len);
        return 0;
    }
    if (r != -ENOENT)
        return r;
    uint64_t sent;
    r = cloud_chunk_put(st, &h, buf, len, p->compress, (char *)buf + x->chunk_size, &sent);
    if (r == -EEXIST) { /* the same chunk twice in this image, or a racing pusher */
        atomic_fetch_add(&x->present, 1);
    } else if (r < 0) {
        return r;
    } else {
        atomic_fetch_add(&x->transferred, 1);
        atomic_fetch_add(&x->bytes_transferred, sent);
    }
    xfer_chunk_done(x, len);
    return 0;
}

static bool
same_content(const struct manifest *a, const struct manifest *b)
{
    return a->size == b->size && a->chunk_size == b->chunk_size &&
           memcmp(a->chunks, b->chunks, a->n_chunks * sizeof *a->chunks) == 0;
}

/* @main is the calling thread's store: its requests (lease, HEAD, manifests)
 * and their retries count too. */
static void
fill_result(struct topcow_remote_result *res, const struct manifest *m, const struct xfer *x,
            struct store *main)
{
    if (!res || res->struct_size < sizeof *res)
        return;
    size_t keep = res->struct_size;
    memset(res, 0, sizeof *res);
    res->struct_size = keep;
    snprintf(res->generation, sizeof res->generation, "%s", m->gen);
    snprintf(res->parent, sizeof res->parent, "%s", m->parent);
    res->size = m->size;
    res->chunks = m->n_chunks;
    if (x) {
        res->chunks_zero = atomic_load(&x->zero);
        res->chunks_transferred = atomic_load(&x->transferred);
        res->bytes_transferred = atomic_load(&x->bytes_transferred);
        res->chunks_present = atomic_load(&x->present);
        res->requests = atomic_load(&x->requests);
        res->retries = atomic_load(&x->retries);
    }
    struct store_stats ss;
    store_get_stats(main, &ss);
    res->requests += ss.requests;
    res->retries += ss.retries;
}

static const char *
base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void
describe_gen(struct remote *rm, const char *gen, char *out, size_t size)
{
    struct manifest hm;
    if (remote_read_manifest(rm, gen, &hm) == 0) {
        char when[32];
        struct tm tm;
        time_t t = (time_t)hm.created;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime_r(&t, &tm));
        snprintf(out, size, "%s (pushed by %s@%s at %s)", gen, hm.user, hm.host, when);
        manifest_free(&hm);
    } else {
        snprintf(out, size, "%s", gen);
    }
}

int
topcow_remote_push(const char *image, const char *remote, const struct topcow_remote_opts *opts,
                   struct topcow_remote_result *res)
{
    static const struct topcow_remote_opts defaults = TOPCOW_REMOTE_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    err_begin("push");
    if (io_is_remote_url(image)) {
        /* A remote run from its cache: push the writes its last run kept. */
        RETURN_ERR_IF(remote && strcmp(remote, image) != 0, -EINVAL,
                      "cloud: pushing the cache of %s goes to %s itself, not %s", image, image,
                      remote);
        char gen[CLOUD_GEN_MAX];
        bool pushed = false;
        int r = io_remote_push_cache(image, gen, &pushed);
        if (r == 0 && res && res->struct_size >= sizeof *res) {
            size_t keep = res->struct_size;
            memset(res, 0, sizeof *res);
            res->struct_size = keep;
            snprintf(res->generation, sizeof res->generation, "%s", gen);
            res->up_to_date = !pushed;
        }
        return r;
    }
    struct store_opts sopts = {opts->endpoint, opts->profile};
    struct remote rm;
    struct lease lease;
    struct local_state ls = {0};
    struct push p = {.compress = (opts->flags & TOPCOW_REMOTE_COMPRESS) != 0};
    struct manifest head_m = {0};
    char head_gen[CLOUD_GEN_MAX] = "", head_etag[STORE_ETAG_MAX] = "", base[CLOUD_GEN_MAX] = "";
    bool have_lease = false;
    uint64_t size = 0;

    int r = remote_open(remote, true, base_name(image), &sopts, &rm);
    if (r < 0)
        return r;
    r = io_file_open(image, IO_RDONLY, &p.file);
    if (r == -EBUSY)
        r = err_set(-EBUSY, "cloud: %s is open for writing by another process (a VM, topcow "
                    "serve); push it when it is shut down, or push a copy", image);
    if (r < 0)
        goto out;
    if ((r = io_get_size(p.file, &size)) < 0)
        goto out;

    r = local_state_read(image, &ls);
    if (r == 0 && strcmp(ls.remote, rm.url) == 0)
        snprintf(base, sizeof base, "%s", ls.gen);
    else if (r < 0 && r != -ENOENT)
        goto out;

    r = lease_acquire(&rm, &sopts, "push", opts->lease_ttl,
                      ((opts->flags & TOPCOW_REMOTE_NO_WAIT) ? 0 : LEASE_WAIT_PUSH) |
                          ((opts->flags & TOPCOW_REMOTE_TAKE_LEASE) ? LEASE_TAKE_OVER : 0),
                      &lease);
    if (r < 0)
        goto out;
    have_lease = true;

    r = remote_read_head(&rm, head_gen, head_etag);
    if (r == -ENOENT) {
        head_gen[0] = head_etag[0] = '\0';
    } else if (r < 0) {
        goto out;
    } else {
        if ((r = remote_read_manifest(&rm, head_gen, &head_m)) < 0)
            goto out;
        if ((r = known_add(&p.known, &head_m)) < 0)
            goto out;
    }
    if (base[0] && strcmp(base, head_gen) != 0) {
        struct manifest bm;
        if (remote_read_manifest(&rm, base, &bm) == 0) {
            r = known_add(&p.known, &bm);
            manifest_free(&bm);
            if (r < 0)
                goto out;
        }
    }

    /* The new manifest: the image keeps its chunk size. */
    snprintf(p.m.name, sizeof p.m.name, "%s", rm.name);
    snprintf(p.m.parent, sizeof p.m.parent, "%s", base);
    p.m.size = size;
    p.m.chunk_size = head_gen[0] ? head_m.chunk_size
                                 : (opts->chunk_size ? opts->chunk_size : CLOUD_CHUNK_SIZE_DEFAULT);
    p.m.created = (int64_t)time(NULL);
    char machine[64];
    cloud_whoami(p.m.user, sizeof p.m.user, p.m.host, sizeof p.m.host, machine, sizeof machine);
    if ((r = manifest_alloc_chunks(&p.m)) < 0)
        goto out;
    uint64_t seq = cloud_gen_seq(head_gen[0] ? head_gen : "00000000");
    if (base[0] && cloud_gen_seq(base) > seq)
        seq = cloud_gen_seq(base);
    if ((r = cloud_gen_new(seq + 1, p.m.gen)) < 0)
        goto out;

    struct xfer x = {
        .rm = &rm, .sopts = &sopts, .n_chunks = p.m.n_chunks, .chunk_size = p.m.chunk_size,
        .file_size = size, .jobs = opts->jobs, .fn = push_chunk, .opaque = &p, .opts = opts,
    };
    if ((r = xfer_run(&x)) < 0)
        goto out;

    if (head_gen[0] && same_content(&p.m, &head_m)) {
        /* Already there: the last push swapped HEAD but died before it
         * recorded that, or nothing changed. */
        r = local_state_write(image, rm.url, head_gen);
        if (r == 0) {
            snprintf(p.m.gen, sizeof p.m.gen, "%s", head_gen);
            snprintf(p.m.parent, sizeof p.m.parent, "%s", head_m.parent);
            fill_result(res, &p.m, &x, rm.st);
            if (res && res->struct_size >= sizeof *res)
                res->up_to_date = true;
        }
        goto out;
    }
    if (!lease_ok(&lease)) {
        r = err_set(-EBUSY, "cloud: %s: the lease was lost during the upload; HEAD not changed",
                    rm.url);
        goto out;
    }
    bool conflict = head_gen[0] && strcmp(head_gen, base) != 0 &&
                    !(opts->flags & TOPCOW_REMOTE_FORCE);
    if (conflict) {
        /* Keep this copy retrievable as its own generation, off HEAD. */
        char text[300];
        describe_gen(&rm, head_gen, text, sizeof text);
        char key[STORE_KEY_MAX + 1], *mt;
        size_t ml;
        remote_key_manifest(&rm, p.m.gen, key);
        r = manifest_format(&p.m, &mt, &ml);
        if (r == 0) {
            r = store_put_once(rm.st, key, mt, ml, NULL);
            free(mt);
        }
        if (r < 0)
            goto out;
        r = err_set(-ESTALE,
                    "conflict: %s has moved to generation %s, but %s came from %s; this copy is "
                    "stored as generation %s, off HEAD. Pull the new HEAD, or push --force to "
                    "make this copy HEAD",
                    rm.url, text, image, base[0] ? base : "no generation (never pulled)",
                    p.m.gen);
        goto out;
    }
    r = remote_commit(&rm, &p.m, head_gen[0] ? head_etag : NULL);
    if (r == -ESTALE) {
        char now[CLOUD_GEN_MAX] = "", text[300] = "another pusher's generation";
        if (remote_read_head(&rm, now, NULL) == 0)
            describe_gen(&rm, now, text, sizeof text);
        r = err_set(-ESTALE,
                    "conflict: another push to %s won the race with %s; this copy is stored as "
                    "generation %s, off HEAD. Pull the new HEAD, or push --force",
                    rm.url, text, p.m.gen);
        goto out;
    }
    if (r < 0)
        goto out;
    if ((r = local_state_write(image, rm.url, p.m.gen)) < 0)
        goto out;
    fill_result(res, &p.m, &x, rm.st);
out:
    if (have_lease) {
        int saved = r;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", topcow_last_error());
        int lr = lease_release(&lease);
        if (saved < 0)
            err_restore(saved, msg);
        else if (lr < 0)
            r = lr;
    }
    manifest_free(&head_m);
    manifest_free(&p.m);
    free(p.known.v);
    local_state_clear(&ls);
    io_close(p.file);
    remote_close(&rm);
    return r;
}
