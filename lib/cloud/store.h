// SPDX-License-Identifier: MIT
/* Object stores for cloud remotes: one interface over a directory
 * (file:///dir, the embedded default, local or network mounted) and an S3
 * bucket (s3://bucket/prefix).  Both give the same guarantees, which the
 * remote layout builds on: objects appear whole or not at all, create-once
 * writes never replace an object, and compare-and-swap writes replace one
 * only if it still has the ETag the caller read.
 *
 * Keys are relative ("images/xp/HEAD"): segments separated by single '/',
 * none empty, "." or "..", no control characters, at most 1,024 bytes, and
 * a first segment not starting with ".topcow" (reserved for the file
 * store's own files).  Errors: 0 or -errno with a message, as in s3.h:
 * -EEXIST a create-once found the key taken, -ESTALE a compare-and-swap
 * found another ETag or no object, -ENOENT no such object, -EINVAL a bad
 * key or URL. */
#ifndef TOPCOW_STORE_H
#define TOPCOW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ETAG_MAX 128 /* with the NUL */
#define STORE_KEY_MAX 1024

struct store;

struct store_info {
    uint64_t size;
    /* Lower-case hex MD5 of the content for both stores (S3's ETag of a
     * single-part upload), without quotes. */
    char etag[STORE_ETAG_MAX];
};

struct store_entry {
    const char *key;  /* relative to the store; valid during the callback */
    uint64_t size;
    const char *etag; /* NULL when the store cannot tell it cheaply (file) */
    int64_t mtime;    /* last modified, Unix seconds (0: unknown) */
};

/* Requests made to the store's server (S3; zero for file://). */
struct store_stats {
    uint64_t requests, retries;
    uint64_t bytes_sent, bytes_received;
};

struct store_ops {
    size_t struct_size;
    const char *name; /* "file", "s3" */
    void (*close)(struct store *st);
    int (*get)(struct store *st, const char *key, void **data, size_t *len,
               struct store_info *info);
    int (*get_range)(struct store *st, const char *key, uint64_t off, void *buf, size_t len,
                     size_t *got);
    int (*put_once)(struct store *st, const char *key, const void *data, size_t len,
                    char etag[STORE_ETAG_MAX]);
    int (*put_cas)(struct store *st, const char *key, const void *data, size_t len,
                   const char *expected, char etag[STORE_ETAG_MAX]);
    int (*head)(struct store *st, const char *key, struct store_info *info);
    int (*list)(struct store *st, const char *prefix,
                int (*fn)(void *opaque, const struct store_entry *e), void *opaque);
    int (*del)(struct store *st, const char *key);
    /* Optional (NULL: all zero): counters since the store was opened. */
    void (*stats)(struct store *st, struct store_stats *out);
};

struct store {
    const struct store_ops *ops;
    char *url;
};

struct store_opts {
    const char *endpoint; /* s3: overrides AWS_ENDPOINT_URL; NULL: see s3_config_load */
    const char *profile;  /* s3: an AWS profile; NULL: see s3_config_load */
};

/* Open the store at @url: "file:///absolute/dir" (the directory must exist)
 * or "s3://bucket" / "s3://bucket/prefix" (configured as s3_config_load()
 * says, @opts may be NULL).  Returns 0 and *@out, or -errno.
 * Thread-safety: one thread at a time per store. */
int store_open(const char *url, const struct store_opts *opts, struct store **out);
void store_close(struct store *st); /* NULL is a no-op */

/* The whole object into a new buffer (free(3); never NULL on success) and
 * its size and ETag into @info (may be NULL). */
int store_get(struct store *st, const char *key, void **data, size_t *len,
              struct store_info *info);

/* Up to @len bytes at @off into @buf; *@got is fewer at the end, 0 past it. */
int store_get_range(struct store *st, const char *key, uint64_t off, void *buf, size_t len,
                    size_t *got);

/* Create @key with @len bytes unless it exists (-EEXIST then, the object
 * untouched).  @etag (may be NULL) gets the new ETag. */
int store_put_once(struct store *st, const char *key, const void *data, size_t len,
                   char etag[STORE_ETAG_MAX]);

/* Replace @key only if its ETag is still @expected (-ESTALE when it is not,
 * or when the key is gone).  @etag (may be NULL) gets the new ETag. */
int store_put_cas(struct store *st, const char *key, const void *data, size_t len,
                  const char *expected, char etag[STORE_ETAG_MAX]);

int store_head(struct store *st, const char *key, struct store_info *info);

/* Every key starting with @prefix ("" for all; need not end at a '/'), in
 * byte order, as S3 lists them.  A non-zero return from @fn stops the walk
 * and is returned. */
int store_list(struct store *st, const char *prefix,
               int (*fn)(void *opaque, const struct store_entry *e), void *opaque);

/* Delete @key; deleting a key that does not exist succeeds, as on S3. */
int store_delete(struct store *st, const char *key);

/* The store's counters (all zero for a backend without them). */
void store_get_stats(struct store *st, struct store_stats *out);

/* Backends, for store_open(). */
int store_file_open(const char *dir, struct store **out);
int store_s3_open(const char *bucket, const char *prefix, const struct store_opts *opts,
                  struct store **out);

#endif
