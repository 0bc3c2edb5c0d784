// SPDX-License-Identifier: MIT
/* topcow info: placeholder until the command lands. */
#include "commands.h"
#include "util.h"

int
cmd_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    error_msg("'info' is not implemented yet");
    return 1;
}
