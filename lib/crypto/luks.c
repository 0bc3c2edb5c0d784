// SPDX-License-Identifier: MIT
/* LUKS1: header decoding and validation, key slot unlock (PBKDF2, key
 * material decryption, anti-forensic merge, master key digest check),
 * volume creation with QEMU's layout, and key slot add/erase with
 * qemu-img amend's rules.  Format: LUKS1 On-Disk Format Specification
 * 1.2.3; all integers big-endian; offsets in 512-byte sectors. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "error.h"
#include "minmax.h"
#include "crypto-hash.h"
#include "luks.h"

#define SECTOR 512u

/* phdr field offsets (spec section 2.4, figure 2) */
#define OFF_MAGIC 0
#define OFF_VERSION 6
#define OFF_CIPHER_NAME 8
#define OFF_CIPHER_MODE 40
#define OFF_HASH_SPEC 72
#define OFF_PAYLOAD 104
#define OFF_KEY_BYTES 108
#define OFF_MK_DIGEST 112
#define OFF_MK_SALT 132
#define OFF_MK_ITERS 164
#define OFF_UUID 168
#define OFF_SLOTS 208
#define SLOT_SIZE 48 /* active, iterations, salt[32], key material offset, stripes */
#define NAME_LEN 32
#define UUID_LEN 40

#define SLOT_ACTIVE 0x00AC71F3u
#define SLOT_INACTIVE 0x0000DEADu

#define MAX_STRIPES 65536u /* bounds key material: 64 bytes * 64 Ki = 4 MiB */

static const uint8_t magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};

struct luks {
    struct luks_header h;
    uint8_t *mk; /* master key, h.key_bytes */
    struct sector_cipher *cipher;
    int slot;
};

/* ---- names --------------------------------------------------------- */

static const char *const families[] = {"aes", "serpent", "twofish", "cast5"};
static const char *const modes[] = {"ecb", "cbc", "xts", "ctr"};
static const char *const ivgens[] = {"plain", "plain64", "essiv"};

/* Copy a name known to fit (checked against a list), truncating otherwise. */
static void
set_name(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool
in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, list[i]))
            return true;
    return false;
}

int
luks_names_from_disk(const char *cipher_name, const char *cipher_mode, const char *hash_spec,
                     uint32_t key_bytes, struct luks_names *out)
{
    memset(out, 0, sizeof *out);
    RETURN_ERR_IF(!in_list(cipher_name, families, ARRAY_SIZE(families)), -ENOTSUP,
                  "luks: cipher '%s' not supported", cipher_name);

    /* "<mode>-<ivgen>[:<hash>]" */
    char mode[NAME_LEN + 1], ivgen[NAME_LEN + 1], ivhash[NAME_LEN + 1] = "";
    size_t ml = strcspn(cipher_mode, "-");
    RETURN_ERR_IF(!cipher_mode[ml], -ENOTSUP,
                  "luks: cipher mode '%s' not supported (expected MODE-IVGEN)", cipher_mode);
    snprintf(mode, sizeof mode, "%.*s", (int)ml, cipher_mode);
    const char *iv = cipher_mode + ml + 1;
    size_t il = strcspn(iv, ":");
    snprintf(ivgen, sizeof ivgen, "%.*s", (int)il, iv);
    if (iv[il])
        snprintf(ivhash, sizeof ivhash, "%s", iv + il + 1);
    RETURN_ERR_IF(!in_list(mode, modes, ARRAY_SIZE(modes)), -ENOTSUP,
                  "luks: cipher mode '%s' not supported", mode);
    RETURN_ERR_IF(!in_list(ivgen, ivgens, ARRAY_SIZE(ivgens)), -ENOTSUP,
                  "luks: IV generator '%s' not supported", ivgen);
    RETURN_ERR_IF(iv[il] && !crypto_hash_len(ivhash), -ENOTSUP,
                  "luks: IV generator hash '%s' not supported", ivhash);
    RETURN_ERR_IF(!strcmp(ivgen, "essiv") && !iv[il], -EUCLEAN,
                  "luks: cipher mode '%s' names essiv without a hash", cipher_mode);
    RETURN_ERR_IF(!crypto_hash_len(hash_spec), -ENOTSUP, "luks: hash '%s' not supported",
                  hash_spec);

    bool xts = !strcmp(mode, "xts");
    unsigned bits = (unsigned)MIN(xts ? key_bytes / 2 : key_bytes, 64u) * 8;
    snprintf(out->cipher_alg, sizeof out->cipher_alg, "%s-%u", cipher_name, bits);
    size_t want;
    if ((xts && key_bytes % 2) || key_bytes > 64 ||
        sector_cipher_key_len(out->cipher_alg, mode, &want) < 0 || want != key_bytes) {
        err_clear();
        memset(out, 0, sizeof *out);
        return err_set(-EUCLEAN, "luks: %u-byte key does not fit cipher %s in %s mode", key_bytes,
                       cipher_name, mode);
    }
    set_name(out->cipher_mode, sizeof out->cipher_mode, mode);
    set_name(out->ivgen_alg, sizeof out->ivgen_alg, ivgen);
    if (!strcmp(ivgen, "essiv"))
        set_name(out->ivgen_hash_alg, sizeof out->ivgen_hash_alg, ivhash);
    set_name(out->hash_alg, sizeof out->hash_alg, hash_spec);
    return 0;
}

/* ---- header codec --------------------------------------------------- */

/* Copy a NUL-padded on-disk string field; it must be terminated. */
static int
get_string(const uint8_t *field, size_t len, char *out, const char *what)
{
    const uint8_t *nul = memchr(field, 0, len);
    RETURN_ERR_IF(!nul, -EUCLEAN, "luks: %s field is not NUL-terminated", what);
    memcpy(out, field, (size_t)(nul - field) + 1);
    return 0;
}

/* The bytes of key material a slot with @stripes stripes occupies: whole
 * sectors (cryptsetup pads the last one; QEMU's sizes are always whole). */
static uint64_t
area_len(uint32_t key_bytes, uint32_t stripes)
{
    return ALIGN_UP((uint64_t)key_bytes * stripes, SECTOR);
}

static int
check_slots(const struct luks_header *h)
{
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const struct luks_slot *s = &h->slots[i];
        if (!s->active)
            continue;
        RETURN_ERR_IF(s->iters == 0, -EUCLEAN, "luks: key slot %d: iteration count is 0", i);
        RETURN_ERR_IF(s->stripes == 0 || s->stripes > MAX_STRIPES, -EUCLEAN,
                      "luks: key slot %d: %u stripes out of range", i, s->stripes);
        uint64_t end = s->key_offset + area_len(h->key_bytes, s->stripes);
        RETURN_ERR_IF(s->key_offset < LUKS_HEADER_SIZE, -EUCLEAN,
                      "luks: key slot %d: key material at %" PRIu64 " overlaps the header", i,
                      s->key_offset);
        RETURN_ERR_IF(h->payload_offset && end > h->payload_offset, -EUCLEAN,
                      "luks: key slot %d: key material ends at %" PRIu64
                      ", past the payload offset %" PRIu64,
                      i, end, h->payload_offset);
        for (int j = 0; j < i; j++) {
            const struct luks_slot *t = &h->slots[j];
            if (!t->active)
                continue;
            uint64_t tend = t->key_offset + area_len(h->key_bytes, t->stripes);
            RETURN_ERR_IF(s->key_offset < tend && t->key_offset < end, -EUCLEAN,
                          "luks: key slots %d and %d overlap", j, i);
        }
    }
    return 0;
}

int
luks_header_decode(const uint8_t *buf, size_t len, struct luks_header *out)
{
    struct luks_header *h = out;
    memset(h, 0, sizeof *h);
    RETURN_ERR_IF(len < LUKS_HEADER_SIZE, -EUCLEAN, "luks: header truncated (%zu of %d bytes)", len,
                  LUKS_HEADER_SIZE);
    RETURN_ERR_IF(memcmp(buf + OFF_MAGIC, magic, sizeof magic), -EUCLEAN,
                  "luks: bad magic (not a LUKS header)");
    uint16_t version = be16_get(buf + OFF_VERSION);
    RETURN_ERR_IF(version != 1, -ENOTSUP, "luks: version %u not supported (only LUKS1)", version);

    int r;
    if ((r = get_string(buf + OFF_CIPHER_NAME, NAME_LEN, h->cipher_name, "cipher name")) < 0 ||
        (r = get_string(buf + OFF_CIPHER_MODE, NAME_LEN, h->cipher_mode, "cipher mode")) < 0 ||
        (r = get_string(buf + OFF_HASH_SPEC, NAME_LEN, h->hash_spec, "hash spec")) < 0 ||
        (r = get_string(buf + OFF_UUID, UUID_LEN, h->uuid, "uuid")) < 0)
        return r;
    h->payload_offset = (uint64_t)be32_get(buf + OFF_PAYLOAD) * SECTOR;
    h->key_bytes = be32_get(buf + OFF_KEY_BYTES);
    memcpy(h->mk_digest, buf + OFF_MK_DIGEST, LUKS_DIGEST_SIZE);
    memcpy(h->mk_salt, buf + OFF_MK_SALT, LUKS_SALT_SIZE);
    h->mk_iters = be32_get(buf + OFF_MK_ITERS);
    RETURN_ERR_IF(h->key_bytes == 0, -EUCLEAN, "luks: key size is 0");
    RETURN_ERR_IF(h->mk_iters == 0, -EUCLEAN, "luks: master key iteration count is 0");
    r = luks_names_from_disk(h->cipher_name, h->cipher_mode, h->hash_spec, h->key_bytes, &h->names);
    if (r < 0)
        return r;

    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const uint8_t *p = buf + OFF_SLOTS + i * SLOT_SIZE;
        struct luks_slot *s = &h->slots[i];
        uint32_t state = be32_get(p);
        RETURN_ERR_IF(state != SLOT_ACTIVE && state != SLOT_INACTIVE, -EUCLEAN,
                      "luks: key slot %d: bad state 0x%08x", i, state);
        s->active = state == SLOT_ACTIVE;
        s->iters = be32_get(p + 4);
        memcpy(s->salt, p + 8, LUKS_SALT_SIZE);
        s->key_offset = (uint64_t)be32_get(p + 40) * SECTOR;
        s->stripes = be32_get(p + 44);
    }
    return check_slots(h);
}

static void
put_string(uint8_t *field, size_t len, const char *s)
{
    memset(field, 0, len);
    memcpy(field, s, MIN(strlen(s), len - 1));
}

static void
encode_slot(const struct luks_slot *s, uint8_t *p)
{
    be32_put(p, s->active ? SLOT_ACTIVE : SLOT_INACTIVE);
    be32_put(p + 4, s->iters);
    memcpy(p + 8, s->salt, LUKS_SALT_SIZE);
    be32_put(p + 40, (uint32_t)(s->key_offset / SECTOR));
    be32_put(p + 44, s->stripes);
}

static void
encode_header(const struct luks_header *h, uint8_t buf[LUKS_HEADER_SIZE])
{
    memset(buf, 0, LUKS_HEADER_SIZE);
    memcpy(buf + OFF_MAGIC, magic, sizeof magic);
    be16_put(buf + OFF_VERSION, 1);
    put_string(buf + OFF_CIPHER_NAME, NAME_LEN, h->cipher_name);
    put_string(buf + OFF_CIPHER_MODE, NAME_LEN, h->cipher_mode);
    put_string(buf + OFF_HASH_SPEC, NAME_LEN, h->hash_spec);
    be32_put(buf + OFF_PAYLOAD, (uint32_t)(h->payload_offset / SECTOR));
    be32_put(buf + OFF_KEY_BYTES, h->key_bytes);
    memcpy(buf + OFF_MK_DIGEST, h->mk_digest, LUKS_DIGEST_SIZE);
    memcpy(buf + OFF_MK_SALT, h->mk_salt, LUKS_SALT_SIZE);
    be32_put(buf + OFF_MK_ITERS, h->mk_iters);
    put_string(buf + OFF_UUID, UUID_LEN, h->uuid);
    for (int i = 0; i < LUKS_NUM_SLOTS; i++)
        encode_slot(&h->slots[i], buf + OFF_SLOTS + i * SLOT_SIZE);
}

int
luks_read_header(const struct luks_io *io, struct luks_header *out)
{
    uint8_t buf[LUKS_HEADER_SIZE];
    int r = io->read(io->opaque, buf, sizeof buf, 0);
    if (r < 0)
        return err_is_set() ? r : err_set_errno(r, "luks: cannot read the header");
    return luks_header_decode(buf, sizeof buf, out);
}

/* ---- anti-forensic split (spec section 2.4) ------------------------- */

/* H1: replace each digest-sized block i of @buf by hash(be32(i) || block),
 * the last, shorter block by the matching prefix of its hash. */
static int
diffuse(struct crypto_hasher *hs, uint8_t *buf, size_t len)
{
    size_t dl = crypto_hasher_len(hs);
    uint8_t d[CRYPTO_HASH_MAX_LEN], iv[4];
    for (size_t i = 0, off = 0; off < len; i++, off += dl) {
        size_t n = MIN(dl, len - off);
        be32_put(iv, (uint32_t)i);
        struct crypto_iov parts[2] = {{iv, 4}, {buf + off, n}};
        int r = crypto_hasher_run(hs, parts, 2, d);
        if (r < 0)
            return r;
        memcpy(buf + off, d, n);
    }
    crypto_wipe(d, sizeof d);
    return 0;
}

/* AF-merge: @key = D(s_0..s_{n-2}) xor s_{n-1} over @stripes blocks of
 * @klen bytes in @material. */
static int
af_merge(const char *hash, const uint8_t *material, size_t klen, uint32_t stripes, uint8_t *key)
{
    struct crypto_hasher *hs;
    int r = crypto_hasher_new(hash, &hs);
    if (r < 0)
        return r;
    uint8_t d[64] = {0};
    for (uint32_t k = 0; k + 1 < stripes && r == 0; k++) {
        for (size_t j = 0; j < klen; j++)
            d[j] ^= material[k * klen + j];
        r = diffuse(hs, d, klen);
    }
    for (size_t j = 0; j < klen; j++)
        key[j] = d[j] ^ material[(size_t)(stripes - 1) * klen + j];
    crypto_wipe(d, sizeof d);
    crypto_hasher_free(hs);
    return r;
}

/* AF-split: random s_0..s_{n-2}, and s_{n-1} chosen so af_merge gives @key. */
static int
af_split(const char *hash, const uint8_t *key, size_t klen, uint32_t stripes, uint8_t *material)
{
    struct crypto_hasher *hs;
    int r = crypto_random(material, (size_t)(stripes - 1) * klen);
    if (r < 0 || (r = crypto_hasher_new(hash, &hs)) < 0)
        return r;
    uint8_t d[64] = {0};
    for (uint32_t k = 0; k + 1 < stripes && r == 0; k++) {
        for (size_t j = 0; j < klen; j++)
            d[j] ^= material[k * klen + j];
        r = diffuse(hs, d, klen);
    }
    for (size_t j = 0; j < klen; j++)
        material[(size_t)(stripes - 1) * klen + j] = d[j] ^ key[j];
    crypto_wipe(d, sizeof d);
    crypto_hasher_free(hs);
    return r;
}

/* ---- key slots ------------------------------------------------------ */

/* The cipher that protects key material: the volume's cipher keyed by the
 * passphrase-derived key; sectors count from 0 at the slot's offset. */
static int
slot_cipher(const struct luks_header *h, const uint8_t *key, struct sector_cipher **out)
{
    const struct luks_names *n = &h->names;
    return sector_cipher_new(n->cipher_alg, n->cipher_mode, n->ivgen_alg,
                             n->ivgen_hash_alg[0] ? n->ivgen_hash_alg : NULL, key, h->key_bytes,
                             out);
}

/* Does @mk match the header's master key digest? 1, 0 or -errno. */
static int
mk_matches(const struct luks_header *h, const uint8_t *mk)
{
    uint8_t digest[LUKS_DIGEST_SIZE];
    int r = crypto_pbkdf2(h->hash_spec, mk, h->key_bytes, h->mk_salt, LUKS_SALT_SIZE, h->mk_iters,
                          digest, sizeof digest);
    if (r < 0)
        return r;
    return CRYPTO_memcmp(digest, h->mk_digest, sizeof digest) == 0;
}

/* Try @pass on active slot @i: on success (1) the master key is in @mk. */
static int
try_slot(const struct luks_header *h, const struct luks_io *io, int i, const uint8_t *pass,
         size_t passlen, uint8_t *mk)
{
    const struct luks_slot *s = &h->slots[i];
    size_t alen = (size_t)area_len(h->key_bytes, s->stripes);
    uint8_t key[64];
    struct sector_cipher *c = NULL;
    uint8_t *area = malloc(alen);
    if (!area)
        return -ENOMEM;
    int r = io->read(io->opaque, area, alen, s->key_offset);
    if (r < 0) {
        if (!err_is_set())
            err_set_errno(r, "luks: cannot read key slot %d", i);
        goto out;
    }
    if ((r = crypto_pbkdf2(h->hash_spec, pass, passlen, s->salt, LUKS_SALT_SIZE, s->iters, key,
                           h->key_bytes)) < 0 ||
        (r = slot_cipher(h, key, &c)) < 0 || (r = sector_cipher_decrypt(c, 0, area, alen)) < 0 ||
        (r = af_merge(h->hash_spec, area, h->key_bytes, s->stripes, mk)) < 0)
        goto out;
    r = mk_matches(h, mk);
out:
    sector_cipher_free(c);
    crypto_wipe(key, sizeof key);
    crypto_wipe(area, alen);
    free(area);
    return r;
}

static int
new_luks(const struct luks_header *h, const uint8_t *mk, int slot, struct luks **out)
{
    struct luks *l = calloc(1, sizeof *l);
    if (!l || !(l->mk = malloc(h->key_bytes))) {
        free(l);
        return -ENOMEM;
    }
    l->h = *h;
    memcpy(l->mk, mk, h->key_bytes);
    l->slot = slot;
    int r = slot_cipher(h, mk, &l->cipher);
    if (r < 0) {
        luks_free(l);
        return r;
    }
    *out = l;
    return 0;
}

int
luks_unlock(const struct luks_io *io, const uint8_t *pass, size_t passlen, int slot,
            struct luks **out)
{
    struct luks_header h;
    int r = luks_read_header(io, &h);
    if (r < 0)
        return r;
    RETURN_ERR_IF(slot < -1 || slot >= LUKS_NUM_SLOTS, -EINVAL,
                  "luks: invalid key slot %d, must be between 0 and 7", slot);
    RETURN_ERR_IF(slot >= 0 && !h.slots[slot].active, -EINVAL, "luks: key slot %d is not active",
                  slot);
    uint8_t mk[64];
    bool unlocked = false;
    for (int i = 0; i < LUKS_NUM_SLOTS && r == 0 && !unlocked; i++) {
        if (!h.slots[i].active || (slot >= 0 && i != slot))
            continue;
        r = try_slot(&h, io, i, pass, passlen, mk);
        if (r == 1) {
            unlocked = true;
            r = new_luks(&h, mk, i, out);
        }
    }
    crypto_wipe(mk, sizeof mk);
    if (r < 0)
        return r;
    RETURN_ERR_IF(!unlocked, -EKEYREJECTED, "luks: invalid passphrase, no key slot accepts it");
    return 0;
}

struct sector_cipher *
luks_cipher(const struct luks *l)
{
    return l->cipher;
}

const struct luks_header *
luks_get_header(const struct luks *l)
{
    return &l->h;
}

uint64_t
luks_payload_offset(const struct luks *l)
{
    return l->h.payload_offset;
}

int
luks_unlocked_slot(const struct luks *l)
{
    return l->slot;
}

void
luks_free(struct luks *l)
{
    if (!l)
        return;
    if (l->mk)
        crypto_wipe(l->mk, l->h.key_bytes);
    free(l->mk);
    sector_cipher_free(l->cipher);
    free(l);
}

int
luks_slot_matches(const struct luks *l, const struct luks_io *io, int slot, const uint8_t *pass,
                  size_t passlen)
{
    RETURN_ERR_IF(slot < 0 || slot >= LUKS_NUM_SLOTS, -EINVAL,
                  "luks: invalid key slot %d, must be between 0 and 7", slot);
    if (!l->h.slots[slot].active)
        return 0;
    uint8_t mk[64];
    int r = try_slot(&l->h, io, slot, pass, passlen, mk);
    /* Belt and braces: a 20-byte digest match is all try_slot checks. */
    if (r == 1)
        r = CRYPTO_memcmp(mk, l->mk, l->h.key_bytes) == 0;
    crypto_wipe(mk, sizeof mk);
    return r;
}

/* ---- iteration counts ----------------------------------------------- */

/* Iterations that take @ms at @rate (PBKDF2 iterations per second for one
 * digest-sized block; it runs once per block of output, @outlen bytes),
 * divided by @div, at least LUKS_MIN_ITERS. */
static uint32_t
iters_for(const char *hash, uint64_t rate, unsigned ms, size_t outlen, unsigned div)
{
    uint64_t blocks = DIV_ROUND_UP(outlen, crypto_hash_len(hash));
    uint64_t n;
    if (MUL_OVERFLOW(rate, (uint64_t)ms, &n))
        n = UINT64_MAX;
    n = n / 1000 / blocks / div;
    return (uint32_t)MIN(MAX(n, (uint64_t)LUKS_MIN_ITERS), (uint64_t)INT_MAX);
}

/* ---- writing slots -------------------------------------------------- */

static int
write_at(const struct luks_io *io, const void *buf, size_t len, uint64_t off, const char *what)
{
    RETURN_ERR_IF(!io->write, -EROFS, "luks: cannot write the %s: read-only", what);
    int r = io->write(io->opaque, buf, len, off);
    if (r < 0 && !err_is_set())
        err_set_errno(r, "luks: cannot write the %s", what);
    return r;
}

/* Write slot @i's descriptor (48 bytes inside the header). */
static int
write_slot_descriptor(const struct luks_header *h, const struct luks_io *io, int i)
{
    uint8_t p[SLOT_SIZE];
    encode_slot(&h->slots[i], p);
    return write_at(io, p, sizeof p, OFF_SLOTS + (uint64_t)i * SLOT_SIZE, "key slot descriptor");
}

/* Check that a new slot area at @off for @key_bytes * LUKS_STRIPES bytes
 * fits: after the header, before the payload, apart from active slots. */
static int
check_new_area(const struct luks_header *h, int i, uint64_t off)
{
    uint64_t end = off + area_len(h->key_bytes, LUKS_STRIPES);
    RETURN_ERR_IF(off < LUKS_HEADER_SIZE || (h->payload_offset && end > h->payload_offset),
                  -EUCLEAN, "luks: key slot %d has no room for key material at %" PRIu64, i, off);
    for (int j = 0; j < LUKS_NUM_SLOTS; j++) {
        const struct luks_slot *t = &h->slots[j];
        RETURN_ERR_IF(j != i && t->active &&
                          off < t->key_offset + area_len(h->key_bytes, t->stripes) &&
                          t->key_offset < end,
                      -EUCLEAN, "luks: key slot %d would overlap key slot %d", i, j);
    }
    return 0;
}

/* Fill slot @i of @h (inactive) with @pass for master key @mk: key material
 * first, then the descriptor, so a crash leaves the slot inactive. */
static int
fill_slot(struct luks_header *h, const uint8_t *mk, const struct luks_io *io, int i,
          const uint8_t *pass, size_t passlen, unsigned iter_time_ms, uint64_t rate)
{
    struct luks_slot s = h->slots[i];
    s.active = true;
    s.stripes = LUKS_STRIPES;
    int r = check_new_area(h, i, s.key_offset);
    if (r < 0)
        return r;
    size_t alen = (size_t)area_len(h->key_bytes, s.stripes);
    uint8_t key[64];
    struct sector_cipher *c = NULL;
    uint8_t *area = calloc(1, alen); /* a padded last sector stays zero, as cryptsetup's */
    if (!area)
        return -ENOMEM;
    if (rate == 0 && (r = crypto_pbkdf2_rate(h->hash_spec, &rate)) < 0)
        goto out;
    s.iters = iters_for(h->hash_spec, rate, iter_time_ms, h->key_bytes, 1);
    if ((r = crypto_random(s.salt, sizeof s.salt)) < 0 ||
        (r = crypto_pbkdf2(h->hash_spec, pass, passlen, s.salt, LUKS_SALT_SIZE, s.iters, key,
                           h->key_bytes)) < 0 ||
        (r = af_split(h->hash_spec, mk, h->key_bytes, s.stripes, area)) < 0 ||
        (r = slot_cipher(h, key, &c)) < 0 || (r = sector_cipher_encrypt(c, 0, area, alen)) < 0 ||
        (r = write_at(io, area, alen, s.key_offset, "key material")) < 0)
        goto out;
    h->slots[i] = s;
    r = write_slot_descriptor(h, io, i);
    if (r < 0)
        h->slots[i].active = false;
out:
    sector_cipher_free(c);
    crypto_wipe(key, sizeof key);
    crypto_wipe(area, alen);
    free(area);
    return r;
}

int
luks_add_key(struct luks *l, const struct luks_io *io, const uint8_t *pass, size_t passlen,
             int slot, unsigned iter_time_ms)
{
    struct luks_header *h = &l->h;
    if (slot == -1) {
        for (int i = 0; i < LUKS_NUM_SLOTS && slot < 0; i++)
            if (!h->slots[i].active)
                slot = i;
        RETURN_ERR_IF(slot < 0, -ENOSPC, "luks: can't add a key slot, all key slots are in use");
    }
    RETURN_ERR_IF(slot < 0 || slot >= LUKS_NUM_SLOTS, -EINVAL,
                  "luks: invalid key slot %d, must be between 0 and 7", slot);
    RETURN_ERR_IF(h->slots[slot].active, -EEXIST,
                  "luks: refusing to overwrite active key slot %d, erase it first", slot);
    int r = fill_slot(h, l->mk, io, slot, pass, passlen,
                      iter_time_ms ? iter_time_ms : LUKS_DEFAULT_ITER_TIME_MS, 0);
    return r < 0 ? r : slot;
}

/* Erase slot @i: descriptor first (salt and count gone, so the passphrase
 * no longer leads anywhere), then random bytes over the key material. */
static int
erase_slot(struct luks_header *h, const struct luks_io *io, int i)
{
    struct luks_slot *s = &h->slots[i];
    size_t alen = (size_t)area_len(h->key_bytes, s->stripes);
    struct luks_slot old = *s;
    s->active = false;
    s->iters = 0;
    memset(s->salt, 0, sizeof s->salt);
    int r = write_slot_descriptor(h, io, i);
    if (r < 0) {
        *s = old;
        return r;
    }
    uint8_t *junk = malloc(alen);
    if (!junk)
        return -ENOMEM;
    if ((r = crypto_random(junk, alen)) == 0)
        r = write_at(io, junk, alen, s->key_offset, "erased key material");
    free(junk);
    return r;
}

int
luks_remove_key(struct luks *l, const struct luks_io *io, const uint8_t *oldpass, size_t oldlen,
                int slot, bool force)
{
    struct luks_header *h = &l->h;
    bool erase[LUKS_NUM_SLOTS] = {false};
    int nactive = 0, nerase = 0, r;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++)
        nactive += h->slots[i].active;

    if (slot >= 0 || slot < -1) {
        RETURN_ERR_IF(slot >= LUKS_NUM_SLOTS || slot < 0, -EINVAL,
                      "luks: invalid key slot %d, must be between 0 and 7", slot);
        RETURN_ERR_IF(!h->slots[slot].active, -EINVAL,
                      "luks: key slot %d is already erased (inactive)", slot);
        if (oldpass) {
            r = luks_slot_matches(l, io, slot, oldpass, oldlen);
            if (r < 0)
                return r;
            RETURN_ERR_IF(!r, -EKEYREJECTED,
                          "luks: key slot %d does not hold the given old passphrase", slot);
        }
        RETURN_ERR_IF(nactive == 1 && !force, -EPERM,
                      "luks: refusing to erase the only active key slot %d: all data in the "
                      "image would be lost for good (force to override)",
                      slot);
        erase[slot] = true;
        nerase = 1;
    } else {
        RETURN_ERR_IF(!oldpass, -EINVAL,
                      "luks: to erase key slots, give a key slot index or the passphrase they "
                      "hold");
        for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
            if (!h->slots[i].active)
                continue;
            r = luks_slot_matches(l, io, i, oldpass, oldlen);
            if (r < 0)
                return r;
            erase[i] = r;
            nerase += r;
        }
        RETURN_ERR_IF(!nerase, -EKEYREJECTED, "luks: no key slot holds the given old passphrase");
        RETURN_ERR_IF(nerase == nactive && !force, -EPERM,
                      "luks: refusing to erase every active key slot (all hold the given "
                      "passphrase): all data in the image would be lost for good (force to "
                      "override)");
    }
    for (int i = 0; i < LUKS_NUM_SLOTS; i++)
        if (erase[i] && (r = erase_slot(h, io, i)) < 0)
            return r;
    return nerase;
}

/* ---- creation ------------------------------------------------------- */

struct create_plan {
    struct luks_header h;
    char ivhash[NAME_LEN + 1];
};

static int
plan(const struct luks_create_opts *o, struct create_plan *p)
{
    const char *alg = o->cipher_alg ? o->cipher_alg : "aes-256";
    const char *mode = o->cipher_mode ? o->cipher_mode : "xts";
    const char *ivgen = o->ivgen_alg ? o->ivgen_alg : "plain64";
    const char *hash = o->hash_alg ? o->hash_alg : "sha256";
    /* As QEMU: a hash given with plain/plain64 is recorded too; essiv
     * without one gets sha256. */
    const char *ivhash = o->ivgen_hash_alg;
    if (!ivhash && !strcmp(ivgen, "essiv"))
        ivhash = "sha256";
    struct luks_header *h = &p->h;
    memset(p, 0, sizeof *p);

    size_t klen;
    int r = sector_cipher_key_len(alg, mode, &klen);
    if (r < 0)
        return r;
    size_t fl = strcspn(alg, "-");
    RETURN_ERR_IF(fl >= sizeof h->cipher_name, -EINVAL, "unknown cipher algorithm '%s'", alg);
    memcpy(h->cipher_name, alg, fl);
    RETURN_ERR_IF(!in_list(ivgen, ivgens, ARRAY_SIZE(ivgens)), -EINVAL, "unknown IV generator '%s'",
                  ivgen);
    RETURN_ERR_IF(ivhash && !crypto_hash_len(ivhash), -EINVAL, "unknown ivgen hash algorithm '%s'",
                  ivhash);
    RETURN_ERR_IF(!crypto_hash_len(hash), -EINVAL, "unknown hash algorithm '%s'", hash);
    int n = snprintf(h->cipher_mode, sizeof h->cipher_mode, "%s-%s%s%s", mode, ivgen,
                     ivhash ? ":" : "", ivhash ? ivhash : "");
    RETURN_ERR_IF(n < 0 || (size_t)n >= sizeof h->cipher_mode, -EINVAL, "cipher mode too long");
    snprintf(h->hash_spec, sizeof h->hash_spec, "%s", hash);
    h->key_bytes = (uint32_t)klen;
    r = luks_names_from_disk(h->cipher_name, h->cipher_mode, h->hash_spec, h->key_bytes, &h->names);
    if (r < 0) {
        err_clear();
        return err_set(-EINVAL, "cipher %s in %s mode cannot be stored in LUKS", alg, mode);
    }

    /* QEMU's layout: header rounded up to 4 KiB, then 8 equal slot areas
     * each rounded up to 4 KiB; the payload follows. */
    uint64_t area = ALIGN_UP((uint64_t)klen * LUKS_STRIPES, LUKS_ALIGN);
    uint64_t first = ALIGN_UP(LUKS_HEADER_SIZE, LUKS_ALIGN);
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        h->slots[i].key_offset = first + (uint64_t)i * area;
        h->slots[i].stripes = LUKS_STRIPES;
    }
    h->payload_offset = first + LUKS_NUM_SLOTS * area;
    return 0;
}

int
luks_layout_len(const struct luks_create_opts *o, uint64_t *len)
{
    struct create_plan p;
    int r = plan(o, &p);
    if (r == 0)
        *len = p.h.payload_offset;
    return r;
}

static int
make_uuid(char out[37])
{
    uint8_t u[16];
    int r = crypto_random(u, sizeof u);
    if (r < 0)
        return r;
    u[6] = (u[6] & 0x0f) | 0x40; /* version 4: random */
    u[8] = (u[8] & 0x3f) | 0x80; /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
    return 0;
}

int
luks_create(const struct luks_create_opts *o, const struct luks_io *io, uint64_t *header_len,
            struct luks **out)
{
    struct create_plan p;
    struct luks_header *h = &p.h;
    unsigned ms = o->iter_time_ms ? o->iter_time_ms : LUKS_DEFAULT_ITER_TIME_MS;
    uint8_t mk[64], hdr[LUKS_HEADER_SIZE];
    int r = plan(o, &p);
    if (r < 0)
        return r;
    RETURN_ERR_IF(!o->passphrase && o->passphrase_len, -EINVAL, "luks: no passphrase given");

    uint64_t rate;
    if ((r = crypto_pbkdf2_rate(h->hash_spec, &rate)) < 0)
        return r;
    h->mk_iters = iters_for(h->hash_spec, rate, ms, LUKS_DIGEST_SIZE, 8);
    if ((r = crypto_random(mk, h->key_bytes)) < 0 ||
        (r = crypto_random(h->mk_salt, sizeof h->mk_salt)) < 0 || (r = make_uuid(h->uuid)) < 0 ||
        (r = crypto_pbkdf2(h->hash_spec, mk, h->key_bytes, h->mk_salt, LUKS_SALT_SIZE, h->mk_iters,
                           h->mk_digest, LUKS_DIGEST_SIZE)) < 0)
        goto out;
    /* Slot 0's material and descriptor, then the whole header, which is what
     * makes the volume exist. */
    if ((r = fill_slot(h, mk, io, 0, o->passphrase, o->passphrase_len, ms, rate)) < 0)
        goto out;
    encode_header(h, hdr);
    if ((r = write_at(io, hdr, sizeof hdr, 0, "header")) < 0)
        goto out;
    if (header_len)
        *header_len = h->payload_offset;
    if (out)
        r = new_luks(h, mk, 0, out);
out:
    crypto_wipe(mk, sizeof mk);
    return r;
}
