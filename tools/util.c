// SPDX-License-Identifier: MIT
/* Shared CLI helpers (see util.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secrets.h"
#include "util.h"

const char *prog_name = "topcow";

void
error_msg(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void
die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

int
parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '-' || *s == '+')
        return -1;
    errno = 0;
    char *end;
    /* Integers are parsed exactly; a fraction goes through a double. */
    unsigned long long whole = strtoull(s, &end, 10);
    if (end == s || errno)
        return -1;
    double frac = 0;
    if (*end == '.') {
        char *fend;
        frac = strtod(end, &fend);
        if (fend == end + 1)
            return -1;
        end = fend;
    }
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'b': case 'B': end++; break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    case 'p': case 'P': shift = 50; end++; break;
    case 'e': case 'E': shift = 60; end++; break;
    default: return -1;
    }
    if (*end != '\0')
        return -1;
    if (shift && whole > (UINT64_MAX >> shift))
        return -1;
    uint64_t v = (uint64_t)whole << shift;
    double extra = frac * (double)(1ull << shift);
    if (extra > 0) {
        if ((double)v + extra >= 18446744073709551615.0)
            return -1;
        v += (uint64_t)extra;
    }
    *out = v;
    return 0;
}

void
size_to_str(uint64_t v, char *buf, size_t len)
{
    static const char *const units[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    /* The unit is 1024^i with i = floor(log2(v * 1024 / 1000) / 10), so that
     * the printed number stays below 1000 (e.g. "1000 KiB" is "0.977 MiB"). */
    unsigned i = 0;
    if (v) {
        int e;
        frexp((double)v * 1024.0 / 1000.0, &e);
        i = (unsigned)((e - 1) / 10);
        if (i >= sizeof units / sizeof units[0])
            i = sizeof units / sizeof units[0] - 1;
    }
    snprintf(buf, len, "%0.3g %sB", (double)v / (double)(1ull << (i * 10)), units[i]);
}

static int
optlist_add(struct optlist *ol, char *key, char *val)
{
    size_t n = ol->n + 1;
    char **k = realloc(ol->keys, n * sizeof *k);
    if (!k)
        return -1;
    ol->keys = k;
    char **v = realloc(ol->vals, n * sizeof *v);
    if (!v)
        return -1;
    ol->vals = v;
    bool *u = realloc(ol->used, n * sizeof *u);
    if (!u)
        return -1;
    ol->used = u;
    ol->keys[ol->n] = key;
    ol->vals[ol->n] = val;
    ol->used[ol->n] = false;
    ol->n = n;
    return 0;
}

int
optlist_parse(struct optlist *ol, const char *s)
{
    size_t len = strlen(s);
    char *item = malloc(len + 1);
    if (!item)
        return -1;
    size_t i = 0;
    while (i <= len) {
        size_t n = 0;
        /* Copy up to an unescaped comma; ",," stands for ','. */
        while (i < len && !(s[i] == ',' && s[i + 1] != ',')) {
            if (s[i] == ',' && s[i + 1] == ',')
                i++;
            item[n++] = s[i++];
        }
        item[n] = '\0';
        i++;
        if (n == 0)
            continue;
        char *eq = strchr(item, '=');
        char *key = strndup(item, eq ? (size_t)(eq - item) : n);
        char *val = eq ? strdup(eq + 1) : NULL;
        if (!key || (eq && !val) || optlist_add(ol, key, val) < 0) {
            free(item);
            error_msg("out of memory");
            return -1;
        }
    }
    free(item);
    return 0;
}

const char *
optlist_get(struct optlist *ol, const char *key)
{
    const char *v = NULL;
    for (size_t i = 0; i < ol->n; i++)
        if (strcmp(ol->keys[i], key) == 0) {
            ol->used[i] = true;
            v = ol->vals[i] ? ol->vals[i] : "";
        }
    return v;
}

bool
optlist_has(const struct optlist *ol, const char *key)
{
    for (size_t i = 0; i < ol->n; i++)
        if (!strcmp(ol->keys[i], key))
            return true;
    return false;
}

const char *
optlist_unused(const struct optlist *ol)
{
    for (size_t i = 0; i < ol->n; i++)
        if (!ol->used[i])
            return ol->keys[i];
    return NULL;
}

void
optlist_free(struct optlist *ol)
{
    for (size_t i = 0; i < ol->n; i++) {
        free(ol->keys[i]);
        free(ol->vals[i]);
    }
    free(ol->keys);
    free(ol->vals);
    free(ol->used);
    memset(ol, 0, sizeof *ol);
}

int
parse_cache_mode(const char *mode, unsigned *flags)
{
    unsigned f;
    if (!strcmp(mode, "none") || !strcmp(mode, "off"))
        f = TOPCOW_OPEN_DIRECT;
    else if (!strcmp(mode, "directsync"))
        f = TOPCOW_OPEN_DIRECT | TOPCOW_OPEN_WRITETHROUGH;
    else if (!strcmp(mode, "writeback"))
        f = 0;
    else if (!strcmp(mode, "writethrough"))
        f = TOPCOW_OPEN_WRITETHROUGH;
    else if (!strcmp(mode, "unsafe"))
        f = TOPCOW_OPEN_UNSAFE;
    else
        return -1;
    *flags = (*flags & ~OPEN_CACHE_FLAGS) | f;
    return 0;
}

int
parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "on") || !strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "1"))
        *out = true;
    else if (!strcmp(s, "off") || !strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

struct topcow_image *
open_image_path(const char *path, const char *format, unsigned flags, const char *secret_id)
{
    return open_image_snapshot(path, format, flags, secret_id, NULL);
}

struct topcow_image *
open_image_snapshot(const char *path, const char *format, unsigned flags, const char *secret_id,
                    const char *snapshot)
{
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.format = format;
    o.snapshot = snapshot;
    o.flags = flags & ~OPEN_NEED_KEY;
    if (secret_id && !(o.secret = secret_lookup(secret_id, &o.secret_len)))
        return NULL;
    struct topcow_image *img;
    bool locked = false;
    int r = (flags & OPEN_NEED_KEY) ? open_or_prompt(&img, path, &o, &locked)
                                    : topcow_image_open(&img, path, &o);
    if (r < 0) {
        error_msg("Could not open '%s': %s", path, topcow_last_error());
        return NULL;
    }
    if (locked) {
        error_msg("Could not open '%s': Parameter 'encrypt.key-secret' is required for cipher",
                  path);
        topcow_image_close(img);
        return NULL;
    }
    return img;
}

struct topcow_image *
open_image(const char *arg, const char *format, unsigned flags)
{
    struct image_spec spec;
    if (image_spec_parse(arg, &spec) < 0)
        return NULL;
    struct topcow_image *img = open_image_path(spec.path, spec.driver ? spec.driver : format,
                                               flags, spec.key_secret);
    image_spec_free(&spec);
    return img;
}

void
progress_print(double percent)
{
    printf("    (%.2f/100%%)\r", percent);
    fflush(stdout);
}

void
progress_end(void)
{
    printf("    (100.00/100%%)\n");
    fflush(stdout);
}

char *
snapshot_param_id(const char *s)
{
    if (strncmp(s, "snapshot.id=", 12) && strncmp(s, "snapshot.name=", 14))
        return strdup(s);
    struct optlist ol = { 0 };
    char *r = NULL;
    if (optlist_parse(&ol, s) == 0) {
        const char *v = optlist_get(&ol, "snapshot.id");
        if (!v)
            v = optlist_get(&ol, "snapshot.name");
        r = strdup(v ? v : "");
    }
    optlist_free(&ol);
    return r;
}
