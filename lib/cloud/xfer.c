// SPDX-License-Identifier: MIT
/* The worker pool behind push and pull (xfer.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "xfer.h"

#define XFER_MAX_JOBS 64
#define PROGRESS_MS 200

struct worker {
    struct xfer *x;
    pthread_t thread;
    int result;
    char msg[512]; /* the worker's message (messages are per thread) */
    _Atomic int finished;
};

uint64_t
xfer_chunk_len(const struct xfer *x, uint64_t i)
{
    uint64_t off = i * x->chunk_size;
    uint64_t left = x->file_size > off ? x->file_size - off : 0;
    return left < x->chunk_size ? left : x->chunk_size;
}

void
xfer_chunk_done(struct xfer *x, uint64_t bytes)
{
    atomic_fetch_add(&x->done, 1);
    atomic_fetch_add(&x->bytes_done, bytes);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct xfer *x = w->x;
    struct store *st = NULL;
    void *buf = NULL;
    int r = remote_open_store(x->rm, x->sopts, &st);
    if (r == 0 && !(buf = malloc(2 * (size_t)x->chunk_size)))
        r = err_set(-ENOMEM, "cloud: out of memory for a chunk buffer");
    while (r == 0 && !atomic_load(&x->failed)) {
        uint64_t i = atomic_fetch_add(&x->next, 1);
        if (i >= x->n_chunks)
            break;
        r = x->fn(x, st, i, buf);
    }
    if (r < 0) {
        int expected = 0;
        atomic_compare_exchange_strong(&x->failed, &expected, r);
        snprintf(w->msg, sizeof w->msg, "%s", topcow_last_error());
    }
    if (st) {
        struct store_stats ss;
        store_get_stats(st, &ss);
        atomic_fetch_add(&x->requests, ss.requests);
        atomic_fetch_add(&x->retries, ss.retries);
        store_close(st);
    }
    free(buf);
    w->result = r;
    atomic_store(&w->finished, 1);
    return NULL;
}

static void
report(struct xfer *x)
{
    if (!x->opts || !x->opts->progress)
        return;
    struct topcow_remote_progress p = {
        .chunks_total = x->n_chunks,
        .chunks_done = atomic_load(&x->done),
        .bytes_total = x->file_size,
        .bytes_done = atomic_load(&x->bytes_done),
        .bytes_transferred = atomic_load(&x->bytes_transferred),
    };
    x->opts->progress(x->opts->progress_opaque, &p);
}

int
xfer_run(struct xfer *x)
{
    unsigned jobs = x->jobs ? x->jobs : 4;
    if (jobs > XFER_MAX_JOBS)
        jobs = XFER_MAX_JOBS;
    if (x->n_chunks && jobs > x->n_chunks)
        jobs = (unsigned)x->n_chunks;
    if (jobs == 0)
        jobs = 1;
    struct worker *w = calloc(jobs, sizeof *w);
    RETURN_ERR_IF(!w, -ENOMEM, "cloud: out of memory");
    unsigned started = 0;
    int r = 0;
    for (; started < jobs; started++) {
        w[started].x = x;
        if (pthread_create(&w[started].thread, NULL, worker_main, &w[started]) != 0) {
            int expected = 0;
            atomic_compare_exchange_strong(&x->failed, &expected, -EAGAIN);
            r = err_set(-EAGAIN, "cloud: cannot start a transfer thread");
            break;
        }
    }
    /* Report progress until every worker has finished. */
    for (;;) {
        unsigned finished = 0;
        for (unsigned i = 0; i < started; i++)
            finished += (unsigned)atomic_load(&w[i].finished);
        if (finished == started)
            break;
        report(x);
        struct timespec ts = {0, PROGRESS_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(w[i].thread, NULL);
    report(x);
    int failed = atomic_load(&x->failed);
    if (failed && r == 0) {
        for (unsigned i = 0; i < started; i++)
            if (w[i].result == failed) {
                r = err_set(failed, "%s", w[i].msg);
                break;
            }
        if (r == 0)
            r = err_set(failed, "cloud: a transfer failed");
    }
    free(w);
    return r;
}
