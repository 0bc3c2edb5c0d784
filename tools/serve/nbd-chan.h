// SPDX-License-Identifier: MIT
/* A connection's byte stream: a socket, optionally wrapped in TLS, with a
 * read buffer so that small requests arriving together cost one system
 * call.  One thread reads at a time; writes are serialized by the caller
 * (a connection sends each reply under its send lock), and may run while
 * another thread reads. */
#ifndef TOPCOW_NBD_CHAN_H
#define TOPCOW_NBD_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct nbd_tls;
struct nbd_tls_session;

struct nbd_chan {
    int fd;
    struct nbd_tls_session *tls;  /* NULL: plain socket */
    uint8_t *rbuf;                /* CHAN_RBUF_SIZE bytes */
    size_t rpos, rlen;            /* unread bytes are rbuf[rpos, rlen) */
};

/* Take ownership of the connected socket @fd.  Returns 0 or -ENOMEM. */
int chan_init(struct nbd_chan *c, int fd);
/* End TLS (if any) politely, close the socket, free the buffer. */
void chan_close(struct nbd_chan *c);

/* Read exactly @len bytes.  Returns 0, -EPIPE when the peer closed the
 * stream (cleanly or not), -ETIMEDOUT when a receive timeout expired, or
 * another -errno. */
int chan_read(struct nbd_chan *c, void *buf, size_t len);
/* Read and drop @len bytes. */
int chan_skip(struct nbd_chan *c, uint64_t len);
/* Bytes already received and not yet consumed (no system call). */
static inline size_t
chan_buffered(const struct nbd_chan *c)
{
    return c->rlen - c->rpos;
}

/* Write every byte of the @n buffers.  Returns 0 or -errno (-EPIPE when
 * the peer is gone).  Never raises SIGPIPE. */
int chan_writev(struct nbd_chan *c, const struct iovec *iov, int n);
int chan_write(struct nbd_chan *c, const void *buf, size_t len);

/* Upgrade to TLS (after NBD_OPT_STARTTLS was acknowledged): run the TLS
 * handshake as server with @creds.  Any bytes already buffered are a
 * protocol violation (the client may not send before the handshake) and
 * fail the upgrade.  Returns 0 or -errno after a message on stderr. */
int chan_start_tls(struct nbd_chan *c, struct nbd_tls *creds);

/* Receive and send timeouts in seconds (0: none), for the handshake phase. */
void chan_set_timeout(struct nbd_chan *c, unsigned seconds);

/* Stop the stream in both directions so that blocked readers and writers
 * return (when a reply cannot be sent). */
void chan_shutdown(struct nbd_chan *c);
/* Stop receiving: a blocked reader sees the end of the stream, replies can
 * still be sent (a clean server shutdown). */
void chan_stop_reading(struct nbd_chan *c);

#endif
