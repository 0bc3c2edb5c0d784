// SPDX-License-Identifier: MIT
/* A small S3 client on libcurl for cloud remotes: whole and ranged GET,
 * plain, create-once and compare-and-swap PUT, HEAD, DELETE and
 * ListObjectsV2, signed with lib/cloud/s3-sigv4.c.  Configured the way AWS CLI
 * users expect (AWS_* variables, ~/.aws/credentials profiles, an explicit
 * endpoint).  Path-style addressing by default, for S3-compatible engines.
 *
 * Every call returns 0 or -errno and leaves a one-line message for
 * topcow_last_error() naming the method, bucket/key and status, such as
 * "s3: PUT bucket/key: 412 Precondition Failed".  The errno says what
 * happened: -EEXIST a create-once PUT found the object already there,
 * -ESTALE a compare-and-swap PUT found another ETag (or no object), -ENOENT
 * no such object or bucket, -EACCES credentials or signature refused,
 * -ECONNREFUSED / -ETIMEDOUT / -EIO the server could not be reached, stalled,
 * or kept failing (5xx) once the retries ran out, -EPROTO a reply that makes
 * no sense, -EINVAL a bad argument or configuration. */
#ifndef TOPCOW_S3_H
#define TOPCOW_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_ETAG_MAX 128 /* with the NUL; S3's are 32 or 34 hex digits and a suffix */

enum s3_addressing {
    S3_ADDR_AUTO,    /* virtual-host on AWS's own endpoint, path-style elsewhere */
    S3_ADDR_PATH,    /* http://host/bucket/key */
    S3_ADDR_VIRTUAL, /* http://bucket.host/key */
};

struct s3_config {
    char *endpoint;      /* "http://127.0.0.1:7480": scheme, host, optional port, no path */
    bool endpoint_is_default; /* no endpoint was configured: AWS's for the region */
    char *region;        /* "us-east-1" */
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL: none */
    enum s3_addressing addressing;
    unsigned max_attempts;       /* tries per request, >= 1 (AWS_MAX_ATTEMPTS); 5 */
    unsigned backoff_ms;         /* delay before the first retry, doubling after; 200 */
    unsigned backoff_max_ms;     /* cap on one delay; 5000 */
    unsigned connect_timeout_ms; /* 10000 */
    unsigned stall_timeout_ms;   /* give up on a transfer idle this long (whole seconds,
                                    at least 1 s); 30000 */
    unsigned request_timeout_ms; /* bound on one attempt, 0 for none; 0 */
    unsigned list_page_size;     /* max-keys per ListObjectsV2 request, 1..1000; 1000 */
};

/* Fill @cfg from the environment and the AWS shared files, AWS CLI style:
 *  - endpoint: @endpoint if not NULL, else AWS_ENDPOINT_URL_S3, else
 *    AWS_ENDPOINT_URL, else the profile's endpoint_url in the config file,
 *    else https://s3.REGION.amazonaws.com;
 *  - credentials: with an explicit @profile, that profile only; otherwise
 *    AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) when both
 *    are set, else the profile AWS_PROFILE names (default "default"), looked
 *    up in AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and then in
 *    AWS_CONFIG_FILE (~/.aws/config, "[profile NAME]" sections);
 *  - region: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, us-east-1;
 *  - max_attempts: AWS_MAX_ATTEMPTS; stall_timeout_ms: TOPCOW_S3_STALL_TIMEOUT
 *    (seconds); backoff_ms: TOPCOW_S3_BACKOFF_MS; the rest take the defaults above.
 * Returns 0, -ENOKEY (no credentials found), -ENOENT (a named profile is in
 * neither file), -EINVAL (a malformed endpoint or number) or
 * -ENOMEM.  Release with s3_config_clear() whatever the result. */
int s3_config_load(struct s3_config *cfg, const char *endpoint, const char *profile);
void s3_config_clear(struct s3_config *cfg);

struct s3_client;

/* A client for the configuration @cfg (copied).  It holds one libcurl
 * handle, so its connections are reused from request to request.
 * Thread-safety: one thread at a time per client; use a client per thread
 * for parallel transfers. */
int s3_client_new(const struct s3_config *cfg, struct s3_client **out);
void s3_client_free(struct s3_client *c); /* NULL is a no-op */

struct s3_object_info {
    uint64_t size;
    char etag[S3_ETAG_MAX]; /* without quotes; "" when the server sent none */
};

/* The whole object into a new buffer: *@data (free(3); never NULL on
 * success, even for an empty object) and *@len; @info (may be NULL) gets its
 * size and ETag. */
int s3_get(struct s3_client *c, const char *bucket, const char *key, void **data, size_t *len,
           struct s3_object_info *info);

/* Up to @len bytes from offset @off into @buf; *@got says how many (fewer
 * at the end of the object, 0 at or past it). */
int s3_get_range(struct s3_client *c, const char *bucket, const char *key, uint64_t off,
                 void *buf, size_t len, size_t *got);

enum s3_put_mode {
    S3_PUT_ANY,         /* create or replace */
    S3_PUT_CREATE_ONCE, /* If-None-Match: *  -- -EEXIST when the key exists */
    S3_PUT_IF_MATCH,    /* If-Match: ETAG    -- -ESTALE when the object has another
                           ETag or is gone */
};

/* Store @len bytes as @key.  @if_match is the expected ETag for
 * S3_PUT_IF_MATCH (ignored otherwise).  @etag (may be NULL) gets the new
 * object's ETag.  A body is sent with Content-MD5, so the server verifies it.
 * A conditional PUT that is retried after an attempt whose outcome is
 * unknown (a timeout, a 5xx) and then refused because the object is already
 * what this call wrote (same MD5 ETag) counts as success: so a conditional
 * body must be unique to its writer (a generation id, a lease token), or
 * two writers of the same bytes could both see success. */
int s3_put(struct s3_client *c, const char *bucket, const char *key, const void *data,
           size_t len, enum s3_put_mode mode, const char *if_match, char etag[S3_ETAG_MAX]);

/* Size and ETag of @key; -ENOENT when there is none. */
int s3_head(struct s3_client *c, const char *bucket, const char *key, struct s3_object_info *info);

/* Delete @key.  S3 reports success for a key that does not exist. */
int s3_delete(struct s3_client *c, const char *bucket, const char *key);

struct s3_list_entry {
    const char *key;  /* valid during the callback */
    const char *etag; /* without quotes */
    uint64_t size;
    int64_t mtime;    /* LastModified, Unix seconds; 0 when the server sent none */
};

/* Call @fn for every key that starts with @prefix ("" or NULL for all), in
 * the server's (lexicographic) order, fetching pages of list_page_size keys
 * with continuation tokens.  A non-zero return from @fn stops the walk and
 * is returned. */
int s3_list(struct s3_client *c, const char *bucket, const char *prefix,
            int (*fn)(void *opaque, const struct s3_list_entry *e), void *opaque);

/* Counters since the client was made, for transfer logs and tests. */
struct s3_stats {
    uint64_t requests;       /* HTTP requests sent, retries included */
    uint64_t retries;        /* of which retries */
    uint64_t connects;       /* new connections opened */
    uint64_t bytes_sent;     /* request bodies */
    uint64_t bytes_received; /* response bodies */
};
void s3_client_stats(const struct s3_client *c, struct s3_stats *out);

#endif
