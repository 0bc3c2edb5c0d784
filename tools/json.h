// SPDX-License-Identifier: MIT
/* A small JSON tree for command output that must match qemu-img byte for
 * byte.  Objects iterate their members in the order QEMU's QDict does
 * (512 hash buckets in ascending order, newest member first within a
 * bucket), and json_print() lays them out like QEMU's pretty printer.
 * json_print_human() renders a tree the way qemu-img's human output dumps
 * nested data ("Format specific information:").
 *
 * Ownership: a value added to an object or array belongs to it and is freed
 * with it.  Allocation failure prints a message and exits (tools only). */
#ifndef TOPCOW_TOOLS_JSON_H
#define TOPCOW_TOOLS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct json;

struct json *json_new_object(void);
struct json *json_new_array(void);
struct json *json_new_string(const char *s); /* copies @s */
struct json *json_new_uint(uint64_t v);
struct json *json_new_bool(bool v);
void json_free(struct json *v); /* NULL is a no-op */

/* Set member @key of @obj to @val (taking ownership).  Setting a key that
 * exists replaces its value and keeps its place, as QDict does. */
void json_set(struct json *obj, const char *key, struct json *val);
void json_set_string(struct json *obj, const char *key, const char *s);
void json_set_uint(struct json *obj, const char *key, uint64_t v);
void json_set_bool(struct json *obj, const char *key, bool v);

/* Append @val to the array @arr (taking ownership). */
void json_append(struct json *arr, struct json *val);

/* Print @v as QEMU's pretty printer does: 4-space indentation, one member
 * or element per line, "key": value, and a final newline.  Strings are
 * escaped as QEMU escapes them: \" \\ \b \f \n \r \t, every other code
 * point below 0x20 or from 0x7f up as \uXXXX (UTF-16 surrogate pairs above
 * 0xffff), and each invalid or non-character UTF-8 sequence as \uFFFD. */
void json_print(FILE *f, const struct json *v);

/* Print the members of the object (or the elements of the array) @v as
 * qemu-img's human output dumps nested data: one "key: value" line per
 * scalar, with '-' in keys shown as ' '; "key:" followed by the deeper level
 * for objects and arrays; array elements named "[i]"; each level indented
 * by 4 more spaces, starting at @level * 4.  Strings are printed unescaped. */
void json_print_human(FILE *f, const struct json *v, unsigned level);

#endif
