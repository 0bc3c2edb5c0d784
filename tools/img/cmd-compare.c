// SPDX-License-Identifier: MIT
/* topcow compare: placeholder until the command lands. */
#include "commands.h"
#include "util.h"

int
cmd_compare(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    error_msg("'compare' is not implemented yet");
    return 1;
}
