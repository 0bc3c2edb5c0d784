// SPDX-License-Identifier: MIT
/* The OpenSSL libcrypto backend: AES in every mode through EVP (AES-NI when
 * the CPU has it), plus the hashes, PBKDF2, randomness and wiping of
 * crypto-hash.h.  An EVP_CIPHER_CTX serves one thread at a time, so each
 * keyed cipher keeps a small pool of contexts cloned from a keyed template:
 * a call borrows one, sets only the IV per sector (the key schedule runs
 * once per context) and returns it. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "error.h"
#include "minmax.h"
#include "cipher-internal.h"
#include "crypto-hash.h"

/* ---- hashes ---------------------------------------------------------- */

static const struct {
    const char *name; /* QEMU's */
    const char *ossl; /* OpenSSL's */
    size_t len;
} hashes[] = {
    {"md5", "MD5", 16},
    {"sha1", "SHA1", 20},
    {"sha224", "SHA224", 28},
    {"sha256", "SHA256", 32},
    {"sha384", "SHA384", 48},
    {"sha512", "SHA512", 64},
    {"ripemd160", "RIPEMD160", 20},
};

static int
hash_index(const char *name)
{
    for (size_t i = 0; name && i < ARRAY_SIZE(hashes); i++)
        if (!strcmp(hashes[i].name, name))
            return (int)i;
    return -1;
}

size_t
crypto_hash_len(const char *name)
{
    int i = hash_index(name);
    return i < 0 ? 0 : hashes[i].len;
}

/* OpenSSL's method for hash @i, or NULL when this OpenSSL lacks it (only
 * ripemd160 can be missing: OpenSSL 3.0.0-3.0.6 kept it in the legacy
 * provider).  The caller frees it with EVP_MD_free. */
static EVP_MD *
fetch_md(int i)
{
    EVP_MD *md = EVP_MD_fetch(NULL, hashes[i].ossl, NULL);
    return md;
}

static bool
use_nettle_ripemd160(int i, EVP_MD **md)
{
    *md = fetch_md(i);
    return !*md && !strcmp(hashes[i].name, "ripemd160");
}

struct crypto_hasher {
    size_t len;
    EVP_MD *md; /* NULL: the nettle ripemd160 fallback */
    EVP_MD_CTX *ctx;
};

int
crypto_hasher_new(const char *name, struct crypto_hasher **out)
{
    int i = hash_index(name);
    RETURN_ERR_IF(i < 0, -EINVAL, "unknown hash algorithm '%s'", name ? name : "");
    struct crypto_hasher *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->len = hashes[i].len;
    if (!use_nettle_ripemd160(i, &h->md)) {
        if (!h->md) {
            free(h);
            return err_set(-ENOTSUP, "hash %s is not available in this OpenSSL", name);
        }
        h->ctx = EVP_MD_CTX_new();
        if (!h->ctx) {
            crypto_hasher_free(h);
            return -ENOMEM;
        }
    }
    *out = h;
    return 0;
}

int
crypto_hasher_run(struct crypto_hasher *h, const struct crypto_iov *parts, size_t n, uint8_t *out)
{
    if (!h->md) {
        crypto_nettle_ripemd160(parts, n, out);
        return 0;
    }
    unsigned outl = 0;
    if (!EVP_DigestInit_ex(h->ctx, h->md, NULL))
        return err_set(-EIO, "OpenSSL: cannot start hash %s", EVP_MD_get0_name(h->md));
    for (size_t k = 0; k < n; k++)
        if (!EVP_DigestUpdate(h->ctx, parts[k].base, parts[k].len))
            return err_set(-EIO, "OpenSSL: hash update failed");
    if (!EVP_DigestFinal_ex(h->ctx, out, &outl) || outl != h->len)
        return err_set(-EIO, "OpenSSL: hash final failed");
    return 0;
}

size_t
crypto_hasher_len(const struct crypto_hasher *h)
{
    return h->len;
}

void
crypto_hasher_free(struct crypto_hasher *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    free(h);
}

int
crypto_hash(const char *name, const struct crypto_iov *parts, size_t n, uint8_t *out)
{
    struct crypto_hasher *h;
    int r = crypto_hasher_new(name, &h);
    if (r < 0)
        return r;
    r = crypto_hasher_run(h, parts, n, out);
    crypto_hasher_free(h);
    return r;
}

int
crypto_pbkdf2(const char *name, const uint8_t *pass, size_t passlen, const uint8_t *salt,
              size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen)
{
    int i = hash_index(name);
    RETURN_ERR_IF(i < 0, -EINVAL, "unknown hash algorithm '%s'", name ? name : "");
    RETURN_ERR_IF(iters == 0, -EINVAL, "PBKDF2 needs at least one iteration");
    EVP_MD *md;
    if (use_nettle_ripemd160(i, &md)) {
        crypto_nettle_pbkdf2_ripemd160(pass, passlen, salt, saltlen, iters, out, outlen);
        return 0;
    }
    RETURN_ERR_IF(!md, -ENOTSUP, "hash %s is not available in this OpenSSL", name);
    /* PKCS5_PBKDF2_HMAC takes ints; LUKS counts fit unless absurd. */
    if (iters > INT_MAX || passlen > INT_MAX || saltlen > INT_MAX || outlen > INT_MAX) {
        EVP_MD_free(md);
        return err_set(-EINVAL, "PBKDF2 parameters too large (%u iterations)", iters);
    }
    /* An empty passphrase is legal; OpenSSL wants a valid pointer for it. */
    int ok = PKCS5_PBKDF2_HMAC(passlen ? (const char *)pass : "", (int)passlen, salt, (int)saltlen,
                               (int)iters, md, (int)outlen, out);
    EVP_MD_free(md);
    RETURN_ERR_IF(!ok, -EIO, "OpenSSL: PBKDF2-%s failed", name);
    return 0;
}

static uint64_t
thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
        clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
crypto_pbkdf2_rate(const char *name, uint64_t *per_sec)
{
    /* Grow the count until one run takes a measurable while (thread CPU
     * time has nanosecond resolution, so 10 ms is plenty), then scale. */
    static const uint8_t pass[32], salt[32];
    uint8_t out[20];
    uint32_t iters = 1000;
    for (;;) {
        uint64_t t0 = thread_cpu_ns();
        int r = crypto_pbkdf2(name, pass, sizeof pass, salt, sizeof salt, iters, out, sizeof out);
        if (r < 0)
            return r;
        uint64_t dt = thread_cpu_ns() - t0;
        if (dt >= 10000000u || iters >= (uint32_t)INT_MAX / 10) {
            *per_sec = (uint64_t)iters * 1000000000u / MAX(dt, 1u);
            return 0;
        }
        iters *= dt < 2000000u ? 10 : 2;
    }
}

int
crypto_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        int n = (int)MIN(len, (size_t)1 << 20);
        RETURN_ERR_IF(RAND_bytes(p, n) != 1, -EIO, "OpenSSL: no random bytes available");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void
crypto_wipe(void *p, size_t len)
{
    if (p && len)
        OPENSSL_cleanse(p, len);
}

/* ---- AES through EVP ------------------------------------------------- */

#define POOL_MAX 64 /* contexts kept per direction; more threads just allocate */

struct ctx_pool {
    EVP_CIPHER_CTX *tmpl; /* keyed, never used for data: the source of clones */
    EVP_CIPHER_CTX *free[POOL_MAX];
    size_t nfree;
};

struct cipher_impl {
    EVP_CIPHER *cipher;
    enum cipher_mode mode;
    pthread_mutex_t lock;    /* guards the pools' free lists */
    struct ctx_pool pool[2]; /* [0] decrypt, [1] encrypt */
};

static const char *
evp_name(enum cipher_mode mode, size_t bits)
{
    static const char *const names[4][3] = {
        [CIPHER_MODE_ECB] = {"AES-128-ECB", "AES-192-ECB", "AES-256-ECB"},
        [CIPHER_MODE_CBC] = {"AES-128-CBC", "AES-192-CBC", "AES-256-CBC"},
        [CIPHER_MODE_XTS] = {"AES-128-XTS", NULL, "AES-256-XTS"}, /* no XTS-AES-192 */
        [CIPHER_MODE_CTR] = {"AES-128-CTR", "AES-192-CTR", "AES-256-CTR"},
    };
    int k = bits == 128 ? 0 : bits == 192 ? 1 : bits == 256 ? 2 : -1;
    return k < 0 ? NULL : names[mode][k];
}

static void
ossl_free(struct cipher_impl *ci)
{
    if (!ci)
        return;
    for (int d = 0; d < 2; d++) {
        EVP_CIPHER_CTX_free(ci->pool[d].tmpl); /* frees clear the key schedule */
        for (size_t k = 0; k < ci->pool[d].nfree; k++)
            EVP_CIPHER_CTX_free(ci->pool[d].free[k]);
    }
    EVP_CIPHER_free(ci->cipher);
    pthread_mutex_destroy(&ci->lock);
    free(ci);
}

static int
ossl_new(enum cipher_family family, enum cipher_mode mode, const uint8_t *key, size_t keylen,
         struct cipher_impl **out)
{
    size_t bits = (mode == CIPHER_MODE_XTS ? keylen / 2 : keylen) * 8;
    const char *name = family == CIPHER_AES ? evp_name(mode, bits) : NULL;
    if (!name)
        return err_set(-ENOTSUP, "OpenSSL backend: no such AES cipher");
    /* OpenSSL 3 refuses XTS keys whose halves are equal (a FIPS rule);
     * nettle takes them, so leave those to it. */
    if (mode == CIPHER_MODE_XTS && CRYPTO_memcmp(key, key + keylen / 2, keylen / 2) == 0)
        return err_set(-ENOTSUP, "OpenSSL backend: XTS key halves are equal");

    struct cipher_impl *ci = calloc(1, sizeof *ci);
    if (!ci)
        return -ENOMEM;
    pthread_mutex_init(&ci->lock, NULL);
    ci->mode = mode;
    ci->cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    if (!ci->cipher) {
        ossl_free(ci);
        return err_set(-ENOTSUP, "OpenSSL: cipher %s not available", name);
    }
    int want = EVP_CIPHER_get_key_length(ci->cipher);
    if (want < 0 || (size_t)want != keylen) {
        ossl_free(ci);
        return err_set(-EINVAL, "OpenSSL: %s wants a %d-byte key, not %zu", name, want, keylen);
    }
    for (int d = 0; d < 2; d++) {
        EVP_CIPHER_CTX *c = ci->pool[d].tmpl = EVP_CIPHER_CTX_new();
        if (!c || !EVP_CipherInit_ex2(c, ci->cipher, key, NULL, d, NULL) ||
            !EVP_CIPHER_CTX_set_padding(c, 0)) {
            ossl_free(ci);
            return c ? err_set(-EIO, "OpenSSL: cannot key %s", name) : -ENOMEM;
        }
    }
    *out = ci;
    return 0;
}

static EVP_CIPHER_CTX *
borrow(struct cipher_impl *ci, int dir)
{
    struct ctx_pool *p = &ci->pool[dir];
    EVP_CIPHER_CTX *c = NULL;
    pthread_mutex_lock(&ci->lock);
    if (p->nfree) {
        c = p->free[--p->nfree];
    } else if ((c = EVP_CIPHER_CTX_new()) != NULL && !EVP_CIPHER_CTX_copy(c, p->tmpl)) {
        EVP_CIPHER_CTX_free(c);
        c = NULL;
    }
    pthread_mutex_unlock(&ci->lock);
    return c;
}

static void
give_back(struct cipher_impl *ci, int dir, EVP_CIPHER_CTX *c)
{
    struct ctx_pool *p = &ci->pool[dir];
    pthread_mutex_lock(&ci->lock);
    if (p->nfree < POOL_MAX) {
        p->free[p->nfree++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&ci->lock);
    EVP_CIPHER_CTX_free(c);
}

/* CBC decryption of consecutive units as one stream, which AES-NI runs
 * several blocks at a time: the first block of unit k then came out xored
 * with the last ciphertext block of unit k - 1 instead of with IV k, so
 * those blocks are saved first and swapped afterwards. */
static int
cbc_decrypt_batch(EVP_CIPHER_CTX *c, const uint8_t *ivs, uint8_t *buf, size_t unit, size_t nunits)
{
    uint8_t last[64][16];
    int outl;
    for (size_t k = 0; k + 1 < nunits; k++)
        memcpy(last[k], buf + (k + 1) * unit - 16, 16);
    if (!EVP_CipherInit_ex2(c, NULL, NULL, ivs, 0, NULL) ||
        !EVP_CipherUpdate(c, buf, &outl, buf, (int)(unit * nunits)) ||
        (size_t)outl != unit * nunits)
        return err_set(-EIO, "OpenSSL: AES sector decryption failed");
    for (size_t k = 1; k < nunits; k++)
        for (int j = 0; j < 16; j++)
            buf[k * unit + (size_t)j] ^= last[k - 1][j] ^ ivs[k * 16 + (size_t)j];
    return 0;
}

static int
ossl_crypt(struct cipher_impl *ci, bool encrypt, const uint8_t *ivs, uint8_t *buf, size_t unit,
           size_t nunits)
{
    int dir = encrypt ? 1 : 0;
    EVP_CIPHER_CTX *c = borrow(ci, dir);
    if (!c)
        return err_set(-ENOMEM, "OpenSSL: cannot get a cipher context");
    int r = 0, outl;
    if (ci->mode == CIPHER_MODE_ECB) {
        /* No IV: one stream, in pieces small enough for EVP's int length. */
        size_t len = unit * nunits;
        for (size_t off = 0; off < len && r == 0;) {
            int n = (int)MIN(len - off, (size_t)1 << 20);
            if (!EVP_CipherUpdate(c, buf + off, &outl, buf + off, n) || outl != n)
                r = err_set(-EIO, "OpenSSL: AES-ECB failed");
            off += (size_t)n;
        }
    } else if (ci->mode == CIPHER_MODE_CBC && !encrypt && nunits > 1 && nunits <= 64 &&
               unit * nunits <= INT_MAX) {
        r = cbc_decrypt_batch(c, ivs, buf, unit, nunits);
    } else {
        size_t bs = 16;
        for (size_t k = 0; k < nunits && r == 0; k++) {
            /* Only the IV changes: the key schedule stays in the context.
             * (_ex2 skips the legacy ENGINE checks of _ex, which cost more
             * than encrypting the 512 bytes.) */
            if (!EVP_CipherInit_ex2(c, NULL, NULL, ivs + k * bs, dir, NULL) ||
                !EVP_CipherUpdate(c, buf + k * unit, &outl, buf + k * unit, (int)unit) ||
                (size_t)outl != unit)
                r = err_set(-EIO, "OpenSSL: AES sector %s failed",
                            encrypt ? "encryption" : "decryption");
        }
    }
    if (r < 0) {
        EVP_CIPHER_CTX_free(c); /* its state is unknown now */
        return r;
    }
    give_back(ci, dir, c);
    return 0;
}

const struct cipher_backend cipher_openssl_backend = {
    .name = "openssl",
    .new = ossl_new,
    .crypt = ossl_crypt,
    .free = ossl_free,
};
