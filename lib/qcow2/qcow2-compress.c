// SPDX-License-Identifier: MIT
/* Decompression of compressed clusters (spec: "Compressed Clusters
 * Descriptor"; notes §1a "Compression streams").  The stored length is only
 * known to sector precision, so both codecs must accept trailing bytes:
 * deflate is raw (no zlib header, window 2^12) and succeeds once the output
 * cluster is full; zstd may hold several frames, read until the cluster is
 * full.  libdeflate is used when built in (several times faster than zlib
 * on whole buffers), with zlib as the fallback for streams it rejects. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#ifdef HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "error.h"
#include "qcow2-internal.h"

static int
inflate_zlib(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -12) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    int ret = inflate(&z, Z_FINISH);
    bool ok = z.avail_out == 0 && (ret == Z_STREAM_END || ret == Z_BUF_ERROR);
    inflateEnd(&z);
    return ok ? 0 : -EUCLEAN;
}

/* Per-thread decompression contexts, created on first use and released by
 * a thread-exit destructor (conversions run many short-lived workers). */
struct codec_ctx {
#ifdef HAVE_LIBDEFLATE
    struct libdeflate_decompressor *inflater;
#endif
#ifdef HAVE_ZSTD
    ZSTD_DCtx *zstd;
#endif
    int unused;
};

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void
ctx_free(void *p)
{
    struct codec_ctx *c = p;
#ifdef HAVE_LIBDEFLATE
    if (c->inflater)
        libdeflate_free_decompressor(c->inflater);
#endif
#ifdef HAVE_ZSTD
    ZSTD_freeDCtx(c->zstd);
#endif
    free(c);
}

static void
ctx_key_init(void)
{
    pthread_key_create(&ctx_key, ctx_free);
}

static struct codec_ctx *
thread_ctx(void)
{
    pthread_once(&ctx_once, ctx_key_init);
    struct codec_ctx *c = pthread_getspecific(ctx_key);
    if (!c && (c = calloc(1, sizeof *c)) && pthread_setspecific(ctx_key, c) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

static int
decompress_deflate(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
#ifdef HAVE_LIBDEFLATE
    struct codec_ctx *c = thread_ctx();
    if (c && !c->inflater)
        c->inflater = libdeflate_alloc_decompressor();
    if (c && c->inflater) {
        size_t in_used, out_got;
        enum libdeflate_result res = libdeflate_deflate_decompress_ex(
            c->inflater, in, inlen, out, outlen, &in_used, &out_got);
        if (res == LIBDEFLATE_SUCCESS && out_got == outlen)
            return 0;
    }
#endif
    return inflate_zlib(in, inlen, out, outlen);
}

static int
decompress_zstd(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
#ifdef HAVE_ZSTD
    struct codec_ctx *c = thread_ctx();
    if (!c || (!c->zstd && !(c->zstd = ZSTD_createDCtx())))
        return -ENOMEM;
    ZSTD_DCtx *tls_zstd = c->zstd;
    ZSTD_DCtx_reset(tls_zstd, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = { in, inlen, 0 };
    ZSTD_outBuffer ob = { out, outlen, 0 };
    while (ob.pos < ob.size) {
        size_t ret = ZSTD_decompressStream(tls_zstd, &ob, &ib);
        if (ZSTD_isError(ret))
            return -EUCLEAN;
        if (ob.pos < ob.size && ib.pos == ib.size)
            return -EUCLEAN; /* input exhausted before the cluster was full */
    }
    return 0;
#else
    (void)in;
    (void)inlen;
    (void)out;
    (void)outlen;
    return -ENOTSUP;
#endif
}

int
qcow2_decompress(struct qcow2_state *s, const uint8_t *in, size_t inlen, uint8_t *out,
                 size_t outlen)
{
    int r;
    if (s->h.compression_type == TOPCOW_COMPRESSION_ZSTD) {
        r = decompress_zstd(in, inlen, out, outlen);
        if (r == -ENOTSUP)
            return QERR(s, r, "qcow2: zstd support is not built in");
    } else {
        r = decompress_deflate(in, inlen, out, outlen);
    }
    if (r == -ENOMEM)
        return err_set(r, "out of memory");
    return r;
}
