// SPDX-License-Identifier: MIT
/* The JSON tree behind `info`, `check` and `--output=json` (see json.h).
 * Members are kept in insertion order; the QDict iteration order is worked
 * out when an object is printed, so building stays simple and printing is
 * the only place that knows about QEMU's hash. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

enum json_type { JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_UINT, JSON_BOOL };

struct json_member {
    char *key;
    struct json *val;
};

struct json {
    enum json_type type;
    union {
        char *s;
        uint64_t u;
        bool b;
        struct {
            struct json_member *m; /* object members, in insertion order */
            struct json **a;       /* array elements */
            size_t n, cap;
        } c;
    };
};

/* QDict's table size; iteration walks the buckets in ascending order. */
#define QDICT_BUCKETS 512

static void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static char *
xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        die("out of memory");
    return p;
}

static struct json *
new_value(enum json_type type)
{
    struct json *v = calloc(1, sizeof *v);
    if (!v)
        die("out of memory");
    v->type = type;
    return v;
}

struct json *
json_new_object(void)
{
    return new_value(JSON_OBJECT);
}

struct json *
json_new_array(void)
{
    return new_value(JSON_ARRAY);
}

struct json *
json_new_string(const char *s)
{
    struct json *v = new_value(JSON_STRING);
    v->s = xstrdup(s);
    return v;
}

struct json *
json_new_uint(uint64_t u)
{
    struct json *v = new_value(JSON_UINT);
    v->u = u;
    return v;
}

struct json *
json_new_bool(bool b)
{
    struct json *v = new_value(JSON_BOOL);
    v->b = b;
    return v;
}

void
json_free(struct json *v)
{
    if (!v)
        return;
    switch (v->type) {
    case JSON_OBJECT:
        for (size_t i = 0; i < v->c.n; i++) {
            free(v->c.m[i].key);
            json_free(v->c.m[i].val);
        }
        free(v->c.m);
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->c.n; i++)
            json_free(v->c.a[i]);
        free(v->c.a);
        break;
    case JSON_STRING:
        free(v->s);
        break;
    case JSON_UINT:
    case JSON_BOOL:
        break;
    }
    free(v);
}

void
json_set(struct json *obj, const char *key, struct json *val)
{
    for (size_t i = 0; i < obj->c.n; i++)
        if (!strcmp(obj->c.m[i].key, key)) {
            json_free(obj->c.m[i].val);
            obj->c.m[i].val = val;
            return;
        }
    if (obj->c.n == obj->c.cap) {
        obj->c.cap = obj->c.cap ? 2 * obj->c.cap : 8;
        obj->c.m = xrealloc(obj->c.m, obj->c.cap * sizeof *obj->c.m);
    }
    obj->c.m[obj->c.n++] = (struct json_member){ xstrdup(key), val };
}

void
json_set_string(struct json *obj, const char *key, const char *s)
{
    json_set(obj, key, json_new_string(s));
}

void
json_set_uint(struct json *obj, const char *key, uint64_t v)
{
    json_set(obj, key, json_new_uint(v));
}

void
json_set_bool(struct json *obj, const char *key, bool v)
{
    json_set(obj, key, json_new_bool(v));
}

void
json_append(struct json *arr, struct json *val)
{
    if (arr->c.n == arr->c.cap) {
        arr->c.cap = arr->c.cap ? 2 * arr->c.cap : 8;
        arr->c.a = xrealloc(arr->c.a, arr->c.cap * sizeof *arr->c.a);
    }
    arr->c.a[arr->c.n++] = val;
}

/* QDict's bucket for @key (the tdb hash, in 32-bit unsigned arithmetic). */
static unsigned
qdict_bucket(const char *key)
{
    size_t len = strlen(key);
    uint32_t h = 0x238F13AFu * (uint32_t)len;
    for (size_t i = 0; i < len; i++)
        h += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    return (1103515243u * h + 12345u) % QDICT_BUCKETS;
}

struct order {
    unsigned bucket;
    size_t index; /* insertion position */
};

static int
cmp_order(const void *a, const void *b)
{
    const struct order *x = a, *y = b;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    return x->index > y->index ? -1 : x->index < y->index; /* newest first */
}

/* The member indices of @obj in QDict iteration order; caller frees. */
static size_t *
iteration_order(const struct json *obj)
{
    struct order *o = xrealloc(NULL, obj->c.n * sizeof *o);
    for (size_t i = 0; i < obj->c.n; i++)
        o[i] = (struct order){ qdict_bucket(obj->c.m[i].key), i };
    qsort(o, obj->c.n, sizeof *o, cmp_order);
    size_t *idx = xrealloc(NULL, obj->c.n * sizeof *idx);
    for (size_t i = 0; i < obj->c.n; i++)
        idx[i] = o[i].index;
    free(o);
    return idx;
}

/* Decode one UTF-8 sequence at @s (NUL-terminated) into *@cp, or -1 when
 * it is invalid: a stray continuation byte, 0xfe/0xff, a sequence cut short
 * (up to the first byte that does not continue it), an overlong form (but
 * 0xc0 0x80 is U+0000), a surrogate, a value above 0x10ffff, or a Unicode
 * non-character.  Returns the number of bytes consumed, at least 1. */
static size_t
utf8_decode(const unsigned char *s, int32_t *cp)
{
    static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000, 0x200000, 0x4000000 };
    unsigned c = s[0];
    *cp = -1;
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    /* The sequence length the lead byte announces; 0: it cannot lead one. */
    size_t n = c < 0xc0 ? 0
               : c < 0xe0 ? 2
               : c < 0xf0 ? 3
               : c < 0xf8 ? 4
               : c < 0xfc ? 5
               : c < 0xfe ? 6
                          : 0;
    if (n == 0)
        return 1;
    uint32_t v = c & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return i;
        v = v << 6 | (s[i] & 0x3f);
    }
    bool overlong = v < min[n] && !(n == 2 && v == 0);
    bool nonchar = (v >= 0xfdd0 && v <= 0xfdef) || (v & 0xfffe) == 0xfffe;
    if (!overlong && !nonchar && v <= 0x10ffff && !(v >= 0xd800 && v <= 0xdfff))
        *cp = (int32_t)v;
    return n;
}

static void
print_string(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        int32_t cp;
        s += utf8_decode(s, &cp);
        switch (cp) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (cp < 0) {
                fputs("\\uFFFD", f);
            } else if (cp > 0xffff) {
                cp -= 0x10000;
                fprintf(f, "\\u%04X\\u%04X", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else if (cp < 0x20 || cp >= 0x7f) {
                fprintf(f, "\\u%04X", (unsigned)cp);
            } else {
                fputc(cp, f);
            }
        }
    }
    fputc('"', f);
}

static void
indent(FILE *f, unsigned level)
{
    fprintf(f, "\n%*s", (int)(4 * level), "");
}

static void
print_value(FILE *f, const struct json *v, unsigned level)
{
    switch (v->type) {
    case JSON_OBJECT: {
        size_t *idx = iteration_order(v);
        fputc('{', f);
        for (size_t i = 0; i < v->c.n; i++) {
            if (i)
                fputc(',', f);
            indent(f, level + 1);
            print_string(f, v->c.m[idx[i]].key);
            fputs(": ", f);
            print_value(f, v->c.m[idx[i]].val, level + 1);
        }
        indent(f, level);
        fputc('}', f);
        free(idx);
        break;
    }
    case JSON_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < v->c.n; i++) {
            if (i)
                fputc(',', f);
            indent(f, level + 1);
            print_value(f, v->c.a[i], level + 1);
        }
        indent(f, level);
        fputc(']', f);
        break;
    case JSON_STRING:
        print_string(f, v->s);
        break;
    case JSON_UINT:
        fprintf(f, "%" PRIu64, v->u);
        break;
    case JSON_BOOL:
        fputs(v->b ? "true" : "false", f);
        break;
    }
}

void
json_print(FILE *f, const struct json *v)
{
    print_value(f, v, 0);
    fputc('\n', f);
}

/* One "name: value" line, or "name:" and the nested level. */
static void
print_human_entry(FILE *f, const char *name, const struct json *v, unsigned level)
{
    fprintf(f, "%*s%s:", (int)(4 * level), "", name);
    switch (v->type) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        fputc('\n', f);
        json_print_human(f, v, level + 1);
        return;
    case JSON_STRING:
        fprintf(f, " %s\n", v->s);
        return;
    case JSON_UINT:
        fprintf(f, " %" PRIu64 "\n", v->u);
        return;
    case JSON_BOOL:
        fprintf(f, " %s\n", v->b ? "true" : "false");
        return;
    }
}

void
json_print_human(FILE *f, const struct json *v, unsigned level)
{
    if (v->type == JSON_ARRAY) {
        for (size_t i = 0; i < v->c.n; i++) {
            char name[32];
            snprintf(name, sizeof name, "[%zu]", i);
            print_human_entry(f, name, v->c.a[i], level);
        }
        return;
    }
    size_t *idx = iteration_order(v);
    for (size_t i = 0; i < v->c.n; i++) {
        char *name = xstrdup(v->c.m[idx[i]].key);
        for (char *p = name; *p; p++)
            if (*p == '-')
                *p = ' ';
        print_human_entry(f, name, v->c.m[idx[i]].val, level);
        free(name);
    }
    free(idx);
}
