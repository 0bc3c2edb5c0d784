// SPDX-License-Identifier: MIT
/* lib/crypto: known-answer vectors for every block cipher and mode from the
 * published standards (NIST SP 800-38A, IEEE 1619-2007 Annex B, RFC 2144,
 * the Twofish and Serpent submission KATs, RFC 6070 and RFC 7914 for
 * PBKDF2, the RIPEMD-160 paper), typed in here and run against both
 * backends; the IV generators checked against OpenSSL EVP used directly;
 * sharing one cipher between threads; and LUKS1 headers in memory: create,
 * unlock, wrong passphrases, key slot add/erase rules, QEMU's layout
 * lengths, and malformed or randomly damaged headers, which must fail with
 * a one-line "luks: ..." message and never read outside the buffer. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "topcow.h"
#include "byteorder.h"
#include "error.h"
#include "cipher-internal.h"
#include "crypto-hash.h"
#include "luks.h"
#include "sector-cipher.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Decode hex, skipping spaces; returns the byte count. */
static size_t
unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void
fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(seed >> 56);
    }
}

/* ---- block cipher known answers -------------------------------------- */

static const char *const family_names[] = {"aes", "serpent", "twofish", "cast5"};
static const char *const mode_names[] = {"ecb", "cbc", "xts", "ctr"};

/* Encrypt @pt_hex as one unit with @iv_hex (NULL for ecb) and expect
 * @ct_hex; decrypt back. */
static void
kat(const struct cipher_backend *be, enum cipher_family f, enum cipher_mode m, const char *key_hex,
    const char *iv_hex, const char *pt_hex, const char *ct_hex, const char *name)
{
    uint8_t key[64], iv[16], pt[512], ct[512], buf[512];
    size_t kl = unhex(key_hex, key), pl = unhex(pt_hex, pt);
    unhex(ct_hex, ct);
    if (iv_hex)
        unhex(iv_hex, iv);
    struct cipher_impl *ci;
    int r = be->new (f, m, key, kl, &ci);
    CHECK(r == 0, "%s %s-%s %s: new failed: %s", be->name, family_names[f], mode_names[m], name,
          topcow_last_error());
    if (r < 0)
        return;
    memcpy(buf, pt, pl);
    CHECK(be->crypt(ci, true, iv_hex ? iv : NULL, buf, pl, 1) == 0 && !memcmp(buf, ct, pl),
          "%s %s-%s %s: wrong ciphertext", be->name, family_names[f], mode_names[m], name);
    CHECK(be->crypt(ci, false, iv_hex ? iv : NULL, buf, pl, 1) == 0 && !memcmp(buf, pt, pl),
          "%s %s-%s %s: decryption does not invert", be->name, family_names[f], mode_names[m],
          name);
    be->free(ci);
}

static const char nist_pt[] = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
                              "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";
static const char nist_iv[] = "000102030405060708090a0b0c0d0e0f";
static const char nist_k128[] = "2b7e151628aed2a6abf7158809cf4f3c";
static const char nist_k192[] = "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b";
static const char nist_k256[] = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";

static void
test_aes_vectors(const struct cipher_backend *be)
{
    /* NIST SP 800-38A F.1.1 ECB-AES128 */
    kat(be, CIPHER_AES, CIPHER_MODE_ECB, nist_k128, NULL, nist_pt,
        "3ad77bb40d7a3660a89ecaf32466ef97 f5d3d58503b9699de785895a96fdbaaf"
        "43b1cd7f598ece23881b00e3ed030688 7b0c785e27e8ad3f8223207104725dd4",
        "SP800-38A F.1.1");
    /* F.2.1 CBC-AES128, F.2.3 CBC-AES192, F.2.5 CBC-AES256 */
    kat(be, CIPHER_AES, CIPHER_MODE_CBC, nist_k128, nist_iv, nist_pt,
        "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2"
        "73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7",
        "SP800-38A F.2.1");
    kat(be, CIPHER_AES, CIPHER_MODE_CBC, nist_k192, nist_iv, nist_pt,
        "4f021db243bc633d7178183a9fa071e8 b4d9ada9ad7dedf4e5e738763f69145a"
        "571b242012fb7ae07fa9baac3df102e0 08b0e27988598881d920a9e64f5615cd",
        "SP800-38A F.2.3");
    kat(be, CIPHER_AES, CIPHER_MODE_CBC, nist_k256, nist_iv, nist_pt,
        "f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d"
        "39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b",
        "SP800-38A F.2.5");
    /* F.5.1 CTR-AES128 */
    kat(be, CIPHER_AES, CIPHER_MODE_CTR, nist_k128, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", nist_pt,
        "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff"
        "5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee",
        "SP800-38A F.5.1");
    /* IEEE 1619-2007 Annex B, vectors 2 and 3 (XTS-AES-128, 32-byte unit,
     * data unit sequence number 0x3333333333 as a little-endian tweak). */
    kat(be, CIPHER_AES, CIPHER_MODE_XTS,
        "11111111111111111111111111111111 22222222222222222222222222222222",
        "33333333330000000000000000000000",
        "4444444444444444444444444444444444444444444444444444444444444444",
        "c454185e6a16936e39334038acef838b fb186fff7480adc4289382ecd6d394f0", "IEEE 1619 #2");
    kat(be, CIPHER_AES, CIPHER_MODE_XTS,
        "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0 22222222222222222222222222222222",
        "33333333330000000000000000000000",
        "4444444444444444444444444444444444444444444444444444444444444444",
        "af85336b597afc1a900b2eb21ec949d2 92df4c047e0b21532186a5971a227a89", "IEEE 1619 #3");
}

static void
test_block_ciphers(void)
{
    test_aes_vectors(&cipher_openssl_backend);
    test_aes_vectors(&cipher_nettle_backend);

    /* IEEE 1619 vector 1 has two equal (zero) keys: OpenSSL declines such
     * keys, nettle takes them (and the front end routes them there). */
    const char *z32 = "0000000000000000000000000000000000000000000000000000000000000000";
    struct cipher_impl *ci;
    uint8_t key[64] = {0};
    CHECK(cipher_openssl_backend.new(CIPHER_AES, CIPHER_MODE_XTS, key, 32, &ci) == -ENOTSUP,
          "OpenSSL backend should decline XTS keys with equal halves");
    kat(&cipher_nettle_backend, CIPHER_AES, CIPHER_MODE_XTS, z32,
        "00000000000000000000000000000000", z32,
        "917cf69ebd68b2ec9b9fe9a3eadda692 cd43d2f59598ed858c02c2652fbf922e", "IEEE 1619 #1");
    /* OpenSSL has no XTS-AES-192 and no serpent here. */
    CHECK(cipher_openssl_backend.new(CIPHER_AES, CIPHER_MODE_XTS, key, 48, &ci) == -ENOTSUP,
          "OpenSSL backend should decline XTS-AES-192");
    CHECK(cipher_openssl_backend.new(CIPHER_SERPENT, CIPHER_MODE_CBC, key, 32, &ci) == -ENOTSUP,
          "OpenSSL backend should decline serpent");

    /* Serpent (NESSIE set 1, vector 0 for each key size: the byte order of
     * nettle, libgcrypt and the Linux kernel, which LUKS volumes use). */
    kat(&cipher_nettle_backend, CIPHER_SERPENT, CIPHER_MODE_ECB, "80000000000000000000000000000000",
        NULL, "00000000000000000000000000000000", "264e5481eff42a4606abda06c0bfda3d", "NESSIE 128");
    kat(&cipher_nettle_backend, CIPHER_SERPENT, CIPHER_MODE_ECB,
        "800000000000000000000000000000000000000000000000", NULL,
        "00000000000000000000000000000000", "9e274ead9b737bb21efcfca548602689", "NESSIE 192");
    kat(&cipher_nettle_backend, CIPHER_SERPENT, CIPHER_MODE_ECB,
        "8000000000000000000000000000000000000000000000000000000000000000", NULL,
        "00000000000000000000000000000000", "a223aa1288463c0e2be38ebd825616c0", "NESSIE 256");
    /* Twofish (submission KAT, I=1 for 128 bits, I=4 for 192 and 256). */
    kat(&cipher_nettle_backend, CIPHER_TWOFISH, CIPHER_MODE_ECB, "00000000000000000000000000000000",
        NULL, "00000000000000000000000000000000", "9f589f5cf6122c32b6bfec2f2ae8c35a", "128 I=1");
    kat(&cipher_nettle_backend, CIPHER_TWOFISH, CIPHER_MODE_ECB,
        "88b2b2706b105e36b446bb6d731a1e88efa71f788965bd44", NULL,
        "39da69d6ba4997d585b6dc073ca341b2", "182b02d81497ea45f9daacdc29193a65", "192 I=4");
    kat(&cipher_nettle_backend, CIPHER_TWOFISH, CIPHER_MODE_ECB,
        "d43bb7556ea32e46f2a282b7d45b4e0d57ff739d4dc92c1bd7fc01700cc8216f", NULL,
        "90afe91bb288544f2c32dc239b2635e6", "6cb4561c40bf0a9705931cb6d408e7fa", "256 I=4");
    /* CAST5 (RFC 2144 B.1, 128-bit key). */
    kat(&cipher_nettle_backend, CIPHER_CAST5, CIPHER_MODE_ECB, "0123456712345678234567893456789a",
        NULL, "0123456789abcdef", "238b4fe5847e44b2", "RFC 2144 B.1");
}

/* ---- hashes and PBKDF2 ----------------------------------------------- */

static void
pbkdf2_kat(const char *hash, const char *pass, const char *salt, uint32_t iters, const char *hex)
{
    uint8_t want[64], got[64];
    size_t n = unhex(hex, want);
    int r = crypto_pbkdf2(hash, (const uint8_t *)pass, strlen(pass), (const uint8_t *)salt,
                          strlen(salt), iters, got, n);
    CHECK(r == 0 && !memcmp(got, want, n), "PBKDF2-%s(%s, %s, %u)", hash, pass, salt, iters);
}

static void
test_hashes(void)
{
    /* RFC 6070 */
    pbkdf2_kat("sha1", "password", "salt", 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6");
    pbkdf2_kat("sha1", "password", "salt", 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
    pbkdf2_kat("sha1", "password", "salt", 4096, "4b007901b765489abead49d926f721d065a429c1");
    /* RFC 7914 section 11 */
    pbkdf2_kat("sha256", "passwd", "salt", 1,
               "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
               "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");

    /* RIPEMD-160 ("abc", from the RIPEMD-160 paper), both implementations. */
    uint8_t want[20], got[20];
    unhex("8eb208f7e05d987a9b044a8e98c6b087f15a0bfc", want);
    struct crypto_iov abc = {"abc", 3};
    CHECK(crypto_hash("ripemd160", &abc, 1, got) == 0 && !memcmp(got, want, 20),
          "ripemd160(abc) via OpenSSL");
    crypto_nettle_ripemd160(&abc, 1, got);
    CHECK(!memcmp(got, want, 20), "ripemd160(abc) via nettle");
    /* The nettle PBKDF2 fallback agrees with OpenSSL's. */
    uint8_t a[48], b[48];
    CHECK(crypto_pbkdf2("ripemd160", (const uint8_t *)"pw", 2, (const uint8_t *)"NaCl", 4, 1000, a,
                        sizeof a) == 0,
          "PBKDF2-ripemd160 via OpenSSL");
    crypto_nettle_pbkdf2_ripemd160((const uint8_t *)"pw", 2, (const uint8_t *)"NaCl", 4, 1000, b,
                                   sizeof b);
    CHECK(!memcmp(a, b, sizeof a), "PBKDF2-ripemd160: nettle and OpenSSL disagree");

    static const struct {
        const char *name;
        size_t len;
    } lens[] = {{"md5", 16},    {"sha1", 20},   {"sha224", 28},    {"sha256", 32},
                {"sha384", 48}, {"sha512", 64}, {"ripemd160", 20}, {"sha3", 0}};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        CHECK(crypto_hash_len(lens[i].name) == lens[i].len, "crypto_hash_len(%s)", lens[i].name);
    uint64_t rate = 0;
    CHECK(crypto_pbkdf2_rate("sha256", &rate) == 0 && rate > 1000, "PBKDF2 rate %llu",
          (unsigned long long)rate);
}

/* ---- sector IVs, against OpenSSL EVP used directly -------------------- */

/* Reference: encrypt one 512-byte sector with EVP cipher @name, @key, @iv. */
static void
evp_sector(const char *name, const uint8_t *key, const uint8_t *iv, uint8_t *buf)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    if (!c || !ctx || !EVP_EncryptInit_ex(ctx, c, NULL, key, iv) ||
        !EVP_CIPHER_CTX_set_padding(ctx, 0) || !EVP_EncryptUpdate(ctx, buf, &outl, buf, 512) ||
        outl != 512) {
        fprintf(stderr, "EVP %s failed\n", name);
        exit(1);
    }
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(c);
}

static void
evp_ecb_block(const char *name, const uint8_t *key, uint8_t *block)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    if (!c || !ctx || !EVP_EncryptInit_ex(ctx, c, NULL, key, NULL) ||
        !EVP_CIPHER_CTX_set_padding(ctx, 0) || !EVP_EncryptUpdate(ctx, block, &outl, block, 16)) {
        fprintf(stderr, "EVP %s failed\n", name);
        exit(1);
    }
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(c);
}

/* Encrypt 3 sectors starting at @first with our object and compare each
 * with @evp_name keyed by @key and the IV @ivgen_ref computes. */
static void
check_ivgen(const char *alg, const char *mode, const char *ivgen, const char *ivhash,
            const char *evp_name, size_t keylen, uint64_t first,
            void (*iv_ref)(const uint8_t *key, size_t keylen, uint64_t s, uint8_t iv[16]))
{
    uint8_t key[64], data[3 * 512], ref[512], iv[16];
    fill(key, sizeof key, keylen + first);
    fill(data, sizeof data, first);
    struct sector_cipher *c;
    int r = sector_cipher_new(alg, mode, ivgen, ivhash, key, keylen, &c);
    CHECK(r == 0, "%s-%s-%s: %s", alg, mode, ivgen, topcow_last_error());
    if (r < 0)
        return;
    uint8_t orig[sizeof data];
    memcpy(orig, data, sizeof data);
    CHECK(sector_cipher_encrypt(c, first, data, sizeof data) == 0, "encrypt");
    for (int k = 0; k < 3; k++) {
        memcpy(ref, orig + k * 512, 512);
        iv_ref(key, keylen, first + (uint64_t)k, iv);
        evp_sector(evp_name, key, iv, ref);
        CHECK(!memcmp(ref, data + k * 512, 512), "%s-%s-%s%s%s sector %llu differs from %s", alg,
              mode, ivgen, ivhash ? ":" : "", ivhash ? ivhash : "",
              (unsigned long long)(first + (uint64_t)k), evp_name);
    }
    CHECK(sector_cipher_decrypt(c, first, data, sizeof data) == 0 &&
              !memcmp(data, orig, sizeof data),
          "%s-%s-%s: decrypt does not invert", alg, mode, ivgen);
    sector_cipher_free(c);
}

static void
iv_plain(const uint8_t *key, size_t keylen, uint64_t s, uint8_t iv[16])
{
    (void)key, (void)keylen;
    memset(iv, 0, 16);
    le32_put(iv, (uint32_t)s);
}

static void
iv_plain64(const uint8_t *key, size_t keylen, uint64_t s, uint8_t iv[16])
{
    (void)key, (void)keylen;
    memset(iv, 0, 16);
    le64_put(iv, s);
}

/* ESSIV(sha256) for AES: AES-256-ECB keyed by SHA-256(whole key). */
static void
iv_essiv_sha256(const uint8_t *key, size_t keylen, uint64_t s, uint8_t iv[16])
{
    uint8_t salt[32];
    unsigned n;
    EVP_Digest(key, keylen, salt, &n, EVP_sha256(), NULL);
    iv_plain64(key, keylen, s, iv);
    evp_ecb_block("AES-256-ECB", salt, iv);
}

/* ESSIV(md5): AES-128-ECB keyed by MD5(key). */
static void
iv_essiv_md5(const uint8_t *key, size_t keylen, uint64_t s, uint8_t iv[16])
{
    uint8_t salt[16];
    unsigned n;
    EVP_Digest(key, keylen, salt, &n, EVP_md5(), NULL);
    iv_plain64(key, keylen, s, iv);
    evp_ecb_block("AES-128-ECB", salt, iv);
}

static void
test_sector_ivs(void)
{
    const uint64_t big = 0x1122334455667788ull, wrap = 0xfffffffeull;
    check_ivgen("aes-128", "cbc", "plain64", NULL, "AES-128-CBC", 16, big, iv_plain64);
    check_ivgen("aes-128", "cbc", "plain", NULL, "AES-128-CBC", 16, wrap, iv_plain);
    check_ivgen("aes-256", "cbc", "plain", "sha1", "AES-256-CBC", 32, big, iv_plain);
    check_ivgen("aes-256", "xts", "plain64", NULL, "AES-256-XTS", 64, big, iv_plain64);
    check_ivgen("aes-128", "xts", "plain", NULL, "AES-128-XTS", 32, wrap, iv_plain);
    check_ivgen("aes-192", "ctr", "plain64", NULL, "AES-192-CTR", 24, 7, iv_plain64);
    check_ivgen("aes-128", "cbc", "essiv", "sha256", "AES-128-CBC", 16, big, iv_essiv_sha256);
    check_ivgen("aes-256", "xts", "essiv", NULL, "AES-256-XTS", 64, 3, iv_essiv_sha256);
    check_ivgen("aes-256", "cbc", "essiv", "md5", "AES-256-CBC", 32, 0, iv_essiv_md5);

    /* ECB ignores the sector number. */
    uint8_t key[32], a[512], b[512];
    fill(key, sizeof key, 1);
    fill(a, sizeof a, 2);
    memcpy(b, a, sizeof a);
    struct sector_cipher *c;
    CHECK(sector_cipher_new("twofish-256", "ecb", "plain64", NULL, key, 32, &c) == 0, "ecb new");
    sector_cipher_encrypt(c, 0, a, sizeof a);
    sector_cipher_encrypt(c, 12345, b, sizeof b);
    CHECK(!memcmp(a, b, sizeof a), "ecb depends on the sector number");
    sector_cipher_free(c);

    /* XTS-AES-192 goes through nettle (OpenSSL has none); check it against
     * a hand-made XTS over OpenSSL's ECB-AES-192 for one sector. */
    uint8_t k48[48], data[512], ref[512], t[16];
    fill(k48, sizeof k48, 3);
    fill(data, sizeof data, 4);
    memcpy(ref, data, sizeof data);
    CHECK(sector_cipher_new("aes-192", "xts", "plain64", NULL, k48, 48, &c) == 0,
          "aes-192-xts new: %s", topcow_last_error());
    CHECK(!strcmp(sector_cipher_backend(c), "nettle"), "aes-192-xts should use nettle");
    sector_cipher_encrypt(c, 9, data, sizeof data);
    sector_cipher_free(c);
    memset(t, 0, 16);
    t[0] = 9;
    evp_ecb_block("AES-192-ECB", k48 + 24, t);
    for (int blk = 0; blk < 32; blk++) {
        uint8_t *p = ref + blk * 16;
        for (int j = 0; j < 16; j++)
            p[j] ^= t[j];
        evp_ecb_block("AES-192-ECB", k48, p);
        for (int j = 0; j < 16; j++)
            p[j] ^= t[j];
        /* multiply the tweak by x in GF(2^128), little-endian */
        int carry = t[15] >> 7;
        for (int j = 15; j > 0; j--)
            t[j] = (uint8_t)((t[j] << 1) | (t[j - 1] >> 7));
        t[0] = (uint8_t)((t[0] << 1) ^ (carry ? 0x87 : 0));
    }
    CHECK(!memcmp(ref, data, sizeof data), "aes-192-xts differs from XTS over ECB-AES-192");

    /* cast5: 8-byte block, so a plain64 IV fills the whole block. */
    uint8_t k16[16], iv8[8], c1[512], c2[512];
    fill(k16, 16, 5);
    fill(c1, sizeof c1, 6);
    memcpy(c2, c1, sizeof c1);
    CHECK(sector_cipher_new("cast5-128", "cbc", "plain64", NULL, k16, 16, &c) == 0, "cast5 new");
    CHECK(sector_cipher_block_size(c) == 8, "cast5 block size");
    sector_cipher_encrypt(c, big, c1, sizeof c1);
    sector_cipher_free(c);
    struct cipher_impl *ci;
    cipher_nettle_backend.new(CIPHER_CAST5, CIPHER_MODE_CBC, k16, 16, &ci);
    le64_put(iv8, big);
    cipher_nettle_backend.crypt(ci, true, iv8, c2, 512, 1);
    cipher_nettle_backend.free(ci);
    CHECK(!memcmp(c1, c2, sizeof c1), "cast5-cbc-plain64 IV");

    /* Legacy qcow2 AES: the passphrase's first 16 bytes, zero-padded. */
    uint8_t pk[16] = "password", s1[1024], s2[1024];
    fill(s1, sizeof s1, 7);
    memcpy(s2, s1, sizeof s1);
    struct sector_cipher *q;
    CHECK(sector_cipher_new_qcow_aes("password", &q) == 0, "qcow aes");
    sector_cipher_encrypt(q, 77, s1, sizeof s1);
    sector_cipher_free(q);
    CHECK(sector_cipher_new("aes-128", "cbc", "plain64", NULL, pk, 16, &q) == 0, "aes-128-cbc");
    sector_cipher_encrypt(q, 77, s2, sizeof s2);
    sector_cipher_free(q);
    CHECK(!memcmp(s1, s2, sizeof s1), "qcow aes key is not the zero-padded passphrase");
    CHECK(sector_cipher_new_qcow_aes("0123456789abcdefTAIL", &q) == 0, "qcow aes long");
    memcpy(pk, "0123456789abcdef", 16);
    struct sector_cipher *q2;
    sector_cipher_new("aes-128", "cbc", "plain64", NULL, pk, 16, &q2);
    fill(s1, sizeof s1, 8);
    memcpy(s2, s1, sizeof s1);
    sector_cipher_encrypt(q, 1, s1, sizeof s1);
    sector_cipher_encrypt(q2, 1, s2, sizeof s2);
    CHECK(!memcmp(s1, s2, sizeof s1), "qcow aes key is not truncated to 16 bytes");
    sector_cipher_free(q);
    sector_cipher_free(q2);
}

static void
expect_new_fails(const char *alg, const char *mode, const char *ivgen, const char *ivhash,
                 size_t keylen, const char *msg)
{
    uint8_t key[64] = {1};
    struct sector_cipher *c = NULL;
    err_begin("test");
    int r = sector_cipher_new(alg, mode, ivgen, ivhash, key, keylen, &c);
    CHECK(r == -EINVAL && strstr(topcow_last_error(), msg),
          "%s-%s-%s: want -EINVAL '%s', got %d '%s'", alg, mode, ivgen, msg, r,
          topcow_last_error());
    if (r == 0)
        sector_cipher_free(c);
}

static void
test_cipher_errors(void)
{
    expect_new_fails("aes-512", "cbc", "plain64", NULL, 64, "unknown cipher algorithm");
    expect_new_fails("aes-256", "ofb", "plain64", NULL, 32, "unknown cipher mode");
    expect_new_fails("aes-256", "cbc", "benbi", NULL, 32, "unknown IV generator");
    expect_new_fails("aes-256", "cbc", "plain64", NULL, 31, "needs a 32-byte key");
    expect_new_fails("aes-256", "xts", "plain64", NULL, 32, "needs a 64-byte key");
    expect_new_fails("cast5-128", "xts", "plain64", NULL, 32, "16-byte block");
    expect_new_fails("aes-128", "cbc", "essiv", "sha1", 16, "no aes cipher takes a 20-byte key");
    expect_new_fails("aes-128", "cbc", "essiv", "sha224", 16, "no aes cipher takes a 28-byte");
    expect_new_fails("cast5-128", "cbc", "essiv", "sha256", 16, "no cast5 cipher takes a 32");
    expect_new_fails("aes-128", "cbc", "essiv", "crc32", 16, "unknown ivgen hash");

    uint8_t key[16] = {0}, buf[1024];
    struct sector_cipher *c;
    sector_cipher_new("aes-128", "cbc", "plain64", NULL, key, 16, &c);
    CHECK(sector_cipher_encrypt(c, 0, buf, 100) == -EINVAL, "length 100 accepted");
    CHECK(sector_cipher_decrypt(c, 0, buf, 513) == -EINVAL, "length 513 accepted");
    CHECK(sector_cipher_encrypt(c, 0, buf, 0) == 0, "length 0 refused");
    sector_cipher_free(c);
    sector_cipher_free(NULL);
}

/* ---- threads ---------------------------------------------------------- */

#define TH_N 6
#define TH_SECTORS 256

struct th {
    struct sector_cipher *c;
    uint8_t *buf;
    uint64_t first;
    int rounds;
    int fail;
};

static void *
th_work(void *arg)
{
    struct th *t = arg;
    for (int i = 0; i < t->rounds && !t->fail; i++) {
        /* alternate directions so both context pools are hammered */
        if (sector_cipher_encrypt(t->c, t->first, t->buf, TH_SECTORS * 512) < 0 ||
            sector_cipher_decrypt(t->c, t->first, t->buf, TH_SECTORS * 512) < 0)
            t->fail = 1;
    }
    if (sector_cipher_encrypt(t->c, t->first, t->buf, TH_SECTORS * 512) < 0)
        t->fail = 1;
    return NULL;
}

static void
test_threads(const char *alg, const char *mode, const char *ivgen, size_t keylen)
{
    uint8_t key[64];
    fill(key, sizeof key, 99);
    struct sector_cipher *c;
    if (sector_cipher_new(alg, mode, ivgen, NULL, key, keylen, &c) < 0) {
        CHECK(0, "threads: %s", topcow_last_error());
        return;
    }
    pthread_t tid[TH_N];
    struct th t[TH_N];
    uint8_t *want[TH_N];
    for (int i = 0; i < TH_N; i++) {
        t[i] = (struct th){c, malloc(TH_SECTORS * 512), (uint64_t)i * 1000003, 20, 0};
        want[i] = malloc(TH_SECTORS * 512);
        fill(t[i].buf, TH_SECTORS * 512, (uint64_t)i);
        memcpy(want[i], t[i].buf, TH_SECTORS * 512);
        sector_cipher_encrypt(c, t[i].first, want[i], TH_SECTORS * 512); /* serial reference */
    }
    for (int i = 0; i < TH_N; i++)
        pthread_create(&tid[i], NULL, th_work, &t[i]);
    for (int i = 0; i < TH_N; i++) {
        pthread_join(tid[i], NULL);
        CHECK(!t[i].fail && !memcmp(t[i].buf, want[i], TH_SECTORS * 512),
              "%s-%s: thread %d got a different result", alg, mode, i);
        free(t[i].buf);
        free(want[i]);
    }
    sector_cipher_free(c);
}

/* Throughput, printed for information (never asserted). */
static void
bench(const char *alg, const char *mode, size_t keylen)
{
    size_t len = 8 << 20;
    uint8_t key[64], *buf = calloc(1, len);
    fill(key, sizeof key, 5);
    struct sector_cipher *c;
    if (!buf || sector_cipher_new(alg, mode, "plain64", NULL, key, keylen, &c) < 0) {
        free(buf);
        return;
    }
    sector_cipher_encrypt(c, 0, buf, len); /* fault the pages in first */
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 4; i++)
        sector_cipher_encrypt(c, (uint64_t)i * (len / 512), buf, len);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int i = 0; i < 4; i++)
        sector_cipher_decrypt(c, (uint64_t)i * (len / 512), buf, len);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    double se = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double sd = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    printf("info: %s-%s (%s): encrypt %.0f MB/s, decrypt %.0f MB/s\n", alg, mode,
           sector_cipher_backend(c), 4.0 * (double)len / 1e6 / se, 4.0 * (double)len / 1e6 / sd);
    sector_cipher_free(c);
    free(buf);
}

/* ---- LUKS in memory --------------------------------------------------- */

struct memdisk {
    uint8_t *data;
    size_t size;
    int fail_writes; /* >0: fail the Nth write from now */
};

static int
mem_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    struct memdisk *m = opaque;
    size_t n = off >= m->size ? 0 : (size_t)(m->size - off < len ? m->size - off : len);
    if (n)
        memcpy(buf, m->data + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

static int
mem_write(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct memdisk *m = opaque;
    if (m->fail_writes && --m->fail_writes == 0)
        return -EIO;
    if (off + len > m->size) {
        uint8_t *p = realloc(m->data, (size_t)(off + len));
        if (!p)
            return -ENOMEM;
        memset(p + m->size, 0, (size_t)(off + len) - m->size);
        m->data = p;
        m->size = (size_t)(off + len);
    }
    memcpy(m->data + off, buf, len);
    return 0;
}

static const char PASS[] = "correct horse";

static int
create(struct memdisk *m, const char *alg, const char *mode, const char *ivgen, const char *ivhash,
       const char *hash, struct luks **out)
{
    struct luks_io io = {mem_read, mem_write, m};
    struct luks_create_opts o = {
        .cipher_alg = alg,
        .cipher_mode = mode,
        .ivgen_alg = ivgen,
        .ivgen_hash_alg = ivhash,
        .hash_alg = hash,
        .iter_time_ms = 1,
        .passphrase = (const uint8_t *)PASS,
        .passphrase_len = strlen(PASS),
    };
    uint64_t hlen = 0, want = 0;
    memset(m, 0, sizeof *m);
    err_begin("create");
    int r = luks_create(&o, &io, &hlen, out);
    CHECK(r == 0, "create %s-%s-%s: %s", alg, mode, ivgen, topcow_last_error());
    CHECK(r < 0 || (luks_layout_len(&o, &want) == 0 && want == hlen), "layout len");
    return r;
}

static int
unlock(struct memdisk *m, const char *pass, int slot, struct luks **out)
{
    struct luks_io io = {mem_read, mem_write, m};
    err_begin("unlock");
    return luks_unlock(&io, (const uint8_t *)pass, strlen(pass), slot, out);
}

static void
test_luks_roundtrip(const char *alg, const char *mode, const char *ivgen, const char *ivhash,
                    const char *hash)
{
    struct memdisk m;
    struct luks *l, *l2;
    if (create(&m, alg, mode, ivgen, ivhash, hash, &l) < 0)
        return;
    const struct luks_header *h = luks_get_header(l);
    CHECK(!strcmp(h->names.cipher_alg, alg) && !strcmp(h->names.cipher_mode, mode) &&
              !strcmp(h->names.ivgen_alg, ivgen) && !strcmp(h->names.hash_alg, hash),
          "names do not round-trip for %s-%s-%s %s", alg, mode, ivgen, hash);
    uint8_t data[2048], enc[2048];
    fill(data, sizeof data, 42);
    memcpy(enc, data, sizeof data);
    sector_cipher_encrypt(luks_cipher(l), 5, enc, sizeof enc);
    int r = unlock(&m, PASS, -1, &l2);
    CHECK(r == 0, "unlock %s-%s-%s %s: %s", alg, mode, ivgen, hash, topcow_last_error());
    if (r == 0) {
        CHECK(luks_unlocked_slot(l2) == 0, "slot");
        sector_cipher_decrypt(luks_cipher(l2), 5, enc, sizeof enc);
        CHECK(!memcmp(enc, data, sizeof data), "%s-%s-%s: payload does not round-trip", alg, mode,
              ivgen);
        luks_free(l2);
    }
    luks_free(l);
    free(m.data);
}

static void
test_luks_layout(void)
{
    /* Payload offsets QEMU 7.2's luks writer produces (qemu-img create -f
     * luks; also key slot 0 at 4096 bytes in each). */
    static const struct {
        const char *alg, *mode;
        uint64_t len;
    } cases[] = {
        {"aes-256", "xts", 2068480},     {"aes-128", "cbc", 528384},
        {"aes-128", "xts", 1052672},     {"serpent-192", "xts", 1544192},
        {"twofish-256", "ctr", 1052672}, {"cast5-128", "cbc", 528384},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct luks_create_opts o = {.cipher_alg = cases[i].alg, .cipher_mode = cases[i].mode};
        uint64_t len = 0;
        CHECK(luks_layout_len(&o, &len) == 0 && len == cases[i].len,
              "%s-%s: layout %llu, want %llu", cases[i].alg, cases[i].mode, (unsigned long long)len,
              (unsigned long long)cases[i].len);
    }
    /* The mode string QEMU writes: an explicit ivgen hash is kept even for
     * plain ivgens; essiv defaults to sha256. */
    struct memdisk m;
    struct luks *l;
    if (create(&m, "twofish-256", "ctr", "plain", "sha1", "sha256", &l) == 0) {
        CHECK(!strcmp(luks_get_header(l)->cipher_mode, "ctr-plain:sha1"), "mode string %s",
              luks_get_header(l)->cipher_mode);
        CHECK(luks_get_header(l)->names.ivgen_hash_alg[0] == 0, "ivgen hash shown for plain");
        luks_free(l);
        free(m.data);
    }
    if (create(&m, "aes-128", "cbc", "essiv", NULL, "sha1", &l) == 0) {
        CHECK(!strcmp(luks_get_header(l)->cipher_mode, "cbc-essiv:sha256"), "mode string %s",
              luks_get_header(l)->cipher_mode);
        CHECK(!memcmp(m.data + 8, "aes\0", 4) && !memcmp(m.data + 72, "sha1\0", 5),
              "on-disk names");
        CHECK(be32_get(m.data + 208 + 40) == 8 && be32_get(m.data + 208 + 44) == 4000,
              "slot 0 offset/stripes");
        luks_free(l);
        free(m.data);
    }
}

static void
test_luks_keys(void)
{
    struct memdisk m;
    struct luks *l, *l2;
    struct luks_io io = {mem_read, mem_write, &m};
    if (create(&m, "aes-128", "cbc", "plain64", NULL, "sha1", &l) < 0)
        return;

    /* Wrong passphrase: refused, and the message never quotes it. */
    int r = unlock(&m, "Tr0ub4dor", -1, &l2);
    CHECK(r == -EKEYREJECTED, "wrong passphrase: %d", r);
    CHECK(strstr(topcow_last_error(), "invalid passphrase") &&
              !strstr(topcow_last_error(), "Tr0ub4dor"),
          "message: %s", topcow_last_error());
    CHECK(unlock(&m, PASS, 3, &l2) == -EINVAL, "unlock via an inactive slot");
    CHECK(unlock(&m, PASS, 8, &l2) == -EINVAL, "unlock via slot 8");

    /* Fill every slot, then one more. */
    char pw[32];
    for (int i = 1; i < LUKS_NUM_SLOTS; i++) {
        snprintf(pw, sizeof pw, "pass-%d", i);
        err_begin("add");
        r = luks_add_key(l, &io, (const uint8_t *)pw, strlen(pw), -1, 1);
        CHECK(r == i, "add key: got slot %d, want %d (%s)", r, i, topcow_last_error());
    }
    CHECK(luks_add_key(l, &io, (const uint8_t *)"x", 1, -1, 1) == -ENOSPC, "9th key");
    CHECK(luks_add_key(l, &io, (const uint8_t *)"x", 1, 2, 1) == -EEXIST, "overwrite slot 2");
    CHECK(luks_add_key(l, &io, (const uint8_t *)"x", 1, 9, 1) == -EINVAL, "slot 9");
    r = unlock(&m, "pass-5", -1, &l2);
    CHECK(r == 0 && luks_unlocked_slot(l2) == 5, "unlock pass-5: %d", r);
    if (r == 0)
        luks_free(l2);
    CHECK(unlock(&m, "pass-5", 4, &l2) == -EKEYREJECTED, "pass-5 via slot 4");

    /* Erase by passphrase; by slot; with a mismatching old passphrase. */
    err_begin("remove");
    CHECK(luks_remove_key(l, &io, (const uint8_t *)"pass-5", 6, -1, false) == 1, "erase pass-5");
    CHECK(unlock(&m, "pass-5", -1, &l2) == -EKEYREJECTED, "pass-5 still opens");
    CHECK(m.data[208 + 5 * 48 + 3] == 0xAD && be32_get(m.data + 208 + 5 * 48 + 4) == 0,
          "slot 5 descriptor not cleared");
    CHECK(luks_remove_key(l, &io, (const uint8_t *)"pass-5", 6, -1, false) == -EKEYREJECTED,
          "erase pass-5 again");
    CHECK(luks_remove_key(l, &io, NULL, 0, 5, false) == -EINVAL, "erase inactive slot 5");
    CHECK(luks_remove_key(l, &io, NULL, 0, -1, false) == -EINVAL, "erase with nothing given");
    CHECK(luks_remove_key(l, &io, (const uint8_t *)"pass-1", 6, 2, false) == -EKEYREJECTED,
          "slot 2 with pass-1");
    CHECK(luks_remove_key(l, &io, NULL, 0, 2, false) == 1, "erase slot 2");
    /* The same passphrase in two slots: both go. */
    CHECK(luks_add_key(l, &io, (const uint8_t *)"pass-1", 6, 5, 1) == 5, "re-add into slot 5");
    CHECK(luks_remove_key(l, &io, (const uint8_t *)"pass-1", 6, -1, false) == 2, "erase pass-1 x2");
    for (int i = 3; i < LUKS_NUM_SLOTS; i++)
        if (i != 5)
            CHECK(luks_remove_key(l, &io, NULL, 0, i, false) == 1, "erase slot %d", i);

    /* Only slot 0 is left: refused without force, by slot or passphrase. */
    r = luks_remove_key(l, &io, NULL, 0, 0, false);
    CHECK(r == -EPERM && strstr(topcow_last_error(), "only active key slot 0"),
          "last slot by index: %d %s", r, topcow_last_error());
    r = luks_remove_key(l, &io, (const uint8_t *)PASS, strlen(PASS), -1, false);
    CHECK(r == -EPERM, "last slot by passphrase: %d", r);
    r = unlock(&m, PASS, -1, &l2);
    CHECK(r == 0, "slot 0 after refusals");
    if (r == 0)
        luks_free(l2);
    CHECK(luks_remove_key(l, &io, NULL, 0, 0, true) == 1, "forced erase");
    CHECK(unlock(&m, PASS, -1, &l2) == -EKEYREJECTED, "unlock with no active slot");

    /* A failed key material write leaves the slot inactive. */
    m.fail_writes = 1;
    CHECK(luks_add_key(l, &io, (const uint8_t *)"y", 1, -1, 1) == -EIO, "add with failing write");
    m.fail_writes = 0;
    CHECK(!luks_get_header(l)->slots[0].active, "slot active after a failed add");
    luks_free(l);
    free(m.data);
}

/* ---- malformed headers ------------------------------------------------ */

static uint8_t good[LUKS_HEADER_SIZE];

static void
expect_bad(void (*mutate)(uint8_t *h), int want, const char *msg, const char *what)
{
    uint8_t h[LUKS_HEADER_SIZE];
    struct luks_header out;
    memcpy(h, good, sizeof h);
    mutate(h);
    err_begin("read");
    int r = luks_header_decode(h, sizeof h, &out);
    CHECK(r == want && strstr(topcow_last_error(), msg) && !strchr(topcow_last_error(), '\n'),
          "%s: want %d '%s', got %d '%s'", what, want, msg, r, topcow_last_error());
}

#define MUT(name, body)                                                                            \
    static void name(uint8_t *h)                                                                   \
    {                                                                                              \
        body;                                                                                      \
    }
MUT(m_magic, h[4] = 'X')
MUT(m_version, be16_put(h + 6, 2))
MUT(m_name_unterminated, memset(h + 8, 'a', 32))
MUT(m_cipher, memcpy(h + 8, "blowfish", 9))
MUT(m_mode_nodash, memcpy(h + 40, "xts\0", 4))
MUT(m_mode_unknown, memcpy(h + 40, "lrw-benbi\0", 10))
MUT(m_ivgen_unknown, memcpy(h + 40, "xts-benbi\0", 10))
MUT(m_essiv_nohash, memcpy(h + 40, "cbc-essiv\0", 10))
MUT(m_ivhash_unknown, memcpy(h + 40, "cbc-essiv:crc32\0", 16))
MUT(m_hash, memcpy(h + 72, "whirlpool\0", 10))
MUT(m_keybytes, be32_put(h + 108, 20))
MUT(m_keybytes_huge, be32_put(h + 108, 0x80000000u))
MUT(m_keybytes_zero, be32_put(h + 108, 0))
MUT(m_mk_iters, be32_put(h + 164, 0))
MUT(m_uuid, memset(h + 168, 'u', 40))
MUT(m_slot_state, be32_put(h + 208 + 3 * 48, 0x12345678))
MUT(m_slot_iters, be32_put(h + 208 + 4, 0))
MUT(m_slot_stripes, be32_put(h + 208 + 44, 0))
MUT(m_slot_stripes_huge, be32_put(h + 208 + 44, 0xffffffffu))
MUT(m_slot_in_header, be32_put(h + 208 + 40, 1))
MUT(m_slot_past_payload, be32_put(h + 208 + 40, be32_get(h + 104) - 8))
MUT(m_slot_overlap, { /* slot 1 active, at slot 0's offset + 8 sectors */
                      memcpy(h + 208 + 48, h + 208, 48);
                      be32_put(h + 208 + 48 + 40, be32_get(h + 208 + 40) + 8);
})

static void
test_malformed(void)
{
    struct memdisk m;
    struct luks *l;
    if (create(&m, "aes-256", "xts", "plain64", NULL, "sha256", &l) < 0)
        return;
    memcpy(good, m.data, sizeof good);
    luks_free(l);
    free(m.data);
    struct luks_header out;
    CHECK(luks_header_decode(good, sizeof good, &out) == 0, "good header: %s", topcow_last_error());

    expect_bad(m_magic, -EUCLEAN, "luks: bad magic", "magic");
    expect_bad(m_version, -ENOTSUP, "version 2 not supported", "version");
    expect_bad(m_name_unterminated, -EUCLEAN, "cipher name field is not NUL-terminated", "name");
    expect_bad(m_cipher, -ENOTSUP, "cipher 'blowfish' not supported", "cipher");
    expect_bad(m_mode_nodash, -ENOTSUP, "cipher mode 'xts' not supported", "mode");
    expect_bad(m_mode_unknown, -ENOTSUP, "cipher mode 'lrw' not supported", "mode lrw");
    expect_bad(m_ivgen_unknown, -ENOTSUP, "IV generator 'benbi' not supported", "ivgen");
    expect_bad(m_essiv_nohash, -EUCLEAN, "essiv without a hash", "essiv");
    expect_bad(m_ivhash_unknown, -ENOTSUP, "IV generator hash 'crc32'", "ivhash");
    expect_bad(m_hash, -ENOTSUP, "hash 'whirlpool' not supported", "hash");
    expect_bad(m_keybytes, -EUCLEAN, "20-byte key does not fit cipher aes in xts mode", "key");
    expect_bad(m_keybytes_huge, -EUCLEAN, "does not fit cipher aes", "key huge");
    expect_bad(m_keybytes_zero, -EUCLEAN, "key size is 0", "key zero");
    expect_bad(m_mk_iters, -EUCLEAN, "master key iteration count is 0", "mk iters");
    expect_bad(m_uuid, -EUCLEAN, "uuid field is not NUL-terminated", "uuid");
    expect_bad(m_slot_state, -EUCLEAN, "key slot 3: bad state 0x12345678", "slot state");
    expect_bad(m_slot_iters, -EUCLEAN, "key slot 0: iteration count is 0", "slot iters");
    expect_bad(m_slot_stripes, -EUCLEAN, "key slot 0: 0 stripes out of range", "stripes");
    expect_bad(m_slot_stripes_huge, -EUCLEAN, "stripes out of range", "stripes huge");
    expect_bad(m_slot_in_header, -EUCLEAN, "overlaps the header", "slot in header");
    expect_bad(m_slot_past_payload, -EUCLEAN, "past the payload offset", "slot past payload");
    expect_bad(m_slot_overlap, -EUCLEAN, "key slots 0 and 1 overlap", "slots overlap");

    /* Every truncation. */
    for (size_t n = 0; n < sizeof good; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, good, n);
        CHECK(luks_header_decode(copy, n, &out) == -EUCLEAN, "truncated to %zu accepted", n);
        free(copy);
    }

    /* Random damage: never a crash, and every failure has a message. */
    uint64_t seed = 12345;
    int accepted = 0;
    for (int it = 0; it < 20000; it++) {
        uint8_t *h = malloc(sizeof good);
        memcpy(h, good, sizeof good);
        int flips = 1 + (int)(seed % 4);
        for (int k = 0; k < flips; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            h[(seed >> 33) % sizeof good] = (uint8_t)(seed >> 17);
        }
        err_begin("fuzz");
        int r = luks_header_decode(h, sizeof good, &out);
        if (r == 0)
            accepted++;
        else
            CHECK(strncmp(topcow_last_error(), "fuzz: luks: ", 12) == 0, "message: %s",
                  topcow_last_error());
        free(h);
    }
    printf("info: %d of 20000 damaged headers still decode (salt, digest or uuid bytes)\n",
           accepted);

    /* A valid header whose key material lies beyond the storage reads zeros
     * and is simply not accepted. */
    m.data = malloc(sizeof good);
    m.size = sizeof good;
    memcpy(m.data, good, sizeof good);
    struct luks *l2;
    CHECK(unlock(&m, PASS, -1, &l2) == -EKEYREJECTED, "unlock without key material");
    free(m.data);
}

int
main(void)
{
    test_block_ciphers();
    test_hashes();
    test_sector_ivs();
    test_cipher_errors();
    test_threads("aes-256", "xts", "plain64", 64);
    test_threads("aes-128", "cbc", "essiv", 16);
    test_threads("serpent-256", "cbc", "plain64", 32);
    bench("aes-256", "xts", 64);
    bench("aes-128", "cbc", 16);
    bench("twofish-256", "xts", 64);

    /* Each hash with each key size class; every cipher family and mode. */
    test_luks_roundtrip("aes-256", "xts", "plain64", NULL, "sha256");
    test_luks_roundtrip("aes-128", "cbc", "essiv", "md5", "sha1");
    test_luks_roundtrip("aes-192", "cbc", "plain", NULL, "sha512"); /* 96000-byte AF area */
    test_luks_roundtrip("aes-192", "xts", "essiv", "sha256", "sha384");
    test_luks_roundtrip("serpent-128", "ecb", "plain64", NULL, "ripemd160");
    test_luks_roundtrip("twofish-256", "ctr", "plain", NULL, "sha224");
    test_luks_roundtrip("cast5-128", "cbc", "essiv", "md5", "md5");
    test_luks_layout();
    test_luks_keys();
    test_malformed();

    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    else
        printf("ok\n");
    return failures ? 1 : 0;
}
