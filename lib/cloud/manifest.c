// SPDX-License-Identifier: MIT
/* Manifests and HEAD objects as text, chunk hashes and keys, image names
 * and generation ids (manifest.h; the format in
 * docs/internals/cloud-layout.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "error.h"
#include "parse-number.h"
#include "manifest.h"
#include "strbuf.h"

int
cloud_hash(const void *data, size_t len, struct cloud_hash *out)
{
    unsigned n = 0;
    if (!EVP_Digest(data, len, out->b, &n, EVP_sha256(), NULL) || n != CLOUD_HASH_LEN)
        return err_set(-EIO, "cloud: SHA-256 failed in libcrypto");
    return 0;
}

void
cloud_hash_hex(const struct cloud_hash *h, char out[CLOUD_HASH_HEX])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < CLOUD_HASH_LEN; i++) {
        out[2 * i] = hex[h->b[i] >> 4];
        out[2 * i + 1] = hex[h->b[i] & 15];
    }
    out[2 * CLOUD_HASH_LEN] = '\0';
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool
cloud_hash_parse(const char *s, struct cloud_hash *out)
{
    if (strlen(s) != 2 * CLOUD_HASH_LEN)
        return false;
    for (int i = 0; i < CLOUD_HASH_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

bool
cloud_hash_is_zero(const struct cloud_hash *h)
{
    return cloud_buf_is_zero(h->b, CLOUD_HASH_LEN);
}

bool
cloud_buf_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (len == 0)
        return true;
    /* The first byte, then the buffer against itself shifted by one. */
    return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

void
cloud_chunk_key(const struct cloud_hash *h, char *out, size_t size)
{
    char hex[CLOUD_HASH_HEX];
    cloud_hash_hex(h, hex);
    snprintf(out, size, "chunks/%.2s/%s", hex, hex);
}

int
cloud_check_name(const char *name)
{
    size_t n = strlen(name);
    RETURN_ERR_IF(n == 0, -EINVAL, "cloud: an empty image name");
    RETURN_ERR_IF(n > CLOUD_NAME_MAX, -EINVAL, "cloud: image name of %zu bytes (at most %d)", n,
                  CLOUD_NAME_MAX);
    RETURN_ERR_IF(name[0] == '.', -EINVAL, "cloud: image name '%s' starts with '.'", name);
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '+';
        RETURN_ERR_IF(!ok, -EINVAL,
                      "cloud: image name '%s': only letters, digits and '._-+' are allowed",
                      name);
    }
    return 0;
}

bool
cloud_gen_valid(const char *g)
{
    if (strlen(g) != 17 || g[8] != '-')
        return false;
    for (int i = 0; i < 8; i++)
        if (g[i] < '0' || g[i] > '9' || hexval(g[9 + i]) < 0)
            return false;
    return cloud_gen_seq(g) > 0;
}

uint64_t
cloud_gen_seq(const char *g)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        if (g[i] < '0' || g[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(g[i] - '0');
    }
    return v;
}

int
cloud_gen_new(uint64_t seq, char out[CLOUD_GEN_MAX])
{
    unsigned char r[4];
    RETURN_ERR_IF(seq == 0 || seq > 99999999, -EOVERFLOW,
                  "cloud: generation number %" PRIu64 " out of range", seq);
    if (RAND_bytes(r, sizeof r) != 1)
        return err_set(-EIO, "cloud: no randomness from libcrypto");
    snprintf(out, CLOUD_GEN_MAX, "%08" PRIu64 "-%02x%02x%02x%02x", seq, r[0], r[1], r[2], r[3]);
    return 0;
}

uint64_t
manifest_chunk_count(uint64_t size, uint32_t chunk_size)
{
    return chunk_size ? (size + chunk_size - 1) / chunk_size : 0;
}

static bool
chunk_size_valid(uint32_t cs)
{
    return cs >= CLOUD_CHUNK_SIZE_MIN && cs <= CLOUD_CHUNK_SIZE_MAX && (cs & (cs - 1)) == 0;
}

int
manifest_alloc_chunks(struct manifest *m)
{
    RETURN_ERR_IF(!chunk_size_valid(m->chunk_size), -EINVAL,
                  "cloud: chunk size %" PRIu32 " is not a power of two from 64 KiB to 64 MiB",
                  m->chunk_size);
    m->n_chunks = manifest_chunk_count(m->size, m->chunk_size);
    free(m->chunks);
    m->chunks = calloc(m->n_chunks ? m->n_chunks : 1, sizeof *m->chunks);
    RETURN_ERR_IF(!m->chunks, -ENOMEM, "cloud: out of memory for %" PRIu64 " chunk hashes",
                  m->n_chunks);
    return 0;
}

void
manifest_free(struct manifest *m)
{
    if (!m)
        return;
    free(m->chunks);
    m->chunks = NULL;
}

static void
format_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

int
manifest_format(const struct manifest *m, char **text, size_t *len)
{
    struct strbuf b = {0};
    char when[32];
    format_time(m->created, when);
    strbuf_addf(&b,
                "topcow-manifest 1\nname %s\ngeneration %s\nparent %s\nsize %" PRIu64
                "\nchunk-size %" PRIu32 "\ncreated %s\nhost %s\nuser %s\nchunks %" PRIu64 "\n",
                m->name, m->gen, m->parent[0] ? m->parent : "none", m->size, m->chunk_size,
                when, m->host[0] ? m->host : "unknown", m->user[0] ? m->user : "unknown",
                m->n_chunks);
    for (uint64_t i = 0; i < m->n_chunks; i++) {
        char hex[CLOUD_HASH_HEX];
        if (cloud_hash_is_zero(&m->chunks[i])) {
            strbuf_add(&b, "zero\n");
        } else {
            cloud_hash_hex(&m->chunks[i], hex);
            strbuf_addf(&b, "%s\n", hex);
        }
    }
    strbuf_add(&b, "end\n");
    if (strbuf_failed(&b)) {
        strbuf_free(&b);
        return err_set(-ENOMEM, "cloud: out of memory formatting a manifest");
    }
    *len = b.len;
    *text = strbuf_release(&b);
    return 0;
}

/* A line reader over untrusted bytes: lines end with '\n', hold no NUL and
 * no other control character. */
struct lines {
    const char *p, *end;
    const char *what; /* for messages: "manifest images/xp/gen/..." */
    char line[512];
    unsigned no;
};

static int
next_line(struct lines *ls)
{
    const char *nl = memchr(ls->p, '\n', (size_t)(ls->end - ls->p));
    ls->no++;
    RETURN_ERR_IF(!nl, -EPROTO, "cloud: %s: line %u is missing or unterminated (truncated?)",
                  ls->what, ls->no);
    size_t n = (size_t)(nl - ls->p);
    RETURN_ERR_IF(n >= sizeof ls->line, -EPROTO, "cloud: %s: line %u is too long", ls->what,
                  ls->no);
    for (size_t i = 0; i < n; i++)
        RETURN_ERR_IF((unsigned char)ls->p[i] < 0x20 || ls->p[i] == 0x7f, -EPROTO,
                      "cloud: %s: line %u holds a control character", ls->what, ls->no);
    memcpy(ls->line, ls->p, n);
    ls->line[n] = '\0';
    ls->p = nl + 1;
    return 0;
}

/* The next line must be "KEY VALUE"; *@value points into the line. */
static int
field(struct lines *ls, const char *key, const char **value)
{
    int r = next_line(ls);
    if (r < 0)
        return r;
    size_t kl = strlen(key);
    RETURN_ERR_IF(strncmp(ls->line, key, kl) != 0 || ls->line[kl] != ' ' || !ls->line[kl + 1],
                  -EPROTO, "cloud: %s: line %u: expected '%s VALUE', found '%.60s'", ls->what,
                  ls->no, key, ls->line);
    *value = ls->line + kl + 1;
    return 0;
}

static bool
parse_time(const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end)
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

static int
copy_field(struct lines *ls, const char *key, char *dst, size_t size)
{
    const char *v;
    int r = field(ls, key, &v);
    if (r < 0)
        return r;
    RETURN_ERR_IF(strlen(v) >= size, -EPROTO, "cloud: %s: %s is too long", ls->what, key);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

int
manifest_parse(const char *text, size_t len, const char *name, const char *gen,
               struct manifest *out)
{
    char what[CLOUD_NAME_MAX + 64];
    snprintf(what, sizeof what, "manifest images/%s/gen/%s", name, gen);
    struct lines ls = {text, text + len, what, {0}, 0};
    struct manifest m = {0};
    const char *v;
    uint64_t u;
    int r;

    memset(out, 0, sizeof *out);
    if ((r = next_line(&ls)) < 0)
        return r;
    RETURN_ERR_IF(strcmp(ls.line, "topcow-manifest 1") != 0, -EPROTO,
                  "cloud: %s: not a topcow manifest of version 1", what);
    if ((r = copy_field(&ls, "name", m.name, sizeof m.name)) < 0 ||
        (r = copy_field(&ls, "generation", m.gen, sizeof m.gen)) < 0)
        return r;
    RETURN_ERR_IF(strcmp(m.name, name) != 0 || strcmp(m.gen, gen) != 0, -EPROTO,
                  "cloud: %s: it says it is images/%s/gen/%s", what, m.name, m.gen);
    if ((r = field(&ls, "parent", &v)) < 0)
        return r;
    if (strcmp(v, "none") != 0) {
        RETURN_ERR_IF(!cloud_gen_valid(v), -EPROTO, "cloud: %s: bad parent '%s'", what, v);
        snprintf(m.parent, sizeof m.parent, "%s", v);
    }
    if ((r = field(&ls, "size", &v)) < 0)
        return r;
    RETURN_ERR_IF(!parse_decimal_u64(v, true, &m.size) || m.size > (UINT64_C(1) << 62),
                  -EPROTO,
                  "cloud: %s: bad size '%s'", what, v);
    if ((r = field(&ls, "chunk-size", &v)) < 0)
        return r;
    RETURN_ERR_IF(!parse_decimal_u64(v, true, &u) || u > UINT32_MAX ||
                      !chunk_size_valid((uint32_t)u),
                  -EPROTO,
                  "cloud: %s: bad chunk size '%s'", what, v);
    m.chunk_size = (uint32_t)u;
    if ((r = field(&ls, "created", &v)) < 0)
        return r;
    RETURN_ERR_IF(!parse_time(v, &m.created), -EPROTO, "cloud: %s: bad time '%s'", what, v);
    if ((r = copy_field(&ls, "host", m.host, sizeof m.host)) < 0 ||
        (r = copy_field(&ls, "user", m.user, sizeof m.user)) < 0)
        return r;
    /* Fields added by later versions start with "x-"; then "chunks N". */
    for (;;) {
        if ((r = next_line(&ls)) < 0)
            return r;
        if (strncmp(ls.line, "x-", 2) == 0)
            continue;
        RETURN_ERR_IF(strncmp(ls.line, "chunks ", 7) != 0, -EPROTO,
                      "cloud: %s: line %u: expected 'chunks N', found '%.60s'", what, ls.no,
                      ls.line);
        break;
    }
    RETURN_ERR_IF(!parse_decimal_u64(ls.line + 7, true, &u) ||
                      u != manifest_chunk_count(m.size, m.chunk_size),
                  -EPROTO, "cloud: %s: %s chunks for %" PRIu64 " bytes in chunks of %" PRIu32,
                  what, ls.line + 7, m.size, m.chunk_size);
    /* Each chunk line is 65 bytes at most: refuse a count the text cannot hold
     * before allocating for it. */
    RETURN_ERR_IF(u > len / 5, -EPROTO, "cloud: %s: truncated chunk list", what);
    if ((r = manifest_alloc_chunks(&m)) < 0)
        return r;
    for (uint64_t i = 0; i < m.n_chunks; i++) {
        if ((r = next_line(&ls)) < 0)
            goto fail;
        if (strcmp(ls.line, "zero") == 0)
            continue;
        if (!cloud_hash_parse(ls.line, &m.chunks[i]) || cloud_hash_is_zero(&m.chunks[i])) {
            r = err_set(-EPROTO, "cloud: %s: line %u: bad chunk hash '%.70s'", what, ls.no,
                        ls.line);
            goto fail;
        }
    }
    if ((r = next_line(&ls)) < 0)
        goto fail;
    if (strcmp(ls.line, "end") != 0 || ls.p != ls.end) {
        r = err_set(-EPROTO, "cloud: %s: more chunks than it says, or no 'end' line", what);
        goto fail;
    }
    *out = m;
    return 0;
fail:
    manifest_free(&m);
    return r;
}

int
head_format(const char *gen, char **text, size_t *len)
{
    struct strbuf b = {0};
    strbuf_addf(&b, "topcow-head 1\ngeneration %s\n", gen);
    if (strbuf_failed(&b)) {
        strbuf_free(&b);
        return err_set(-ENOMEM, "cloud: out of memory");
    }
    *len = b.len;
    *text = strbuf_release(&b);
    return 0;
}

int
head_parse(const char *text, size_t len, const char *name, char gen[CLOUD_GEN_MAX])
{
    char what[CLOUD_NAME_MAX + 32];
    snprintf(what, sizeof what, "images/%s/HEAD", name);
    struct lines ls = {text, text + len, what, {0}, 0};
    const char *v;
    int r = next_line(&ls);
    if (r < 0)
        return r;
    RETURN_ERR_IF(strcmp(ls.line, "topcow-head 1") != 0, -EPROTO,
                  "cloud: %s: not a topcow HEAD of version 1", what);
    if ((r = field(&ls, "generation", &v)) < 0)
        return r;
    RETURN_ERR_IF(!cloud_gen_valid(v), -EPROTO, "cloud: %s: bad generation '%s'", what, v);
    snprintf(gen, CLOUD_GEN_MAX, "%s", v);
    return 0;
}
