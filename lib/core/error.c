// SPDX-License-Identifier: MIT
/* The thread-local last-error message behind topcow_last_error().  It works
 * when no handle exists (a failed open) and never allocates. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "topcow.h"
#include "error.h"

static _Thread_local char err_msg[512];
static _Thread_local const char *err_context;

void
err_begin(const char *context)
{
    err_context = context;
    err_msg[0] = '\0';
}

static int
err_vset(int neg_errno, bool with_strerror, const char *fmt, va_list ap)
{
    size_t n = 0;

    if (err_context)
        n = (size_t)snprintf(err_msg, sizeof err_msg, "%s: ", err_context);
    if (n < sizeof err_msg)
        n += (size_t)vsnprintf(err_msg + n, sizeof err_msg - n, fmt, ap);
    if (with_strerror && n < sizeof err_msg)
        snprintf(err_msg + n, sizeof err_msg - n, ": %s", strerror(-neg_errno));
    /* The message is one line even when it quotes bytes from an image (a
     * damaged backing or data file name): control characters become '?'. */
    for (char *p = err_msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return neg_errno;
}

int
err_set(int neg_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(neg_errno, false, fmt, ap);
    va_end(ap);
    return neg_errno;
}

int
err_set_errno(int neg_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(neg_errno, true, fmt, ap);
    va_end(ap);
    return neg_errno;
}

void
err_clear(void)
{
    err_msg[0] = '\0';
}

int
err_restore(int neg_errno, const char *saved)
{
    snprintf(err_msg, sizeof err_msg, "%s", saved);
    return neg_errno;
}

int
err_is_set(void)
{
    return err_msg[0] != '\0';
}

const char *
topcow_last_error(void)
{
    return err_msg;
}
