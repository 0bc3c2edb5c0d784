// SPDX-License-Identifier: MIT
/* Format options for new images (`-o key=value,...`), shared by the commands
 * that create images (create, convert): parsing them into a
 * struct topcow_create_opts with qemu-img's error messages, and printing
 * qemu-img's "Formatting 'FILE', fmt=..." line; one struct create_format
 * per format. */
#ifndef TOPCOW_TOOLS_CREATE_OPTS_H
#define TOPCOW_TOOLS_CREATE_OPTS_H

#include <stdbool.h>

#include "topcow.h"
#include "util.h"

/* A new image's options, plus what the user spelled out explicitly: the
 * Formatting line shows some options only when they were given. */
struct create_spec {
    struct topcow_create_opts opts; /* opts.format set by the caller */
    bool size_given;                /* size= is shown (not when it comes from the backing file) */
    const char *prealloc;           /* preallocation value as given, or NULL */
    bool compat_given;
    bool data_file_raw_given;
    const char *key_secret;         /* encrypt.key-secret: the --object secret's id */
    const char *iter_time;          /* encrypt.iter-time as given */
};

/* One format's `-o` options.  parse: take the format's options (with
 * preallocation, through create_opts_prealloc, where the format has it) from
 * @ol into @spec, dying with qemu-img's message on a bad value; print: the
 * format's part of the Formatting line, after "fmt=NAME" (each item with a
 * leading space); help: the lines of `-o help` after "Supported options:". */
struct create_format {
    const char *name;
    void (*parse)(struct optlist *ol, const char *path, struct create_spec *spec);
    void (*print)(const struct create_spec *spec);
    void (*help)(void);
};

/* The formats topcow creates (create-opts.c lists them). */
extern const struct create_format create_format_qcow2;
extern const struct create_format create_format_raw;
extern const struct create_format create_format_vdi;
extern const struct create_format create_format_vpc;
extern const struct create_format create_format_vhdx;
extern const struct create_format create_format_vmdk;

/* The format called @name, or NULL when topcow cannot create it. */
const struct create_format *create_format_find(const char *name);

/* For the formats' parse: preallocation= (off, falloc, full and, unless
 * @raw, metadata), and a boolean option.  (The Formatting line shows the
 * size as given, spec->opts.size, as qemu-img does.) */
void create_opts_prealloc(struct optlist *ol, const char *path, struct create_spec *spec,
                          bool raw);
void create_opts_bool(struct optlist *ol, const char *path, const char *name, bool *field);

/* Parse the format options of @ol into spec->opts for an image at @path
 * through its format's parse (for qcow2: preallocation, compat (or
 * version), cluster_size, refcount_bits, lazy_refcounts, extended_l2,
 * data_file, data_file_raw, compression_type and encrypt.*, the secret
 * looked up among the --object secrets).  The caller takes size,
 * backing_file and backing_fmt from @ol first if it honours them.  Any
 * option nobody asked for is an error.  On a bad value prints qemu-img's
 * message and exits with status 1. */
void create_opts_parse(struct optlist *ol, const char *path, struct create_spec *spec);

/* Print "Formatting 'PATH', fmt=..." to stdout as qemu-img create does. */
void create_opts_print(const char *path, const struct create_spec *spec);

#endif
