// SPDX-License-Identifier: MIT
/* `-o` options of the vpc (VHD) format, as qemu-img 7.2 takes and shows
 * them: subformat=dynamic|fixed (checked by the library, after the
 * Formatting line, as qemu-img does), force_size=on|off and
 * preallocation=off|falloc|full. */
#include <stdio.h>

#include "create-opts.h"

static bool force_size_given; /* the Formatting line shows force_size only when given */

static void
parse_vpc(struct optlist *ol, const char *path, struct create_spec *spec)
{
    spec->opts.subformat = optlist_get(ol, "subformat");
    force_size_given = optlist_get(ol, "force_size") != NULL;
    create_opts_bool(ol, path, "force_size", &spec->opts.vpc_force_size);
    create_opts_prealloc(ol, path, spec, true);
}

static void
print_vpc(const struct create_spec *spec)
{
    printf(" size=%llu", (unsigned long long)spec->opts.size); /* as given, unrounded */
    if (spec->opts.subformat)
        printf(" subformat=%s", spec->opts.subformat);
    if (force_size_given)
        printf(" force_size=%s", spec->opts.vpc_force_size ? "on" : "off");
    if (spec->prealloc)
        printf(" preallocation=%s", spec->prealloc);
}

static void
help_vpc(void)
{
    printf("  force_size=<bool (on/off)> - Force disk size calculation to use the actual size "
           "specified, rather than using the nearest CHS-based calculation\n"
           "  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)\n"
           "  size=<size>            - Virtual disk size\n"
           "  subformat=<str>        - Type of virtual hard disk format. Supported formats are "
           "{dynamic (default) | fixed} \n");
}

const struct create_format create_format_vpc = { "vpc", parse_vpc, print_vpc, help_vpc };
