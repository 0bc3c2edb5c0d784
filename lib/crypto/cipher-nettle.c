// SPDX-License-Identifier: MIT
/* The nettle backend: serpent, twofish and cast5 (which OpenSSL lacks or
 * keeps in its legacy provider), and the AES cases OpenSSL refuses
 * (XTS-AES-192, XTS keys with equal halves), in ecb, cbc, ctr and xts over
 * nettle's generic mode helpers.  nettle's keyed contexts are read-only
 * while encrypting, so one keyed object is shared by all threads; chaining
 * state lives on the caller's stack.  Also the ripemd160 fallback of
 * crypto-hash.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/aes.h>
#include <nettle/cast128.h>
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <nettle/ripemd160.h>
#include <nettle/serpent.h>
#include <nettle/twofish.h>
#include <nettle/xts.h>

#include "error.h"
#include "cipher-internal.h"
#include "crypto-hash.h"

union keyed {
    struct aes128_ctx aes128;
    struct aes192_ctx aes192;
    struct aes256_ctx aes256;
    struct serpent_ctx serpent;
    struct twofish_ctx twofish;
    struct cast128_ctx cast5;
};

struct cipher_impl {
    enum cipher_mode mode;
    size_t bs;
    nettle_cipher_func *enc, *dec;
    union keyed ekey;  /* data key, encryption schedule */
    union keyed dkey;  /* data key, decryption schedule (differs for AES only) */
    union keyed tweak; /* xts: tweak key, encryption schedule */
};

/* Exact nettle_cipher_func signatures, so no call goes through a cast
 * function pointer. */
#define WRAP(name, fn, type)                                                                       \
    static void name(const void *ctx, size_t len, uint8_t *dst, const uint8_t *src)                \
    {                                                                                              \
        fn((const type *)ctx, len, dst, src);                                                      \
    }
WRAP(aes128_enc, aes128_encrypt, struct aes128_ctx)
WRAP(aes128_dec, aes128_decrypt, struct aes128_ctx)
WRAP(aes192_enc, aes192_encrypt, struct aes192_ctx)
WRAP(aes192_dec, aes192_decrypt, struct aes192_ctx)
WRAP(aes256_enc, aes256_encrypt, struct aes256_ctx)
WRAP(aes256_dec, aes256_decrypt, struct aes256_ctx)
WRAP(serpent_enc, serpent_encrypt, struct serpent_ctx)
WRAP(serpent_dec, serpent_decrypt, struct serpent_ctx)
WRAP(twofish_enc, twofish_encrypt, struct twofish_ctx)
WRAP(twofish_dec, twofish_decrypt, struct twofish_ctx)
WRAP(cast5_enc, cast128_encrypt, struct cast128_ctx)
WRAP(cast5_dec, cast128_decrypt, struct cast128_ctx)

/* Key one schedule of @family; @dec selects AES's decryption schedule. */
static int
set_key(struct cipher_impl *ci, enum cipher_family family, union keyed *k, bool dec,
        const uint8_t *key, size_t len)
{
    switch (family) {
    case CIPHER_AES:
        if (len == 16) {
            (dec ? aes128_set_decrypt_key : aes128_set_encrypt_key)(&k->aes128, key);
            ci->enc = aes128_enc, ci->dec = aes128_dec;
        } else if (len == 24) {
            (dec ? aes192_set_decrypt_key : aes192_set_encrypt_key)(&k->aes192, key);
            ci->enc = aes192_enc, ci->dec = aes192_dec;
        } else if (len == 32) {
            (dec ? aes256_set_decrypt_key : aes256_set_encrypt_key)(&k->aes256, key);
            ci->enc = aes256_enc, ci->dec = aes256_dec;
        } else {
            return -EINVAL;
        }
        ci->bs = AES_BLOCK_SIZE;
        return 0;
    case CIPHER_SERPENT:
        if (len != 16 && len != 24 && len != 32)
            return -EINVAL;
        serpent_set_key(&k->serpent, len, key);
        ci->enc = serpent_enc, ci->dec = serpent_dec, ci->bs = SERPENT_BLOCK_SIZE;
        return 0;
    case CIPHER_TWOFISH:
        if (len != 16 && len != 24 && len != 32)
            return -EINVAL;
        twofish_set_key(&k->twofish, len, key);
        ci->enc = twofish_enc, ci->dec = twofish_dec, ci->bs = TWOFISH_BLOCK_SIZE;
        return 0;
    case CIPHER_CAST5:
        if (len != CAST128_KEY_SIZE)
            return -EINVAL;
        cast128_set_key(&k->cast5, key);
        ci->enc = cast5_enc, ci->dec = cast5_dec, ci->bs = CAST128_BLOCK_SIZE;
        return 0;
    }
    return -EINVAL;
}

static void
nettle_free(struct cipher_impl *ci)
{
    if (!ci)
        return;
    crypto_wipe(ci, sizeof *ci);
    free(ci);
}

static int
nettle_new(enum cipher_family family, enum cipher_mode mode, const uint8_t *key, size_t keylen,
           struct cipher_impl **out)
{
    struct cipher_impl *ci = calloc(1, sizeof *ci);
    if (!ci)
        return -ENOMEM;
    ci->mode = mode;
    size_t klen = mode == CIPHER_MODE_XTS ? keylen / 2 : keylen;
    int r = set_key(ci, family, &ci->ekey, false, key, klen);
    if (r == 0 && family == CIPHER_AES)
        r = set_key(ci, family, &ci->dkey, true, key, klen);
    else if (r == 0)
        ci->dkey = ci->ekey;
    if (r == 0 && mode == CIPHER_MODE_XTS) {
        if (ci->bs != XTS_BLOCK_SIZE) {
            nettle_free(ci);
            return err_set(-EINVAL, "xts mode needs a 16-byte block cipher");
        }
        r = set_key(ci, family, &ci->tweak, false, key + klen, klen);
    }
    if (r < 0) {
        nettle_free(ci);
        return err_set(r, "nettle: bad key length %zu", keylen);
    }
    *out = ci;
    return 0;
}

static int
nettle_crypt(struct cipher_impl *ci, bool encrypt, const uint8_t *ivs, uint8_t *buf, size_t unit,
             size_t nunits)
{
    const void *key = encrypt ? (const void *)&ci->ekey : (const void *)&ci->dkey;
    uint8_t iv[16];

    if (ci->mode == CIPHER_MODE_ECB) {
        (encrypt ? ci->enc : ci->dec)(key, unit * nunits, buf, buf);
        return 0;
    }
    for (size_t k = 0; k < nunits; k++) {
        uint8_t *p = buf + k * unit;
        const uint8_t *ivk = ivs + k * ci->bs;
        switch (ci->mode) {
        case CIPHER_MODE_CBC:
            memcpy(iv, ivk, ci->bs); /* the helpers advance the IV */
            if (encrypt)
                cbc_encrypt(key, ci->enc, ci->bs, iv, unit, p, p);
            else
                cbc_decrypt(key, ci->dec, ci->bs, iv, unit, p, p);
            break;
        case CIPHER_MODE_CTR:
            memcpy(iv, ivk, ci->bs);
            ctr_crypt(&ci->ekey, ci->enc, ci->bs, iv, unit, p, p);
            break;
        case CIPHER_MODE_XTS:
            if (encrypt)
                xts_encrypt_message(&ci->ekey, &ci->tweak, ci->enc, ivk, unit, p, p);
            else
                xts_decrypt_message(&ci->dkey, &ci->tweak, ci->dec, ci->enc, ivk, unit, p, p);
            break;
        case CIPHER_MODE_ECB:
            break;
        }
    }
    return 0;
}

const struct cipher_backend cipher_nettle_backend = {
    .name = "nettle",
    .new = nettle_new,
    .crypt = nettle_crypt,
    .free = nettle_free,
};

/* ---- ripemd160 fallback ---------------------------------------------- */

void
crypto_nettle_ripemd160(const struct crypto_iov *parts, size_t n, uint8_t out[20])
{
    struct ripemd160_ctx c;
    ripemd160_init(&c);
    for (size_t k = 0; k < n; k++)
        ripemd160_update(&c, parts[k].len, parts[k].base);
    ripemd160_digest(&c, RIPEMD160_DIGEST_SIZE, out);
}

void
crypto_nettle_pbkdf2_ripemd160(const uint8_t *pass, size_t passlen, const uint8_t *salt,
                               size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen)
{
    struct hmac_ripemd160_ctx c;
    hmac_ripemd160_set_key(&c, passlen, pass);
    PBKDF2(&c, hmac_ripemd160_update, hmac_ripemd160_digest, RIPEMD160_DIGEST_SIZE, iters, saltlen,
           salt, outlen, out);
    crypto_wipe(&c, sizeof c);
}
