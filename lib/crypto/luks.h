// SPDX-License-Identifier: MIT
/* LUKS version 1 (LUKS1 On-Disk Format Specification 1.2.3): the header,
 * its key slots, and the payload cipher they unlock, as QEMU uses them for
 * its "luks" format and for qcow2 encrypt.format=luks.  The module knows
 * nothing of files: all I/O goes through callbacks with offsets relative to
 * the start of the LUKS header.
 *
 * Secrets: passphrases and master keys are never logged or put in messages,
 * and every buffer that held one is wiped before it is freed. */
#ifndef TOPCOW_LUKS_H
#define TOPCOW_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sector-cipher.h"

#define LUKS_HEADER_SIZE 592 /* the fixed part: phdr + 8 key slot descriptors */
#define LUKS_NUM_SLOTS 8
#define LUKS_STRIPES 4000 /* anti-forensic stripes in the slots we write */
#define LUKS_ALIGN 4096   /* QEMU aligns key material and payload to this */
#define LUKS_DIGEST_SIZE 20
#define LUKS_SALT_SIZE 32
#define LUKS_MIN_ITERS 1000 /* floor for measured iteration counts (as QEMU) */
#define LUKS_DEFAULT_ITER_TIME_MS 2000

/* Read or write exactly @len bytes at @off (relative to the LUKS header
 * start).  Return 0 or a negative errno; set a message with err_set when
 * the reason is worth more than strerror.  Reads past the end of the
 * underlying storage must return zeros or fail, never short data. */
typedef int (*luks_read_fn)(void *opaque, void *buf, size_t len, uint64_t off);
typedef int (*luks_write_fn)(void *opaque, const void *buf, size_t len, uint64_t off);

struct luks_io {
    luks_read_fn read;
    luks_write_fn write; /* NULL when only reading */
    void *opaque;
};

/* QEMU's names for a LUKS cipher specification (qemu-img info, -o). */
struct luks_names {
    char cipher_alg[16];     /* "aes-256" */
    char cipher_mode[8];     /* "xts" */
    char ivgen_alg[8];       /* "plain64" */
    char ivgen_hash_alg[16]; /* "sha256" with essiv; "" otherwise (QEMU shows it only then) */
    char hash_alg[16];       /* "sha256": PBKDF2 and AF hash */
};

struct luks_slot {
    bool active;         /* 0x00AC71F3 on disk; 0x0000DEAD when not */
    uint32_t iters;      /* PBKDF2 iterations of the passphrase */
    uint32_t stripes;    /* anti-forensic stripes */
    uint64_t key_offset; /* key material, in bytes (the field counts 512-byte sectors) */
    uint8_t salt[LUKS_SALT_SIZE];
};

/* A decoded, validated header.  The strings are NUL-terminated copies of the
 * on-disk fields. */
struct luks_header {
    char cipher_name[33]; /* "aes" */
    char cipher_mode[33]; /* "xts-plain64", "cbc-essiv:sha256" */
    char hash_spec[33];   /* "sha256" */
    char uuid[41];
    uint32_t key_bytes;      /* master key length */
    uint64_t payload_offset; /* bytes (the field counts sectors); 0 for a detached header */
    uint32_t mk_iters;
    uint8_t mk_digest[LUKS_DIGEST_SIZE];
    uint8_t mk_salt[LUKS_SALT_SIZE];
    struct luks_slot slots[LUKS_NUM_SLOTS];
    struct luks_names names; /* derived from the strings and key_bytes */
};

/* Map LUKS's strings to QEMU's names: cipher "aes" with 64 key bytes and
 * mode "xts-plain64" is aes-256, xts, plain64; "cbc-essiv:sha256" is cbc,
 * essiv, ivgen hash sha256.  Returns 0, or -ENOTSUP (an algorithm or mode
 * topcow does not know) or -EUCLEAN (malformed string, key size that does
 * not fit the cipher) with a message. */
int luks_names_from_disk(const char *cipher_name, const char *cipher_mode, const char *hash_spec,
                         uint32_t key_bytes, struct luks_names *out);

/* Decode and validate the first LUKS_HEADER_SIZE bytes of @buf (@len may be
 * shorter, which is an error).  Checks magic, version, names, key size,
 * iteration counts, slot states, and that active key material lies after
 * the header, before the payload (unless detached) and apart from other
 * slots.  Returns 0, or -EUCLEAN / -ENOTSUP with a one-line "luks: ..."
 * message.  Never reads outside @buf. */
int luks_header_decode(const uint8_t *buf, size_t len, struct luks_header *out);

/* Read and decode the header through @io (no passphrase needed). */
int luks_read_header(const struct luks_io *io, struct luks_header *out);

struct luks; /* an unlocked volume: header + master key + payload cipher */

/* Unlock with @pass: try @slot (0..7), or every active slot when @slot is
 * -1.  Returns 0 and *@out (free with luks_free), or -EKEYREJECTED ("invalid
 * passphrase") when no tried slot accepts it, -EINVAL for a bad or inactive
 * @slot, or an I/O or header error. */
int luks_unlock(const struct luks_io *io, const uint8_t *pass, size_t passlen, int slot,
                struct luks **out);

/* The payload cipher: sector n of the payload area uses IV n (for QEMU's
 * luks format n = guest offset / 512; qcow2 uses the host offset instead).
 * Borrowed; valid until luks_free.  Thread-safe, see sector-cipher.h. */
struct sector_cipher *luks_cipher(const struct luks *l);
const struct luks_header *luks_get_header(const struct luks *l);
uint64_t luks_payload_offset(const struct luks *l); /* bytes from the header start */
int luks_unlocked_slot(const struct luks *l);       /* the slot that accepted the passphrase */

/* Wipe the master key and free.  NULL is a no-op. */
void luks_free(struct luks *l);

struct luks_create_opts {
    const char *cipher_alg;     /* NULL: "aes-256" */
    const char *cipher_mode;    /* NULL: "xts" */
    const char *ivgen_alg;      /* NULL: "plain64" */
    const char *ivgen_hash_alg; /* NULL: "sha256" for essiv, none otherwise (as QEMU,
                                   a hash given with plain/plain64 is recorded anyway) */
    const char *hash_alg;       /* NULL: "sha256" */
    unsigned iter_time_ms;      /* PBKDF2 time per unlock; 0: 2000 */
    const uint8_t *passphrase;  /* for key slot 0 */
    size_t passphrase_len;
};

/* The bytes a header made with @o occupies: the 592-byte header and 8 key
 * slot areas of key bytes * 4000 stripes, each aligned to 4096 bytes; this is
 * also the payload offset.  2068480 for aes-256-xts.  Returns 0 or -EINVAL. */
int luks_layout_len(const struct luks_create_opts *o, uint64_t *len);

/* Create a volume: random master key, salts and UUID; iteration counts from
 * a PBKDF2 speed measurement scaled to @o->iter_time_ms (at least
 * LUKS_MIN_ITERS; the master key digest gets an eighth of a slot's time);
 * slot 0 holds @o->passphrase.  Writes key material, then the header, through
 * @io; the caller makes [0, *@header_len) exist (parts never written must
 * read as zeros) and flushes.  *@out (may be NULL) receives the unlocked
 * volume.  Returns 0 or a negative errno with a message. */
int luks_create(const struct luks_create_opts *o, const struct luks_io *io, uint64_t *header_len,
                struct luks **out);

/* Put @pass in key slot @slot (-1: the first inactive one), as qemu-img
 * amend -o state=active,new-secret=...[,keyslot=N]: writes the slot's key
 * material, then its descriptor.  Returns the slot index, or -EINVAL
 * ("Invalid keyslot"), -EEXIST (slot active: erase it first), -ENOSPC (all
 * slots in use), or an I/O error. */
int luks_add_key(struct luks *l, const struct luks_io *io, const uint8_t *pass, size_t passlen,
                 int slot, unsigned iter_time_ms);

/* Erase key slots, as qemu-img amend -o state=inactive[,keyslot=N]
 * [,old-secret=...]: @slot >= 0 erases that slot (it must be active, and
 * must hold @oldpass when @oldpass is not NULL); otherwise every active slot
 * that @oldpass opens.  Refuses (-EPERM) to leave no active slot unless
 * @force.  The descriptor is cleared first (salt and iteration count gone,
 * so the old passphrase is useless at once), then the key material is
 * overwritten with random bytes.  Returns the number of slots erased, or
 * -EINVAL (neither slot nor passphrase, bad index, slot already inactive),
 * -EKEYREJECTED (@oldpass opens no slot / not slot @slot), -EPERM, or an
 * I/O error. */
int luks_remove_key(struct luks *l, const struct luks_io *io, const uint8_t *oldpass, size_t oldlen,
                    int slot, bool force);

/* Whether @pass opens slot @slot of the unlocked volume @l (key material read
 * through @io).  Returns 1, 0, or a negative errno. */
int luks_slot_matches(const struct luks *l, const struct luks_io *io, int slot, const uint8_t *pass,
                      size_t passlen);

#endif
