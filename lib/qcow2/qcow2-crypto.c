// SPDX-License-Identifier: MIT
/* Encrypted qcow2 images (spec: "crypt_method", header extension "Full
 * disk encryption header pointer"; notes "Encryption").
 *
 * LUKS (crypt_method 2): a LUKS1 header and its key material live in host
 * clusters named by the FDE header extension; guest data is encrypted in
 * 512-byte sectors whose IV is the *host* sector number in the data file,
 * so data moved to another host cluster (copy-on-write) is re-encrypted on
 * the way.  Metadata is never encrypted.
 * Legacy AES (crypt_method 1): aes-128-cbc keyed by the passphrase, IV the
 * *guest* sector; read only here (convert out of it).
 *
 * Every data transfer of an encrypted image goes through the functions
 * below, which keep the caller's buffer intact: writes encrypt into a
 * bounce buffer, and a write that does not cover whole sectors reads,
 * decrypts and merges the sectors it cuts (the caller holds the range
 * exclusive for those; qcow2_pwrite sends unaligned writes to its slow
 * path). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "error.h"
#include "luks.h"
#include "minmax.h"
#include "qcow2-internal.h"
#include "sector-cipher.h"

#define SECTOR 512u

/* ---- the LUKS header area, through the qcow2 file ------------------------- */

static int
area_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = opaque;
    RETURN_ERR_IF(off > s->crypto_len || len > s->crypto_len - off, -EUCLEAN,
                  "%s: qcow2: LUKS key material at 0x%" PRIx64 " lies outside the "
                  "encryption header (%" PRIu64 " bytes)", s->img->filename, off, s->crypto_len);
    return io_pread(s->file, buf, len, s->crypto_off + off);
}

static int
area_write(void *opaque, const void *buf, size_t len, uint64_t off)
{
    struct qcow2_state *s = opaque;
    RETURN_ERR_IF(off > s->crypto_len || len > s->crypto_len - off, -EINVAL,
                  "%s: qcow2: write outside the encryption header", s->img->filename);
    return io_pwrite(s->file, buf, len, s->crypto_off + off);
}

static struct luks_io
area_io(struct qcow2_state *s)
{
    return (struct luks_io){ area_read, s->read_only ? NULL : area_write, s };
}

/* The FDE header extension: offset and length of the LUKS header area. */
static int
find_area(struct qcow2_state *s)
{
    for (unsigned i = 0; i < s->nb_exts; i++) {
        if (s->exts[i].type != QCOW2_EXT_CRYPTO)
            continue;
        RETURN_ERR_IF(s->exts[i].len < 16, -EUCLEAN,
                      "%s: qcow2: encryption header extension too short", s->img->filename);
        s->crypto_off = be64_get(s->exts[i].data);
        s->crypto_len = be64_get(s->exts[i].data + 8);
        RETURN_ERR_IF(s->crypto_off % s->cluster_size || s->crypto_off == 0 ||
                          s->crypto_len < LUKS_HEADER_SIZE ||
                          s->crypto_off + s->crypto_len < s->crypto_off ||
                          s->crypto_off + s->crypto_len > s->file_size_at_open,
                      -EUCLEAN,
                      "%s: qcow2: invalid encryption header area (offset 0x%" PRIx64
                      ", %" PRIu64 " bytes)", s->img->filename, s->crypto_off, s->crypto_len);
        return 0;
    }
    return QERR(s, -EUCLEAN, "qcow2: LUKS encryption without its header extension");
}

int
qcow2_crypto_open(struct qcow2_state *s, const void *secret, size_t secret_len)
{
    int r;
    switch (s->h.crypt_method) {
    case 0:
        return 0;
    case 1:
        RETURN_ERR_IF(s->external_data, -EUCLEAN,
                      "%s: qcow2: legacy AES encryption with an external data file",
                      s->img->filename);
        if (!secret)
            return 0;
        {
            /* The key is the passphrase as a C string. */
            char *pw = calloc(1, secret_len + 1);
            if (!pw)
                return err_set(-ENOMEM, "out of memory");
            memcpy(pw, secret, secret_len);
            r = sector_cipher_new_qcow_aes(pw, &s->cipher);
            explicit_bzero(pw, secret_len);
            free(pw);
        }
        return r;
    case 2:
        if ((r = find_area(s)) < 0)
            return r;
        s->luks_hdr = calloc(1, sizeof *s->luks_hdr);
        if (!s->luks_hdr)
            return err_set(-ENOMEM, "out of memory");
        struct luks_io io = area_io(s);
        if ((r = luks_read_header(&io, s->luks_hdr)) < 0)
            return QERR(s, r, "%s", topcow_last_error());
        if (!secret)
            return 0;
        r = luks_unlock(&io, secret, secret_len, -1, &s->luks);
        if (r == -EKEYREJECTED)
            return QERR(s, r, "qcow2: Invalid password, cannot unlock any keyslot");
        if (r < 0)
            return r;
        s->cipher = luks_cipher(s->luks);
        return 0;
    }
    return QERR(s, -EUCLEAN, "qcow2: unsupported encryption method %u", s->h.crypt_method);
}

void
qcow2_crypto_close(struct qcow2_state *s)
{
    if (s->luks)
        luks_free(s->luks); /* owns s->cipher */
    else
        sector_cipher_free(s->cipher);
    s->luks = NULL;
    s->cipher = NULL;
    free(s->luks_hdr);
    s->luks_hdr = NULL;
}

int
qcow2_crypto_check_write(struct qcow2_state *s)
{
    if (!s->h.crypt_method)
        return 0;
    RETURN_ERR_IF(s->h.crypt_method == 1, -ENOTSUP,
                  "%s: qcow2: writing to legacy AES-encrypted images is not supported "
                  "(convert them to LUKS encryption)", s->img->filename);
    RETURN_ERR_IF(!s->cipher, -ENOKEY,
                  "%s: qcow2: the image is encrypted and was opened without its passphrase "
                  "(encrypt.key-secret)", s->img->filename);
    return 0;
}

/* The IV sector of host byte @host (guest byte @guest). */
static uint64_t
iv_sector(const struct qcow2_state *s, uint64_t host, uint64_t guest)
{
    return (s->h.crypt_method == 1 ? guest : host) / SECTOR;
}

/* ---- sector-aligned transfers ----------------------------------------------
 * Work in chunks small enough to stay in the CPU cache between the copy and
 * the cipher, and cut large transfers into slices run on several threads:
 * one big read or write of an encrypted image then runs at the speed of a
 * plain one rather than at one core's cipher speed. */
#define CRYPT_CHUNK (256u << 10)
#define SLICE_MIN (2u << 20)
#define MAX_SLICES 8

struct slice {
    struct qcow2_state *s;
    uint8_t *dst;        /* read: decrypted data goes here */
    const uint8_t *src;  /* write: plaintext comes from here */
    size_t len;
    uint64_t host, guest;
    int r;
    char msg[256];       /* the failure's message (error text is per thread) */
};

static void *
slice_read(void *arg)
{
    struct slice *sl = arg;
    struct qcow2_state *s = sl->s;
    for (size_t pos = 0; pos < sl->len && sl->r == 0;) {
        size_t n = MIN(CRYPT_CHUNK, sl->len - pos);
        sl->r = io_pread(s->data_file, sl->dst + pos, n, sl->host + pos);
        if (sl->r == 0)
            sl->r = sector_cipher_decrypt(s->cipher, iv_sector(s, sl->host + pos, sl->guest + pos),
                                          sl->dst + pos, n);
        pos += n;
    }
    if (sl->r < 0)
        snprintf(sl->msg, sizeof sl->msg, "%s", topcow_last_error());
    return NULL;
}

static void *
slice_write(void *arg)
{
    struct slice *sl = arg;
    struct qcow2_state *s = sl->s;
    uint8_t *tmp = malloc(MIN(CRYPT_CHUNK, sl->len));
    if (!tmp)
        sl->r = err_set(-ENOMEM, "out of memory");
    for (size_t pos = 0; pos < sl->len && sl->r == 0;) {
        size_t n = MIN(CRYPT_CHUNK, sl->len - pos);
        memcpy(tmp, sl->src + pos, n);
        sl->r = sector_cipher_encrypt(s->cipher, iv_sector(s, sl->host + pos, sl->guest + pos),
                                      tmp, n);
        if (sl->r == 0)
            sl->r = io_pwrite(s->data_file, tmp, n, sl->host + pos);
        pos += n;
    }
    if (tmp) {
        explicit_bzero(tmp, MIN(CRYPT_CHUNK, sl->len));
        free(tmp);
    }
    if (sl->r < 0)
        snprintf(sl->msg, sizeof sl->msg, "%s", topcow_last_error());
    return NULL;
}

static unsigned
online_cpus(void)
{
    static unsigned cached; /* read and written by any thread: relaxed atomics */
    unsigned n = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (!n) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)MIN(c, MAX_SLICES) : 1;
        __atomic_store_n(&cached, n, __ATOMIC_RELAXED);
    }
    return n;
}

/* Read (@dst) or write (@src) @len bytes at sector-aligned @host. */
static int
crypt_aligned(struct qcow2_state *s, uint8_t *dst, const uint8_t *src, size_t len, uint64_t host,
              uint64_t guest)
{
    void *(*fn)(void *) = dst ? slice_read : slice_write;
    unsigned n = (unsigned)MIN(online_cpus(), len / SLICE_MIN);
    if (n <= 1) {
        struct slice one = { s, dst, src, len, host, guest, 0, "" };
        fn(&one);
        return one.r < 0 ? err_set(one.r, "%s", one.msg) : 0;
    }
    struct slice sl[MAX_SLICES];
    pthread_t tid[MAX_SLICES];
    bool started[MAX_SLICES] = { false };
    size_t per = len / n / SECTOR * SECTOR, pos = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t l = i == n - 1 ? len - pos : per;
        sl[i] = (struct slice){ s, dst ? dst + pos : NULL, src ? src + pos : NULL, l, host + pos,
                                guest + pos, 0, "" };
        pos += l;
    }
    /* Slice 0 runs here; the others on their own threads (or here too, if a
     * thread cannot be started). */
    for (unsigned i = 1; i < n; i++)
        started[i] = pthread_create(&tid[i], NULL, fn, &sl[i]) == 0;
    fn(&sl[0]);
    for (unsigned i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            fn(&sl[i]);
    }
    for (unsigned i = 0; i < n; i++)
        if (sl[i].r < 0)
            return err_set(sl[i].r, "%s", sl[i].msg);
    return 0;
}

int
qcow2_crypto_pread(struct qcow2_state *s, uint8_t *buf, size_t len, uint64_t host,
                   uint64_t guest)
{
    RETURN_ERR_IF(!s->cipher, -ENOKEY,
                  "%s: qcow2: the image is encrypted and was opened without its passphrase "
                  "(encrypt.key-secret)", s->img->filename);
    uint64_t head = host % SECTOR;
    uint64_t a = host - head, b = ALIGN_UP(host + len, SECTOR);
    int r;
    if (head == 0 && b == host + len)
        return crypt_aligned(s, buf, NULL, len, host, guest);
    uint8_t *tmp = malloc(b - a);
    if (!tmp)
        return err_set(-ENOMEM, "out of memory");
    r = io_pread(s->data_file, tmp, b - a, a);
    if (r == 0)
        r = sector_cipher_decrypt(s->cipher, iv_sector(s, a, guest - head), tmp, b - a);
    if (r == 0)
        memcpy(buf, tmp + head, len);
    explicit_bzero(tmp, b - a);
    free(tmp);
    return r;
}

int
qcow2_crypto_pwrite(struct qcow2_state *s, const uint8_t *buf, size_t len, uint64_t host,
                    uint64_t guest)
{
    int r = qcow2_crypto_check_write(s);
    if (r < 0)
        return r;
    uint64_t head = host % SECTOR;
    uint64_t a = host - head, b = ALIGN_UP(host + len, SECTOR);
    if (head == 0 && b == host + len)
        return crypt_aligned(s, NULL, buf, len, host, guest);
    uint8_t *tmp = malloc(b - a);
    if (!tmp)
        return err_set(-ENOMEM, "out of memory");
    /* Cut sectors keep their other bytes: read and decrypt them first. */
    if (head)
        r = qcow2_crypto_pread(s, tmp, SECTOR, a, guest - head);
    if (r == 0 && b != host + len && (b - SECTOR > a || !head))
        r = qcow2_crypto_pread(s, tmp + (b - SECTOR - a), SECTOR, b - SECTOR,
                               guest - head + (b - SECTOR - a));
    if (r == 0) {
        memcpy(tmp + head, buf, len);
        r = sector_cipher_encrypt(s->cipher, iv_sector(s, a, guest - head), tmp, b - a);
    }
    if (r == 0)
        r = io_pwrite(s->data_file, tmp, b - a, a);
    explicit_bzero(tmp, b - a);
    free(tmp);
    return r;
}

int
qcow2_crypto_pwritev(struct qcow2_state *s, const struct iovec *iov, int cnt, uint64_t host,
                     uint64_t guest)
{
    size_t len = 0;
    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    uint8_t *tmp = malloc(len ? len : 1);
    if (!tmp)
        return err_set(-ENOMEM, "out of memory");
    size_t pos = 0;
    for (int i = 0; i < cnt; i++) {
        memcpy(tmp + pos, iov[i].iov_base, iov[i].iov_len);
        pos += iov[i].iov_len;
    }
    /* The bounce buffer is ours: whole sectors are enciphered in it, not
     * copied a second time. */
    int r = qcow2_crypto_check_write(s);
    if (r == 0 && host % SECTOR == 0 && len % SECTOR == 0) {
        r = sector_cipher_encrypt(s->cipher, iv_sector(s, host, guest), tmp, len);
        if (r == 0)
            r = io_pwrite(s->data_file, tmp, len, host);
    } else if (r == 0) {
        r = qcow2_crypto_pwrite(s, tmp, len, host, guest);
    }
    explicit_bzero(tmp, len);
    free(tmp);
    return r;
}

/* ---- creation and key slots ------------------------------------------------ */

int
qcow2_crypto_create(struct qcow2_state *s, const struct topcow_create_opts *o)
{
    const uint64_t cs = s->cluster_size;
    struct luks_create_opts lo = {
        .cipher_alg = o->encrypt_cipher_alg,
        .cipher_mode = o->encrypt_cipher_mode,
        .ivgen_alg = o->encrypt_ivgen_alg,
        .ivgen_hash_alg = o->encrypt_ivgen_hash_alg,
        .hash_alg = o->encrypt_hash_alg,
        .iter_time_ms = o->encrypt_iter_time_ms,
        .passphrase = o->encrypt_secret,
        .passphrase_len = o->encrypt_secret_len,
    };
    uint64_t len;
    int r = luks_layout_len(&lo, &len);
    if (r < 0)
        return r;
    uint64_t n = DIV_ROUND_UP(len, cs), off;
    bool fresh;
    pthread_mutex_lock(&s->lock);
    r = qcow2_alloc_clusters(s, n, &off, NULL, &fresh);
    uint64_t fsize = 0;
    if (r == 0)
        r = io_get_size(s->file, &fsize);
    /* The area reads as zeros where luks_create writes nothing. */
    if (r == 0 && fsize < off + n * cs)
        r = io_truncate(s->file, off + n * cs);
    if (r == 0) {
        s->crypto_off = off;
        s->crypto_len = len;
        struct luks_io io = { area_read, area_write, s };
        uint64_t got;
        r = luks_create(&lo, &io, &got, &s->luks);
    }
    if (r == 0) {
        uint8_t ext[16];
        be64_put(ext, off);
        be64_put(ext + 8, len);
        r = qcow2_ext_set(s, QCOW2_EXT_CRYPTO, ext, sizeof ext);
    }
    if (r == 0) {
        s->cipher = luks_cipher(s->luks);
        s->h.crypt_method = 2;
        r = qcow2_header_rewrite(s);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int
qcow2_crypto_amend(struct qcow2_state *s, const struct topcow_amend_opts *o)
{
    if (!o->encrypt_state)
        return 0;
    RETURN_ERR_IF(s->h.crypt_method != 2, -EINVAL,
                  "%s: key slots can only be changed on LUKS-encrypted images",
                  s->img->filename);
    RETURN_ERR_IF(!s->luks, -ENOKEY,
                  "%s: the image must be opened with a passphrase to change its key slots "
                  "(encrypt.key-secret)", s->img->filename);
    struct luks_io io = area_io(s);
    int r;
    pthread_mutex_lock(&s->lock);
    if (o->encrypt_state == 1) {
        if (!o->new_secret)
            r = err_set(-EINVAL, "%s: Can't add a keyslot - encrypt.new-secret is missing",
                        s->img->filename);
        else
            r = luks_add_key(s->luks, &io, o->new_secret, o->new_secret_len, o->keyslot,
                             o->iter_time_ms);
    } else {
        r = luks_remove_key(s->luks, &io, o->old_secret, o->old_secret_len, o->keyslot,
                            o->force);
    }
    if (r >= 0)
        r = qcow2_sync(s);
    if (r == 0 && s->luks_hdr)
        *s->luks_hdr = *luks_get_header(s->luks);
    pthread_mutex_unlock(&s->lock);
    return r < 0 ? r : 0;
}

int
qcow2_get_encryption(struct topcow_image *img, struct topcow_encryption *enc)
{
    struct qcow2_state *s = qcow2_state(img);
    enc->format = s->h.crypt_method == 1 ? "aes" : s->h.crypt_method == 2 ? "luks" : NULL;
    enc->unlocked = s->cipher != NULL;
    const struct luks_header *h = s->luks ? luks_get_header(s->luks) : s->luks_hdr;
    if (s->h.crypt_method != 2 || !h)
        return 0;
    snprintf(enc->cipher_alg, sizeof enc->cipher_alg, "%s", h->names.cipher_alg);
    snprintf(enc->cipher_mode, sizeof enc->cipher_mode, "%s", h->names.cipher_mode);
    snprintf(enc->ivgen_alg, sizeof enc->ivgen_alg, "%s", h->names.ivgen_alg);
    snprintf(enc->ivgen_hash_alg, sizeof enc->ivgen_hash_alg, "%s", h->names.ivgen_hash_alg);
    snprintf(enc->hash_alg, sizeof enc->hash_alg, "%s", h->names.hash_alg);
    snprintf(enc->uuid, sizeof enc->uuid, "%s", h->uuid);
    enc->payload_offset = h->payload_offset;
    enc->master_key_iters = h->mk_iters;
    for (unsigned i = 0; i < TOPCOW_LUKS_SLOTS && i < LUKS_NUM_SLOTS; i++) {
        enc->slots[i].active = h->slots[i].active;
        enc->slots[i].iters = h->slots[i].iters;
        enc->slots[i].stripes = h->slots[i].stripes;
        enc->slots[i].key_offset = h->slots[i].key_offset;
    }
    return 0;
}
