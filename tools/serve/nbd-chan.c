// SPDX-License-Identifier: MIT
/* The connection byte stream (see nbd-chan.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "nbd-chan.h"
#include "nbd-tls.h"

/* Large enough for a burst of requests and small write payloads; larger
 * payloads are read straight into their own buffer. */
#define CHAN_RBUF_SIZE (64u << 10)

int
chan_init(struct nbd_chan *c, int fd)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->rbuf = malloc(CHAN_RBUF_SIZE);
    return c->rbuf ? 0 : -ENOMEM;
}

void
chan_close(struct nbd_chan *c)
{
    if (c->tls)
        nbd_tls_end(c->tls);
    c->tls = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->rbuf);
    c->rbuf = NULL;
}

/* One receive of at most @len bytes: > 0, or -EPIPE / -ETIMEDOUT / -errno. */
static ssize_t
recv_some(struct nbd_chan *c, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = c->tls ? nbd_tls_recv(c->tls, buf, len) : recv(c->fd, buf, len, 0);
        if (n > 0)
            return n;
        if (n == 0)
            return -EPIPE;
        int e = c->tls ? (int)-n : errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return -ETIMEDOUT; /* only with a receive timeout set */
        if (e == ECONNRESET)
            return -EPIPE;
        return -e;
    }
}

int
chan_read(struct nbd_chan *c, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t have = chan_buffered(c);
    size_t n = have < len ? have : len;
    memcpy(p, c->rbuf + c->rpos, n);
    c->rpos += n;
    p += n;
    len -= n;
    while (len > 0) {
        if (len >= CHAN_RBUF_SIZE) {
            ssize_t r = recv_some(c, p, len);
            if (r < 0)
                return (int)r;
            p += r;
            len -= (size_t)r;
            continue;
        }
        ssize_t r = recv_some(c, c->rbuf, CHAN_RBUF_SIZE);
        if (r < 0)
            return (int)r;
        c->rpos = 0;
        c->rlen = (size_t)r;
        n = (size_t)r < len ? (size_t)r : len;
        memcpy(p, c->rbuf, n);
        c->rpos = n;
        p += n;
        len -= n;
    }
    return 0;
}

int
chan_skip(struct nbd_chan *c, uint64_t len)
{
    uint8_t sink[4096];
    while (len > 0) {
        size_t n = len < sizeof sink ? (size_t)len : sizeof sink;
        int r = chan_read(c, sink, n);
        if (r < 0)
            return r;
        len -= n;
    }
    return 0;
}

int
chan_writev(struct nbd_chan *c, const struct iovec *iov, int n)
{
    if (c->tls)
        return nbd_tls_sendv(c->tls, iov, n);
    struct iovec v[8];
    if (n > 8)
        return -EINVAL;
    memcpy(v, iov, sizeof *iov * (size_t)n);
    struct iovec *cur = v;
    while (n > 0) {
        struct msghdr m = { .msg_iov = cur, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == ECONNRESET ? -EPIPE : -errno;
        }
        size_t done = (size_t)w;
        while (n > 0 && done >= cur->iov_len) {
            done -= cur->iov_len;
            cur++;
            n--;
        }
        if (n > 0) {
            cur->iov_base = (uint8_t *)cur->iov_base + done;
            cur->iov_len -= done;
        }
    }
    return 0;
}

int
chan_write(struct nbd_chan *c, const void *buf, size_t len)
{
    struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
    return chan_writev(c, &v, 1);
}

int
chan_start_tls(struct nbd_chan *c, struct nbd_tls *creds)
{
    if (chan_buffered(c) > 0) {
        fprintf(stderr, "topcow serve: client sent data before the TLS handshake\n");
        return -EPROTO;
    }
    struct nbd_tls_session *s;
    if (nbd_tls_accept(creds, c->fd, &s) < 0)
        return -EPROTO;
    c->tls = s;
    return 0;
}

void
chan_set_timeout(struct nbd_chan *c, unsigned seconds)
{
    struct timeval tv = { .tv_sec = seconds };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void
chan_shutdown(struct nbd_chan *c)
{
    shutdown(c->fd, SHUT_RDWR);
}

void
chan_stop_reading(struct nbd_chan *c)
{
    shutdown(c->fd, SHUT_RD);
}
