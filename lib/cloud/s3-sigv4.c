// SPDX-License-Identifier: MIT
/* AWS Signature Version 4, as the public AWS documentation ("Create a
 * signed AWS API request") describes it, for S3: the path is URI-encoded
 * once and not normalized.  This file owns the canonical forms and the key
 * derivation; it does no I/O and reads no clock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "error.h"
#include "s3-sigv4.h"
#include "strbuf.h"

/* Headers the SDKs never sign: proxies and HTTP stacks add or rewrite them. */
static const char *const unsigned_headers[] = {"expect", "user-agent", "x-amzn-trace-id"};

/* Headers the signer adds itself, so the caller may not pass them. */
static const char *const signer_headers[] = {"x-amz-date", "x-amz-content-sha256",
                                             "x-amz-security-token", "authorization"};

static bool
is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static void
uri_encode_into(struct strbuf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (is_unreserved(*p) || (keep_slash && *p == '/')) {
            strbuf_addc(b, (char)*p);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            strbuf_addn(b, esc, 3);
        }
    }
}

char *
sigv4_uri_encode(const char *s, bool keep_slash)
{
    struct strbuf b = {0};
    uri_encode_into(&b, s, keep_slash);
    return strbuf_release(&b);
}

struct enc_pair {
    char *name;
    char *value;
    size_t order; /* position in the caller's list, to keep sorting stable */
};

static int
cmp_query(const void *a, const void *b)
{
    const struct enc_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static int
cmp_header(const void *a, const void *b)
{
    const struct enc_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void
free_pairs(struct enc_pair *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
}

char *
sigv4_canonical_query(const struct sigv4_pair *query, size_t n)
{
    struct enc_pair *v = calloc(n ? n : 1, sizeof *v);
    struct strbuf b = {0};
    if (!v)
        return NULL;
    bool oom = false;
    for (size_t i = 0; i < n && !oom; i++) {
        v[i].name = sigv4_uri_encode(query[i].name, false);
        v[i].value = sigv4_uri_encode(query[i].value ? query[i].value : "", false);
        oom = !v[i].name || !v[i].value;
    }
    if (oom) {
        free_pairs(v, n);
        return NULL;
    }
    qsort(v, n, sizeof *v, cmp_query);
    for (size_t i = 0; i < n; i++)
        strbuf_addf(&b, "%s%s=%s", i ? "&" : "", v[i].name, v[i].value);
    free_pairs(v, n);
    return strbuf_release(&b);
}

/* The value with leading and trailing blanks removed and each inner run of
 * blanks squeezed to one space ("Trimall" in the specification). */
static char *
trim_all(const char *s)
{
    struct strbuf b = {0};
    bool pending_space = false;
    for (; *s; s++) {
        if (strchr(" \t\r\n\v\f", *s)) {
            pending_space = b.len > 0;
            continue;
        }
        if (pending_space)
            strbuf_addc(&b, ' ');
        pending_space = false;
        strbuf_addc(&b, *s);
    }
    return strbuf_release(&b);
}

static bool
in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

static bool
valid_header_name(const char *name)
{
    if (!*name)
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p <= ' ' || *p == ':' || *p >= 0x7f)
            return false;
    return true;
}

static char *
lower_dup(const char *s)
{
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    return d;
}

static int
hmac_sha256(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int outlen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out,
              &outlen) ||
        outlen != 32)
        return err_set(-EIO, "sigv4: HMAC-SHA256 failed in libcrypto");
    return 0;
}

static void
hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int
sigv4_sha256_hex(const void *data, size_t len, char out[SIGV4_HEX_SHA256_LEN + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return err_set(-EIO, "sigv4: SHA-256 failed in libcrypto");
    hex_encode(md, 32, out);
    return 0;
}

static bool
valid_payload_hash(const char *h)
{
    if (!h || !*h)
        return false;
    for (const unsigned char *p = (const unsigned char *)h; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    return true;
}

/* Collect the headers to sign: the caller's, lower-cased and trimmed, plus
 * the ones the signer adds; sorted by name, the caller's order kept among
 * equal names.  Sets *@out and *@n. */
static int
collect_headers(const struct sigv4_request *req, const struct sigv4_credentials *cred,
                const char *amz_date, struct enc_pair **out, size_t *n)
{
    size_t cap = req->n_headers + 3, k = 0;
    struct enc_pair *v = calloc(cap, sizeof *v);
    bool have_host = false;
    int r = 0;

    if (!v)
        return err_set(-ENOMEM, "sigv4: out of memory");
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sigv4_pair *h = &req->headers[i];
        if (!h->name || !valid_header_name(h->name)) {
            r = err_set(-EINVAL, "sigv4: invalid header name '%s'", h->name ? h->name : "(null)");
            goto out;
        }
        char *name = lower_dup(h->name);
        if (!name) {
            r = err_set(-ENOMEM, "sigv4: out of memory");
            goto out;
        }
        if (in_list(name, signer_headers, sizeof signer_headers / sizeof *signer_headers)) {
            r = err_set(-EINVAL, "sigv4: header '%s' is added by the signer", h->name);
            free(name);
            goto out;
        }
        if (in_list(name, unsigned_headers, sizeof unsigned_headers / sizeof *unsigned_headers)) {
            free(name);
            continue;
        }
        have_host |= strcmp(name, "host") == 0;
        v[k].name = name;
        v[k].value = trim_all(h->value ? h->value : "");
        v[k].order = k;
        if (!v[k++].value) {
            r = err_set(-ENOMEM, "sigv4: out of memory");
            goto out;
        }
    }
    if (!have_host) {
        r = err_set(-EINVAL, "sigv4: no host header to sign");
        goto out;
    }
    const char *extra[3][2] = {{"x-amz-date", amz_date},
                               {"x-amz-content-sha256", req->payload_hash},
                               {"x-amz-security-token", cred->session_token}};
    for (size_t i = 0; i < 3; i++) {
        if (!extra[i][1] || !*extra[i][1])
            continue;
        v[k].name = strdup(extra[i][0]);
        v[k].value = trim_all(extra[i][1]);
        v[k].order = k;
        if (!v[k].name || !v[k++].value) {
            r = err_set(-ENOMEM, "sigv4: out of memory");
            goto out;
        }
    }
    qsort(v, k, sizeof *v, cmp_header);
out:
    if (r < 0) {
        free_pairs(v, k);
        return r;
    }
    *out = v;
    *n = k;
    return 0;
}

int
sigv4_sign(const struct sigv4_request *req, const struct sigv4_credentials *cred, time_t now,
           struct sigv4_result *res)
{
    struct enc_pair *hdrs = NULL;
    size_t n_hdrs = 0;
    struct strbuf cr = {0}, signed_names = {0}, sts = {0}, auth = {0};
    struct strbuf kb = {0};
    char *query = NULL, *path = NULL, *secret = NULL;
    unsigned char k1[32], k2[32], sig[32];
    char cr_hash[SIGV4_HEX_SHA256_LEN + 1], sig_hex[65], date[9];
    struct tm tm;
    int r;

    *res = (struct sigv4_result){0};
    RETURN_ERR_IF(!req->method || !*req->method, -EINVAL, "sigv4: no method");
    RETURN_ERR_IF(!req->path || req->path[0] != '/', -EINVAL,
                  "sigv4: the path must start with '/'");
    RETURN_ERR_IF(!valid_payload_hash(req->payload_hash), -EINVAL, "sigv4: invalid payload hash");
    RETURN_ERR_IF(!cred->access_key || !*cred->access_key || !cred->secret_key ||
                      !cred->region || !*cred->region || !cred->service || !*cred->service,
                  -EINVAL, "sigv4: incomplete credentials");
    RETURN_ERR_IF(!gmtime_r(&now, &tm), -EINVAL, "sigv4: time out of range");
    RETURN_ERR_IF(strftime(res->amz_date, sizeof res->amz_date, "%Y%m%dT%H%M%SZ", &tm) !=
                      SIGV4_AMZ_DATE_LEN,
                  -EINVAL, "sigv4: time out of range");

    r = collect_headers(req, cred, res->amz_date, &hdrs, &n_hdrs);
    if (r < 0)
        return r;
    path = sigv4_uri_encode(req->path, true);
    query = sigv4_canonical_query(req->query, req->n_query);
    if (!path || !query)
        goto oom;

    /* CanonicalRequest: method, path, query, headers (each line ends in
     * '\n', equal names joined with ','), signed header names, payload. */
    strbuf_addf(&cr, "%s\n%s\n%s\n", req->method, path, query);
    for (size_t i = 0; i < n_hdrs; i++) {
        bool first = i == 0 || strcmp(hdrs[i].name, hdrs[i - 1].name) != 0;
        bool last = i + 1 == n_hdrs || strcmp(hdrs[i].name, hdrs[i + 1].name) != 0;
        if (first) {
            strbuf_addf(&cr, "%s:", hdrs[i].name);
            strbuf_addf(&signed_names, "%s%s", signed_names.len ? ";" : "", hdrs[i].name);
        } else {
            strbuf_addc(&cr, ',');
        }
        strbuf_add(&cr, hdrs[i].value);
        if (last)
            strbuf_addc(&cr, '\n');
    }
    strbuf_addf(&cr, "\n%s\n%s", signed_names.s ? signed_names.s : "", req->payload_hash);
    if (strbuf_failed(&cr) || strbuf_failed(&signed_names))
        goto oom;

    r = sigv4_sha256_hex(cr.s, cr.len, cr_hash);
    if (r < 0)
        goto out;
    /* StringToSign: algorithm, time, scope, hash of the canonical request. */
    strbuf_addf(&sts, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", res->amz_date,
                res->amz_date, cred->region, cred->service, cr_hash);

    /* The signing key: HMAC chain over date, region, service and the
     * terminator, seeded with "AWS4" + secret key. */
    strbuf_addf(&kb, "AWS4%s", cred->secret_key);
    secret = strbuf_release(&kb);
    if (!secret || strbuf_failed(&sts))
        goto oom;
    memcpy(date, res->amz_date, 8);
    date[8] = '\0';
    if ((r = hmac_sha256(secret, strlen(secret), date, k1)) < 0 ||
        (r = hmac_sha256(k1, 32, cred->region, k2)) < 0 ||
        (r = hmac_sha256(k2, 32, cred->service, k1)) < 0 ||
        (r = hmac_sha256(k1, 32, "aws4_request", k2)) < 0 ||
        (r = hmac_sha256(k2, 32, sts.s, sig)) < 0)
        goto out;
    hex_encode(sig, 32, sig_hex);

    strbuf_addf(&auth, "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, ",
                cred->access_key, res->amz_date, cred->region, cred->service);
    strbuf_addf(&auth, "SignedHeaders=%s, Signature=%s", signed_names.s, sig_hex);
    res->authorization = strbuf_release(&auth);
    res->canonical_request = strbuf_release(&cr);
    res->string_to_sign = strbuf_release(&sts);
    if (!res->authorization || !res->canonical_request || !res->string_to_sign)
        goto oom;
    r = 0;
    goto out;
oom:
    r = err_set(-ENOMEM, "sigv4: out of memory");
out:
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    free_pairs(hdrs, n_hdrs);
    free(path);
    free(query);
    strbuf_free(&cr);
    strbuf_free(&signed_names);
    strbuf_free(&sts);
    strbuf_free(&auth);
    if (r < 0)
        sigv4_result_free(res);
    return r;
}

void
sigv4_result_free(struct sigv4_result *res)
{
    free(res->authorization);
    free(res->canonical_request);
    free(res->string_to_sign);
    *res = (struct sigv4_result){0};
}
