// SPDX-License-Identifier: MIT
/* The sector-cipher front end: QEMU's algorithm and mode names, per-sector
 * IV generation (plain, plain64, essiv) and the choice of backend (OpenSSL
 * for AES, nettle for the rest).  IVs are computed in batches so that essiv
 * costs one ECB call per batch, not one per sector. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "error.h"
#include "minmax.h"
#include "cipher-internal.h"
#include "crypto-hash.h"
#include "sector-cipher.h"

#define BATCH 32 /* sectors per IV batch */

enum ivgen { IVGEN_PLAIN, IVGEN_PLAIN64, IVGEN_ESSIV };

static const struct alg {
    const char *name;
    enum cipher_family family;
    size_t keylen;
    size_t bs;
} algs[] = {
    {"aes-128", CIPHER_AES, 16, 16},         {"aes-192", CIPHER_AES, 24, 16},
    {"aes-256", CIPHER_AES, 32, 16},         {"serpent-128", CIPHER_SERPENT, 16, 16},
    {"serpent-192", CIPHER_SERPENT, 24, 16}, {"serpent-256", CIPHER_SERPENT, 32, 16},
    {"twofish-128", CIPHER_TWOFISH, 16, 16}, {"twofish-192", CIPHER_TWOFISH, 24, 16},
    {"twofish-256", CIPHER_TWOFISH, 32, 16}, {"cast5-128", CIPHER_CAST5, 16, 8},
};

static const char *const mode_names[] = {
    [CIPHER_MODE_ECB] = "ecb",
    [CIPHER_MODE_CBC] = "cbc",
    [CIPHER_MODE_XTS] = "xts",
    [CIPHER_MODE_CTR] = "ctr",
};

struct sector_cipher {
    const struct cipher_backend *be;
    struct cipher_impl *impl;
    const struct cipher_backend *essiv_be; /* essiv: ECB cipher keyed by hash(key) */
    struct cipher_impl *essiv;
    enum cipher_mode mode;
    enum ivgen ivgen;
    size_t bs;
};

static const struct alg *
find_alg(const char *name)
{
    for (size_t i = 0; name && i < ARRAY_SIZE(algs); i++)
        if (!strcmp(algs[i].name, name))
            return &algs[i];
    return NULL;
}

static int
find_mode(const char *name, enum cipher_mode *mode)
{
    for (size_t i = 0; name && i < ARRAY_SIZE(mode_names); i++)
        if (!strcmp(mode_names[i], name)) {
            *mode = (enum cipher_mode)i;
            return 0;
        }
    return err_set(-EINVAL, "unknown cipher mode '%s'", name ? name : "");
}

int
sector_cipher_key_len(const char *alg, const char *mode, size_t *keylen)
{
    const struct alg *a = find_alg(alg);
    enum cipher_mode m;
    RETURN_ERR_IF(!a, -EINVAL, "unknown cipher algorithm '%s'", alg ? alg : "");
    int r = find_mode(mode, &m);
    if (r < 0)
        return r;
    *keylen = m == CIPHER_MODE_XTS ? 2 * a->keylen : a->keylen;
    return 0;
}

/* Key @family/@mode with the first backend that has it: OpenSSL for AES,
 * nettle for everything else and for the AES cases OpenSSL declines. */
static int
keyed(enum cipher_family family, enum cipher_mode mode, const uint8_t *key, size_t keylen,
      const struct cipher_backend **be, struct cipher_impl **impl)
{
    if (family == CIPHER_AES) {
        int r = cipher_openssl_backend.new(family, mode, key, keylen, impl);
        if (r != -ENOTSUP) {
            *be = &cipher_openssl_backend;
            return r;
        }
        err_clear();
    }
    *be = &cipher_nettle_backend;
    return cipher_nettle_backend.new(family, mode, key, keylen, impl);
}

void
sector_cipher_free(struct sector_cipher *c)
{
    if (!c)
        return;
    if (c->impl)
        c->be->free(c->impl);
    if (c->essiv)
        c->essiv_be->free(c->essiv);
    free(c);
}

/* ESSIV (dm-crypt): the IV cipher is the same family keyed by hash(key),
 * so the hash's length must be one of the family's key sizes. */
static int
essiv_setup(struct sector_cipher *c, const struct alg *a, const char *hash, const uint8_t *key,
            size_t keylen)
{
    size_t hlen = crypto_hash_len(hash);
    RETURN_ERR_IF(!hlen, -EINVAL, "unknown ivgen hash algorithm '%s'", hash);
    const struct alg *ea = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(algs); i++)
        if (algs[i].family == a->family && algs[i].keylen == hlen)
            ea = &algs[i];
    RETURN_ERR_IF(!ea, -EINVAL, "essiv: no %.*s cipher takes a %zu-byte key (hash %s)",
                  (int)strcspn(a->name, "-"), a->name, hlen, hash);
    uint8_t salt[CRYPTO_HASH_MAX_LEN];
    struct crypto_iov iov = {key, keylen};
    int r = crypto_hash(hash, &iov, 1, salt);
    if (r == 0)
        r = keyed(ea->family, CIPHER_MODE_ECB, salt, hlen, &c->essiv_be, &c->essiv);
    crypto_wipe(salt, sizeof salt);
    return r;
}

int
sector_cipher_new(const char *alg, const char *mode, const char *ivgen, const char *ivgen_hash,
                  const uint8_t *key, size_t keylen, struct sector_cipher **out)
{
    size_t want;
    int r = sector_cipher_key_len(alg, mode, &want);
    if (r < 0)
        return r;
    const struct alg *a = find_alg(alg);
    enum cipher_mode m;
    find_mode(mode, &m);
    RETURN_ERR_IF(keylen != want, -EINVAL, "%s-%s needs a %zu-byte key, not %zu", alg, mode, want,
                  keylen);
    RETURN_ERR_IF(m == CIPHER_MODE_XTS && a->bs != 16, -EINVAL,
                  "cipher %s cannot be used in xts mode (it needs a 16-byte block)", alg);

    enum ivgen iv;
    if (ivgen && !strcmp(ivgen, "plain"))
        iv = IVGEN_PLAIN;
    else if (ivgen && !strcmp(ivgen, "plain64"))
        iv = IVGEN_PLAIN64;
    else if (ivgen && !strcmp(ivgen, "essiv"))
        iv = IVGEN_ESSIV;
    else
        return err_set(-EINVAL, "unknown IV generator '%s'", ivgen ? ivgen : "");

    struct sector_cipher *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->mode = m;
    c->ivgen = iv;
    c->bs = a->bs;
    r = keyed(a->family, m, key, keylen, &c->be, &c->impl);
    if (r == 0 && iv == IVGEN_ESSIV)
        r = essiv_setup(c, a, ivgen_hash ? ivgen_hash : "sha256", key, keylen);
    if (r < 0) {
        sector_cipher_free(c);
        return r;
    }
    *out = c;
    return 0;
}

int
sector_cipher_new_qcow_aes(const char *passphrase, struct sector_cipher **out)
{
    uint8_t key[16] = {0};
    size_t n = strnlen(passphrase, sizeof key);
    memcpy(key, passphrase, n);
    int r = sector_cipher_new("aes-128", "cbc", "plain64", NULL, key, sizeof key, out);
    crypto_wipe(key, sizeof key);
    return r;
}

static int
sector_crypt(struct sector_cipher *c, bool encrypt, uint64_t sector, uint8_t *buf, size_t len)
{
    const size_t ss = SECTOR_CIPHER_SECTOR_SIZE;
    RETURN_ERR_IF(len % ss, -EINVAL, "encrypted I/O of %zu bytes is not a whole number of sectors",
                  len);
    if (c->mode == CIPHER_MODE_ECB)
        return len ? c->be->crypt(c->impl, encrypt, NULL, buf, len, 1) : 0;

    uint8_t ivs[BATCH * 16];
    for (size_t done = 0; done < len;) {
        size_t n = MIN((len - done) / ss, (size_t)BATCH);
        memset(ivs, 0, n * c->bs);
        for (size_t k = 0; k < n; k++) {
            uint64_t s = sector + done / ss + k; /* wraps like the 64-bit field it is */
            if (c->ivgen == IVGEN_PLAIN)
                le32_put(ivs + k * c->bs, (uint32_t)s);
            else
                le64_put(ivs + k * c->bs, s);
        }
        int r = 0;
        if (c->ivgen == IVGEN_ESSIV)
            r = c->essiv_be->crypt(c->essiv, true, NULL, ivs, n * c->bs, 1);
        if (r == 0)
            r = c->be->crypt(c->impl, encrypt, ivs, buf + done, ss, n);
        if (r < 0)
            return r;
        done += n * ss;
    }
    return 0;
}

int
sector_cipher_encrypt(struct sector_cipher *c, uint64_t first_sector, uint8_t *buf, size_t len)
{
    return sector_crypt(c, true, first_sector, buf, len);
}

int
sector_cipher_decrypt(struct sector_cipher *c, uint64_t first_sector, uint8_t *buf, size_t len)
{
    return sector_crypt(c, false, first_sector, buf, len);
}

size_t
sector_cipher_block_size(const struct sector_cipher *c)
{
    return c->bs;
}

const char *
sector_cipher_backend(const struct sector_cipher *c)
{
    return c->be->name;
}
