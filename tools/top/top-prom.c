// SPDX-License-Identifier: MIT
/* --prometheus: placeholder until the exporter lands. */
#include <stdio.h>

#include "top.h"

void
top_print_prometheus(FILE *f, const struct top_sample *s)
{
    (void)f;
    (void)s;
}

int
top_prom_serve(struct top_source *src, const char *addr)
{
    (void)src;
    fprintf(stderr, "topcow: top: --prometheus %s: not built yet\n", addr);
    return 1;
}
