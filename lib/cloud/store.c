// SPDX-License-Identifier: MIT
/* The object-store front: URL dispatch to a backend, and the checks every
 * call gets whatever the backend (key syntax, arguments), so that file://
 * and s3:// accept and refuse the same keys. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "store.h"

/* A key as store.h defines it; @prefix relaxes the rules for list
 * prefixes (may be empty, may end with '/' or inside a segment). */
static int
check_key(const char *key, bool prefix)
{
    size_t n = strlen(key);
    RETURN_ERR_IF(!prefix && n == 0, -EINVAL, "store: empty key");
    RETURN_ERR_IF(n > STORE_KEY_MAX, -EINVAL, "store: key of %zu bytes (at most %d)", n,
                  STORE_KEY_MAX);
    RETURN_ERR_IF(key[0] == '/', -EINVAL, "store: key '%s' starts with '/'", key);
    RETURN_ERR_IF(strncmp(key, ".topcow", 7) == 0, -EINVAL,
                  "store: key '%s' is in the reserved namespace", key);
    for (const char *p = key; *p; p++)
        RETURN_ERR_IF((unsigned char)*p < 0x20 || *p == 0x7f, -EINVAL,
                      "store: key '%s' holds a control character", key);
    /* Segment by segment: none empty (except a prefix's last), "." or "..". */
    for (const char *seg = key; *seg;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        bool last = !end;
        RETURN_ERR_IF(len == 0, -EINVAL, "store: key '%s' has an empty segment", key);
        RETURN_ERR_IF(!(prefix && last) && ((len == 1 && seg[0] == '.') ||
                                            (len == 2 && seg[0] == '.' && seg[1] == '.')),
                      -EINVAL, "store: key '%s' has a '.' or '..' segment", key);
        if (last)
            break;
        seg = end + 1;
        RETURN_ERR_IF(!prefix && !*seg, -EINVAL, "store: key '%s' ends with '/'", key);
    }
    return 0;
}

int
store_open(const char *url, const struct store_opts *opts, struct store **out)
{
    *out = NULL;
    if (strncmp(url, "file://", 7) == 0) {
        const char *path = url + 7;
        if (strncmp(path, "localhost/", 10) == 0)
            path += 9;
        RETURN_ERR_IF(path[0] != '/', -EINVAL,
                      "store: '%s': a file URL names an absolute directory (file:///dir)", url);
        return store_file_open(path, out);
    }
    if (strncmp(url, "s3://", 5) == 0) {
#ifndef HAVE_S3
        (void)opts;
        return err_set(-ENOTSUP, "store: '%s': this topcow was built without S3 support", url);
#else
        const char *b = url + 5, *slash = strchr(b, '/');
        size_t blen = slash ? (size_t)(slash - b) : strlen(b);
        RETURN_ERR_IF(blen < 3 || blen > 63, -EINVAL, "store: '%s': no valid bucket name", url);
        char bucket[64];
        memcpy(bucket, b, blen);
        bucket[blen] = '\0';
        const char *prefix = slash ? slash + 1 : "";
        while (*prefix == '/')
            prefix++;
        if (*prefix) {
            char *p = strdup(prefix);
            RETURN_ERR_IF(!p, -ENOMEM, "store: out of memory");
            size_t n = strlen(p);
            while (n && p[n - 1] == '/')
                p[--n] = '\0';
            int r = check_key(p, false);
            if (r == 0)
                r = store_s3_open(bucket, p, opts, out);
            free(p);
            return r;
        }
        return store_s3_open(bucket, "", opts, out);
#endif
    }
    return err_set(-EINVAL, "store: '%s': not a file:// or s3:// URL", url);
}

void
store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

int
store_get(struct store *st, const char *key, void **data, size_t *len, struct store_info *info)
{
    *data = NULL;
    *len = 0;
    int r = check_key(key, false);
    return r < 0 ? r : st->ops->get(st, key, data, len, info);
}

int
store_get_range(struct store *st, const char *key, uint64_t off, void *buf, size_t len,
                size_t *got)
{
    *got = 0;
    int r = check_key(key, false);
    return r < 0 ? r : st->ops->get_range(st, key, off, buf, len, got);
}

int
store_put_once(struct store *st, const char *key, const void *data, size_t len,
               char etag[STORE_ETAG_MAX])
{
    int r = check_key(key, false);
    return r < 0 ? r : st->ops->put_once(st, key, data, len, etag);
}

int
store_put_cas(struct store *st, const char *key, const void *data, size_t len,
              const char *expected, char etag[STORE_ETAG_MAX])
{
    int r = check_key(key, false);
    if (r < 0)
        return r;
    RETURN_ERR_IF(!expected || !*expected || strlen(expected) >= STORE_ETAG_MAX, -EINVAL,
                  "store: compare-and-swap of '%s' without a valid ETag", key);
    return st->ops->put_cas(st, key, data, len, expected, etag);
}

int
store_head(struct store *st, const char *key, struct store_info *info)
{
    int r = check_key(key, false);
    return r < 0 ? r : st->ops->head(st, key, info);
}

int
store_list(struct store *st, const char *prefix,
           int (*fn)(void *opaque, const struct store_entry *e), void *opaque)
{
    if (!prefix)
        prefix = "";
    int r = check_key(prefix, true);
    return r < 0 ? r : st->ops->list(st, prefix, fn, opaque);
}

void
store_get_stats(struct store *st, struct store_stats *out)
{
    memset(out, 0, sizeof *out);
    if (st->ops->struct_size >= offsetof(struct store_ops, stats) + sizeof st->ops->stats &&
        st->ops->stats)
        st->ops->stats(st, out);
}

int
store_delete(struct store *st, const char *key)
{
    int r = check_key(key, false);
    return r < 0 ? r : st->ops->del(st, key);
}
