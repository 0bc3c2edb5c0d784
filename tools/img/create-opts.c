// SPDX-License-Identifier: MIT
/* Format options for new images: `-o` parsing with qemu-img's messages and
 * the "Formatting ..." line (see create-opts.h).  The option order of that
 * line is qemu-img's create-options order, with backing_file/backing_fmt
 * after size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "create-opts.h"
#include "secrets.h"

static int
parse_prealloc(const char *v, enum topcow_prealloc *p, bool raw)
{
    if (!strcmp(v, "off"))
        *p = TOPCOW_PREALLOC_OFF;
    else if (!strcmp(v, "metadata") && !raw)
        *p = TOPCOW_PREALLOC_METADATA;
    else if (!strcmp(v, "falloc"))
        *p = TOPCOW_PREALLOC_FALLOC;
    else if (!strcmp(v, "full"))
        *p = TOPCOW_PREALLOC_FULL;
    else
        return -1;
    return 0;
}

static void
bool_opt(struct optlist *ol, const char *path, const char *name, bool *field)
{
    const char *v = optlist_get(ol, name);
    if (v && parse_bool(v, field) < 0)
        die("%s: Parameter '%s' expects 'on' or 'off'", path, name);
}

static void
parse_qcow2(struct optlist *ol, const char *path, struct create_spec *spec)
{
    struct topcow_create_opts *o = &spec->opts;
    const char *v;
    if ((v = optlist_get(ol, "compat")) || (v = optlist_get(ol, "version"))) {
        if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
            o->compat = 2;
        else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
            o->compat = 3;
        else
            die("%s: Parameter 'version' does not accept value '%s'", path, v);
        spec->compat_given = true;
    }
    if ((v = optlist_get(ol, "cluster_size"))) {
        uint64_t cs;
        if (parse_size(v, &cs) < 0 || cs > UINT32_MAX)
            die("%s: Parameter 'cluster_size' expects a size", path);
        o->cluster_size = (uint32_t)cs;
    }
    if ((v = optlist_get(ol, "refcount_bits"))) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (*end || n == 0 || n > 64)
            die("%s: Refcount width must be a power of two and may not exceed 64 bits", path);
        o->refcount_bits = (unsigned)n;
    }
    bool_opt(ol, path, "lazy_refcounts", &o->lazy_refcounts);
    bool_opt(ol, path, "extended_l2", &o->extended_l2);
    bool_opt(ol, path, "data_file_raw", &o->data_file_raw);
    spec->data_file_raw_given = optlist_get(ol, "data_file_raw") != NULL;
    if ((v = optlist_get(ol, "compression_type"))) {
        if (!strcmp(v, "zlib"))
            o->compression_type = TOPCOW_COMPRESSION_ZLIB;
        else if (!strcmp(v, "zstd"))
            o->compression_type = TOPCOW_COMPRESSION_ZSTD;
        else
            die("%s: Parameter 'compression_type' does not accept value '%s'", path, v);
    }
    if ((v = optlist_get(ol, "data_file")))
        o->data_file = v;
    o->encrypt_format = optlist_get(ol, "encrypt.format");
    bool legacy = false;
    bool_opt(ol, path, "encryption", &legacy);
    if (legacy && !o->encrypt_format)
        o->encrypt_format = "aes";
    if ((spec->key_secret = optlist_get(ol, "encrypt.key-secret")) &&
        !(o->encrypt_secret = secret_lookup(spec->key_secret, &o->encrypt_secret_len)))
        exit(1);
    o->encrypt_cipher_alg = optlist_get(ol, "encrypt.cipher-alg");
    o->encrypt_cipher_mode = optlist_get(ol, "encrypt.cipher-mode");
    o->encrypt_ivgen_alg = optlist_get(ol, "encrypt.ivgen-alg");
    o->encrypt_ivgen_hash_alg = optlist_get(ol, "encrypt.ivgen-hash-alg");
    o->encrypt_hash_alg = optlist_get(ol, "encrypt.hash-alg");
    if ((v = spec->iter_time = optlist_get(ol, "encrypt.iter-time"))) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (*end || !*v || n == 0 || n > 3600000)
            die("%s: Parameter 'encrypt.iter-time' expects a number of milliseconds", path);
        o->encrypt_iter_time_ms = (unsigned)n;
    }
}

void
create_opts_parse(struct optlist *ol, const char *path, struct create_spec *spec)
{
    struct topcow_create_opts *o = &spec->opts;
    const char *fmt = o->format ? o->format : "qcow2";
    bool raw = !strcmp(fmt, "raw");
    const char *v;
    if ((v = optlist_get(ol, "preallocation"))) {
        if (parse_prealloc(v, &o->preallocation, raw) < 0)
            die("%s: Parameter 'preallocation' does not accept value '%s'", path, v);
        spec->prealloc = v;
    }
    if (!raw)
        parse_qcow2(ol, path, spec);
    const char *unknown = optlist_unused(ol);
    if (unknown)
        die("%s: Invalid parameter '%s' for format '%s' (see -o help)", path, unknown, fmt);
}

void
create_opts_print(const char *path, const struct create_spec *spec)
{
    const struct topcow_create_opts *o = &spec->opts;
    /* Size rounded up to 512, as qemu-img prints it. */
    unsigned long long shown = (o->size + 511) & ~511ull;
    if (o->format && !strcmp(o->format, "raw")) {
        printf("Formatting '%s', fmt=raw size=%llu", path, shown);
        if (spec->prealloc)
            printf(" preallocation=%s", spec->prealloc);
    } else {
        printf("Formatting '%s', fmt=qcow2", path);
        const char *enc[][2] = {
            { "format", o->encrypt_format },
            { "key-secret", spec->key_secret },
            { "cipher-alg", o->encrypt_cipher_alg },
            { "cipher-mode", o->encrypt_cipher_mode },
            { "ivgen-alg", o->encrypt_ivgen_alg },
            { "ivgen-hash-alg", o->encrypt_ivgen_hash_alg },
            { "hash-alg", o->encrypt_hash_alg },
            { "iter-time", spec->iter_time },
        };
        for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++)
            if (enc[i][1])
                printf(" encrypt.%s=%s", enc[i][0], enc[i][1]);
        printf(" cluster_size=%u extended_l2=%s", o->cluster_size ? o->cluster_size : 65536,
               o->extended_l2 ? "on" : "off");
        if (spec->prealloc)
            printf(" preallocation=%s", spec->prealloc);
        printf(" compression_type=%s", o->compression_type ? "zstd" : "zlib");
        if (spec->size_given)
            printf(" size=%llu", shown);
        if (spec->compat_given)
            printf(" compat=%s", o->compat == 2 ? "0.10" : "1.1");
        if (o->backing_file)
            printf(" backing_file=%s", o->backing_file);
        if (o->backing_format)
            printf(" backing_fmt=%s", o->backing_format);
        if (o->data_file)
            printf(" data_file=%s", o->data_file);
        if (spec->data_file_raw_given)
            printf(" data_file_raw=%s", o->data_file_raw ? "on" : "off");
        printf(" lazy_refcounts=%s refcount_bits=%u", o->lazy_refcounts ? "on" : "off",
               o->refcount_bits ? o->refcount_bits : 16);
    }
    printf("\n");
    fflush(stdout);
}
