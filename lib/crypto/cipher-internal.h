// SPDX-License-Identifier: MIT
/* The contract between the sector-cipher front end (sector-cipher.c: names,
 * IV generation, dispatch) and the block-cipher backends, one per crypto
 * library (cipher-openssl.c, cipher-nettle.c).  A backend implements one
 * keyed block cipher in one chaining mode; IVs arrive precomputed. */
#ifndef TOPCOW_CIPHER_INTERNAL_H
#define TOPCOW_CIPHER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cipher_family { CIPHER_AES, CIPHER_SERPENT, CIPHER_TWOFISH, CIPHER_CAST5 };
enum cipher_mode { CIPHER_MODE_ECB, CIPHER_MODE_CBC, CIPHER_MODE_XTS, CIPHER_MODE_CTR };

struct cipher_impl; /* a backend's keyed state */

struct cipher_backend {
    const char *name;
    /* Key @family in @mode with @key (@keylen bytes: the family's key size,
     * doubled for xts).  Returns 0 and *@out, -ENOTSUP when this backend
     * lacks the combination, or another negative errno; a message is set on
     * every failure. */
    int (*new)(enum cipher_family family, enum cipher_mode mode, const uint8_t *key, size_t keylen,
               struct cipher_impl **out);
    /* En/decrypt @nunits consecutive units of @unit bytes of @buf in place
     * (@unit a multiple of the block size).  Unit i starts from the IV at
     * @ivs + i * block size (the chaining value, counter block or tweak);
     * @ivs is NULL in ecb mode, where @nunits may be 1 with any @unit.
     * Must be safe to call from several threads at once. */
    int (*crypt)(struct cipher_impl *ci, bool encrypt, const uint8_t *ivs, uint8_t *buf,
                 size_t unit, size_t nunits);
    /* Wipe and free; NULL is a no-op. */
    void (*free)(struct cipher_impl *ci);
};

extern const struct cipher_backend cipher_openssl_backend;
extern const struct cipher_backend cipher_nettle_backend;

#endif
