// SPDX-License-Identifier: MIT
/* Secrets and image option strings, the qemu-img way:
 *   --object secret,id=ID,data=STRING      (warns: argv is visible to others)
 *   --object secret,id=ID,file=PATH        (the file's bytes, as they are)
 *   --object secret,id=ID,...,format=base64
 *   --image-opts  FILE arguments are option strings:
 *       driver=qcow2,file.filename=PATH,encrypt.key-secret=ID
 * Both are taken out of argv before a command parses its options, so every
 * command accepts them.  Secrets never appear in messages, and are wiped
 * when the program ends. */
#ifndef TOPCOW_TOOLS_SECRETS_H
#define TOPCOW_TOOLS_SECRETS_H

#include <stdbool.h>
#include <stddef.h>

/* Remove every --object and --image-opts (and --object's argument) from
 * argv, registering the secrets.  Returns the new argc, or -1 after a
 * message. */
int secrets_take_args(int argc, char **argv);

/* The secret registered as @id; NULL (with a message naming @id) if none. */
const char *secret_lookup(const char *id, size_t *len);

/* Whether --image-opts was given. */
bool image_opts_mode(void);

/* An image named by an --image-opts string, or by a plain path. */
struct image_spec {
    char *path;        /* file.filename (or the plain path) */
    char *driver;      /* driver=, or NULL */
    char *key_secret;  /* encrypt.key-secret=, or NULL */
};
/* Parse @arg as the mode says (plain path without --image-opts).
 * Returns 0, or -1 after a message. */
int image_spec_parse(const char *arg, struct image_spec *spec);
void image_spec_free(struct image_spec *spec);

/* Ask for the passphrase of @path on the terminal (echo off).  Returns a
 * malloc'd NUL-terminated string (wipe and free it with secret_free), or
 * NULL when standard input is not a terminal or nothing was typed. */
char *secret_prompt(const char *path, size_t *len);
void secret_free(char *s, size_t len);

/* topcow_image_open(), and when the image turns out encrypted but @o has
 * no secret, ask on the terminal (secret_prompt) and open again with the
 * answer.  Returns topcow_image_open()'s result; *@locked tells whether
 * the image is encrypted and still without its key (no terminal, nothing
 * typed). */
struct topcow_image;
struct topcow_open_opts;
int open_or_prompt(struct topcow_image **img, const char *path, struct topcow_open_opts *o,
                   bool *locked);

/* An object other than a secret given with --object (tls-creds-x509,
 * tls-creds-psk): its type and its options (id= included, parsed into
 * @ol, which the caller frees).  Returns 0, or -1 after a message. */
struct optlist;
int tool_object_find(const char *id, const char **type, struct optlist *ol);

/* Forget and wipe every secret. */
void secrets_clear(void);

#endif
