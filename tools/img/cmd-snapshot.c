// SPDX-License-Identifier: MIT
/* topcow snapshot: qemu-img snapshot syntax.
 *   snapshot [-q] [-U] [-f FMT] [-l | -a SNAPSHOT | -c SNAPSHOT | -d SNAPSHOT] FILE
 * -l (the default) lists the internal snapshots; -c creates one, -a reverts
 * the disk to one, -d deletes one.  Snapshots are found by id, then name. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "snapshot-list.h"
#include "util.h"

static void
help(void)
{
    printf("usage: topcow snapshot [-q] [-U] [-f FMT] [-l | -a SNAPSHOT | -c SNAPSHOT |\n"
           "                       -d SNAPSHOT] FILENAME\n\n"
           "List, create, apply or delete internal snapshots of a qcow2 image.\n\n"
           "  -l             list the snapshots (the default)\n"
           "  -c SNAPSHOT    create a snapshot named SNAPSHOT of the current disk\n"
           "  -a SNAPSHOT    revert the disk to SNAPSHOT (id or name); it is kept\n"
           "  -d SNAPSHOT    delete SNAPSHOT (id or name)\n"
           "  -f FMT         image format (default: probed)\n"
           "  -U             list without taking the image lock\n"
           "  -q             quiet\n");
}

int
cmd_snapshot(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, 'O' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *name = NULL;
    char action = 0;
    bool share = false;
    int c;
    while ((c = getopt_long(argc, argv, "+hqUf:la:c:d:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'q': break; /* the actions print nothing anyway */
        case 'U': share = true; break;
        case 'f': fmt = optarg; break;
        case 'O': break;
        case 'l':
        case 'a':
        case 'c':
        case 'd':
            if (action)
                die("Cannot mix '-l', '-a', '-c', '-d'");
            action = (char)c;
            name = optarg;
            break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        die("Expecting one image file name");
    if (!action)
        action = 'l';
    if (share && action != 'l')
        die("-U can only be used when listing snapshots");
    const char *path = argv[optind];

    unsigned flags = TOPCOW_OPEN_NO_BACKING;
    if (action == 'l')
        flags |= TOPCOW_OPEN_RDONLY | (share ? TOPCOW_OPEN_FORCE_SHARE : 0);
    struct topcow_image *img = open_image(path, fmt, flags);
    if (!img)
        return 1;
    int r = 0;
    const char *what = NULL;
    switch (action) {
    case 'l':
        if (topcow_snapshot_count(img)) {
            printf("Snapshot list:\n");
            snapshot_table_print(stdout, img);
        }
        break;
    case 'c':
        r = topcow_snapshot_create(img, name);
        what = "create";
        break;
    case 'a':
        r = topcow_snapshot_apply(img, name);
        what = "apply";
        break;
    case 'd':
        r = topcow_snapshot_delete(img, name);
        what = "delete";
        break;
    }
    if (r < 0) {
        /* qemu-img's wording, with the library's reason. */
        const char *why = topcow_last_error();
        if (r == -ENOENT)
            why = "snapshot not found";
        error_msg("Could not %s snapshot '%s': %s", what, name, why);
        topcow_image_close(img);
        return 1;
    }
    r = topcow_image_close(img);
    if (r < 0) {
        error_msg("%s: %s", path, topcow_last_error());
        return 1;
    }
    return 0;
}
