// SPDX-License-Identifier: MIT
/* Chunk objects on the wire (chunk.h): stored as they are, or as one zstd
 * frame when the pusher asked for compression and it saves space.  The key
 * is the SHA-256 of the plain bytes either way, so both forms dedupe alike,
 * and a reader tells them apart by the hash: an object whose bytes hash to
 * its key is plain; otherwise it must be a zstd frame that decompresses to
 * bytes that do.  Nothing unverified is ever handed back. */
#include <errno.h>
#include <string.h>

#include "chunk.h"
#include "codec.h"
#include "error.h"

static const unsigned char zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

/* One attempt: 0 and *@data when the object is chunk @h, -EBADMSG when it
 * is not, -errno when it could not be read. */
static int
get_once(struct store *st, const char *key, const struct cloud_hash *h, size_t len, void *buf,
         void **data, size_t *wire)
{
    size_t got = 0;
    int r = store_get_range(st, key, 0, buf, len, &got);
    if (r < 0)
        return r;
    *wire = got;
    struct cloud_hash g;
    if (got == len && cloud_hash(buf, len, &g) == 0 && memcmp(&g, h, sizeof g) == 0) {
        *data = buf;
        return 0;
    }
    if (got < sizeof zstd_magic || got == len || memcmp(buf, zstd_magic, sizeof zstd_magic) != 0)
        return -EBADMSG;
    char *plain = (char *)buf + len;
    if (codec_decompress(CODEC_ZSTD, buf, got, plain, len) < 0)
        return -EBADMSG;
    if (cloud_hash(plain, len, &g) < 0 || memcmp(&g, h, sizeof g) != 0)
        return -EBADMSG;
    *data = plain;
    return 0;
}

int
cloud_chunk_get(struct store *st, const struct cloud_hash *h, size_t len, void *buf, void **data,
                size_t *wire)
{
    char key[STORE_KEY_MAX + 1];
    cloud_chunk_key(h, key, sizeof key);
    /* A mismatch is fetched once more (a transfer gone wrong) before it is
     * reported. */
    int r = get_once(st, key, h, len, buf, data, wire);
    if (r == -EBADMSG)
        r = get_once(st, key, h, len, buf, data, wire);
    if (r == -EBADMSG)
        return err_set(-EBADMSG, "cloud: %s is corrupt in the store: it does not match its hash",
                       key);
    if (r == -ENOENT)
        return err_set(-EBADMSG, "cloud: %s is missing from the store", key);
    return r;
}

int
cloud_chunk_put(struct store *st, const struct cloud_hash *h, const void *data, size_t len,
                bool compress, void *scratch, uint64_t *sent)
{
    char key[STORE_KEY_MAX + 1];
    cloud_chunk_key(h, key, sizeof key);
    const void *body = data;
    size_t blen = len;
    if (compress) {
        /* Worth it only when it saves at least 1/32. */
        ssize_t n = codec_compress(CODEC_ZSTD, data, len, scratch, len - len / 32);
        if (n > 0) {
            body = scratch;
            blen = (size_t)n;
        } else if (n < 0 && n != -ENOTSUP) {
            return (int)n;
        }
    }
    *sent = 0;
    int r = store_put_once(st, key, body, blen, NULL);
    if (r == 0)
        *sent = blen;
    return r;
}
