// SPDX-License-Identifier: MIT
/* The full-screen view when topcow was built without ncurses. */
#include <stdio.h>

#include "top.h"

int
top_screen_run(struct top_source *src, struct top_opts *o)
{
    (void)src;
    (void)o;
    fprintf(stderr, "topcow: top: this topcow was built without ncurses; use -b or --json\n");
    return 1;
}
