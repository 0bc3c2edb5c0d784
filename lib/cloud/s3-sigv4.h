// SPDX-License-Identifier: MIT
/* AWS Signature Version 4 for S3 requests, written from the public AWS
 * specification: canonical request, string to sign, derived signing key
 * (HMAC-SHA256 through OpenSSL libcrypto) and the Authorization header.
 * Pure functions: no I/O, no clock (the caller passes the time), no global
 * state; tests/cloud/sigv4-botocore checks them against botocore. */
#ifndef TOPCOW_SIGV4_H
#define TOPCOW_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_HEX_SHA256_LEN 64
#define SIGV4_AMZ_DATE_LEN 16 /* "20240102T030405Z" */

/* A name/value pair: a query parameter or a header.  Strings are UTF-8 and
 * not percent-encoded; the signer encodes what the canonical form needs. */
struct sigv4_pair {
    const char *name;
    const char *value; /* "" for a parameter without a value ("?uploads") */
};

struct sigv4_request {
    const char *method; /* "GET", "PUT", ... */
    /* The path, not encoded: "/bucket/dir/key with spaces".  It is encoded
     * once, with '/' kept, as S3 expects (no dot-segment normalization and
     * no double encoding, unlike other AWS services). */
    const char *path;
    const struct sigv4_pair *query;
    size_t n_query;
    /* The headers to sign; "host" must be among them.  Names in any case;
     * a name given twice is signed as one header with both values joined by
     * ','.  Do not pass x-amz-date, x-amz-content-sha256 or
     * x-amz-security-token: the signer adds them (see sigv4_sign).
     * Expect, User-Agent and X-Amzn-Trace-Id are left unsigned, as AWS's
     * SDKs leave them (proxies rewrite them). */
    const struct sigv4_pair *headers;
    size_t n_headers;
    /* Lower-case hex SHA-256 of the body (sigv4_sha256_hex), or
     * SIGV4_UNSIGNED_PAYLOAD. */
    const char *payload_hash;
};

struct sigv4_credentials {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "": none */
    const char *region;        /* "us-east-1" */
    const char *service;       /* "s3" */
};

struct sigv4_result {
    char amz_date[SIGV4_AMZ_DATE_LEN + 1]; /* the value of x-amz-date */
    char *authorization;                   /* the value of Authorization */
    char *canonical_request;               /* for diagnostics */
    char *string_to_sign;                  /* for diagnostics */
};

/* Sign @req with @cred at time @now (seconds since the epoch, UTC).
 * The request as sent must carry, besides the headers in @req:
 *   x-amz-date: res->amz_date
 *   x-amz-content-sha256: req->payload_hash
 *   x-amz-security-token: cred->session_token   (only when one is set)
 *   Authorization: res->authorization
 * and its URL must encode the path and query as sigv4_uri_encode() does.
 * Returns 0, -EINVAL (no host header, a reserved header given, an empty
 * name, a path not starting with '/', a malformed payload hash) or -ENOMEM,
 * with a message.  Free the result with sigv4_result_free(). */
int sigv4_sign(const struct sigv4_request *req, const struct sigv4_credentials *cred, time_t now,
               struct sigv4_result *res);

/* Free the strings of @res and clear it; a cleared result is a no-op. */
void sigv4_result_free(struct sigv4_result *res);

/* Percent-encode @s as SigV4's UriEncode does: every byte except
 * A-Z a-z 0-9 - _ . ~ (and '/' when @keep_slash) becomes %XX with upper-case
 * hex.  Returns a new string (free(3)) or NULL when out of memory. */
char *sigv4_uri_encode(const char *s, bool keep_slash);

/* The query string as it goes on the wire and in the canonical request:
 * pairs encoded, sorted by name then value, joined "a=1&b=&c=2".  Returns a
 * new string ("" for none) or NULL when out of memory. */
char *sigv4_canonical_query(const struct sigv4_pair *query, size_t n);

/* Lower-case hex SHA-256 of @len bytes at @data into @out (65 bytes with the
 * terminating NUL).  Returns 0 or -EIO. */
int sigv4_sha256_hex(const void *data, size_t len, char out[SIGV4_HEX_SHA256_LEN + 1]);

#endif
