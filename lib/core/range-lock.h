// SPDX-License-Identifier: MIT
/* An ordered reader/writer lock over ranges of units (guest clusters).
 * Requests that overlap conflict unless both are shared; a request waits only
 * for conflicting requests that arrived before it, so the lock is fair and
 * cannot deadlock.  The caller's mutex protects the lock's state: every call
 * is made with it held, and waiting releases it (pthread_cond_wait). */
#ifndef TOPCOW_RANGE_LOCK_H
#define TOPCOW_RANGE_LOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct range_req {
    uint64_t start, end;       /* [start, end) */
    bool exclusive;
    struct range_req *prev, *next;
};

struct range_lock {
    pthread_mutex_t *mutex;    /* borrowed; held around every call */
    pthread_cond_t cond;
    struct range_req *head, *tail;
};

void range_lock_init(struct range_lock *rl, pthread_mutex_t *mutex);
void range_lock_destroy(struct range_lock *rl);
/* Queue @req for [@start, @end) and wait until no earlier conflicting request remains. */
void range_lock_acquire(struct range_lock *rl, struct range_req *req, uint64_t start,
                        uint64_t end, bool exclusive);
void range_lock_release(struct range_lock *rl, struct range_req *req);
/* Whether any request is queued or active. */
bool range_lock_busy(const struct range_lock *rl);

#endif
