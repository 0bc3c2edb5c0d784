// SPDX-License-Identifier: MIT
/* The topcow binary: dispatches to a subcommand.  Commands accept the
 * syntax of their qemu-img / qemu-io counterparts. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "secrets.h"
#include "util.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    { "create", cmd_create, "create a new disk image (qemu-img create)" },
    { "info", cmd_info, "show information about an image (qemu-img info)" },
    { "check", cmd_check, "check an image for consistency (qemu-img check)" },
    { "map", cmd_map, "show where the data of an image lives (qemu-img map)" },
    { "compare", cmd_compare, "compare the contents of two images (qemu-img compare)" },
    { "convert", cmd_convert, "copy an image into a new format (qemu-img convert)" },
    { "snapshot", cmd_snapshot, "list, create, apply, delete internal snapshots" },
    { "resize", cmd_resize, "change the virtual size of an image (qemu-img resize)" },
    { "amend", cmd_amend, "change options of an existing image (qemu-img amend)" },
    { "measure", cmd_measure, "size a new image would need (qemu-img measure)" },
    { "dd", cmd_dd, "copy part of an image into a new image (qemu-img dd)" },
    { "commit", cmd_commit, "copy an overlay into its backing file (qemu-img commit)" },
    { "rebase", cmd_rebase, "change the backing file of an image (qemu-img rebase)" },
    { "io", cmd_io, "run qemu-io commands on an image (qemu-io)" },
    { "serve", cmd_serve, "export an image over NBD (qemu-nbd)" },
    { "top", cmd_top, "live statistics of open images and QEMU drives" },
    { "push", cmd_push, "upload an image to a remote, only what changed" },
    { "pull", cmd_pull, "download an image from a remote, only what changed" },
    { "remote", cmd_remote, "list, log, roll back and gc a remote (file://, s3://)" },
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: topcow COMMAND [OPTIONS...]\n\n"
               "topcow %s - a qcow2 disk-image engine.  Commands take qemu-img/qemu-io syntax.\n\n"
               "Commands:\n",
            topcow_version_string());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'topcow COMMAND --help' for a command's options.\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("topcow version %s\n", topcow_version_string());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) {
            /* --object and --image-opts work with every command. */
            int n = secrets_take_args(argc - 1, argv + 1);
            return n < 0 ? 1 : commands[i].fn(n, argv + 1);
        }
    error_msg("unknown command '%s' (see 'topcow --help')", cmd);
    return 1;
}
