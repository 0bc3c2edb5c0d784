// SPDX-License-Identifier: MIT
/* VMDK's `-o` options, as qemu-img 7.2 takes and shows them: subformat,
 * adapter_type, hwversion, toolsversion, compat6, zeroed_grain,
 * preallocation, and the file options nocow and extent_size_hint (accepted,
 * shown, without effect here).  Values are checked by the library when the
 * image is created, after the Formatting line, as qemu-img does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "create-opts.h"

/* What the user spelled out, for the Formatting line (parse runs before
 * print, once per process). */
static struct {
    bool zeroed_grain_given;
    const char *nocow;
    const char *extent_size_hint;
} given;

static void
parse_vmdk(struct optlist *ol, const char *path, struct create_spec *spec)
{
    struct topcow_create_opts *o = &spec->opts;
    create_opts_prealloc(ol, path, spec, false);
    o->subformat = optlist_get(ol, "subformat");
    o->vmdk_adapter_type = optlist_get(ol, "adapter_type");
    o->vmdk_hwversion = optlist_get(ol, "hwversion");
    o->vmdk_toolsversion = optlist_get(ol, "toolsversion");
    create_opts_bool(ol, path, "compat6", &o->vmdk_compat6);
    create_opts_bool(ol, path, "zeroed_grain", &o->vmdk_zeroed_grain);
    given.zeroed_grain_given = optlist_get(ol, "zeroed_grain") != NULL;
    bool nocow = false;
    create_opts_bool(ol, path, "nocow", &nocow);
    if (optlist_get(ol, "nocow"))
        given.nocow = nocow ? "on" : "off";
    const char *v = optlist_get(ol, "extent_size_hint");
    if (v) {
        uint64_t n;
        static char buf[32];
        if (parse_size(v, &n) < 0)
            die("%s: Parameter 'extent_size_hint' expects a size", path);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)n);
        given.extent_size_hint = buf;
    }
}

static void
print_vmdk(const struct create_spec *spec)
{
    const struct topcow_create_opts *o = &spec->opts;
    printf(" size=%llu", (unsigned long long)spec->opts.size);
    if (o->vmdk_adapter_type)
        printf(" adapter_type=%s", o->vmdk_adapter_type);
    if (o->backing_file)
        printf(" backing_file=%s", o->backing_file);
    if (o->backing_format)
        printf(" backing_fmt=%s", o->backing_format);
    printf(" compat6=%s hwversion=%s", o->vmdk_compat6 ? "on" : "off",
           o->vmdk_hwversion ? o->vmdk_hwversion : "undefined");
    if (o->vmdk_toolsversion)
        printf(" toolsversion=%s", o->vmdk_toolsversion);
    if (o->subformat)
        printf(" subformat=%s", o->subformat);
    if (given.zeroed_grain_given)
        printf(" zeroed_grain=%s", o->vmdk_zeroed_grain ? "on" : "off");
    if (given.nocow)
        printf(" nocow=%s", given.nocow);
    if (spec->prealloc)
        printf(" preallocation=%s", spec->prealloc);
    if (given.extent_size_hint)
        printf(" extent_size_hint=%s", given.extent_size_hint);
}

static void
help_vmdk(void)
{
    printf("  adapter_type=<str>     - Virtual adapter type, can be one of ide (default), "
           "lsilogic, buslogic or legacyESX\n"
           "  backing_file=<str>     - File name of a base image\n"
           "  backing_fmt=<str>      - Must be 'vmdk' if present\n"
           "  compat6=<bool (on/off)> - VMDK version 6 image\n"
           "  extent_size_hint=<size> - Extent size hint for the image file, 0 to disable\n"
           "  hwversion=<str>        - VMDK hardware version\n"
           "  nocow=<bool (on/off)>  - Turn off copy-on-write (valid only on btrfs)\n"
           "  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)\n"
           "  size=<size>            - Virtual disk size\n"
           "  subformat=<str>        - VMDK flat extent format, can be one of "
           "{monolithicSparse (default) | monolithicFlat | twoGbMaxExtentSparse | "
           "twoGbMaxExtentFlat | streamOptimized} \n"
           "  toolsversion=<str>     - VMware guest tools version\n"
           "  zeroed_grain=<bool (on/off)> - Enable efficient zero writes using the "
           "zeroed-grain GTE feature\n");
}

const struct create_format create_format_vmdk = { "vmdk", parse_vmdk, print_vmdk, help_vmdk };
