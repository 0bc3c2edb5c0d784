// SPDX-License-Identifier: MIT
/* Moving one chunk to and from a store, plain or zstd-compressed on the
 * wire (chunk.c), always verified against its hash on the way in. */
#ifndef TOPCOW_CHUNK_H
#define TOPCOW_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "store.h"

/* Fetch chunk @h of @len bytes.  @buf has room for 2 * @len bytes (the
 * second half is for decompression).  On success *@data points at the
 * verified bytes, inside @buf, and *@wire the bytes the object held (fewer
 * when it was compressed).  Returns 0, -EBADMSG (the object is missing
 * or does not match its hash, also when fetched again; the message names
 * its key) or -errno. */
int cloud_chunk_get(struct store *st, const struct cloud_hash *h, size_t len, void *buf,
                    void **data, size_t *wire);

/* Store chunk @h (@len bytes of @data) once, zstd-compressed when
 * @compress and that saves space (@scratch: @len bytes of room).  *@sent
 * gets the bytes uploaded.  Returns 0, -EEXIST (already stored) or -errno. */
int cloud_chunk_put(struct store *st, const struct cloud_hash *h, const void *data, size_t len,
                    bool compress, void *scratch, uint64_t *sent);

#endif
