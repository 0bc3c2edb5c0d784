// SPDX-License-Identifier: MIT
/* The ordered range lock (see range-lock.h): a FIFO list of requests; each
 * waits for the earlier ones it conflicts with. */
#include "range-lock.h"

void
range_lock_init(struct range_lock *rl, pthread_mutex_t *mutex)
{
    rl->mutex = mutex;
    pthread_cond_init(&rl->cond, NULL);
    rl->head = rl->tail = NULL;
}

void
range_lock_destroy(struct range_lock *rl)
{
    pthread_cond_destroy(&rl->cond);
}

static bool
conflicts(const struct range_req *a, const struct range_req *b)
{
    return (a->exclusive || b->exclusive) && a->start < b->end && b->start < a->end;
}

static bool
must_wait(const struct range_req *req)
{
    for (const struct range_req *r = req->prev; r; r = r->prev)
        if (conflicts(r, req))
            return true;
    return false;
}

void
range_lock_acquire(struct range_lock *rl, struct range_req *req, uint64_t start, uint64_t end,
                   bool exclusive)
{
    req->start = start;
    req->end = end;
    req->exclusive = exclusive;
    req->next = NULL;
    req->prev = rl->tail;
    if (rl->tail)
        rl->tail->next = req;
    else
        rl->head = req;
    rl->tail = req;
    while (must_wait(req))
        pthread_cond_wait(&rl->cond, rl->mutex);
}

void
range_lock_release(struct range_lock *rl, struct range_req *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        rl->head = req->next;
    if (req->next)
        req->next->prev = req->prev;
    else
        rl->tail = req->prev;
    pthread_cond_broadcast(&rl->cond);
}

bool
range_lock_busy(const struct range_lock *rl)
{
    return rl->head != NULL;
}
