// SPDX-License-Identifier: MIT
/* TLS in a build without GnuTLS: every use is refused (see nbd-tls.h). */
#include <errno.h>

#include "nbd-tls.h"
#include "util.h"

int
nbd_tls_load(struct nbd_tls **out, const char *type, struct optlist *obj)
{
    (void)out;
    (void)obj;
    error_msg("%s: this topcow was built without TLS support (GnuTLS)", type);
    return -1;
}

void
nbd_tls_free(struct nbd_tls *t)
{
    (void)t;
}

int
nbd_tls_accept(struct nbd_tls *t, int fd, struct nbd_tls_session **out)
{
    (void)t;
    (void)fd;
    (void)out;
    return -1;
}

ssize_t
nbd_tls_recv(struct nbd_tls_session *s, void *buf, size_t len)
{
    (void)s;
    (void)buf;
    (void)len;
    return -EIO;
}

int
nbd_tls_sendv(struct nbd_tls_session *s, const struct iovec *iov, int n)
{
    (void)s;
    (void)iov;
    (void)n;
    return -EIO;
}

void
nbd_tls_end(struct nbd_tls_session *s)
{
    (void)s;
}
