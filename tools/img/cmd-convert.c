// SPDX-License-Identifier: MIT
/* topcow convert: placeholder until the command lands. */
#include "commands.h"
#include "util.h"

int
cmd_convert(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    error_msg("'convert' is not implemented yet");
    return 1;
}
