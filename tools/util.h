// SPDX-License-Identifier: MIT
/* Helpers shared by the topcow subcommands: messages in the tool's voice,
 * qemu-style number parsing and printing, `-o key=value,...` option lists,
 * and opening images with a one-line error on failure. */
#ifndef TOPCOW_TOOLS_UTIL_H
#define TOPCOW_TOOLS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topcow.h"

/* The program name used as the message prefix ("topcow"). */
extern const char *prog_name;

/* "topcow: <message>" on stderr. */
void error_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* error_msg() then exit(1). */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse a size as qemu-img does: a decimal number (fractions allowed) with
 * an optional suffix k/K, M, G, T, P, E (powers of 1024) or b/B (bytes).
 * Returns 0, or -1 for garbage, negative numbers or overflow. */
int parse_size(const char *s, uint64_t *out);

/* Format a byte count the way qemu-img does ("64 MiB", "1.28 MiB", "0 B"). */
void size_to_str(uint64_t v, char *buf, size_t len);

/* A parsed `-o` list.  Keys and values are owned by the list. */
struct optlist {
    size_t n;
    char **keys;
    char **vals;   /* NULL for a bare key ("help") */
    bool *used;    /* marked by optlist_get */
};

/* Append the options in @s ("a=b,c=d"; ",," is a literal comma) to @ol.
 * Returns 0, or -1 with a message printed. */
int optlist_parse(struct optlist *ol, const char *s);
/* The value of @key (last occurrence), marking it used; NULL if absent. */
const char *optlist_get(struct optlist *ol, const char *key);
/* Whether @key was given (without marking it used). */
bool optlist_has(const struct optlist *ol, const char *key);
/* The first option nobody asked for, or NULL. */
const char *optlist_unused(const struct optlist *ol);
void optlist_free(struct optlist *ol);

/* The TOPCOW_OPEN_* bits a qemu cache mode sets. */
#define OPEN_CACHE_FLAGS (TOPCOW_OPEN_DIRECT | TOPCOW_OPEN_UNSAFE | TOPCOW_OPEN_WRITETHROUGH)

/* Parse a qemu cache mode (none or off, directsync, writeback, writethrough,
 * unsafe) into TOPCOW_OPEN_* bits, replacing the OPEN_CACHE_FLAGS of
 * *@flags.  Returns 0, or -1 for an unknown mode (nothing printed). */
int parse_cache_mode(const char *mode, unsigned *flags);

/* Parse "on"/"off" (also yes/no, true/false, 1/0).  Returns 0 or -1. */
int parse_bool(const char *s, bool *out);

/* Open an image; on failure print "topcow: Could not open 'PATH': why" and
 * return NULL. */
/* Tool-only open flag: the command reads or writes guest data, so an
 * encrypted image needs its passphrase (as qemu-img/qemu-io require). */
#define OPEN_NEED_KEY (1u << 31)
struct topcow_image *open_image(const char *path, const char *format, unsigned flags);
/* The same for a plain path (never an --image-opts string), unlocked with
 * the --object secret @secret_id when not NULL. */
struct topcow_image *open_image_path(const char *path, const char *format, unsigned flags,
                                     const char *secret_id);
/* The same, read-only at internal snapshot @snapshot (id or name; NULL:
 * the current state). */
struct topcow_image *open_image_snapshot(const char *path, const char *format, unsigned flags,
                                         const char *secret_id, const char *snapshot);

/* A -l argument (qemu-img measure, qemu-nbd): "ID_OR_NAME", or
 * "snapshot.id=ID" / "snapshot.name=NAME" (comma separated; the id wins
 * when both are given, as the library looks ids up first anyway).
 * Returns a malloc'ed string, or NULL when out of memory or malformed. */
char *snapshot_param_id(const char *s);

/* Progress as qemu-img -p prints it: "    (12.34/100%)" rewritten in place. */
void progress_print(double percent);
void progress_end(void);

#endif
