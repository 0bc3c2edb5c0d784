// SPDX-License-Identifier: MIT
/* The zstd codec: one frame per cluster at zstd's default level, as QEMU
 * writes it; reading accepts several concatenated frames and ignores bytes
 * after the cluster is complete.  One compression and one decompression
 * context per thread, reused for every cluster. */
#include <errno.h>
#include <stdbool.h>

#ifdef HAVE_ZSTD
#include <zstd.h>
#include <zstd_errors.h>
#endif

#include "codec.h"

#ifdef HAVE_ZSTD
ssize_t
codec_zstd_compress(struct codec_ctx *c, const void *in, size_t inlen, void *out, size_t outcap)
{
    if (!c->zstd_c) {
        if (!(c->zstd_c = ZSTD_createCCtx()))
            return -ENOMEM;
        ZSTD_CCtx_setParameter(c->zstd_c, ZSTD_c_compressionLevel, ZSTD_CLEVEL_DEFAULT);
    }
    size_t n = ZSTD_compress2(c->zstd_c, out, outcap, in, inlen);
    if (ZSTD_isError(n)) {
        /* A failed call may leave the context mid-frame. */
        ZSTD_CCtx_reset(c->zstd_c, ZSTD_reset_session_only);
        return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -EINVAL;
    }
    return (ssize_t)n;
}

int
codec_zstd_decompress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                      size_t outlen)
{
    if (!c->zstd_d && !(c->zstd_d = ZSTD_createDCtx()))
        return -ENOMEM;
    ZSTD_DCtx *d = c->zstd_d;
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = { in, inlen, 0 };
    ZSTD_outBuffer ob = { out, outlen, 0 };
    while (ob.pos < ob.size) {
        size_t ret = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(ret))
            return -EUCLEAN;
        if (ob.pos < ob.size && ib.pos == ib.size)
            return -EUCLEAN; /* input exhausted before the cluster was full */
    }
    return 0;
}

void
codec_zstd_free(struct codec_ctx *c)
{
    ZSTD_freeCCtx(c->zstd_c);
    ZSTD_freeDCtx(c->zstd_d);
    c->zstd_c = c->zstd_d = NULL;
}
#else
ssize_t
codec_zstd_compress(struct codec_ctx *c, const void *in, size_t inlen, void *out, size_t outcap)
{
    (void)c, (void)in, (void)inlen, (void)out, (void)outcap;
    return -ENOTSUP;
}

int
codec_zstd_decompress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                      size_t outlen)
{
    (void)c, (void)in, (void)inlen, (void)out, (void)outlen;
    return -ENOTSUP;
}

void
codec_zstd_free(struct codec_ctx *c)
{
    (void)c;
}
#endif
