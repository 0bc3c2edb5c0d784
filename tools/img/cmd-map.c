// SPDX-License-Identifier: MIT
/* topcow map: qemu-img map syntax and output.
 *   map [-f FMT] [--output=human|json] [--start-offset=N] [--max-length=N] [-U] FILE
 * Walks the guest range with topcow_image_block_status() through the backing
 * chain and merges neighbouring runs the way qemu-img 7.2 does.  JSON lists
 * every run; the human table lists only non-zero data stored raw in some
 * file, and refuses images whose data is stored otherwise (compressed
 * clusters). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "util.h"

/* One run of guest bytes, as qemu-img's MapEntry. */
struct entry {
    uint64_t start, length;
    unsigned depth;
    bool present, zero, data, has_offset;
    uint64_t offset;
    const char *file; /* with has_offset: the file holding the bytes */
};

static void
help(void)
{
    printf("usage: topcow map [-f FMT] [--output=human|json] [--start-offset=OFFSET]\n"
           "                  [--max-length=LENGTH] [-U] FILENAME\n\n"
           "Show which layer of the backing chain holds each range of the image, and where.\n\n"
           "  -f FMT               image format (default: probed)\n"
           "  --output=OFMT        'human' (default): the data ranges and the file offsets\n"
           "                       they are stored at; 'json': every range, as qemu-img prints\n"
           "  --start-offset=N     first guest byte to describe (suffixes k, M, G, ...)\n"
           "  --max-length=N       describe at most N bytes\n"
           "  -U, --force-share    open without taking the image lock\n");
}

/* Whether @next continues @cur: same properties and, when both name a host
 * offset, contiguous in the host file. */
static bool
mergeable(const struct entry *cur, const struct entry *next)
{
    if (cur->length == 0 || cur->depth != next->depth || cur->present != next->present ||
        cur->zero != next->zero || cur->data != next->data || cur->has_offset != next->has_offset)
        return false;
    return !cur->has_offset || cur->offset + cur->length == next->offset;
}

/* Print one entry; @first: no JSON separator before it.  Returns 0, or -1
 * when the human table cannot show the entry. */
static int
print_entry(const struct entry *e, bool json, bool first)
{
    if (json) {
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u, "
               "\"present\": %s, \"zero\": %s, \"data\": %s",
               first ? "" : ",\n", e->start, e->length, e->depth, e->present ? "true" : "false",
               e->zero ? "true" : "false", e->data ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        printf("}");
        return 0;
    }
    if (e->data && !e->has_offset) {
        fflush(stdout);
        error_msg("File contains external, encrypted or compressed clusters.");
        return -1;
    }
    if (e->data && !e->zero)
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
               e->offset, e->file);
    return 0;
}

static int
parse_offset(const char *s, uint64_t *v, const char *what)
{
    if (parse_size(s, v) == 0 && *v <= INT64_MAX)
        return 0;
    error_msg("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", what);
    error_msg("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    return -1;
}

int
cmd_map(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_START, OPT_MAXLEN };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "start-offset", required_argument, NULL, OPT_START },
        { "max-length", required_argument, NULL, OPT_MAXLEN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, has_max = false;
    uint64_t start = 0, max_len = 0;
    unsigned flags = TOPCOW_OPEN_RDONLY;
    int c;
    while ((c = getopt_long(argc, argv, "+hf:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': fmt = optarg; break;
        case 'U': flags |= TOPCOW_OPEN_FORCE_SHARE; break;
        case OPT_START:
            if (parse_offset(optarg, &start, "start offset") < 0)
                return 1;
            break;
        case OPT_MAXLEN:
            if (parse_offset(optarg, &max_len, "max length") < 0)
                return 1;
            has_max = true;
            break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human"))
                die("--output must be used with human or json as argument.");
            break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        die("Expecting one image file name");
    const char *path = argv[optind];

    struct topcow_image *img = open_image(path, fmt, flags);
    if (!img)
        return 1;
    uint64_t end = topcow_image_size(img);
    if (has_max && max_len < end && start < end - max_len)
        end = start + max_len;

    if (json)
        printf("[");
    else
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    /* An empty range still prints one (empty) entry, as qemu-img does. */
    struct entry cur = { .start = start };
    bool first = true;
    int ret = 0;
    while (cur.start + cur.length < end) {
        uint64_t off = cur.start + cur.length;
        struct topcow_extent ext;
        int r = topcow_image_block_status(img, off, end - off, 0, &ext);
        if (r < 0) {
            fflush(stdout);
            error_msg("Could not read file metadata: %s", topcow_last_error());
            ret = 1;
            break;
        }
        struct entry next = {
            .start = off,
            .length = ext.length,
            .depth = ext.depth,
            .present = ext.flags & TOPCOW_EXTENT_ALLOCATED,
            .zero = ext.flags & TOPCOW_EXTENT_ZERO,
            .data = ext.flags & TOPCOW_EXTENT_DATA,
            .has_offset = ext.flags & TOPCOW_EXTENT_OFFSET_VALID,
            .offset = ext.host_offset,
            .file = ext.file,
        };
        if (mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length && print_entry(&cur, json, first) < 0) {
            ret = 1;
            break;
        }
        first = first && cur.length == 0;
        cur = next;
    }
    if (ret == 0 && print_entry(&cur, json, first) < 0)
        ret = 1;
    if (json && ret == 0)
        printf("]\n");
    topcow_image_close(img);
    return ret;
}
