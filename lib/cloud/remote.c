// SPDX-License-Identifier: MIT
/* One image in a store: URL splitting, HEAD, manifests, commits and
 * listings (remote.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "remote.h"
#include "strbuf.h"

#define MANIFEST_MAX (512u << 20) /* a manifest of 8M chunks is 520 MiB: refuse more */

int
remote_open(const char *url, bool need_name, const char *default_name,
            const struct store_opts *opts, struct remote *out)
{
    memset(out, 0, sizeof *out);
    const char *scheme_end = strstr(url, "://");
    RETURN_ERR_IF(!scheme_end, -EINVAL, "cloud: '%s' is not a remote URL (file:///dir/NAME or "
                  "s3://bucket/NAME)", url);
    char *u = strdup(url);
    RETURN_ERR_IF(!u, -ENOMEM, "cloud: out of memory");
    size_t n = strlen(u);
    bool trailing = n && u[n - 1] == '/';
    if (need_name) {
        const char *name;
        if (trailing) {
            while (n && u[n - 1] == '/')
                u[--n] = '\0';
            if (!default_name) {
                free(u);
                return err_set(-EINVAL, "cloud: '%s' names no image (STORE/NAME)", url);
            }
            name = default_name;
        } else {
            char *slash = strrchr(u, '/');
            /* "s3://bucket/NAME": the store needs a bucket; "file:///NAME" a
             * directory: the last segment must follow the scheme's part. */
            if (!slash || slash < u + (scheme_end - url) + 3 ||
                (strncmp(url, "s3://", 5) == 0 && !strchr(u + 5, '/'))) {
                free(u);
                return err_set(-EINVAL, "cloud: '%s' names no image (STORE/NAME)", url);
            }
            *slash = '\0';
            name = slash + 1;
        }
        int r = cloud_check_name(name);
        if (r < 0) {
            free(u);
            return r;
        }
        snprintf(out->name, sizeof out->name, "%s", name);
    } else {
        while (n && u[n - 1] == '/')
            u[--n] = '\0';
    }
    if (strcmp(u, "file://") == 0) { /* file:///NAME: the root directory */
        char *root = strdup("file:///");
        free(u);
        RETURN_ERR_IF(!root, -ENOMEM, "cloud: out of memory");
        u = root;
    }
    out->store_url = u;
    struct strbuf b = {0};
    strbuf_addf(&b, "%s%s%s", u, out->name[0] && u[strlen(u) - 1] != '/' ? "/" : "", out->name);
    out->url = strbuf_release(&b);
    int r = out->url ? store_open(u, opts, &out->st) : err_set(-ENOMEM, "cloud: out of memory");
    if (r < 0) {
        remote_close(out);
        return r;
    }
    return 0;
}

void
remote_close(struct remote *r)
{
    if (!r)
        return;
    store_close(r->st);
    free(r->store_url);
    free(r->url);
    memset(r, 0, sizeof *r);
}

int
remote_open_store(const struct remote *r, const struct store_opts *opts, struct store **out)
{
    return store_open(r->store_url, opts, out);
}

void
remote_key_head(const struct remote *r, char *out)
{
    snprintf(out, STORE_KEY_MAX + 1, "images/%s/HEAD", r->name);
}

void
remote_key_lease(const struct remote *r, char *out)
{
    if (r->name[0])
        snprintf(out, STORE_KEY_MAX + 1, "images/%s/LEASE", r->name);
    else
        snprintf(out, STORE_KEY_MAX + 1, "gc/LEASE");
}

void
remote_key_manifest(const struct remote *r, const char *gen, char *out)
{
    snprintf(out, STORE_KEY_MAX + 1, "images/%s/gen/%s", r->name, gen);
}

int
remote_read_head(struct remote *r, char gen[CLOUD_GEN_MAX], char etag[STORE_ETAG_MAX])
{
    char key[STORE_KEY_MAX + 1];
    remote_key_head(r, key);
    void *data;
    size_t len;
    struct store_info info;
    int rc = store_get(r->st, key, &data, &len, &info);
    if (rc == -ENOENT)
        return err_set(-ENOENT, "cloud: %s: no such image (no %s)", r->url, key);
    if (rc < 0)
        return rc;
    rc = len > 4096 ? err_set(-EPROTO, "cloud: %s: HEAD of %zu bytes", r->url, len)
                    : head_parse(data, len, r->name, gen);
    free(data);
    if (rc == 0 && etag)
        snprintf(etag, STORE_ETAG_MAX, "%s", info.etag);
    return rc;
}

int
remote_read_manifest(struct remote *r, const char *gen, struct manifest *out)
{
    char key[STORE_KEY_MAX + 1];
    memset(out, 0, sizeof *out);
    RETURN_ERR_IF(!cloud_gen_valid(gen), -EINVAL, "cloud: '%s' is not a generation id", gen);
    remote_key_manifest(r, gen, key);
    void *data;
    size_t len;
    int rc = store_get(r->st, key, &data, &len, NULL);
    if (rc == -ENOENT)
        return err_set(-ENOENT, "cloud: %s: generation %s is not in the store (no %s)", r->url,
                       gen, key);
    if (rc < 0)
        return rc;
    rc = len > MANIFEST_MAX ? err_set(-EPROTO, "cloud: %s: manifest of %zu bytes", key, len)
                            : manifest_parse(data, len, r->name, gen, out);
    free(data);
    return rc;
}

int
remote_set_head(struct remote *r, const char *gen, const char *head_etag)
{
    char key[STORE_KEY_MAX + 1], *text;
    size_t len;
    remote_key_head(r, key);
    int rc = head_format(gen, &text, &len);
    if (rc < 0)
        return rc;
    rc = head_etag ? store_put_cas(r->st, key, text, len, head_etag, NULL)
                   : store_put_once(r->st, key, text, len, NULL);
    free(text);
    if (rc == -ESTALE || rc == -EEXIST)
        return err_set(-ESTALE, "cloud: %s: HEAD moved while generation %s was being committed",
                       r->url, gen);
    return rc;
}

int
remote_commit(struct remote *r, const struct manifest *m, const char *head_etag)
{
    char key[STORE_KEY_MAX + 1], *text;
    size_t len;
    remote_key_manifest(r, m->gen, key);
    int rc = manifest_format(m, &text, &len);
    if (rc < 0)
        return rc;
    rc = store_put_once(r->st, key, text, len, NULL);
    if (rc == -EEXIST) {
        /* Ours from an attempt whose reply was lost, or a (random) clash. */
        void *old;
        size_t olen;
        rc = store_get(r->st, key, &old, &olen, NULL);
        if (rc == 0) {
            if (olen != len || memcmp(old, text, len) != 0)
                rc = err_set(-EEXIST, "cloud: %s exists with other contents", key);
            free(old);
        }
    }
    free(text);
    return rc < 0 ? rc : remote_set_head(r, m->gen, head_etag);
}

struct gen_list {
    char (*v)[CLOUD_GEN_MAX];
    size_t n, cap;
    size_t skip; /* bytes of the prefix */
};

static int
collect_gen(void *opaque, const struct store_entry *e)
{
    struct gen_list *gl = opaque;
    const char *gen = e->key + gl->skip;
    if (!cloud_gen_valid(gen))
        return 0; /* not ours: ignore */
    if (gl->n == gl->cap) {
        size_t cap = gl->cap ? gl->cap * 2 : 32;
        void *v = realloc(gl->v, cap * sizeof *gl->v);
        RETURN_ERR_IF(!v, -ENOMEM, "cloud: out of memory");
        gl->v = v;
        gl->cap = cap;
    }
    snprintf(gl->v[gl->n++], CLOUD_GEN_MAX, "%s", gen);
    return 0;
}

int
remote_list_gens(struct remote *r, int (*fn)(void *opaque, const char *gen), void *opaque)
{
    char prefix[STORE_KEY_MAX + 1];
    snprintf(prefix, sizeof prefix, "images/%s/gen/", r->name);
    struct gen_list gl = {.skip = strlen(prefix)};
    int rc = store_list(r->st, prefix, collect_gen, &gl);
    /* Keys sort by sequence number already: 8 digits, zero-padded. */
    for (size_t i = 0; rc == 0 && i < gl.n; i++)
        rc = fn(opaque, gl.v[i]);
    free(gl.v);
    return rc;
}

struct image_walk {
    int (*fn)(void *opaque, const char *name);
    void *opaque;
};

static int
image_one(void *opaque, const struct store_entry *e)
{
    struct image_walk *w = opaque;
    const char *name = e->key + strlen("images/");
    const char *slash = strchr(name, '/');
    if (!slash || strcmp(slash, "/HEAD") != 0)
        return 0;
    char buf[CLOUD_NAME_MAX + 1];
    size_t n = (size_t)(slash - name);
    if (n > CLOUD_NAME_MAX)
        return 0;
    memcpy(buf, name, n);
    buf[n] = '\0';
    if (cloud_check_name(buf) < 0) {
        err_clear();
        return 0;
    }
    return w->fn(w->opaque, buf);
}

int
remote_list_images(struct remote *r, int (*fn)(void *opaque, const char *name), void *opaque)
{
    struct image_walk w = {fn, opaque};
    return store_list(r->st, "images/", image_one, &w);
}
