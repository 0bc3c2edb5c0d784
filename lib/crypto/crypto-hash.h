// SPDX-License-Identifier: MIT
/* Hashes, PBKDF2, randomness and secret wiping for the crypto module, by
 * QEMU's hash names ("md5", "sha1", "sha224", "sha256", "sha384",
 * "sha512", "ripemd160").  OpenSSL libcrypto does the work; ripemd160 falls
 * back to nettle when the OpenSSL build lacks it. */
#ifndef TOPCOW_CRYPTO_HASH_H
#define TOPCOW_CRYPTO_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_HASH_MAX_LEN 64 /* sha512 */

/* The digest length of hash @name, or 0 when the name is unknown. */
size_t crypto_hash_len(const char *name);

struct crypto_iov {
    const void *base;
    size_t len;
};

/* out = @name(the @n buffers of @parts, concatenated).  @out holds
 * crypto_hash_len(@name) bytes.  Returns 0, or -EINVAL (unknown hash),
 * -ENOMEM or -EIO (library failure) with a message. */
int crypto_hash(const char *name, const struct crypto_iov *parts, size_t n, uint8_t *out);

/* The same for many messages with one hash: a hasher keeps the library's
 * method and context between calls (LUKS's AF diffusion hashes thousands of
 * short blocks).  Thread-safety: one thread at a time per hasher. */
struct crypto_hasher;
int crypto_hasher_new(const char *name, struct crypto_hasher **out);
int crypto_hasher_run(struct crypto_hasher *h, const struct crypto_iov *parts, size_t n,
                      uint8_t *out);
size_t crypto_hasher_len(const struct crypto_hasher *h);
void crypto_hasher_free(struct crypto_hasher *h); /* NULL is a no-op */

/* PBKDF2 (RFC 8018) with HMAC-@name: derive @outlen bytes from @pass and
 * @salt in @iters iterations.  Returns 0, -EINVAL or -EIO with a message. */
int crypto_pbkdf2(const char *name, const uint8_t *pass, size_t passlen, const uint8_t *salt,
                  size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen);

/* How many PBKDF2-HMAC-@name iterations this thread computes per second
 * (CPU time, measured over 10 to 20 milliseconds).  Returns 0 and sets
 * *@per_sec, or a negative errno with a message. */
int crypto_pbkdf2_rate(const char *name, uint64_t *per_sec);

/* Fill @buf with @len bytes from a cryptographically secure generator.
 * Returns 0 or -EIO with a message. */
int crypto_random(void *buf, size_t len);

/* Overwrite a secret so the compiler cannot drop the store. */
void crypto_wipe(void *p, size_t len);

/* The nettle implementations behind the ripemd160 fallback, exposed so the
 * unit tests can check them against OpenSSL's. */
void crypto_nettle_ripemd160(const struct crypto_iov *parts, size_t n, uint8_t out[20]);
void crypto_nettle_pbkdf2_ripemd160(const uint8_t *pass, size_t passlen, const uint8_t *salt,
                                    size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen);

#endif
