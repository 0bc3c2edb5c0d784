// SPDX-License-Identifier: MIT
/* topcow io: placeholder until the command lands. */
#include "commands.h"
#include "util.h"

int
cmd_io(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    error_msg("'io' is not implemented yet");
    return 1;
}
