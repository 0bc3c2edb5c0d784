// SPDX-License-Identifier: MIT
/* The requests that tests/cloud/sigv4-botocore.py has botocore sign: this
 * program signs each with lib/cloud/s3-sigv4.c and prints one JSON object per
 * line holding the request (strings hex-encoded, so any byte survives) and
 * our Authorization header.  It holds no expected signatures: the script
 * computes those with botocore when the test runs.  It also checks the
 * signer's argument errors, which botocore cannot judge.
 * Exit status: 0, or 1 when an argument check fails. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"
#include "error.h"
#include "s3-sigv4.h"

#define MAXP 12

struct vec {
    const char *name;
    const char *method;
    const char *endpoint; /* scheme://host[:port], for botocore's URL */
    const char *path;
    struct sigv4_pair query[MAXP];
    struct sigv4_pair headers[MAXP]; /* "host" first */
    const char *body;                /* NULL: empty; "@big": 1 MiB pattern */
    time_t time;
    const char *access_key, *secret_key, *token, *region;
};

#define T_2023 1700000000 /* 2023-11-14T22:13:20Z */
#define AK "AKIDEXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static const struct vec vecs[] = {
    {"get-simple", "GET", "http://127.0.0.1:7480", "/bucket/key",
     {{0}}, {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"get-range", "GET", "http://127.0.0.1:7480", "/bucket/dir/object.bin",
     {{0}}, {{"host", "127.0.0.1:7480"}, {"Range", "bytes=4096-8191"}},
     NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"get-query-and-range", "GET", "http://127.0.0.1:7480", "/bucket/k",
     {{"versionId", "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"},
      {"partNumber", "2"}},
     {{"host", "127.0.0.1:7480"}, {"range", "bytes=0-0"}},
     NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"list-v2", "GET", "http://127.0.0.1:7480", "/bucket",
     {{"list-type", "2"}, {"prefix", "images/win xp/"}, {"max-keys", "7"},
      {"continuation-token", "1/abc+def==/x y"}, {"start-after", "images/\xc3\xa9t\xc3\xa9"}},
     {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"empty-query-values", "POST", "http://127.0.0.1:7480", "/bucket/big.img",
     {{"uploads", ""}, {"delete", ""}, {"tagging", ""}},
     {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"repeated-and-sorted-query", "GET", "http://127.0.0.1:7480", "/bucket",
     {{"b", ""}, {"a", "2"}, {"a", "1"}, {"A", "z"}, {"a-b", "x"}, {"a_b", "y"}, {"a.b", "~"},
      {"\xe6\x97\xa5\xe6\x9c\xac", "\xe8\xaa\x9e"}, {"sp ace", "p+l=s&amp"}},
     {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"put-create-once", "PUT", "http://127.0.0.1:7480", "/bucket/chunks/ab/abcdef",
     {{0}},
     {{"host", "127.0.0.1:7480"}, {"If-None-Match", "*"}, {"Content-Length", "12"},
      {"Content-Type", "application/octet-stream"}},
     "hello world\n", T_2023, AK, SK, NULL, "us-east-1"},
    {"put-compare-and-swap", "PUT", "http://127.0.0.1:7480", "/bucket/images/xp/HEAD",
     {{0}},
     {{"host", "127.0.0.1:7480"}, {"If-Match", "5d41402abc4b2a76b9719d911017c592"},
      {"Content-MD5", "XUFAKrxLKna5cZ2REBfFkg=="}},
     "hello", T_2023, AK, SK, NULL, "us-east-1"},
    {"put-empty-body", "PUT", "http://127.0.0.1:7480", "/bucket/empty",
     {{0}}, {{"host", "127.0.0.1:7480"}, {"Content-Length", "0"}},
     "", T_2023, AK, SK, NULL, "us-east-1"},
    {"put-1MiB-body", "PUT", "http://127.0.0.1:7480", "/bucket/big",
     {{0}}, {{"host", "127.0.0.1:7480"}}, "@big", T_2023, AK, SK, NULL, "us-east-1"},
    {"path-special-characters", "GET", "http://127.0.0.1:7480",
     "/bucket/a b/c~d+e/\xc3\xa9t\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e/"
     "x=y&z?w#h%20!*'()@:,;$",
     {{0}}, {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"path-not-normalized", "GET", "http://127.0.0.1:7480", "/bucket//a/./b/../c/",
     {{0}}, {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"path-tilde-plus", "DELETE", "http://127.0.0.1:7480", "/bucket/~user/a+b~c++",
     {{0}}, {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"head", "HEAD", "http://127.0.0.1:7480", "/bucket/images/xp/manifest.0001",
     {{0}}, {{"host", "127.0.0.1:7480"}}, NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"region-eu-west-1-aws-host", "GET", "https://s3.eu-west-1.amazonaws.com",
     "/bucket/key", {{0}}, {{"host", "s3.eu-west-1.amazonaws.com"}},
     NULL, T_2023, AK, SK, NULL, "eu-west-1"},
    {"region-ap-southeast-2-virtual-host", "GET", "https://bucket.s3.ap-southeast-2.amazonaws.com",
     "/key", {{0}}, {{"host", "bucket.s3.ap-southeast-2.amazonaws.com"}},
     NULL, T_2023, AK, SK, NULL, "ap-southeast-2"},
    {"region-custom", "PUT", "http://127.0.0.1:9000", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:9000"}}, "x", T_2023, AK, SK, NULL, "de-fra-1"},
    {"session-token", "GET", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}},
     NULL, T_2023, "ASIAEXAMPLE", SK,
     "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token/with+plus==", "us-west-2"},
    {"session-token-put", "PUT", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}, {"If-None-Match", "*"}},
     "data", T_2023, "ASIAEXAMPLE", SK, "FQoGZXIvYXdzEBYaDtoken", "eu-central-1"},
    {"header-trimming-and-case", "PUT", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}, {"X-Amz-Meta-CamelCase", "  a   b \t c  "},
      {"x-amz-meta-tabs", "\tx\t\ty\t"}, {"X-AMZ-META-UPPER", "V"}},
     "body", T_2023, AK, SK, NULL, "us-east-1"},
    {"header-repeated", "PUT", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}, {"x-amz-meta-dup", "one"}, {"X-Amz-Meta-Dup", "two"},
      {"x-amz-meta-dup", " three "}},
     "body", T_2023, AK, SK, NULL, "us-east-1"},
    {"unsigned-headers-left-out", "GET", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}, {"User-Agent", "topcow/0.1"}, {"Expect", "100-continue"},
      {"X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793"}},
     NULL, T_2023, AK, SK, NULL, "us-east-1"},
    {"time-year-end", "GET", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}}, NULL, 946684799 /* 1999-12-31T23:59:59Z */,
     AK, SK, NULL, "us-east-1"},
    {"time-leap-day", "GET", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}}, NULL, 1709164800 /* 2024-02-29T00:00:00Z */,
     AK, SK, NULL, "us-east-1"},
    {"secret-with-specials", "GET", "http://127.0.0.1:7480", "/bucket/key", {{0}},
     {{"host", "127.0.0.1:7480"}}, NULL, T_2023, "TOPCOWTESTACCESSKEY1",
     "topcow/test+secret/key/0123456789abcdefgh", NULL, "us-east-1"},
};

static size_t
count_pairs(const struct sigv4_pair *p)
{
    size_t n = 0;
    while (n < MAXP && p[n].name)
        n++;
    return n;
}

static void
put_hex(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++)
        printf("%02x", (unsigned char)s[i]);
    putchar('"');
}

static void
put_pairs(const struct sigv4_pair *p, size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        printf("%s[", i ? "," : "");
        put_hex(p[i].name, strlen(p[i].name));
        putchar(',');
        put_hex(p[i].value, strlen(p[i].value));
        putchar(']');
    }
    putchar(']');
}

static int failures;

static void
expect_einval(const char *what, const struct sigv4_request *req,
              const struct sigv4_credentials *cred, const char *msg_part)
{
    struct sigv4_result res;
    err_begin("sigv4-vectors");
    int r = sigv4_sign(req, cred, T_2023, &res);
    if (r != -EINVAL || !strstr(topcow_last_error(), msg_part)) {
        fprintf(stderr, "FAIL: %s: got %d '%s', expected -EINVAL with '%s'\n", what, r,
                topcow_last_error(), msg_part);
        failures++;
    }
    if (res.authorization) {
        fprintf(stderr, "FAIL: %s: a failed call left a result\n", what);
        failures++;
    }
}

/* What botocore cannot judge: arguments the signer must refuse. */
static void
check_argument_errors(void)
{
    struct sigv4_credentials cred = {AK, SK, NULL, "us-east-1", "s3"};
    struct sigv4_pair host = {"host", "h"};
    struct sigv4_pair reserved[] = {{"host", "h"}, {"X-Amz-Date", "20230101T000000Z"}};
    struct sigv4_pair token[] = {{"host", "h"}, {"x-amz-security-token", "t"}};
    struct sigv4_pair badname[] = {{"host", "h"}, {"bad name", "v"}};
    struct sigv4_pair other = {"range", "bytes=0-1"};
    const char *e = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    expect_einval("no host", &(struct sigv4_request){"GET", "/b/k", NULL, 0, &other, 1, e}, &cred,
                  "no host header");
    expect_einval("x-amz-date given",
                  &(struct sigv4_request){"GET", "/b/k", NULL, 0, reserved, 2, e}, &cred,
                  "added by the signer");
    expect_einval("token header given",
                  &(struct sigv4_request){"GET", "/b/k", NULL, 0, token, 2, e}, &cred,
                  "added by the signer");
    expect_einval("blank in a header name",
                  &(struct sigv4_request){"GET", "/b/k", NULL, 0, badname, 2, e}, &cred,
                  "invalid header name");
    expect_einval("relative path", &(struct sigv4_request){"GET", "b/k", NULL, 0, &host, 1, e},
                  &cred, "must start with '/'");
    expect_einval("payload hash with a blank",
                  &(struct sigv4_request){"GET", "/b/k", NULL, 0, &host, 1, "ab cd"}, &cred,
                  "invalid payload hash");
    expect_einval("no region",
                  &(struct sigv4_request){"GET", "/b/k", NULL, 0, &host, 1, e},
                  &(struct sigv4_credentials){AK, SK, NULL, "", "s3"}, "incomplete credentials");

    /* The wire forms the client builds URLs with. */
    char *enc = sigv4_uri_encode("a b/~+\xc3\xa9", true);
    if (!enc || strcmp(enc, "a%20b/~%2B%C3%A9") != 0) {
        fprintf(stderr, "FAIL: sigv4_uri_encode keep_slash gave '%s'\n", enc ? enc : "(null)");
        failures++;
    }
    free(enc);
    enc = sigv4_uri_encode("a/b", false);
    if (!enc || strcmp(enc, "a%2Fb") != 0) {
        fprintf(stderr, "FAIL: sigv4_uri_encode gave '%s'\n", enc ? enc : "(null)");
        failures++;
    }
    free(enc);
    struct sigv4_pair q[] = {{"prefix", "a b"}, {"list-type", "2"}, {"uploads", ""}};
    enc = sigv4_canonical_query(q, 3);
    if (!enc || strcmp(enc, "list-type=2&prefix=a%20b&uploads=") != 0) {
        fprintf(stderr, "FAIL: sigv4_canonical_query gave '%s'\n", enc ? enc : "(null)");
        failures++;
    }
    free(enc);
}

int
main(void)
{
    static char big[1 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + (i >> 8));

    check_argument_errors();

    for (size_t v = 0; v < sizeof vecs / sizeof *vecs; v++) {
        const struct vec *t = &vecs[v];
        const char *body = t->body ? t->body : "";
        size_t body_len = strcmp(body, "@big") == 0 ? sizeof big : strlen(body);
        if (body_len == sizeof big)
            body = big;
        char hash[SIGV4_HEX_SHA256_LEN + 1];
        if (sigv4_sha256_hex(body, body_len, hash) < 0) {
            fprintf(stderr, "FAIL: %s: sha256: %s\n", t->name, topcow_last_error());
            return 1;
        }
        struct sigv4_request req = {
            .method = t->method,
            .path = t->path,
            .query = t->query,
            .n_query = count_pairs(t->query),
            .headers = t->headers,
            .n_headers = count_pairs(t->headers),
            .payload_hash = hash,
        };
        struct sigv4_credentials cred = {t->access_key, t->secret_key, t->token, t->region, "s3"};
        struct sigv4_result res;
        err_begin("sigv4-vectors");
        if (sigv4_sign(&req, &cred, t->time, &res) < 0) {
            fprintf(stderr, "FAIL: %s: %s\n", t->name, topcow_last_error());
            return 1;
        }
        printf("{\"name\":\"%s\",\"method\":\"%s\",\"endpoint\":\"%s\",\"path\":", t->name,
               t->method, t->endpoint);
        put_hex(t->path, strlen(t->path));
        printf(",\"query\":");
        put_pairs(t->query, req.n_query);
        printf(",\"headers\":");
        put_pairs(t->headers, req.n_headers);
        printf(",\"body\":");
        put_hex(body, body_len);
        printf(",\"time\":%lld,\"access_key\":", (long long)t->time);
        put_hex(t->access_key, strlen(t->access_key));
        printf(",\"secret_key\":");
        put_hex(t->secret_key, strlen(t->secret_key));
        printf(",\"token\":");
        put_hex(t->token ? t->token : "", t->token ? strlen(t->token) : 0);
        printf(",\"region\":\"%s\",\"amz_date\":\"%s\",\"payload_hash\":\"%s\"", t->region,
               res.amz_date, hash);
        printf(",\"authorization\":\"%s\",\"canonical_request\":", res.authorization);
        put_hex(res.canonical_request, strlen(res.canonical_request));
        printf("}\n");
        sigv4_result_free(&res);
    }
    return failures ? 1 : 0;
}
