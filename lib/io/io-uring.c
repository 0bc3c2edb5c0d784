// SPDX-License-Identifier: MIT
/* Batched reads through a per-thread io_uring (see io-uring.h). */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "io-uring.h"

#define RING_ENTRIES 64

static pthread_key_t ring_key;
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;
static atomic_bool unavailable; /* the kernel refused a ring once */
/* Until one ring creation has finished, creations are serialized, so that
 * a kernel without io_uring is asked once per process, not once per thread
 * that raced to be first. */
static atomic_bool probed;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

static void
ring_free(void *p)
{
    io_uring_queue_exit(p);
    free(p);
}

static void
ring_key_create(void)
{
    if (pthread_key_create(&ring_key, ring_free) != 0)
        atomic_store(&unavailable, true);
}

/* This thread's ring, or NULL when io_uring cannot be used. */
static struct io_uring *
thread_ring(void)
{
    pthread_once(&ring_key_once, ring_key_create);
    if (atomic_load_explicit(&unavailable, memory_order_relaxed))
        return NULL;
    struct io_uring *ring = pthread_getspecific(ring_key);
    if (ring)
        return ring;
    if (!(ring = malloc(sizeof *ring)))
        return NULL;
    bool first = !atomic_load(&probed);
    if (first) {
        pthread_mutex_lock(&probe_lock);
        if (atomic_load(&unavailable)) { /* the thread before us was refused */
            pthread_mutex_unlock(&probe_lock);
            free(ring);
            return NULL;
        }
    }
    int r = io_uring_queue_init(RING_ENTRIES, ring, 0);
    if (r < 0)
        atomic_store(&unavailable, true);
    if (first) {
        atomic_store(&probed, true);
        pthread_mutex_unlock(&probe_lock);
    }
    if (r < 0) {
        free(ring);
        return NULL;
    }
    if (pthread_setspecific(ring_key, ring) != 0) {
        ring_free(ring);
        return NULL;
    }
    return ring;
}

int
uring_pread_batch(int fd, const struct io_seg *segs, unsigned n, size_t *done)
{
    struct io_uring *ring = thread_ring();
    if (!ring)
        return -ENOSYS;
    int err = 0;
    for (unsigned base = 0; base < n && !err; base += RING_ENTRIES) {
        unsigned batch = n - base < RING_ENTRIES ? n - base : RING_ENTRIES;
        for (unsigned i = 0; i < batch; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            const struct io_seg *s = &segs[base + i];
            /* Lengths above what one read returns are finished by pread. */
            unsigned len = s->len > (1u << 30) ? (1u << 30) : (unsigned)s->len;
            io_uring_prep_read(sqe, fd, s->buf, len, s->off);
            io_uring_sqe_set_data64(sqe, base + i);
        }
        /* Submit the batch and wait for all of it in one call; a partial
         * submission goes on with more calls.  Should the kernel refuse
         * mid-way, reap what is in flight, drop the ring (its unsubmitted
         * entries with it) and let the caller read with pread. */
        unsigned submitted = 0;
        int serr = 0;
        while (submitted < batch) {
            int r = io_uring_submit_and_wait(ring, batch - submitted);
            if (r == -EINTR)
                continue;
            if (r <= 0) {
                serr = r < 0 ? r : -EIO;
                break;
            }
            submitted += (unsigned)r;
        }
        if (serr) {
            for (unsigned got = 0; got < submitted; got++) {
                struct io_uring_cqe *cqe;
                while (io_uring_wait_cqe(ring, &cqe) == -EINTR)
                    ;
                io_uring_cqe_seen(ring, cqe);
            }
            pthread_setspecific(ring_key, NULL);
            ring_free(ring);
            return -ENOSYS;
        }
        int r;
        for (unsigned got = 0; got < batch;) {
            struct io_uring_cqe *cqe;
            do
                r = io_uring_wait_cqe(ring, &cqe);
            while (r == -EINTR);
            if (r < 0)
                return r; /* cannot happen with entries in flight */
            uint64_t i = io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(ring, cqe);
            got++;
            if (res < 0 && res != -EAGAIN && res != -EINTR) {
                if (!err)
                    err = res;
                continue;
            }
            done[i] = res < 0 ? 0 : (size_t)res;
        }
    }
    return err;
}
