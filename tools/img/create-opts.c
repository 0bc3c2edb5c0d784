// SPDX-License-Identifier: MIT
/* Format options for new images: `-o` parsing with qemu-img's messages and
 * the "Formatting ..." line (see create-opts.h).  qcow2 and raw live here;
 * every other format has its own create-opts-FORMAT.c.  The option order of
 * the Formatting line is qemu-img's create-options order, with
 * backing_file/backing_fmt after size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "create-opts.h"
#include "secrets.h"

static int
parse_prealloc_value(const char *v, enum topcow_prealloc *p, bool raw)
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

void
create_opts_bool(struct optlist *ol, const char *path, const char *name, bool *field)
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
    create_opts_prealloc(ol, path, spec, false);
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
    create_opts_bool(ol, path, "lazy_refcounts", &o->lazy_refcounts);
    create_opts_bool(ol, path, "extended_l2", &o->extended_l2);
    create_opts_bool(ol, path, "data_file_raw", &o->data_file_raw);
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
    create_opts_bool(ol, path, "encryption", &legacy);
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

static void
parse_raw(struct optlist *ol, const char *path, struct create_spec *spec)
{
    create_opts_prealloc(ol, path, spec, true);
}

static const struct create_format *const formats[] = {
    &create_format_qcow2,
    &create_format_raw,
    &create_format_vdi,
    &create_format_vpc,
    &create_format_vhdx,
    &create_format_vmdk,
};

const struct create_format *
create_format_find(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(formats[i]->name, name))
            return formats[i];
    return NULL;
}

void
create_opts_prealloc(struct optlist *ol, const char *path, struct create_spec *spec, bool raw)
{
    const char *v = optlist_get(ol, "preallocation");
    if (!v)
        return;
    if (parse_prealloc_value(v, &spec->opts.preallocation, raw) < 0)
        die("%s: Parameter 'preallocation' does not accept value '%s'", path, v);
    spec->prealloc = v;
}

void
create_opts_parse(struct optlist *ol, const char *path, struct create_spec *spec)
{
    const char *fmt = spec->opts.format ? spec->opts.format : "qcow2";
    const struct create_format *cf = create_format_find(fmt);
    if (!cf)
        die("Unknown file format '%s'", fmt);
    cf->parse(ol, path, spec);
    const char *unknown = optlist_unused(ol);
    if (unknown)
        die("%s: Invalid parameter '%s' for format '%s' (see -o help)", path, unknown, fmt);
}

static void
print_raw(const struct create_spec *spec)
{
    printf(" size=%llu", (unsigned long long)spec->opts.size);
    if (spec->prealloc)
        printf(" preallocation=%s", spec->prealloc);
}

static void
print_qcow2(const struct create_spec *spec)
{
    const struct topcow_create_opts *o = &spec->opts;
    unsigned long long shown = (unsigned long long)spec->opts.size;
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

static void
help_raw(void)
{
    printf("  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, "
           "full)\n  size=<size>            - Virtual disk size\n");
}

static void
help_qcow2(void)
{
    printf("  backing_file=<str>     - File name of a base image\n"
           "  backing_fmt=<str>      - Image format of the base image\n"
           "  cluster_size=<size>    - qcow2 cluster size (512 B .. 2 MiB, power of two)\n"
           "  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])\n"
           "  compression_type=<str> - Compression method: zlib or zstd\n"
           "  data_file=<str>        - File name of an external data file\n"
           "  data_file_raw=<bool>   - The external data file must stay valid as a raw image\n"
           "  extended_l2=<bool>     - Extended L2 tables (subclusters)\n"
           "  lazy_refcounts=<bool>  - Postpone refcount updates\n"
           "  preallocation=<str>    - Preallocation mode (off, metadata, falloc, full)\n"
           "  refcount_bits=<num>    - Width of a reference count entry in bits\n"
           "  size=<size>            - Virtual disk size\n");
}

const struct create_format create_format_raw = { "raw", parse_raw, print_raw, help_raw };
const struct create_format create_format_qcow2 = { "qcow2", parse_qcow2, print_qcow2,
                                                   help_qcow2 };

void
create_opts_print(const char *path, const struct create_spec *spec)
{
    const char *fmt = spec->opts.format ? spec->opts.format : "qcow2";
    printf("Formatting '%s', fmt=%s", path, fmt);
    const struct create_format *cf = create_format_find(fmt);
    if (cf)
        cf->print(spec);
    printf("\n");
    fflush(stdout);
}
