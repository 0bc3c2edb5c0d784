// SPDX-License-Identifier: MIT
/* An io backend over a remote image (file:///dir/NAME, s3://bucket/NAME)
 * with a persistent local chunk cache: what lets topcow_image_open(), and
 * so `topcow serve` and every command, run an image straight from a remote
 * (the design is in io-remote.c's header comment). */
#ifndef TOPCOW_IO_REMOTE_H
#define TOPCOW_IO_REMOTE_H

#include <stdbool.h>
#include <string.h>

#include "io.h"
#include "manifest.h"

/* Whether @path names a remote rather than a local file. */
static inline bool
io_is_remote_url(const char *path)
{
    return strncmp(path, "s3://", 5) == 0 || strncmp(path, "file://", 7) == 0;
}

/* Open the HEAD generation of remote image @url.  Without IO_RDONLY this
 * takes the image's writer lease (refused with -EBUSY while another writer
 * holds it) and, at close, pushes the chunks written as a new generation.
 * The cache lives under TOPCOW_CACHE_DIR, else $XDG_CACHE_HOME/topcow, else
 * ~/.cache/topcow, one directory per remote.  Returns 0 or -errno. */
int io_remote_open(const char *url, unsigned flags, struct io **out);

/* Push what the cache of remote @url holds that was written but not pushed
 * (a run whose push at close failed), as io_remote_open + close would:
 * *@gen gets HEAD's generation after it, *@pushed whether a new one was
 * made.  Returns 0 or -errno (-ESTALE when HEAD moved meanwhile). */
int io_remote_push_cache(const char *url, char gen[CLOUD_GEN_MAX], bool *pushed);

/* The cache directory of remote @url (malloc'ed), or NULL. */
char *io_remote_cache_dir(const char *url);

#endif
