// SPDX-License-Identifier: MIT
/* The VMDK text descriptor: parsing what an image says about itself (CID,
 * parentCID, createType, parentFileNameHint, the extent lines) and writing
 * the descriptor of a new image.  The descriptor is line-oriented text,
 * either a file of its own or embedded in a monolithic sparse extent; the
 * Disk Data Base (ddb.*) entries are read past, as nothing in them changes
 * how the data is laid out. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "minmax.h"
#include "vmdk-internal.h"

/* A descriptor with more extents than this is refused (twoGbMaxExtent*
 * images of the 2 TB maximum need 1024). */
#define MAX_EXTENTS 4096

void
vmdk_descriptor_free(struct vmdk_descriptor *d)
{
    for (size_t i = 0; i < d->nextents; i++)
        free(d->extents[i].filename);
    free(d->extents);
    free(d->create_type);
    free(d->parent_hint);
    memset(d, 0, sizeof *d);
}

static char *
skip_space(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Remove surrounding quotes and trailing blanks from a value, in place. */
static char *
unquote(char *v)
{
    v = skip_space(v);
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        v++;
    }
    return v;
}

static int
parse_u64(const char *s, int base, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || end == s)
        return -1;
    *out = v;
    return (int)(end - s);
}

static int
parse_extent(char *line, const char *where, unsigned lineno, struct vmdk_desc_extent *e)
{
    char access[16], type[16];
    int n = 0;
    memset(e, 0, sizeof *e);
    char *p = line;
    if (sscanf(p, "%15s%n", access, &n) != 1)
        goto bad;
    p = skip_space(p + n);
    int used = parse_u64(p, 10, &e->sectors);
    if (used <= 0)
        goto bad;
    p = skip_space(p + used);
    if (sscanf(p, "%15s%n", type, &n) != 1)
        goto bad;
    p = skip_space(p + n);
    e->read_only = strcmp(access, "RW") != 0;
    memcpy(e->type_name, type, sizeof type);
    if (!strcmp(type, "FLAT") || !strcmp(type, "VMFS"))
        e->type = VMDK_EXTENT_FLAT;
    else if (!strcmp(type, "SPARSE"))
        e->type = VMDK_EXTENT_SPARSE;
    else if (!strcmp(type, "ZERO"))
        e->type = VMDK_EXTENT_ZERO;
    else
        return err_set(-ENOTSUP, "%s: vmdk: descriptor line %u: extent type %s is not supported",
                       where, lineno, type);
    if (e->type == VMDK_EXTENT_ZERO)
        return 0;
    if (*p != '"')
        goto bad;
    char *close = strchr(p + 1, '"');
    if (!close || close == p + 1)
        goto bad;
    *close = '\0';
    e->filename = strdup(p + 1);
    if (!e->filename)
        return err_set(-ENOMEM, "out of memory");
    p = skip_space(close + 1);
    if (*p && e->type == VMDK_EXTENT_FLAT && parse_u64(p, 10, &e->offset) <= 0) {
        free(e->filename);
        e->filename = NULL;
        goto bad;
    }
    return 0;
bad:
    return err_set(-EUCLEAN, "%s: vmdk: descriptor line %u: malformed extent description",
                   where, lineno);
}

static int
set_string(char **field, const char *v)
{
    free(*field);
    *field = strdup(v);
    return *field ? 0 : err_set(-ENOMEM, "out of memory");
}

/* One "key = value" line.  Unknown keys (and the whole DDB) are ignored. */
static int
parse_key(struct vmdk_descriptor *d, char *line, const char *where, unsigned lineno)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return 0; /* tolerated, as VMware's readers do with stray lines */
    *eq = '\0';
    char *key = unquote(line);
    char *val = unquote(eq + 1);
    uint64_t v;
    if (!strcmp(key, "CID") || !strcmp(key, "parentCID")) {
        if (parse_u64(val, 16, &v) <= 0 || v > UINT32_MAX)
            return err_set(-EUCLEAN, "%s: vmdk: descriptor line %u: bad %s '%s'", where,
                           lineno, key, val);
        *(key[0] == 'C' ? &d->cid : &d->parent_cid) = (uint32_t)v;
    } else if (!strcmp(key, "createType")) {
        return set_string(&d->create_type, val);
    } else if (!strcmp(key, "parentFileNameHint")) {
        return set_string(&d->parent_hint, val);
    }
    return 0;
}

int
vmdk_descriptor_parse(const char *text, size_t len, const char *where, struct vmdk_descriptor *d)
{
    memset(d, 0, sizeof *d);
    d->parent_cid = UINT32_MAX;
    size_t n = strnlen(text, len);
    char *copy = malloc(n + 1);
    if (!copy)
        return err_set(-ENOMEM, "out of memory");
    memcpy(copy, text, n);
    copy[n] = '\0';
    size_t cap = 0;
    int r = 0;
    unsigned lineno = 0;
    for (char *line = copy, *next; line && r == 0; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[--l] = '\0';
        line = skip_space(line);
        if (!*line || *line == '#')
            continue;
        if (!strncmp(line, "RW ", 3) || !strncmp(line, "RDONLY ", 7) ||
            !strncmp(line, "NOACCESS ", 9)) {
            if (d->nextents == MAX_EXTENTS) {
                r = err_set(-EUCLEAN, "%s: vmdk: descriptor has more than %u extents", where,
                            MAX_EXTENTS);
                break;
            }
            if (d->nextents == cap) {
                size_t ncap = cap ? cap * 2 : 4;
                struct vmdk_desc_extent *ne = realloc(d->extents, ncap * sizeof *ne);
                if (!ne) {
                    r = err_set(-ENOMEM, "out of memory");
                    break;
                }
                d->extents = ne;
                cap = ncap;
            }
            r = parse_extent(line, where, lineno, &d->extents[d->nextents]);
            if (r == 0)
                d->nextents++;
        } else {
            r = parse_key(d, line, where, lineno);
        }
    }
    free(copy);
    if (r == 0 && d->nextents == 0)
        r = err_set(-EUCLEAN, "%s: vmdk: descriptor describes no extents", where);
    if (r < 0)
        vmdk_descriptor_free(d);
    return r;
}

char *
vmdk_descriptor_format(const struct vmdk_desc_spec *s)
{
    /* The BIOS geometry VMware tools expect: 16 heads for IDE, 255 for SCSI,
     * 63 sectors per track, cylinders capped at 16383. */
    unsigned heads = !strcmp(s->adapter_type, "ide") ? 16 : 255;
    uint64_t cyls = MIN(s->sectors / (heads * 63), (uint64_t)16383);
    char hint[1024] = "";
    if (s->parent_hint &&
        snprintf(hint, sizeof hint, "parentFileNameHint=\"%s\"", s->parent_hint) >=
            (int)sizeof hint)
        return NULL;
    char *out = NULL;
    if (asprintf(&out,
                 "# Disk DescriptorFile\n"
                 "version=1\n"
                 "CID=%" PRIx32 "\n"
                 "parentCID=%" PRIx32 "\n"
                 "createType=\"%s\"\n"
                 "%s\n"
                 "# Extent description\n"
                 "%s\n"
                 "# The Disk Data Base\n"
                 "#DDB\n"
                 "\n"
                 "ddb.virtualHWVersion = \"%s\"\n"
                 "ddb.geometry.cylinders = \"%" PRIu64 "\"\n"
                 "ddb.geometry.heads = \"%u\"\n"
                 "ddb.geometry.sectors = \"63\"\n"
                 "ddb.adapterType = \"%s\"\n"
                 "ddb.toolsVersion = \"%s\"\n",
                 s->cid, s->parent_cid, s->create_type, hint, s->extent_lines, s->hw_version,
                 cyls, heads, s->adapter_type, s->tools_version) < 0)
        return NULL;
    return out;
}
