// SPDX-License-Identifier: MIT
/* The text objects of the cloud layout (docs/internals/cloud-layout.md):
 * manifests, HEAD, and the local state file beside a pulled image, plus
 * the chunk hash and the keys they live under.  Pure formatting and
 * parsing: no I/O.  Parsers take untrusted bytes and return -EPROTO with a
 * message naming the object for anything that is not exactly the format. */
#ifndef TOPCOW_MANIFEST_H
#define TOPCOW_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLOUD_HASH_LEN 32          /* SHA-256 */
#define CLOUD_HASH_HEX (2 * CLOUD_HASH_LEN + 1)
#define CLOUD_GEN_MAX 18           /* "00000003-9f2a61c0" and the NUL */
#define CLOUD_NAME_MAX 200         /* bytes of an image name */
#define CLOUD_CHUNK_SIZE_DEFAULT (4u << 20)
#define CLOUD_CHUNK_SIZE_MIN (64u << 10)
#define CLOUD_CHUNK_SIZE_MAX (64u << 20)

struct cloud_hash {
    uint8_t b[CLOUD_HASH_LEN];
};

/* SHA-256 of @len bytes.  Returns 0 or -EIO. */
int cloud_hash(const void *data, size_t len, struct cloud_hash *out);
void cloud_hash_hex(const struct cloud_hash *h, char out[CLOUD_HASH_HEX]);
/* 64 lower-case hex digits; false for anything else. */
bool cloud_hash_parse(const char *hex, struct cloud_hash *out);
bool cloud_hash_is_zero(const struct cloud_hash *h); /* the "zero" marker: all bytes 0 */
/* Whether @len bytes are all zero. */
bool cloud_buf_is_zero(const void *buf, size_t len);

/* "chunks/HH/HASH" into @out (at least 64 + 11 bytes). */
void cloud_chunk_key(const struct cloud_hash *h, char *out, size_t size);

/* Image names: 1..CLOUD_NAME_MAX bytes, letters, digits and "._-+", not
 * starting with '.'.  Returns 0 or -EINVAL with a message. */
int cloud_check_name(const char *name);

/* Generation ids "SEQ-RAND" (8 decimal, 8 hex). */
bool cloud_gen_valid(const char *gen);
uint64_t cloud_gen_seq(const char *gen); /* 0 for an invalid id */
/* A new id with sequence @seq and fresh randomness.  Returns 0 or -EIO. */
int cloud_gen_new(uint64_t seq, char out[CLOUD_GEN_MAX]);

struct manifest {
    char name[CLOUD_NAME_MAX + 1];
    char gen[CLOUD_GEN_MAX];
    char parent[CLOUD_GEN_MAX]; /* "" for none */
    uint64_t size;              /* bytes of the image file */
    uint32_t chunk_size;
    int64_t created;            /* Unix seconds */
    char host[128];
    char user[64];
    uint64_t n_chunks;          /* ceil(size / chunk_size) */
    struct cloud_hash *chunks;  /* n_chunks; all-zero hash = an all-zero chunk, not stored */
};

/* Chunks for a file of @size bytes. */
uint64_t manifest_chunk_count(uint64_t size, uint32_t chunk_size);
/* Allocate m->chunks for m->size and m->chunk_size (zeroed).  Returns 0,
 * -EINVAL (a chunk size out of range) or -ENOMEM. */
int manifest_alloc_chunks(struct manifest *m);
void manifest_free(struct manifest *m); /* frees the chunk array; the struct is the caller's */

/* The manifest as text (malloc'ed, *@len bytes).  Returns 0 or -ENOMEM. */
int manifest_format(const struct manifest *m, char **text, size_t *len);
/* Parse @len bytes read from key images/@name/gen/@gen; the name and
 * generation inside must match them.  Returns 0 (free with manifest_free)
 * or -EPROTO / -ENOMEM. */
int manifest_parse(const char *text, size_t len, const char *name, const char *gen,
                   struct manifest *out);

/* HEAD: "topcow-head 1\ngeneration GEN\n". */
int head_format(const char *gen, char **text, size_t *len);
int head_parse(const char *text, size_t len, const char *name, char gen[CLOUD_GEN_MAX]);

#endif
