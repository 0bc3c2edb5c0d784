// SPDX-License-Identifier: MIT
/* The cloud API in a build without OpenSSL libcrypto (which the chunk
 * hashes need): every call fails with -ENOTSUP and says why. */
#include <errno.h>

#include "error.h"
#include "topcow.h"

static int
none(const char *what)
{
    err_begin(what);
    return err_set(-ENOTSUP, "this topcow was built without cloud support (OpenSSL libcrypto)");
}

int
topcow_remote_push(const char *image, const char *remote, const struct topcow_remote_opts *opts,
                   struct topcow_remote_result *res)
{
    (void)image, (void)remote, (void)opts, (void)res;
    return none("push");
}

int
topcow_remote_pull(const char *remote, const char *image, const char *generation,
                   const struct topcow_remote_opts *opts, struct topcow_remote_result *res)
{
    (void)remote, (void)image, (void)generation, (void)opts, (void)res;
    return none("pull");
}

int
topcow_remote_list(const char *store, const struct topcow_remote_opts *opts,
                   topcow_remote_gen_fn fn, void *opaque)
{
    (void)store, (void)opts, (void)fn, (void)opaque;
    return none("remote ls");
}

int
topcow_remote_log(const char *remote, const struct topcow_remote_opts *opts,
                  topcow_remote_gen_fn fn, void *opaque)
{
    (void)remote, (void)opts, (void)fn, (void)opaque;
    return none("remote log");
}

int
topcow_remote_rollback(const char *remote, const char *generation,
                       const struct topcow_remote_opts *opts)
{
    (void)remote, (void)generation, (void)opts;
    return none("remote rollback");
}

int
topcow_remote_gc(const char *store, const struct topcow_remote_opts *opts,
                 struct topcow_remote_gc_result *res)
{
    (void)store, (void)opts, (void)res;
    return none("remote gc");
}
