// SPDX-License-Identifier: MIT
/* The deflate codec: raw deflate per cluster.
 *
 * QEMU writes with zlib (raw deflate, 4 KiB window) and inflates each
 * cluster in one call into the whole output buffer, so back-references may
 * reach anywhere in the cluster already produced: any raw deflate stream of
 * the cluster is readable, whatever window its writer used.  libdeflate,
 * when built in, compresses and decompresses whole buffers several times
 * faster than zlib; zlib is the fallback, and also the second chance for a
 * stream libdeflate rejects (libdeflate wants the stream to end cleanly).
 *
 * Compression level: libdeflate's default (6) compresses as well as zlib's
 * default level with QEMU's 4 KiB window or better (5% smaller on OS images,
 * 14% on number text), at 2.2 times zlib's speed; level 1 is twice as fast
 * again but 18% bigger on some text.  The zlib fallback writes what QEMU
 * writes. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#ifdef HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#include "codec.h"

#define LIBDEFLATE_LEVEL 6
#define ZLIB_LEVEL Z_DEFAULT_COMPRESSION
#define ZLIB_WINDOW_BITS (-12) /* negative: raw deflate; 4 KiB window as QEMU writes */

#ifndef HAVE_LIBDEFLATE
static ssize_t
zlib_compress(struct codec_ctx *c, const void *in, size_t inlen, void *out, size_t outcap)
{
    z_stream *z = c->deflate_c;
    if (!z) {
        z = calloc(1, sizeof *z);
        if (!z)
            return -ENOMEM;
        if (deflateInit2(z, ZLIB_LEVEL, Z_DEFLATED, ZLIB_WINDOW_BITS, 9,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return -ENOMEM;
        }
        c->deflate_c = z;
    } else {
        deflateReset(z);
    }
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)inlen;
    z->next_out = out;
    z->avail_out = (uInt)outcap;
    int ret = deflate(z, Z_FINISH);
    if (ret == Z_STREAM_END)
        return (ssize_t)(outcap - z->avail_out);
    return ret == Z_OK || ret == Z_BUF_ERROR ? 0 : -EINVAL;
}
#endif

static int
zlib_decompress(const void *in, size_t inlen, void *out, size_t outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, ZLIB_WINDOW_BITS) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    int ret = inflate(&z, Z_FINISH);
    /* Z_BUF_ERROR with a full output: the cluster is complete and the rest
     * of the input is the padding up to the sector end. */
    bool ok = z.avail_out == 0 && (ret == Z_STREAM_END || ret == Z_BUF_ERROR);
    inflateEnd(&z);
    return ok ? 0 : -EUCLEAN;
}

ssize_t
codec_deflate_compress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                       size_t outcap)
{
#ifdef HAVE_LIBDEFLATE
    if (!c->deflate_c && !(c->deflate_c = libdeflate_alloc_compressor(LIBDEFLATE_LEVEL)))
        return -ENOMEM;
    return (ssize_t)libdeflate_deflate_compress(c->deflate_c, in, inlen, out, outcap);
#else
    return zlib_compress(c, in, inlen, out, outcap);
#endif
}

int
codec_deflate_decompress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                         size_t outlen)
{
#ifdef HAVE_LIBDEFLATE
    if (!c->deflate_d)
        c->deflate_d = libdeflate_alloc_decompressor();
    if (c->deflate_d) {
        size_t in_used, out_got;
        enum libdeflate_result res = libdeflate_deflate_decompress_ex(
            c->deflate_d, in, inlen, out, outlen, &in_used, &out_got);
        if (res == LIBDEFLATE_SUCCESS && out_got == outlen)
            return 0;
    }
#else
    (void)c;
#endif
    return zlib_decompress(in, inlen, out, outlen);
}

void
codec_deflate_free(struct codec_ctx *c)
{
#ifdef HAVE_LIBDEFLATE
    if (c->deflate_c)
        libdeflate_free_compressor(c->deflate_c);
    if (c->deflate_d)
        libdeflate_free_decompressor(c->deflate_d);
#else
    if (c->deflate_c) {
        deflateEnd(c->deflate_c);
        free(c->deflate_c);
    }
#endif
    c->deflate_c = c->deflate_d = NULL;
}
