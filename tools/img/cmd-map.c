// SPDX-License-Identifier: MIT
/* topcow map: placeholder until the command lands. */
#include "commands.h"
#include "util.h"

int
cmd_map(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    error_msg("'map' is not implemented yet");
    return 1;
}
