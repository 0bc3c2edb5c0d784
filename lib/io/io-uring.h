// SPDX-License-Identifier: MIT
/* Batched reads through io_uring (liburing), for the host-file backend.
 * Each thread that calls in gets its own small ring, created on first use
 * and released when the thread exits, so calls never contend.  Where the
 * kernel refuses io_uring (too old, disabled by sysctl, filtered by
 * seccomp) or the library was built without liburing, uring_pread_batch
 * returns -ENOSYS and the caller reads with pread; the first refusal is
 * remembered for the whole process. */
#ifndef TOPCOW_IO_URING_H
#define TOPCOW_IO_URING_H

#include "io.h"

/* Read the segments @segs (@n of them, each len > 0) from @fd, all
 * submitted at once and waited for together, and set done[i] to the bytes
 * segment i got: possibly fewer than asked (the end of the file, or a short
 * read), which the caller finishes.  Returns 0, a failed segment's -errno,
 * or -ENOSYS when io_uring is not available (then nothing was read). */
int uring_pread_batch(int fd, const struct io_seg *segs, unsigned n, size_t *done);

#endif
