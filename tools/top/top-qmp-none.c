// SPDX-License-Identifier: MIT
/* --qmp when topcow was built without json-c. */
#include <stdio.h>

#include "top.h"

int
top_qmp_collect(struct top_qmp **conn, const char *socket, struct top_sample *out, char *err,
                size_t errlen)
{
    (void)conn;
    (void)out;
    snprintf(err, errlen, "%s: this topcow was built without json-c, which --qmp needs", socket);
    return -1;
}

void
top_qmp_close(struct top_qmp *conn)
{
    (void)conn;
}
