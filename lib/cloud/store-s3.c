// SPDX-License-Identifier: MIT
/* The s3:// object store: keys live under a prefix of a bucket and map
 * one to one onto lib/cloud/s3.c's operations; S3's own conditional PUTs
 * give create-once (If-None-Match: *) and compare-and-swap (If-Match). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "s3.h"
#include "store.h"
#include "strbuf.h"

_Static_assert(STORE_ETAG_MAX == S3_ETAG_MAX, "ETags pass between store.h and s3.h as they are");

struct s3_store {
    struct store base;
    struct s3_client *c;
    char *bucket;
    char *prefix; /* "" or "dir/" */
};

static struct s3_store *
ss_of(struct store *st)
{
    return (struct s3_store *)st;
}

/* The object name of @key: prefix + key, or NULL when out of memory. */
static char *
full_key(struct s3_store *ss, const char *key)
{
    struct strbuf b = {0};
    strbuf_addf(&b, "%s%s", ss->prefix, key);
    return strbuf_release(&b);
}

#define WITH_KEY(ss, key, name)                                                                    \
    char *name = full_key((ss), (key));                                                            \
    if (!name)                                                                                     \
        return err_set(-ENOMEM, "s3: out of memory")

static int
s3s_get(struct store *st, const char *key, void **data, size_t *len, struct store_info *info)
{
    struct s3_store *ss = ss_of(st);
    struct s3_object_info oi;
    WITH_KEY(ss, key, k);
    int r = s3_get(ss->c, ss->bucket, k, data, len, &oi);
    free(k);
    if (r == 0 && info) {
        info->size = oi.size;
        memcpy(info->etag, oi.etag, STORE_ETAG_MAX);
    }
    return r;
}

static int
s3s_get_range(struct store *st, const char *key, uint64_t off, void *buf, size_t len,
              size_t *got)
{
    struct s3_store *ss = ss_of(st);
    WITH_KEY(ss, key, k);
    int r = s3_get_range(ss->c, ss->bucket, k, off, buf, len, got);
    free(k);
    return r;
}

static int
s3s_put_once(struct store *st, const char *key, const void *data, size_t len,
             char etag[STORE_ETAG_MAX])
{
    struct s3_store *ss = ss_of(st);
    WITH_KEY(ss, key, k);
    int r = s3_put(ss->c, ss->bucket, k, data, len, S3_PUT_CREATE_ONCE, NULL, etag);
    free(k);
    return r;
}

static int
s3s_put_cas(struct store *st, const char *key, const void *data, size_t len,
            const char *expected, char etag[STORE_ETAG_MAX])
{
    struct s3_store *ss = ss_of(st);
    WITH_KEY(ss, key, k);
    int r = s3_put(ss->c, ss->bucket, k, data, len, S3_PUT_IF_MATCH, expected, etag);
    free(k);
    return r;
}

static int
s3s_head(struct store *st, const char *key, struct store_info *info)
{
    struct s3_store *ss = ss_of(st);
    struct s3_object_info oi;
    WITH_KEY(ss, key, k);
    int r = s3_head(ss->c, ss->bucket, k, &oi);
    free(k);
    if (r == 0) {
        info->size = oi.size;
        memcpy(info->etag, oi.etag, STORE_ETAG_MAX);
    }
    return r;
}

static int
s3s_del(struct store *st, const char *key)
{
    struct s3_store *ss = ss_of(st);
    WITH_KEY(ss, key, k);
    int r = s3_delete(ss->c, ss->bucket, k);
    free(k);
    return r;
}

struct list_ctx {
    size_t strip; /* bytes of the store's prefix */
    int (*fn)(void *opaque, const struct store_entry *e);
    void *opaque;
};

static int
list_one(void *opaque, const struct s3_list_entry *e)
{
    struct list_ctx *lc = opaque;
    if (strlen(e->key) <= lc->strip)
        return 0; /* the prefix itself, as an object: not a key of this store */
    struct store_entry se = {e->key + lc->strip, e->size, e->etag, e->mtime};
    return lc->fn(lc->opaque, &se);
}

static int
s3s_list(struct store *st, const char *prefix,
         int (*fn)(void *opaque, const struct store_entry *e), void *opaque)
{
    struct s3_store *ss = ss_of(st);
    struct list_ctx lc = {strlen(ss->prefix), fn, opaque};
    WITH_KEY(ss, prefix, p);
    int r = s3_list(ss->c, ss->bucket, p, list_one, &lc);
    free(p);
    return r;
}

static void
s3s_close(struct store *st)
{
    struct s3_store *ss = ss_of(st);
    s3_client_free(ss->c);
    free(ss->bucket);
    free(ss->prefix);
    free(ss->base.url);
    free(ss);
}

static void
s3s_stats(struct store *st, struct store_stats *out)
{
    struct s3_stats s;
    s3_client_stats(ss_of(st)->c, &s);
    *out = (struct store_stats){s.requests, s.retries, s.bytes_sent, s.bytes_received};
}

static const struct store_ops s3_store_ops = {
    .struct_size = sizeof(struct store_ops),
    .name = "s3",
    .close = s3s_close,
    .get = s3s_get,
    .get_range = s3s_get_range,
    .put_once = s3s_put_once,
    .put_cas = s3s_put_cas,
    .head = s3s_head,
    .list = s3s_list,
    .del = s3s_del,
    .stats = s3s_stats,
};

int
store_s3_open(const char *bucket, const char *prefix, const struct store_opts *opts,
              struct store **out)
{
    struct s3_config cfg;
    struct s3_store *ss;
    struct strbuf b = {0};
    int r;

    *out = NULL;
    r = s3_config_load(&cfg, opts ? opts->endpoint : NULL, opts ? opts->profile : NULL);
    if (r < 0) {
        s3_config_clear(&cfg);
        return r;
    }
    ss = calloc(1, sizeof *ss);
    if (!ss) {
        s3_config_clear(&cfg);
        return err_set(-ENOMEM, "s3: out of memory");
    }
    ss->base.ops = &s3_store_ops;
    r = s3_client_new(&cfg, &ss->c);
    s3_config_clear(&cfg);
    if (r < 0)
        goto fail;
    ss->bucket = strdup(bucket);
    strbuf_addf(&b, "%s%s", prefix, *prefix ? "/" : "");
    ss->prefix = strbuf_release(&b);
    strbuf_addf(&b, "s3://%s/%s", bucket, ss->prefix ? ss->prefix : "");
    ss->base.url = strbuf_release(&b);
    if (!ss->bucket || !ss->prefix || !ss->base.url) {
        r = err_set(-ENOMEM, "s3: out of memory");
        goto fail;
    }
    *out = &ss->base;
    return 0;
fail:
    s3s_close(&ss->base);
    return r;
}
