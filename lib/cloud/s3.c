// SPDX-License-Identifier: MIT
/* The S3 client: configuration (environment, AWS shared files), request
 * building and signing, one libcurl easy handle per client (so connections
 * are reused), retries with exponential backoff, and the mapping of HTTP
 * outcomes to -errno and one-line messages.  XML replies are read by
 * s3-xml.c, signatures made by s3-sigv4.c. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "topcow.h"
#include "error.h"
#include "s3-xml.h"
#include "s3.h"
#include "s3-sigv4.h"
#include "strbuf.h"

#define ERRBODY_MAX 65536 /* bytes of an error reply kept for its Code */

/* ---- configuration ------------------------------------------------------ */

struct profile {
    char *access_key, *secret_key, *session_token, *region, *endpoint_url;
};

static void
profile_clear(struct profile *p)
{
    free(p->access_key);
    free(p->secret_key);
    free(p->session_token);
    free(p->region);
    free(p->endpoint_url);
    *p = (struct profile){0};
}

static char *
trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Set *@field to a copy of @value unless an earlier file already set it. */
static int
keep_first(char **field, const char *value)
{
    if (*field)
        return 0;
    *field = strdup(value);
    return *field ? 0 : -ENOMEM;
}

/* Read section @name of the INI file @path into @p (fields already set are
 * kept).  In the config file (@config) sections are "[profile NAME]", and
 * "[default]" for the default profile.  Returns 1 if the section exists, 0
 * if it (or the file) does not, or -errno. */
static int
profile_read(const char *path, const char *name, bool config, struct profile *p)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : err_set_errno(-errno, "s3: cannot read %s", path);
    char *line = NULL;
    size_t cap = 0;
    bool in = false, found = false;
    int r = 0;
    while (r == 0 && getline(&line, &cap, f) >= 0) {
        if (line[0] == ' ' || line[0] == '\t')
            continue; /* a nested setting ("s3 =" blocks): not ours */
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end)
                continue;
            *end = '\0';
            char *sec = trim(s + 1);
            if (config && strncmp(sec, "profile ", 8) == 0)
                in = strcmp(trim(sec + 8), name) == 0;
            else
                in = strcmp(sec, name) == 0 && (!config || strcmp(name, "default") == 0);
            found |= in;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in || !eq)
            continue;
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (strcmp(key, "aws_access_key_id") == 0)
            r = keep_first(&p->access_key, val);
        else if (strcmp(key, "aws_secret_access_key") == 0)
            r = keep_first(&p->secret_key, val);
        else if (strcmp(key, "aws_session_token") == 0)
            r = keep_first(&p->session_token, val);
        else if (strcmp(key, "region") == 0)
            r = keep_first(&p->region, val);
        else if (strcmp(key, "endpoint_url") == 0)
            r = keep_first(&p->endpoint_url, val);
    }
    free(line);
    fclose(f);
    if (r < 0)
        return err_set(r, "s3: out of memory");
    return found;
}

static const char *
env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* $HOME/@rel, or NULL (no HOME, or out of memory). */
static char *
home_path(const char *rel)
{
    const char *home = env("HOME");
    struct strbuf b = {0};
    if (!home)
        return NULL;
    strbuf_addf(&b, "%s/%s", home, rel);
    return strbuf_release(&b);
}

static int
dup_into(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? err_set(-ENOMEM, "s3: out of memory") : 0;
}

int
s3_config_load(struct s3_config *cfg, const char *endpoint, const char *profile)
{
    struct profile p = {0};
    char *cred_file = NULL, *conf_file = NULL;
    const char *name = profile ? profile : env("AWS_PROFILE") ? env("AWS_PROFILE") : "default";
    bool named = profile || env("AWS_PROFILE");
    int r = 0, in_cred = 0, in_conf = 0;

    *cfg = (struct s3_config){
        .addressing = S3_ADDR_AUTO,
        .max_attempts = 5,
        .backoff_ms = 200,
        .backoff_max_ms = 5000,
        .connect_timeout_ms = 10000,
        .stall_timeout_ms = 30000,
        .list_page_size = 1000,
    };
    cred_file = env("AWS_SHARED_CREDENTIALS_FILE") ? strdup(env("AWS_SHARED_CREDENTIALS_FILE"))
                                                   : home_path(".aws/credentials");
    conf_file = env("AWS_CONFIG_FILE") ? strdup(env("AWS_CONFIG_FILE")) : home_path(".aws/config");
    if (cred_file && (in_cred = profile_read(cred_file, name, false, &p)) < 0) {
        r = in_cred;
        goto out;
    }
    if (conf_file && (in_conf = profile_read(conf_file, name, true, &p)) < 0) {
        r = in_conf;
        goto out;
    }

    bool from_env = !profile && env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY");
    if (from_env) {
        if ((r = dup_into(&cfg->access_key, env("AWS_ACCESS_KEY_ID"))) < 0 ||
            (r = dup_into(&cfg->secret_key, env("AWS_SECRET_ACCESS_KEY"))) < 0 ||
            (r = dup_into(&cfg->session_token, env("AWS_SESSION_TOKEN"))) < 0)
            goto out;
    } else {
        if (named && !in_cred && !in_conf) {
            r = err_set(-ENOENT, "s3: profile '%s' not found in %s or %s", name,
                        cred_file ? cred_file : "~/.aws/credentials",
                        conf_file ? conf_file : "~/.aws/config");
            goto out;
        }
        if (!p.access_key || !p.secret_key) {
            r = err_set(-ENOKEY,
                        "s3: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                        "or give profile '%s' aws_access_key_id and aws_secret_access_key "
                        "in %s",
                        name, cred_file ? cred_file : "~/.aws/credentials");
            goto out;
        }
        cfg->access_key = p.access_key;
        cfg->secret_key = p.secret_key;
        cfg->session_token = p.session_token;
        p.access_key = p.secret_key = p.session_token = NULL;
    }

    const char *region = env("AWS_REGION") ? env("AWS_REGION")
                         : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION")
                         : p.region                 ? p.region
                                                    : "us-east-1";
    if ((r = dup_into(&cfg->region, region)) < 0)
        goto out;

    const char *ep = endpoint                      ? endpoint
                     : env("AWS_ENDPOINT_URL_S3") ? env("AWS_ENDPOINT_URL_S3")
                     : env("AWS_ENDPOINT_URL")    ? env("AWS_ENDPOINT_URL")
                                                  : p.endpoint_url;
    if (ep) {
        r = dup_into(&cfg->endpoint, ep);
    } else {
        struct strbuf b = {0};
        strbuf_addf(&b, "https://s3.%s.amazonaws.com", cfg->region);
        cfg->endpoint = strbuf_release(&b);
        cfg->endpoint_is_default = true;
        r = cfg->endpoint ? 0 : err_set(-ENOMEM, "s3: out of memory");
    }
    if (r < 0)
        goto out;

    /* Retries and timeouts: AWS_MAX_ATTEMPTS as the AWS CLI reads it; the
     * stall timeout and the first backoff delay are topcow's own. */
    static const struct {
        const char *name;
        unsigned min, max, scale;
        size_t field;
    } knobs[] = {
        {"AWS_MAX_ATTEMPTS", 1, 100, 1, offsetof(struct s3_config, max_attempts)},
        {"TOPCOW_S3_STALL_TIMEOUT", 1, 3600, 1000, offsetof(struct s3_config, stall_timeout_ms)},
        {"TOPCOW_S3_BACKOFF_MS", 1, 60000, 1, offsetof(struct s3_config, backoff_ms)},
    };
    for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
        const char *v = env(knobs[i].name);
        if (!v)
            continue;
        char *end;
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (errno || *end || v[0] == '-' || n < knobs[i].min || n > knobs[i].max) {
            r = err_set(-EINVAL, "s3: %s '%s' is not a number from %u to %u", knobs[i].name, v,
                        knobs[i].min, knobs[i].max);
            goto out;
        }
        *(unsigned *)((char *)cfg + knobs[i].field) = (unsigned)n * knobs[i].scale;
    }
out:
    profile_clear(&p);
    free(cred_file);
    free(conf_file);
    return r;
}

void
s3_config_clear(struct s3_config *cfg)
{
    free(cfg->endpoint);
    free(cfg->region);
    free(cfg->access_key);
    if (cfg->secret_key) {
        memset(cfg->secret_key, 0, strlen(cfg->secret_key));
        free(cfg->secret_key);
    }
    free(cfg->session_token);
    *cfg = (struct s3_config){0};
}

/* ---- the client ---------------------------------------------------------- */

struct s3_client {
    struct s3_config cfg;
    bool https;
    char *host; /* as in the Host header: lower case, default port left out */
    CURL *curl;
    struct s3_stats stats;
    uint64_t rng;
    char curl_err[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void
curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Split "scheme://host[:port][/]" into https and the Host header value. */
static int
parse_endpoint(const char *ep, bool *https, char **host)
{
    const char *rest;
    if (strncasecmp(ep, "http://", 7) == 0) {
        *https = false;
        rest = ep + 7;
    } else if (strncasecmp(ep, "https://", 8) == 0) {
        *https = true;
        rest = ep + 8;
    } else {
        return err_set(-EINVAL, "s3: endpoint '%s' does not start with http:// or https://", ep);
    }
    size_t n = strcspn(rest, "/?#");
    RETURN_ERR_IF(rest[n] && strcmp(rest + n, "/") != 0, -EINVAL,
                  "s3: endpoint '%s' has a path, query or fragment (give scheme://host[:port])",
                  ep);
    RETURN_ERR_IF(n == 0 || memchr(rest, '@', n), -EINVAL, "s3: endpoint '%s' has no valid host",
                  ep);
    const char *colon = NULL;
    size_t hlen = n;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', n);
        RETURN_ERR_IF(!close, -EINVAL, "s3: endpoint '%s': unterminated IPv6 address", ep);
        if ((size_t)(close - rest) + 1 < n) {
            RETURN_ERR_IF(close[1] != ':', -EINVAL, "s3: endpoint '%s': junk after ']'", ep);
            colon = close + 1;
        }
    } else {
        colon = memchr(rest, ':', n);
        for (size_t i = 0; i < (colon ? (size_t)(colon - rest) : n); i++)
            RETURN_ERR_IF(!isalnum((unsigned char)rest[i]) && !strchr("-._", rest[i]), -EINVAL,
                          "s3: endpoint '%s': invalid host name", ep);
    }
    if (colon) {
        hlen = (size_t)(colon - rest);
        unsigned long port = 0;
        size_t plen = n - hlen - 1;
        RETURN_ERR_IF(plen == 0 || plen > 5, -EINVAL, "s3: endpoint '%s': invalid port", ep);
        for (size_t i = 0; i < plen; i++) {
            RETURN_ERR_IF(!isdigit((unsigned char)colon[1 + i]), -EINVAL,
                          "s3: endpoint '%s': invalid port", ep);
            port = port * 10 + (unsigned long)(colon[1 + i] - '0');
        }
        RETURN_ERR_IF(port == 0 || port > 65535, -EINVAL, "s3: endpoint '%s': invalid port", ep);
        if (port == (*https ? 443u : 80u))
            n = hlen; /* a default port is left out of Host, as HTTP clients do */
    }
    RETURN_ERR_IF(hlen == 0, -EINVAL, "s3: endpoint '%s' has no host", ep);
    *host = strndup(rest, n);
    RETURN_ERR_IF(!*host, -ENOMEM, "s3: out of memory");
    for (char *p = *host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

int
s3_client_new(const struct s3_config *cfg, struct s3_client **out)
{
    struct s3_client *c;
    int r;

    *out = NULL;
    RETURN_ERR_IF(!cfg->access_key || !cfg->secret_key || !cfg->region || !cfg->endpoint,
                  -EINVAL, "s3: incomplete configuration");
    RETURN_ERR_IF(cfg->list_page_size > 1000, -EINVAL, "s3: list page size %u is over 1000",
                  cfg->list_page_size);
    pthread_once(&curl_once, curl_init);
    RETURN_ERR_IF(curl_init_rc != CURLE_OK, -EIO, "s3: libcurl initialization failed: %s",
                  curl_easy_strerror(curl_init_rc));
    c = calloc(1, sizeof *c);
    RETURN_ERR_IF(!c, -ENOMEM, "s3: out of memory");
    c->cfg = *cfg;
    c->cfg.endpoint = strdup(cfg->endpoint);
    c->cfg.region = strdup(cfg->region);
    c->cfg.access_key = strdup(cfg->access_key);
    c->cfg.secret_key = strdup(cfg->secret_key);
    c->cfg.session_token = cfg->session_token ? strdup(cfg->session_token) : NULL;
    if (!c->cfg.endpoint || !c->cfg.region || !c->cfg.access_key || !c->cfg.secret_key ||
        (cfg->session_token && !c->cfg.session_token)) {
        r = err_set(-ENOMEM, "s3: out of memory");
        goto fail;
    }
    if (c->cfg.max_attempts == 0)
        c->cfg.max_attempts = 1;
    if (c->cfg.list_page_size == 0)
        c->cfg.list_page_size = 1000;
    if (c->cfg.stall_timeout_ms < 1000)
        c->cfg.stall_timeout_ms = 1000;
    if ((r = parse_endpoint(c->cfg.endpoint, &c->https, &c->host)) < 0)
        goto fail;
    c->curl = curl_easy_init();
    if (!c->curl) {
        r = err_set(-ENOMEM, "s3: cannot create a libcurl handle");
        goto fail;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)c;
    if (!c->rng)
        c->rng = 1;
    *out = c;
    return 0;
fail:
    s3_client_free(c);
    return r;
}

void
s3_client_free(struct s3_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->host);
    s3_config_clear(&c->cfg);
    free(c);
}

void
s3_client_stats(const struct s3_client *c, struct s3_stats *out)
{
    *out = c->stats;
}

/* ---- one request, with retries ------------------------------------------ */

struct req {
    const char *method;
    const char *bucket;
    const char *key; /* NULL for a request on the bucket */
    const struct sigv4_pair *query;
    size_t n_query;
    struct sigv4_pair hdr[4]; /* extra headers, signed */
    size_t n_hdr;
    const void *body; /* PUT */
    size_t body_len;
    const char *body_md5_hex; /* for the ambiguous-retry check; NULL if unknown */

    /* where a 2xx body goes: a growable buffer, or a fixed one (ranges) */
    struct strbuf *into;
    char *buf;
    size_t buf_len;
    uint64_t range_off;
    bool range;

    /* the response of the current attempt */
    long status;
    char etag[S3_ETAG_MAX];
    bool bad_etag;
    uint64_t length;
    bool have_length;
    size_t got;
    uint64_t skip; /* bytes to drop: a 200 reply to a range request */
    bool overflow, oom;
    struct strbuf errbody;
    size_t upload_off;
    unsigned attempts; /* tries made */
    struct s3_stats *stats;

    /* the stall clock of the current attempt (on_progress) */
    uint64_t stall_ms, moved, moved_at_ms;
    bool stalled;
};

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Abort an attempt that moved no byte, either way, for stall_ms.  (curl's
 * LOW_SPEED_TIME judges a speed averaged over the last few seconds, so a
 * transfer that stopped after sending data - any PUT - failed only some
 * 5 s later than the stall timeout said.)  curl calls this at least once a
 * second, also while nothing moves. */
static int
on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
            curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    struct req *q = opaque;
    uint64_t now = now_ms(), moved = (uint64_t)dlnow + (uint64_t)ulnow;
    if (moved != q->moved) {
        q->moved = moved;
        q->moved_at_ms = now;
        return 0;
    }
    if (now - q->moved_at_ms < q->stall_ms)
        return 0;
    q->stalled = true;
    return 1;
}

static const char *
reason(long status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

static bool
header_is(const char *line, size_t n, const char *name, const char **value, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && strchr(" \t\r\n", end[-1]))
        end--;
    *value = v;
    *vlen = (size_t)(end - v);
    return true;
}

static size_t
on_header(char *line, size_t size, size_t nmemb, void *opaque)
{
    struct req *q = opaque;
    size_t n = size * nmemb;
    const char *v;
    size_t vlen;

    if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue, say): forget the last one. */
        const char *sp = memchr(line, ' ', n);
        q->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        q->etag[0] = '\0';
        q->bad_etag = q->have_length = false;
        q->skip = q->range && q->status == 200 ? q->range_off : 0;
    } else if (header_is(line, n, "etag", &v, &vlen)) {
        char tmp[S3_ETAG_MAX + 2];
        q->bad_etag = vlen >= sizeof tmp;
        if (!q->bad_etag) {
            memcpy(tmp, v, vlen);
            tmp[vlen] = '\0';
            q->bad_etag = !s3_etag_unquote(tmp, q->etag, sizeof q->etag);
        }
    } else if (header_is(line, n, "content-length", &v, &vlen)) {
        uint64_t len = 0;
        bool ok = vlen > 0 && vlen < 20;
        for (size_t i = 0; ok && i < vlen; i++) {
            ok = v[i] >= '0' && v[i] <= '9';
            len = len * 10 + (uint64_t)(v[i] - '0');
        }
        q->have_length = ok;
        q->length = len;
        /* Reserve for a whole-object GET, within reason: it is a hint. */
        if (ok && q->into && q->status == 200 && len < (256u << 20))
            strbuf_reserve(q->into, (size_t)len);
    }
    return n;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct req *q = opaque;
    size_t n = size * nmemb;
    q->stats->bytes_received += n;
    if (q->status < 200 || q->status >= 300) {
        if (q->errbody.len < ERRBODY_MAX)
            strbuf_addn(&q->errbody, data, n < ERRBODY_MAX ? n : ERRBODY_MAX);
        return n;
    }
    if (q->into) {
        strbuf_addn(q->into, data, n);
        if (strbuf_failed(q->into)) {
            q->oom = true;
            return 0;
        }
        return n;
    }
    size_t take = n;
    if (q->skip) {
        size_t s = q->skip < take ? (size_t)q->skip : take;
        q->skip -= s;
        data += s;
        take -= s;
    }
    size_t room = q->buf_len - q->got;
    if (take > room) {
        if (q->status == 206) {
            q->overflow = true; /* more than the range we asked for */
            return 0;
        }
        take = room; /* a 200 with the whole object: the rest is not wanted */
    }
    memcpy(q->buf + q->got, data, take);
    q->got += take;
    return n;
}

static size_t
on_upload(char *dst, size_t size, size_t nmemb, void *opaque)
{
    struct req *q = opaque;
    size_t n = size * nmemb, left = q->body_len - q->upload_off;
    if (n > left)
        n = left;
    memcpy(dst, (const char *)q->body + q->upload_off, n);
    q->upload_off += n;
    q->stats->bytes_sent += n;
    return n;
}

static int
on_seek(void *opaque, curl_off_t off, int origin)
{
    struct req *q = opaque;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > q->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    q->upload_off = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

static bool
retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static int
curl_errno(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST: return -EHOSTUNREACH;
    case CURLE_OUT_OF_MEMORY: return -ENOMEM;
    default: return -EIO;
    }
}

static bool
retryable_status(long status, const char *code)
{
    return status == 500 || status == 502 || status == 503 || status == 504 || status == 429 ||
           (status == 400 && strcmp(code, "RequestTimeout") == 0);
}

static uint64_t
next_random(struct s3_client *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* Sleep before retry number @retry (1, 2, ...): backoff_ms doubled each
 * time, capped, with "equal jitter" (half fixed, half random) so that many
 * clients failing together do not retry in lockstep. */
static void
backoff(struct s3_client *c, unsigned retry)
{
    uint64_t ms = c->cfg.backoff_ms;
    for (unsigned i = 1; i < retry && ms < c->cfg.backoff_max_ms; i++)
        ms *= 2;
    if (ms > c->cfg.backoff_max_ms)
        ms = c->cfg.backoff_max_ms;
    ms = ms / 2 + (ms ? next_random(c) % (ms / 2 + 1) : 0);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* "bucket/key" or "bucket?query" for messages. */
static void
describe(const struct req *q, const char *query, char *out, size_t size)
{
    snprintf(out, size, "%s%s%s%s%s", q->bucket, q->key ? "/" : "", q->key ? q->key : "",
             query && *query ? "?" : "", query ? query : "");
}

static bool
dns_compatible(const char *bucket)
{
    size_t n = strlen(bucket);
    if (n < 3 || n > 63 || bucket[0] == '-' || bucket[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)bucket[i]) && !isdigit((unsigned char)bucket[i]) &&
            bucket[i] != '-')
            return false;
    return true;
}

/* Run @q: up to max_attempts tries.  On return q->status holds the final
 * HTTP status (0 when no response came).  Returns 0 when a response came
 * (whatever its status), *@ambiguous telling whether an earlier try may
 * have taken effect; or -errno with a message when no response came. */
static int
perform(struct s3_client *c, struct req *q, bool *ambiguous)
{
    struct strbuf path = {0}, url = {0}, hostb = {0};
    char *query = NULL, *enc_path = NULL;
    struct curl_slist *hl = NULL;
    struct sigv4_pair signed_hdrs[6];
    char payload_hash[SIGV4_HEX_SHA256_LEN + 1];
    char what[512];
    CURLcode rc = CURLE_OK;
    int r = 0;

    *ambiguous = false;
    RETURN_ERR_IF(!q->bucket || !*q->bucket || strchr(q->bucket, '/'), -EINVAL,
                  "s3: invalid bucket name '%s'", q->bucket ? q->bucket : "");
    RETURN_ERR_IF(q->key && !*q->key, -EINVAL, "s3: empty object key");
    bool virt = c->cfg.addressing == S3_ADDR_VIRTUAL ||
                (c->cfg.addressing == S3_ADDR_AUTO && c->cfg.endpoint_is_default &&
                 dns_compatible(q->bucket));
    if (virt) {
        strbuf_addf(&hostb, "%s.%s", q->bucket, c->host);
        strbuf_addf(&path, "/%s", q->key ? q->key : "");
    } else {
        strbuf_add(&hostb, c->host);
        strbuf_addf(&path, "/%s%s%s", q->bucket, q->key ? "/" : "", q->key ? q->key : "");
    }
    query = sigv4_canonical_query(q->query, q->n_query);
    enc_path = path.s ? sigv4_uri_encode(path.s, true) : NULL;
    if (!query || !enc_path || strbuf_failed(&hostb))
        goto oom;
    strbuf_addf(&url, "%s://%s%s%s%s", c->https ? "https" : "http", hostb.s, enc_path,
                *query ? "?" : "", query);
    if (strbuf_failed(&url))
        goto oom;
    describe(q, query, what, sizeof what);
    if ((r = sigv4_sha256_hex(q->body ? q->body : "", q->body_len, payload_hash)) < 0)
        goto out;

    signed_hdrs[0] = (struct sigv4_pair){"host", hostb.s};
    for (size_t i = 0; i < q->n_hdr; i++)
        signed_hdrs[1 + i] = q->hdr[i];
    struct sigv4_request sreq = {
        .method = q->method,
        .path = path.s,
        .query = q->query,
        .n_query = q->n_query,
        .headers = signed_hdrs,
        .n_headers = 1 + q->n_hdr,
        .payload_hash = payload_hash,
    };
    struct sigv4_credentials cred = {c->cfg.access_key, c->cfg.secret_key,
                                     c->cfg.session_token, c->cfg.region, "s3"};

    for (unsigned attempt = 1;; attempt++) {
        struct sigv4_result sig;
        struct strbuf line = {0};

        if (attempt > 1) {
            backoff(c, attempt - 1);
            c->stats.retries++;
        }
        q->attempts = attempt;
        q->status = 0;
        q->etag[0] = '\0';
        q->bad_etag = q->have_length = q->overflow = q->oom = false;
        q->got = 0;
        q->skip = 0;
        q->upload_off = 0;
        q->stall_ms = c->cfg.stall_timeout_ms;
        q->moved = 0;
        q->moved_at_ms = now_ms();
        q->stalled = false;
        if (q->into)
            strbuf_free(q->into); /* a retry starts the body again */
        strbuf_free(&q->errbody);
        c->curl_err[0] = '\0';

        if ((r = sigv4_sign(&sreq, &cred, time(NULL), &sig)) < 0)
            goto out;
        curl_slist_free_all(hl);
        hl = NULL;
#define ADD_HEADER(...)                                                                            \
    do {                                                                                           \
        strbuf_free(&line);                                                                        \
        strbuf_addf(&line, __VA_ARGS__);                                                           \
        struct curl_slist *nl = strbuf_failed(&line) ? NULL : curl_slist_append(hl, line.s);      \
        if (!nl) {                                                                                 \
            sigv4_result_free(&sig);                                                               \
            strbuf_free(&line);                                                                    \
            goto oom;                                                                              \
        }                                                                                          \
        hl = nl;                                                                                   \
    } while (0)
        ADD_HEADER("Host: %s", hostb.s);
        ADD_HEADER("x-amz-date: %s", sig.amz_date);
        ADD_HEADER("x-amz-content-sha256: %s", payload_hash);
        if (c->cfg.session_token && *c->cfg.session_token)
            ADD_HEADER("x-amz-security-token: %s", c->cfg.session_token);
        ADD_HEADER("Authorization: %s", sig.authorization);
        for (size_t i = 0; i < q->n_hdr; i++)
            ADD_HEADER("%s: %s", q->hdr[i].name, q->hdr[i].value);
        ADD_HEADER("Expect:"); /* no 100-continue round trip */
        ADD_HEADER("Accept:");
#undef ADD_HEADER
        strbuf_free(&line);
        sigv4_result_free(&sig);

        CURL *h = c->curl;
        curl_easy_reset(h); /* keeps the connection cache */
        curl_easy_setopt(h, CURLOPT_URL, url.s);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* keys may hold "./" or "../" */
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(h, CURLOPT_USERAGENT, "topcow/" TOPCOW_VERSION_STRING);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg.connect_timeout_ms);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, q);
        if (c->cfg.request_timeout_ms)
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->cfg.request_timeout_ms);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
        if (strcmp(q->method, "HEAD") == 0) {
            curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        } else if (strcmp(q->method, "PUT") == 0) {
            curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
            curl_easy_setopt(h, CURLOPT_READDATA, q);
            curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
            curl_easy_setopt(h, CURLOPT_SEEKDATA, q);
            curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
        } else if (strcmp(q->method, "GET") != 0) {
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
        }

        rc = curl_easy_perform(h);
        if (rc == CURLE_ABORTED_BY_CALLBACK && q->stalled) {
            rc = CURLE_OPERATION_TIMEDOUT;
            snprintf(c->curl_err, sizeof c->curl_err,
                     "Operation too slow: nothing sent or received for %u s",
                     (unsigned)(q->stall_ms / 1000));
        }
        long connects = 0;
        curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
        c->stats.requests++;
        c->stats.connects += (uint64_t)(connects > 0 ? connects : 0);

        if (q->oom)
            goto oom;
        if (q->overflow) {
            r = err_set(-EPROTO, "s3: %s %s: the server sent more than the range asked for",
                        q->method, what);
            goto out;
        }
        bool last = attempt >= c->cfg.max_attempts;
        if (rc != CURLE_OK) {
            if (rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST)
                *ambiguous = true; /* the request may have reached the server */
            if (retryable_curl(rc) && !last)
                continue;
            r = err_set(curl_errno(rc), "s3: %s %s: %s (%u attempt%s)", q->method, what,
                        c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc), attempt,
                        attempt == 1 ? "" : "s");
            goto out;
        }
        struct s3_xml_error xe = {.code = ""};
        if (q->status >= 300)
            s3_xml_parse_error(q->errbody.s, q->errbody.len, &xe);
        if (retryable_status(q->status, xe.code) && !last) {
            *ambiguous = true;
            continue;
        }
        if (q->bad_etag) {
            r = err_set(-EPROTO, "s3: %s %s: the server sent an unusable ETag", q->method, what);
            goto out;
        }
        r = 0;
        break;
    }
    goto out;
oom:
    r = err_set(-ENOMEM, "s3: out of memory");
out:
    curl_slist_free_all(hl);
    strbuf_free(&path);
    strbuf_free(&url);
    strbuf_free(&hostb);
    free(query);
    free(enc_path);
    return r;
}

/* The message and -errno for a final status >= 300.  @conflict is the code
 * for 409/412, a failed condition (-EEXIST for create-once, -ESTALE for
 * compare-and-swap), or 0 for a request that set none. */
static int
status_error(struct req *q, int conflict)
{
    struct s3_xml_error xe;
    char what[512];
    char query[256] = "";
    int code;

    s3_xml_parse_error(q->errbody.s, q->errbody.len, &xe);
    for (size_t i = 0; i < q->n_query; i++)
        snprintf(query + strlen(query), sizeof query - strlen(query), "%s%s=%s", i ? "&" : "",
                 q->query[i].name, q->query[i].value);
    describe(q, query, what, sizeof what);
    switch (q->status) {
    case 400: code = -EINVAL; break;
    case 401:
    case 403: code = -EACCES; break;
    case 404: code = -ENOENT; break;
    case 405:
    case 501: code = -ENOTSUP; break;
    case 409:
    case 412: code = conflict ? conflict : -EIO; break;
    case 411: code = -EINVAL; break;
    case 413: code = -EFBIG; break;
    case 416: code = -ERANGE; break;
    default: code = -EIO; break;
    }
    /* A compare-and-swap on an object that is gone failed its condition. */
    if (q->status == 404 && conflict == -ESTALE && strcmp(xe.code, "NoSuchKey") == 0)
        code = -ESTALE;
    /* "412 Precondition Failed (PreconditionFailed: At least one of ...)" */
    char tries[32] = "";
    if (q->attempts > 1)
        snprintf(tries, sizeof tries, " (%u attempts)", q->attempts);
    return err_set(code, "s3: %s %s: %ld %s%s%s%s%s%s%s", q->method, what, q->status,
                   reason(q->status), xe.code[0] ? " (" : "", xe.code,
                   xe.code[0] && xe.message[0] ? ": " : "", xe.code[0] ? xe.message : "",
                   xe.code[0] ? ")" : "", tries);
}

static void
req_free(struct req *q)
{
    strbuf_free(&q->errbody);
}

static void
info_from(const struct req *q, struct s3_object_info *info, uint64_t size)
{
    if (!info)
        return;
    info->size = size;
    snprintf(info->etag, sizeof info->etag, "%s", q->etag);
}

int
s3_get(struct s3_client *c, const char *bucket, const char *key, void **data, size_t *len,
       struct s3_object_info *info)
{
    struct strbuf body = {0};
    struct req q = {.method = "GET", .bucket = bucket, .key = key, .into = &body,
                    .stats = &c->stats};
    bool amb;
    int r;

    *data = NULL;
    *len = 0;
    RETURN_ERR_IF(!key, -EINVAL, "s3: GET without a key");
    r = perform(c, &q, &amb);
    if (r == 0 && q.status != 200)
        r = status_error(&q, 0);
    if (r == 0) {
        *len = body.len;
        *data = strbuf_release(&body);
        if (!*data)
            r = err_set(-ENOMEM, "s3: out of memory");
        else
            info_from(&q, info, *len);
    }
    strbuf_free(&body);
    req_free(&q);
    return r;
}

int
s3_get_range(struct s3_client *c, const char *bucket, const char *key, uint64_t off, void *buf,
             size_t len, size_t *got)
{
    char range[64];
    bool amb;
    int r;

    *got = 0;
    RETURN_ERR_IF(!key, -EINVAL, "s3: GET without a key");
    if (len == 0)
        return 0;
    RETURN_ERR_IF(off > UINT64_MAX - len, -EINVAL, "s3: range past 2^64");
    snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)off,
             (unsigned long long)(off + len - 1));
    struct req q = {.method = "GET", .bucket = bucket, .key = key, .buf = buf, .buf_len = len,
                    .range = true, .range_off = off, .stats = &c->stats};
    q.hdr[q.n_hdr++] = (struct sigv4_pair){"Range", range};
    r = perform(c, &q, &amb);
    if (r == 0) {
        if (q.status == 206 || q.status == 200)
            *got = q.got;
        else if (q.status == 416)
            *got = 0; /* the range starts at or past the end */
        else
            r = status_error(&q, 0);
    }
    req_free(&q);
    return r;
}

static bool
md5_of(const void *data, size_t len, char hex[33], char b64[25])
{
    unsigned char md[16];
    unsigned int n = 0;
    static const char digits[] = "0123456789abcdef";
    /* MD5 may be missing (a FIPS provider): then no Content-MD5. */
    if (!EVP_Digest(data, len, md, &n, EVP_md5(), NULL) || n != 16)
        return false;
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[32] = '\0';
    return EVP_EncodeBlock((unsigned char *)b64, md, 16) == 24;
}

int
s3_put(struct s3_client *c, const char *bucket, const char *key, const void *data, size_t len,
       enum s3_put_mode mode, const char *if_match, char etag[S3_ETAG_MAX])
{
    char md5_hex[33], md5_b64[25];
    bool have_md5, amb;
    int conflict = mode == S3_PUT_CREATE_ONCE ? -EEXIST : mode == S3_PUT_IF_MATCH ? -ESTALE : 0;
    int r;

    if (etag)
        etag[0] = '\0';
    RETURN_ERR_IF(!key, -EINVAL, "s3: PUT without a key");
    RETURN_ERR_IF(mode == S3_PUT_IF_MATCH && (!if_match || !*if_match), -EINVAL,
                  "s3: PUT %s/%s: compare-and-swap without an ETag", bucket, key);
    for (const char *p = mode == S3_PUT_IF_MATCH ? if_match : ""; *p; p++)
        RETURN_ERR_IF((unsigned char)*p <= ' ' || *p == 0x7f, -EINVAL,
                      "s3: PUT %s/%s: invalid ETag '%s'", bucket, key, if_match);
    have_md5 = md5_of(data ? data : "", len, md5_hex, md5_b64);
    struct req q = {.method = "PUT", .bucket = bucket, .key = key, .body = data ? data : "",
                    .body_len = len, .stats = &c->stats};
    if (have_md5)
        q.hdr[q.n_hdr++] = (struct sigv4_pair){"Content-MD5", md5_b64};
    /* Ceph RGW 16 matches If-Match only against the unquoted ETag. */
    if (mode == S3_PUT_CREATE_ONCE)
        q.hdr[q.n_hdr++] = (struct sigv4_pair){"If-None-Match", "*"};
    else if (mode == S3_PUT_IF_MATCH)
        q.hdr[q.n_hdr++] = (struct sigv4_pair){"If-Match", if_match};
    r = perform(c, &q, &amb);
    if (r == 0 && (q.status == 200 || q.status == 204)) {
        if (etag)
            snprintf(etag, S3_ETAG_MAX, "%s", q.etag);
    } else if (r == 0) {
        r = status_error(&q, conflict);
        /* An earlier try may have written our object before the reply got
         * lost; the retry then fails its own condition.  If the object is
         * byte for byte ours (its ETag is our MD5), the PUT did succeed. */
        if ((q.status == 412 || q.status == 409) && amb && have_md5 && mode != S3_PUT_ANY) {
            char msg[512];
            struct s3_object_info info;
            snprintf(msg, sizeof msg, "%s", topcow_last_error());
            if (s3_head(c, bucket, key, &info) == 0 && strcmp(info.etag, md5_hex) == 0 &&
                info.size == len) {
                if (etag)
                    snprintf(etag, S3_ETAG_MAX, "%s", info.etag);
                r = 0;
            } else {
                err_set(r, "%s", msg);
            }
        }
    }
    req_free(&q);
    return r;
}

int
s3_head(struct s3_client *c, const char *bucket, const char *key, struct s3_object_info *info)
{
    struct req q = {.method = "HEAD", .bucket = bucket, .key = key, .stats = &c->stats};
    bool amb;
    int r;

    RETURN_ERR_IF(!key, -EINVAL, "s3: HEAD without a key");
    r = perform(c, &q, &amb);
    if (r == 0 && q.status != 200)
        r = status_error(&q, 0);
    if (r == 0 && !q.have_length)
        r = err_set(-EPROTO, "s3: HEAD %s/%s: no Content-Length in the reply", bucket, key);
    if (r == 0)
        info_from(&q, info, q.length);
    req_free(&q);
    return r;
}

int
s3_delete(struct s3_client *c, const char *bucket, const char *key)
{
    struct req q = {.method = "DELETE", .bucket = bucket, .key = key, .stats = &c->stats};
    bool amb;
    int r;

    RETURN_ERR_IF(!key, -EINVAL, "s3: DELETE without a key");
    r = perform(c, &q, &amb);
    if (r == 0 && q.status != 204 && q.status != 200)
        r = status_error(&q, 0);
    req_free(&q);
    return r;
}

int
s3_list(struct s3_client *c, const char *bucket, const char *prefix,
        int (*fn)(void *opaque, const struct s3_list_entry *e), void *opaque)
{
    char *token = NULL;
    char page_size[16];
    int r = 0;

    snprintf(page_size, sizeof page_size, "%u", c->cfg.list_page_size);
    for (;;) {
        struct strbuf body = {0};
        struct s3_xml_list page;
        struct sigv4_pair query[4];
        size_t nq = 0;
        bool amb;

        query[nq++] = (struct sigv4_pair){"list-type", "2"};
        query[nq++] = (struct sigv4_pair){"max-keys", page_size};
        if (prefix && *prefix)
            query[nq++] = (struct sigv4_pair){"prefix", prefix};
        if (token)
            query[nq++] = (struct sigv4_pair){"continuation-token", token};
        struct req q = {.method = "GET", .bucket = bucket, .query = query, .n_query = nq,
                        .into = &body, .stats = &c->stats};
        r = perform(c, &q, &amb);
        if (r == 0 && q.status != 200)
            r = status_error(&q, 0);
        req_free(&q);
        if (r == 0)
            r = s3_xml_parse_list(body.s ? body.s : "", body.len, &page);
        strbuf_free(&body);
        if (r < 0)
            break;
        for (size_t i = 0; i < page.n && r == 0; i++) {
            struct s3_list_entry e = {page.entries[i].key, page.entries[i].etag,
                                      page.entries[i].size, page.entries[i].mtime};
            r = fn(opaque, &e);
        }
        if (r == 0 && page.truncated) {
            if (token && strcmp(token, page.next_token) == 0) {
                r = err_set(-EPROTO, "s3: GET %s?list-type=2: the server repeated "
                            "continuation token '%s'", bucket, token);
            } else {
                free(token);
                token = page.next_token;
                page.next_token = NULL;
            }
        }
        bool more = page.truncated;
        s3_xml_list_free(&page);
        if (r != 0 || !more)
            break;
    }
    free(token);
    return r;
}
