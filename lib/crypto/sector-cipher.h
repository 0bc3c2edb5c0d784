// SPDX-License-Identifier: MIT
/* Sector ciphers: disk encryption in 512-byte sectors, each with its own IV
 * derived from the sector number, as dm-crypt, LUKS1 and QEMU define them.
 * One object holds one key; en/decryption never changes it, so a single
 * object serves any number of threads at once. */
#ifndef TOPCOW_SECTOR_CIPHER_H
#define TOPCOW_SECTOR_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#define SECTOR_CIPHER_SECTOR_SIZE 512u

struct sector_cipher;

/* Create a sector cipher.
 *
 * @alg is QEMU's cipher-alg name: "aes-128", "aes-192", "aes-256",
 * "serpent-128", "serpent-192", "serpent-256", "twofish-128", "twofish-192",
 * "twofish-256" or "cast5-128".  @mode is "ecb", "cbc", "xts" or "ctr" (xts
 * needs a 16-byte block, so not cast5).  @ivgen is "plain" (low 32 bits of
 * the sector number, little-endian), "plain64" (all 64 bits, little-endian)
 * or "essiv" (the plain64 block encrypted in ECB mode with the same cipher
 * family keyed by @ivgen_hash(@key); the hash's length picks the key size,
 * so only hashes as long as a key of the family work, e.g. md5 or sha256
 * for aes).  @ivgen_hash is ignored unless @ivgen is "essiv"; NULL there
 * means "sha256".  Each IV is zero-padded to the cipher's block size; in ctr
 * mode it is the first counter block (a 128- or 64-bit big-endian counter),
 * in xts mode the tweak, in ecb mode it is unused.
 *
 * @key is @keylen bytes: the algorithm's key size, twice that for xts (data
 * key, then tweak key).  The key is copied into the cipher's schedules; the
 * caller may wipe its copy after the call.
 *
 * Returns 0 and stores the object in *@out, or -EINVAL (unknown name, bad
 * key length, impossible combination), -ENOTSUP (combination valid but not
 * built in) or -ENOMEM, with a message naming the problem. */
int sector_cipher_new(const char *alg, const char *mode, const char *ivgen, const char *ivgen_hash,
                      const uint8_t *key, size_t keylen, struct sector_cipher **out);

/* The cipher of legacy qcow2 encryption (crypt_method 1): aes-128, cbc,
 * plain64, keyed by the passphrase's first 16 bytes (zero-padded when
 * shorter; bytes after a NUL are ignored, as QEMU takes it as a C string).
 * Equivalent to sector_cipher_new("aes-128", "cbc", "plain64", NULL, key16,
 * 16, out).  The IV is the guest sector number. */
int sector_cipher_new_qcow_aes(const char *passphrase, struct sector_cipher **out);

/* En/decrypt @len bytes of @buf in place; @len must be a multiple of 512.
 * Sector n of the buffer (n = 0, 1, ...) uses the IV of sector
 * @first_sector + n.  Returns 0, -EINVAL for a bad length or -ENOMEM.
 * Thread-safety: safe; any number of threads may use one object at once. */
int sector_cipher_encrypt(struct sector_cipher *c, uint64_t first_sector, uint8_t *buf, size_t len);
int sector_cipher_decrypt(struct sector_cipher *c, uint64_t first_sector, uint8_t *buf, size_t len);

/* Release @c and wipe its key schedules.  NULL is a no-op.  No call on @c
 * may be in flight. */
void sector_cipher_free(struct sector_cipher *c);

/* The key length in bytes that @alg needs in @mode (doubled for xts).
 * Returns 0 or -EINVAL with a message for an unknown name. */
int sector_cipher_key_len(const char *alg, const char *mode, size_t *keylen);

/* The cipher's block size in bytes (16, or 8 for cast5). */
size_t sector_cipher_block_size(const struct sector_cipher *c);

/* Which library does the work for this object ("openssl" or "nettle"), for
 * diagnostics and tests. */
const char *sector_cipher_backend(const struct sector_cipher *c);

#endif
