// SPDX-License-Identifier: MIT
/* topcow resize: qemu-img resize syntax.
 *   resize [-q] [-f FMT] [--shrink] [--preallocation=MODE] FILE [+|-]SIZE
 * Growing adds a range that reads as zeros.  Shrinking needs --shrink and,
 * unlike qemu-img, is refused while the range cut off holds data: discard it
 * first (topcow io -c "discard OFF LEN"), so no guest data is lost by a
 * mistyped size. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "util.h"

static void
help(void)
{
    printf("usage: topcow resize [-q] [-f FMT] [--shrink] [--preallocation=MODE] FILENAME\n"
           "                     [+|-]SIZE\n\n"
           "Change the virtual size of a disk image to SIZE, or by +SIZE / -SIZE.\n"
           "SIZE takes the suffixes k, M, G, T, P, E (powers of 1024).\n\n"
           "  --shrink              allow a smaller size; refused while guest data\n"
           "                        lives past the new end (discard it first)\n"
           "  --preallocation=MODE  for the added range: off (default), metadata\n"
           "                        (qcow2), falloc, full\n"
           "  -f FMT                image format (default: probed)\n"
           "  -q                    quiet\n");
}

static int
parse_prealloc(const char *s, enum topcow_prealloc *out)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    for (unsigned i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum topcow_prealloc)i;
            return 0;
        }
    return -1;
}

int
cmd_resize(int argc, char **argv)
{
    enum { OPT_SHRINK = 256, OPT_PREALLOC, OPT_OBJECT, OPT_IMAGE_OPTS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "shrink", no_argument, NULL, OPT_SHRINK },
        { "preallocation", required_argument, NULL, OPT_PREALLOC },
        { "object", required_argument, NULL, OPT_OBJECT },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool quiet = false, shrink = false;
    enum topcow_prealloc prealloc = TOPCOW_PREALLOC_OFF;
    int c;
    /* "-1G" is a size, not an option: stop at the first non-option. */
    while ((c = getopt_long(argc, argv, "+hqf:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'q': quiet = true; break;
        case 'f': fmt = optarg; break;
        case OPT_SHRINK: shrink = true; break;
        case OPT_PREALLOC:
            if (parse_prealloc(optarg, &prealloc) < 0)
                die("Invalid preallocation mode '%s'", optarg);
            break;
        case OPT_OBJECT: break;
        default: return 1;
        }
    }
    /* FILE [--] SIZE: a "--" may come before a negative size. */
    const char *pos[2];
    int npos = 0;
    bool dashdash = false;
    for (int i = optind; i < argc; i++) {
        if (!dashdash && !strcmp(argv[i], "--")) {
            dashdash = true;
            continue;
        }
        if (npos == 2)
            die("Expecting an image file name and a size (see 'topcow resize --help')");
        pos[npos++] = argv[i];
    }
    if (npos != 2)
        die("Expecting an image file name and a size (see 'topcow resize --help')");
    const char *path = pos[0], *arg = pos[1];
    int sign = 0;
    if (arg[0] == '+' || arg[0] == '-')
        sign = arg[0] == '+' ? 1 : -1;
    uint64_t n;
    if (parse_size(arg + (sign != 0), &n) < 0)
        die("Invalid size '%s': expected a non-negative number with an optional suffix "
            "k, M, G, T, P or E", arg);

    struct topcow_image *img = open_image(path, fmt, 0);
    if (!img)
        return 1;
    uint64_t cur = topcow_image_size(img), size = n;
    if (sign > 0)
        size = cur + n < cur ? UINT64_MAX : cur + n;
    else if (sign < 0)
        size = n >= cur ? 0 : cur - n;
    const char *err = NULL;
    struct topcow_info info = { .struct_size = sizeof info };
    topcow_image_get_info(img, &info);
    if (size == 0)
        err = "New image size must be positive";
    else if (size % 512 && info.format && !strcmp(info.format, "qcow2"))
        err = "The new size must be a multiple of 512";
    else if (size < cur && !shrink)
        err = "Use the --shrink option to perform a shrink operation";
    if (err) {
        error_msg("%s", err);
        topcow_image_close(img);
        return 1;
    }
    int r = topcow_image_resize(img, size, shrink ? TOPCOW_RESIZE_SHRINK : 0, prealloc);
    if (r < 0) {
        error_msg("Could not resize '%s': %s", path, topcow_last_error());
        topcow_image_close(img);
        return 1;
    }
    if (topcow_image_close(img) < 0) {
        error_msg("%s: %s", path, topcow_last_error());
        return 1;
    }
    if (!quiet)
        printf("Image resized.\n");
    return 0;
}
