// SPDX-License-Identifier: MIT
/* The transmission phase of one connection (see nbd-server.h).
 *
 * The connection's thread reads requests.  A request runs right there, on
 * the reading thread, unless more requests are already waiting in the
 * receive buffer and running it elsewhere can help: then it is queued for
 * the connection's workers (created on demand up to the server's limit).
 * Handing a request to another thread costs a wake-up and a context
 * switch, a few microseconds, which pays only when requests take much
 * longer than that: when they wait on the device (O_DIRECT, or reads that
 * miss the page cache) or copy a lot.  So each connection keeps a moving
 * average of its requests' run time (sending the reply left out), and hands
 * off only when that average is above HANDOFF_MIN_NS (or with O_DIRECT).  A queue depth of one never
 * pays a hand-off (the lowest latency, which is how legacy guests issue
 * most of their I/O); small requests served from memory run where they
 * arrive, several connections spreading them over the CPUs; slow ones
 * overlap on the workers.  Replies go out whole, in completion order,
 * under the send lock.  A client that sends faster than requests complete
 * is throttled by bounds on the queued requests and bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "nbd-proto.h"
#include "nbd-server.h"

#define HANDOFF_MIN_NS 40000
#define MAX_QUEUED_REQS 256
#define MAX_QUEUED_BYTES (128ull << 20)

static uint64_t
req_bytes(const struct nbd_req *r)
{
    return (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_READ) ? r->len : 0;
}

static void
req_free(struct nbd_req *r)
{
    free(r->payload);
    free(r);
}

void *
nbd_buf_alloc(const struct nbd_conn *c, size_t len)
{
    void *p;
    if (!c->exp->direct)
        return malloc(len);
    return posix_memalign(&p, NBD_DIRECT_ALIGN, len) == 0 ? p : NULL;
}

/* Run @r and send its reply; fold the time it took, less the time its
 * reply took to send, into c->run_ns (1/8 weight; concurrent updates may
 * lose one, which an average can afford).  Sending is left out because it
 * is no reason to hand off: it waits for the send lock or is preempted by
 * the client it wakes, and workers would make both worse. */
static void
run(struct nbd_conn *c, struct nbd_req *r)
{
    uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
    nbd_cmd_run(c, r);
    uint64_t dt = clock_ns(CLOCK_MONOTONIC) - t0;
    dt = dt > r->send_ns ? dt - r->send_ns : 0;
    uint64_t avg = atomic_load_explicit(&c->run_ns, memory_order_relaxed);
    atomic_store_explicit(&c->run_ns, avg - avg / 8 + dt / 8, memory_order_relaxed);
}

/* Whether to queue a request for the workers rather than run it here. */
static bool
hand_off(struct nbd_conn *c)
{
    return chan_buffered(&c->chan) >= NBD_REQUEST_SIZE && c->srv->workers > 0 &&
           (c->exp->direct ||
            atomic_load_explicit(&c->run_ns, memory_order_relaxed) > HANDOFF_MIN_NS);
}

static void *
worker_main(void *arg)
{
    struct nbd_conn *c = arg;
    pthread_mutex_lock(&c->qlock);
    for (;;) {
        while (!c->qhead && !c->closing) {
            c->idle_workers++;
            pthread_cond_wait(&c->qwork, &c->qlock);
            c->idle_workers--;
        }
        struct nbd_req *r = c->qhead;
        if (!r)
            break; /* closing, and nothing left to do */
        c->qhead = r->next;
        if (!c->qhead)
            c->qtail = NULL;
        pthread_mutex_unlock(&c->qlock);
        uint64_t bytes = req_bytes(r);
        run(c, r);
        req_free(r);
        pthread_mutex_lock(&c->qlock);
        c->queued--;
        c->queued_bytes -= bytes;
        pthread_cond_signal(&c->qdrained);
    }
    pthread_mutex_unlock(&c->qlock);
    return NULL;
}

/* Queue @r for the workers, waiting while too much is queued.  Returns 0,
 * or -1 if it could not be queued (run it inline instead). */
static int
enqueue(struct nbd_conn *c, struct nbd_req *r)
{
    pthread_mutex_lock(&c->qlock);
    while ((c->queued >= MAX_QUEUED_REQS || c->queued_bytes >= MAX_QUEUED_BYTES) &&
           !atomic_load(&c->broken))
        pthread_cond_wait(&c->qdrained, &c->qlock);
    if (c->idle_workers == 0 && c->nworkers < c->srv->workers) {
        if (pthread_create(&c->worker_threads[c->nworkers], NULL, worker_main, c) == 0)
            c->nworkers++;
    }
    if (c->nworkers == 0) {
        pthread_mutex_unlock(&c->qlock);
        return -1;
    }
    r->next = NULL;
    if (c->qtail)
        c->qtail->next = r;
    else
        c->qhead = r;
    c->qtail = r;
    c->queued++;
    c->queued_bytes += req_bytes(r);
    if (c->idle_workers)
        pthread_cond_signal(&c->qwork);
    pthread_mutex_unlock(&c->qlock);
    return 0;
}

void
nbd_transmit(struct nbd_conn *c)
{
    if (c->srv->workers > 0 &&
        !(c->worker_threads = calloc(c->srv->workers, sizeof *c->worker_threads)))
        return;
    for (;;) {
        uint8_t h[NBD_REQUEST_SIZE];
        if (chan_read(&c->chan, h, sizeof h) < 0 || atomic_load(&c->broken))
            break;
        if (be32_get(h) != NBD_REQUEST_MAGIC) {
            nbd_note(c, "bad request magic");
            break;
        }
        struct nbd_req *r = calloc(1, sizeof *r);
        if (!r)
            break;
        r->flags = be16_get(h + 4);
        r->type = be16_get(h + 6);
        r->cookie = be64_get(h + 8);
        r->offset = be64_get(h + 16);
        r->len = be32_get(h + 24);
        if (r->type == NBD_CMD_DISC) {
            free(r);
            break;
        }
        if (r->type == NBD_CMD_WRITE) {
            /* The payload must be consumed to stay in step with the stream;
             * one larger than we ever accept cannot be, safely. */
            if (r->len > NBD_MAX_PAYLOAD) {
                nbd_note(c, "write payload larger than the maximum");
                free(r);
                break;
            }
            if (!(r->payload = nbd_buf_alloc(c, r->len ? r->len : 1)) ||
                chan_read(&c->chan, r->payload, r->len) < 0) {
                req_free(r);
                break;
            }
        }
        if (hand_off(c) && enqueue(c, r) == 0)
            continue;
        run(c, r);
        req_free(r);
    }
    /* Finish what is queued (replies still go out unless the stream broke),
     * then let the workers go. */
    pthread_mutex_lock(&c->qlock);
    c->closing = true;
    pthread_cond_broadcast(&c->qwork);
    pthread_mutex_unlock(&c->qlock);
    for (unsigned i = 0; i < c->nworkers; i++)
        pthread_join(c->worker_threads[i], NULL);
    free(c->worker_threads);
    c->worker_threads = NULL;
}
