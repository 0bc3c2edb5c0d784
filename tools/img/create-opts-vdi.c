// SPDX-License-Identifier: MIT
/* VDI's `-o` options, as qemu-img 7.2 has them: static=on|off (every block
 * allocated at creation) and the file's preallocation= (which matters for
 * static images only); the Formatting line and `-o help` in qemu-img's
 * words. */
#include <stdio.h>

#include "create-opts.h"

static void
parse_vdi(struct optlist *ol, const char *path, struct create_spec *spec)
{
    create_opts_prealloc(ol, path, spec, false);
    create_opts_bool(ol, path, "static", &spec->opts.vdi_static);
}

static void
print_vdi(const struct create_spec *spec)
{
    /* qemu-img shows vdi's size as given, before rounding it to sectors. */
    printf(" size=%llu static=%s", (unsigned long long)spec->opts.size,
           spec->opts.vdi_static ? "on" : "off");
    if (spec->prealloc)
        printf(" preallocation=%s", spec->prealloc);
}

static void
help_vdi(void)
{
    printf("  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, "
           "full)\n"
           "  size=<size>            - Virtual disk size\n"
           "  static=<bool (on/off)> - VDI static (pre-allocated) image\n");
}

const struct create_format create_format_vdi = { "vdi", parse_vdi, print_vdi, help_vdi };
