// SPDX-License-Identifier: MIT
/* A growable NUL-terminated byte string for building requests, canonical
 * forms and received bodies in lib/cloud.  Allocation failure is sticky:
 * appends after it are no-ops and strbuf_failed() reports it once at the
 * end, so builders need one check instead of one per append. */
#ifndef TOPCOW_STRBUF_H
#define TOPCOW_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct strbuf {
    char *s;    /* NULL until the first append; always NUL-terminated after */
    size_t len; /* bytes in s, not counting the NUL */
    size_t cap;
    bool oom;
};

static inline bool
strbuf_reserve(struct strbuf *b, size_t more)
{
    if (b->oom)
        return false;
    if (more < b->cap - b->len && b->s)
        return true;
    if (more > SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= more)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

static inline void
strbuf_addn(struct strbuf *b, const void *p, size_t n)
{
    if (!strbuf_reserve(b, n))
        return;
    if (n)
        memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static inline void
strbuf_add(struct strbuf *b, const char *s)
{
    strbuf_addn(b, s, strlen(s));
}

static inline void
strbuf_addc(struct strbuf *b, char c)
{
    strbuf_addn(b, &c, 1);
}

static inline void strbuf_addf(struct strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void
strbuf_addf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (!strbuf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Whether an append failed; the contents are then incomplete. */
static inline bool
strbuf_failed(const struct strbuf *b)
{
    return b->oom;
}

/* Hand the string to the caller (free(3)) and reset @b.  Returns "" as a
 * new string for an empty buffer, and NULL after an allocation failure. */
static inline char *
strbuf_release(struct strbuf *b)
{
    char *s = b->s;
    bool oom = b->oom;
    *b = (struct strbuf){0};
    if (oom) {
        free(s);
        return NULL;
    }
    return s ? s : strdup("");
}

static inline void
strbuf_free(struct strbuf *b)
{
    free(b->s);
    *b = (struct strbuf){0};
}

#endif
