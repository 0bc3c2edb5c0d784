// SPDX-License-Identifier: MIT
/* `-o` options of new VHDX images, as qemu-img 7.2 takes and prints them:
 * block_size, log_size, subformat (dynamic|fixed), block_state_zero and
 * preallocation.  The Formatting line shows block_size and log_size as
 * given (0 and 1 MiB by default) and the others only when given. */
#include <stdio.h>

#include "create-opts.h"

/* A size option that must fit 32 bits; false when absent. */
static bool
parse_size32(struct optlist *ol, const char *path, const char *name, uint32_t *field)
{
    const char *v = optlist_get(ol, name);
    uint64_t n;
    if (!v)
        return false;
    if (parse_size(v, &n) < 0 || n > UINT32_MAX)
        die("%s: Parameter '%s' expects a size", path, name);
    *field = (uint32_t)n;
    return true;
}

static void
parse_vhdx(struct optlist *ol, const char *path, struct create_spec *spec)
{
    struct topcow_create_opts *o = &spec->opts;
    create_opts_prealloc(ol, path, spec, true);
    parse_size32(ol, path, "block_size", &o->vhdx_block_size);
    o->vhdx_log_size_given = parse_size32(ol, path, "log_size", &o->vhdx_log_size);
    o->subformat = optlist_get(ol, "subformat"); /* checked by the library, after the
                                                  * Formatting line, as qemu-img does */
    if (optlist_get(ol, "block_state_zero")) {
        bool on = true;
        create_opts_bool(ol, path, "block_state_zero", &on);
        o->vhdx_block_state_zero = on ? 1 : -1;
    }
}

static void
print_vhdx(const struct create_spec *spec)
{
    const struct topcow_create_opts *o = &spec->opts;
    printf(" size=%llu log_size=%u block_size=%u", (unsigned long long)spec->opts.size,
           o->vhdx_log_size_given ? o->vhdx_log_size : 1048576u, o->vhdx_block_size);
    if (o->subformat)
        printf(" subformat=%s", o->subformat);
    if (o->vhdx_block_state_zero)
        printf(" block_state_zero=%s", o->vhdx_block_state_zero > 0 ? "on" : "off");
    if (spec->prealloc)
        printf(" preallocation=%s", spec->prealloc);
}

static void
help_vhdx(void)
{
    printf("  block_size=<size>      - Block size (1 MiB .. 256 MiB, power of two); 0 picks "
           "one from the image size\n"
           "  block_state_zero=<bool (on/off)> - New dynamic blocks start in state ZERO "
           "(default) rather than NOT_PRESENT\n"
           "  log_size=<size>        - Log size, a multiple of 1 MiB (default 1 MiB)\n"
           "  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, "
           "full)\n"
           "  size=<size>            - Virtual disk size; at most 64 TiB\n"
           "  subformat=<str>        - 'dynamic' (default) or 'fixed'\n");
}

const struct create_format create_format_vhdx = { "vhdx", parse_vhdx, print_vhdx, help_vhdx };
