// SPDX-License-Identifier: MIT
/* Error reporting inside the library: functions return -errno and leave a
 * one-line message in thread-local storage for topcow_last_error().  The
 * deepest failure sets the message; callers forward the code unchanged. */
#ifndef TOPCOW_ERROR_H
#define TOPCOW_ERROR_H

#include <errno.h>

/* Start a public API call: clears the message and names the operation
 * ("open", "read", ...), which prefixes every message set during the call.
 * @context must be a string literal (it is stored by pointer). */
void err_begin(const char *context);

/* Record a message and return @neg_errno, so error paths stay one line. */
int err_set(int neg_errno, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like err_set, but appends ": strerror(-neg_errno)". */
int err_set_errno(int neg_errno, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget the recorded message (after a failure the caller chose to ignore,
 * such as an advisory hole punch), so it cannot mask a later one. */
void err_clear(void);

/* Put back a message saved from topcow_last_error() (verbatim: no context
 * prefix is added again), after cleanup that may have overwritten it.
 * Returns @neg_errno. */
int err_restore(int neg_errno, const char *saved);

/* Whether a message has been recorded since err_begin(). */
int err_is_set(void);

#define RETURN_ERR_IF(cond, neg_errno, ...)                                                        \
    do {                                                                                           \
        if (cond)                                                                                  \
            return err_set((neg_errno), __VA_ARGS__);                                              \
    } while (0)

#endif
