// SPDX-License-Identifier: MIT
/* TLS for the NBD server, over GnuTLS, configured as qemu-nbd is:
 *   --object tls-creds-x509,id=ID,dir=DIR[,endpoint=server][,verify-peer=on|off]
 *       DIR holds ca-cert.pem, server-cert.pem, server-key.pem
 *       (and ca-crl.pem, optional); verify-peer=on requires client
 *       certificates signed by the CA
 *   --object tls-creds-psk,id=ID,dir=DIR[,endpoint=server]
 *       DIR/keys.psk holds "username:hexkey" lines (psktool's format)
 *   --tls-creds ID
 * A build without GnuTLS refuses these with a message. */
#ifndef TOPCOW_NBD_TLS_H
#define TOPCOW_NBD_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct optlist;
struct nbd_tls;
struct nbd_tls_session;

/* Load credentials of --object type @type ("tls-creds-x509" or
 * "tls-creds-psk") with the object's options @obj.  Returns 0 and *@out,
 * or -1 after a message. */
int nbd_tls_load(struct nbd_tls **out, const char *type, struct optlist *obj);
void nbd_tls_free(struct nbd_tls *t);

/* Run the server side of a TLS handshake on @fd.  Returns 0 and a session,
 * or -1 after a message naming the reason (the caller drops the client). */
int nbd_tls_accept(struct nbd_tls *t, int fd, struct nbd_tls_session **out);
/* Like recv(): > 0 bytes, 0 at end of stream, -errno. */
ssize_t nbd_tls_recv(struct nbd_tls_session *s, void *buf, size_t len);
/* Send every byte of the buffers as one corked unit.  0 or -errno. */
int nbd_tls_sendv(struct nbd_tls_session *s, const struct iovec *iov, int n);
/* Say goodbye (best effort, does not wait long) and free. */
void nbd_tls_end(struct nbd_tls_session *s);

#endif
