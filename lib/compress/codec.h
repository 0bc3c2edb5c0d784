// SPDX-License-Identifier: MIT
/* Whole-buffer compression codecs, as qcow2 uses them for one cluster.
 *
 * Types follow the qcow2 header's compression_type: deflate is raw deflate
 * (no zlib header or trailer) whose output any inflater with a 4 KiB window
 * reads when inflating the whole buffer in one call; zstd is one zstd frame.
 *
 * Contexts are per thread (created on first use, released when the thread
 * exits), so every call is thread-safe and many threads compress at once
 * without allocating per call. */
#ifndef TOPCOW_CODEC_H
#define TOPCOW_CODEC_H

#include <stddef.h>
#include <sys/types.h>

enum codec_type {
    CODEC_DEFLATE = 0,
    CODEC_ZSTD = 1,
};

/* Compress @inlen bytes of @in into at most @outcap bytes of @out.  Returns
 * the compressed length, 0 when the result would not fit in @outcap (the
 * caller stores the data uncompressed), or -ENOTSUP (codec not built in) /
 * -ENOMEM. */
ssize_t codec_compress(enum codec_type type, const void *in, size_t inlen, void *out,
                       size_t outcap);

/* Decompress @in into exactly @outlen bytes of @out.  @in may carry trailing
 * bytes after the stream (its length is known only to sector precision);
 * zstd input may hold several frames.  Returns 0, -EUCLEAN when the stream is
 * invalid or ends before @outlen bytes, -ENOTSUP or -ENOMEM. */
int codec_decompress(enum codec_type type, const void *in, size_t inlen, void *out,
                     size_t outlen);

/* ---- for the codec implementations ---------------------------------------- */

/* The calling thread's codec contexts, NULL only when out of memory. */
struct codec_ctx {
    void *deflate_c, *deflate_d; /* libdeflate compressor / decompressor */
    void *zstd_c, *zstd_d;       /* ZSTD_CCtx / ZSTD_DCtx */
};
struct codec_ctx *codec_thread_ctx(void);

ssize_t codec_deflate_compress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                               size_t outcap);
int codec_deflate_decompress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                             size_t outlen);
void codec_deflate_free(struct codec_ctx *c);
ssize_t codec_zstd_compress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                            size_t outcap);
int codec_zstd_decompress(struct codec_ctx *c, const void *in, size_t inlen, void *out,
                          size_t outlen);
void codec_zstd_free(struct codec_ctx *c);

#endif
