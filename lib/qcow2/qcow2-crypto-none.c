// SPDX-License-Identifier: MIT
/* qcow2-crypto.c's contract for builds without the crypto option: plain
 * images work, encrypted ones are refused when their data or key slots are
 * touched (their metadata still opens: info, check, snapshots). */
#include <errno.h>

#include "error.h"
#include "qcow2-internal.h"

static int
not_built(struct qcow2_state *s)
{
    return QERR(s, -ENOTSUP, "qcow2: encryption support is not built in");
}

int
qcow2_crypto_open(struct qcow2_state *s, const void *secret, size_t secret_len)
{
    (void)secret, (void)secret_len;
    return s->h.crypt_method && secret ? not_built(s) : 0;
}

void
qcow2_crypto_close(struct qcow2_state *s)
{
    (void)s;
}

int
qcow2_crypto_check_write(struct qcow2_state *s)
{
    return s->h.crypt_method ? not_built(s) : 0;
}

int
qcow2_crypto_pread(struct qcow2_state *s, uint8_t *buf, size_t len, uint64_t host, uint64_t guest)
{
    (void)buf, (void)len, (void)host, (void)guest;
    return not_built(s);
}

int
qcow2_crypto_pwrite(struct qcow2_state *s, const uint8_t *buf, size_t len, uint64_t host,
                    uint64_t guest)
{
    (void)buf, (void)len, (void)host, (void)guest;
    return not_built(s);
}

int
qcow2_crypto_pwritev(struct qcow2_state *s, const struct iovec *iov, int cnt, uint64_t host,
                     uint64_t guest)
{
    (void)iov, (void)cnt, (void)host, (void)guest;
    return not_built(s);
}

int
qcow2_crypto_create(struct qcow2_state *s, const struct topcow_create_opts *o)
{
    (void)o;
    return not_built(s);
}

int
qcow2_crypto_amend(struct qcow2_state *s, const struct topcow_amend_opts *o)
{
    return o->encrypt_state ? not_built(s) : 0;
}

int
qcow2_get_encryption(struct topcow_image *img, struct topcow_encryption *enc)
{
    struct qcow2_state *s = qcow2_state(img);
    enc->format = s->h.crypt_method == 1 ? "aes" : s->h.crypt_method == 2 ? "luks" : NULL;
    return 0;
}
