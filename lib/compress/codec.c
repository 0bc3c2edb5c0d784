// SPDX-License-Identifier: MIT
/* Codec dispatch and the per-thread contexts (see codec.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "codec.h"

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void
ctx_free(void *p)
{
    struct codec_ctx *c = p;
    codec_deflate_free(c);
    codec_zstd_free(c);
    free(c);
}

static void
ctx_key_init(void)
{
    pthread_key_create(&ctx_key, ctx_free);
}

struct codec_ctx *
codec_thread_ctx(void)
{
    pthread_once(&ctx_once, ctx_key_init);
    struct codec_ctx *c = pthread_getspecific(ctx_key);
    if (!c && (c = calloc(1, sizeof *c)) && pthread_setspecific(ctx_key, c) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

ssize_t
codec_compress(enum codec_type type, const void *in, size_t inlen, void *out, size_t outcap)
{
    struct codec_ctx *c = codec_thread_ctx();
    if (!c)
        return -ENOMEM;
    switch (type) {
    case CODEC_DEFLATE:
        return codec_deflate_compress(c, in, inlen, out, outcap);
    case CODEC_ZSTD:
        return codec_zstd_compress(c, in, inlen, out, outcap);
    }
    return -ENOTSUP;
}

int
codec_decompress(enum codec_type type, const void *in, size_t inlen, void *out, size_t outlen)
{
    struct codec_ctx *c = codec_thread_ctx();
    if (!c)
        return -ENOMEM;
    switch (type) {
    case CODEC_DEFLATE:
        return codec_deflate_decompress(c, in, inlen, out, outlen);
    case CODEC_ZSTD:
        return codec_zstd_decompress(c, in, inlen, out, outlen);
    }
    return -ENOTSUP;
}
