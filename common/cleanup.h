// SPDX-License-Identifier: MIT
/* Scope-bound cleanup, as in nbdkit: CLEANUP_FREE frees a pointer when it
 * goes out of scope; ACQUIRE_LOCK_FOR_CURRENT_SCOPE holds a mutex until the
 * end of the enclosing block. */
#ifndef TOPCOW_COMMON_CLEANUP_H
#define TOPCOW_COMMON_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>

static inline void
cleanup_free(void *ptr)
{
    free(*(void **)ptr);
}
#define CLEANUP_FREE __attribute__((cleanup(cleanup_free)))

static inline void
cleanup_unlock(pthread_mutex_t **m)
{
    pthread_mutex_unlock(*m);
}
#define CLEANUP_CONCAT_(a, b) a##b
#define CLEANUP_CONCAT(a, b) CLEANUP_CONCAT_(a, b)
#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(mutex)                                                      \
    __attribute__((cleanup(cleanup_unlock))) pthread_mutex_t *CLEANUP_CONCAT(lock_, __LINE__) =    \
        (mutex);                                                                                   \
    pthread_mutex_lock(CLEANUP_CONCAT(lock_, __LINE__))

#endif
