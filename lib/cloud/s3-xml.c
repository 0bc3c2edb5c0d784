// SPDX-License-Identifier: MIT
/* Reading S3's XML replies with expat: ListObjectsV2 pages and <Error>
 * bodies.  Only the few elements the client uses are kept; namespaces are
 * stripped so a prefixed or unprefixed document reads the same. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <expat.h>

#include "error.h"
#include "parse-number.h"
#include "s3-xml.h"
#include "strbuf.h"

#define MAX_DEPTH 16
#define MAX_TEXT 65536 /* S3 keys are at most 1,024 bytes; tokens are short */

enum doc { DOC_LIST, DOC_ERROR };

struct parse {
    XML_Parser p;
    enum doc doc;
    int depth;             /* elements open, the root being 1 */
    char path[MAX_DEPTH][32]; /* local names of the open elements (truncated) */
    bool collecting;       /* inside an element whose text we keep */
    struct strbuf text;
    const char *fail;      /* first error, a static string */
    bool oom;
    /* DOC_LIST */
    struct s3_xml_list *list;
    struct s3_xml_entry cur;
    bool in_entry, have_key, have_size;
    size_t cap;
    bool seen_root;
    /* DOC_ERROR */
    struct s3_xml_error *err;
};

static const char *
local_name(const char *name)
{
    const char *bar = strrchr(name, '|');
    return bar ? bar + 1 : name;
}

static void
stop(struct parse *ps, const char *why)
{
    if (!ps->fail)
        ps->fail = why;
    XML_StopParser(ps->p, XML_FALSE);
}

static bool
at(const struct parse *ps, int depth, const char *name)
{
    return ps->depth == depth && strcmp(ps->path[depth - 1], name) == 0;
}

/* Whether the element just opened carries text this document wants. */
static bool
wanted(const struct parse *ps)
{
    if (ps->doc == DOC_ERROR)
        return ps->depth == 2 && strcmp(ps->path[0], "Error") == 0 &&
               (at(ps, 2, "Code") || at(ps, 2, "Message"));
    if (ps->depth == 2)
        return at(ps, 2, "IsTruncated") || at(ps, 2, "NextContinuationToken");
    if (ps->depth == 3 && strcmp(ps->path[1], "Contents") == 0)
        return at(ps, 3, "Key") || at(ps, 3, "Size") || at(ps, 3, "ETag") ||
               at(ps, 3, "LastModified");
    return false;
}

static void XMLCALL
on_start(void *data, const char *name, const char **attrs)
{
    struct parse *ps = data;
    (void)attrs;
    if (ps->depth >= MAX_DEPTH) {
        stop(ps, "elements nested too deeply");
        return;
    }
    const char *local = local_name(name);
    snprintf(ps->path[ps->depth], sizeof ps->path[0], "%s", local);
    ps->depth++;
    if (ps->depth == 1) {
        ps->seen_root = true;
        if (ps->doc == DOC_LIST && strcmp(local, "ListBucketResult") != 0)
            stop(ps, "not a ListBucketResult");
    }
    if (ps->doc == DOC_LIST && at(ps, 2, "Contents")) {
        free(ps->cur.key);
        free(ps->cur.etag);
        ps->cur = (struct s3_xml_entry){0};
        ps->in_entry = true;
        ps->have_key = ps->have_size = false;
    }
    ps->collecting = wanted(ps);
    if (ps->collecting)
        strbuf_free(&ps->text);
}

static void XMLCALL
on_text(void *data, const char *s, int len)
{
    struct parse *ps = data;
    if (!ps->collecting)
        return;
    if (ps->text.len + (size_t)len > MAX_TEXT) {
        stop(ps, "element text too long");
        return;
    }
    strbuf_addn(&ps->text, s, (size_t)len);
    if (strbuf_failed(&ps->text)) {
        ps->oom = true;
        stop(ps, "out of memory");
    }
}

/* "2026-11-22T10:00:00.000Z" (S3's LastModified) as Unix seconds; 0 when
 * it does not read as such. */
static int64_t
parse_iso8601(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return 0;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t;
}

static char *
take_text(struct parse *ps)
{
    char *s = strbuf_release(&ps->text);
    if (!s) {
        ps->oom = true;
        stop(ps, "out of memory");
    }
    return s;
}

static void
end_list_element(struct parse *ps)
{
    struct s3_xml_list *l = ps->list;
    if (at(ps, 2, "IsTruncated")) {
        const char *t = ps->text.s ? ps->text.s : "";
        if (strcmp(t, "true") != 0 && strcmp(t, "false") != 0)
            stop(ps, "IsTruncated is neither true nor false");
        l->truncated = strcmp(t, "true") == 0;
    } else if (at(ps, 2, "NextContinuationToken")) {
        free(l->next_token);
        l->next_token = take_text(ps);
    } else if (ps->in_entry && at(ps, 3, "Key")) {
        free(ps->cur.key);
        ps->cur.key = take_text(ps);
        ps->have_key = ps->cur.key && *ps->cur.key;
    } else if (ps->in_entry && at(ps, 3, "Size")) {
        ps->have_size = parse_decimal_u64(ps->text.s ? ps->text.s : "", false, &ps->cur.size);
        if (!ps->have_size)
            stop(ps, "an entry's Size is not a number");
    } else if (ps->in_entry && at(ps, 3, "ETag")) {
        char *raw = take_text(ps);
        if (!raw)
            return;
        free(ps->cur.etag);
        ps->cur.etag = raw;
        s3_etag_unquote(raw, raw, strlen(raw) + 1); /* shrinks in place */
    } else if (ps->in_entry && at(ps, 3, "LastModified")) {
        ps->cur.mtime = parse_iso8601(ps->text.s ? ps->text.s : "");
    } else if (ps->in_entry && at(ps, 2, "Contents")) {
        ps->in_entry = false;
        if (!ps->have_key || !ps->have_size) {
            stop(ps, "an entry without Key or Size");
            return;
        }
        if (!ps->cur.etag && !(ps->cur.etag = strdup(""))) {
            ps->oom = true;
            stop(ps, "out of memory");
            return;
        }
        if (l->n == ps->cap) {
            if (ps->cap >= S3_XML_MAX_ENTRIES) {
                stop(ps, "too many entries in one page");
                return;
            }
            size_t cap = ps->cap ? ps->cap * 2 : 64;
            struct s3_xml_entry *e = realloc(l->entries, cap * sizeof *e);
            if (!e) {
                ps->oom = true;
                stop(ps, "out of memory");
                return;
            }
            l->entries = e;
            ps->cap = cap;
        }
        l->entries[l->n++] = ps->cur;
        ps->cur = (struct s3_xml_entry){0};
    }
}

static void XMLCALL
on_end(void *data, const char *name)
{
    struct parse *ps = data;
    (void)name;
    if (ps->doc == DOC_LIST) {
        end_list_element(ps);
    } else if (ps->collecting) {
        const char *t = ps->text.s ? ps->text.s : "";
        if (at(ps, 2, "Code"))
            snprintf(ps->err->code, sizeof ps->err->code, "%s", t);
        else
            snprintf(ps->err->message, sizeof ps->err->message, "%s", t);
    }
    ps->collecting = false;
    strbuf_free(&ps->text);
    ps->depth--;
}

static int
run(struct parse *ps, const char *body, size_t len)
{
    ps->p = XML_ParserCreateNS(NULL, '|');
    if (!ps->p)
        return -ENOMEM;
    XML_SetUserData(ps->p, ps);
    XML_SetElementHandler(ps->p, on_start, on_end);
    XML_SetCharacterDataHandler(ps->p, on_text);
    int r = 0;
    if (len > (size_t)INT32_MAX) {
        ps->fail = "reply too large";
        r = -EPROTO;
    } else if (XML_Parse(ps->p, body, (int)len, XML_TRUE) != XML_STATUS_OK || ps->fail) {
        if (!ps->fail)
            ps->fail = XML_ErrorString(XML_GetErrorCode(ps->p));
        r = ps->oom ? -ENOMEM : -EPROTO;
    } else if (!ps->seen_root) {
        ps->fail = "empty document";
        r = -EPROTO;
    }
    XML_ParserFree(ps->p);
    strbuf_free(&ps->text);
    return r;
}

int
s3_xml_parse_list(const char *body, size_t len, struct s3_xml_list *out)
{
    struct parse ps = {.doc = DOC_LIST, .list = out};
    *out = (struct s3_xml_list){0};
    int r = run(&ps, body, len);
    free(ps.cur.key);
    free(ps.cur.etag);
    if (r == 0 && out->truncated && (!out->next_token || !*out->next_token)) {
        ps.fail = "IsTruncated without NextContinuationToken";
        r = -EPROTO;
    }
    if (r < 0) {
        s3_xml_list_free(out);
        if (r == -ENOMEM)
            return err_set(r, "s3: out of memory reading a listing");
        return err_set(r, "s3: malformed ListObjectsV2 reply: %s", ps.fail);
    }
    return 0;
}

void
s3_xml_list_free(struct s3_xml_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->entries[i].key);
        free(l->entries[i].etag);
    }
    free(l->entries);
    free(l->next_token);
    *l = (struct s3_xml_list){0};
}

void
s3_xml_parse_error(const char *body, size_t len, struct s3_xml_error *out)
{
    struct parse ps = {.doc = DOC_ERROR, .err = out};
    *out = (struct s3_xml_error){.code = ""};
    if (len)
        run(&ps, body, len);
}

bool
s3_etag_unquote(const char *etag, char *out, size_t size)
{
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
        etag++;
        n -= 2;
    }
    if (n >= size)
        return false;
    memmove(out, etag, n);
    out[n] = '\0';
    return true;
}
