// SPDX-License-Identifier: MIT
/* topcow check: placeholder until the command lands. */
#include "commands.h"
#include "util.h"

int
cmd_check(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    error_msg("'check' is not implemented yet");
    return 1;
}
