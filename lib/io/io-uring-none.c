// SPDX-License-Identifier: MIT
/* Built without liburing: io_uring is never available (see io-uring.h). */
#include <errno.h>

#include "io-uring.h"

int
uring_pread_batch(int fd, const struct io_seg *segs, unsigned n, size_t *done)
{
    (void)fd;
    (void)segs;
    (void)n;
    (void)done;
    return -ENOSYS;
}
