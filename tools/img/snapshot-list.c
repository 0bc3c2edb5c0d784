// SPDX-License-Identifier: MIT
/* Snapshot tables in qemu-img's layout (see snapshot-list.h).  Column
 * widths follow qemu-img 7.2: ID 10 and TAG 17 columns wide, then right
 * aligned VM SIZE (8), DATE (20), VM CLOCK (13) and ICOUNT (11). */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "snapshot-list.h"
#include "util.h"

void
snapshot_table_print(FILE *f, struct topcow_image *img)
{
    fprintf(f, "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
            "ICOUNT");
    for (unsigned i = 0; i < topcow_snapshot_count(img); i++) {
        struct topcow_snapshot sn = { .struct_size = sizeof sn };
        if (topcow_snapshot_get(img, i, &sn) < 0)
            continue;
        char size[32], date[32], clock[32], icount[32] = "";
        size_to_str(sn.vm_state_size, size, sizeof size);
        time_t t = (time_t)sn.date_sec;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t ms = sn.vm_clock_nsec / 1000000;
        snprintf(clock, sizeof clock, "%02" PRIu64 ":%02u:%02u.%03u", ms / 3600000,
                 (unsigned)(ms / 60000 % 60), (unsigned)(ms / 1000 % 60), (unsigned)(ms % 1000));
        if (sn.icount != -1)
            snprintf(icount, sizeof icount, "%" PRId64, sn.icount);
        fprintf(f, "%-9s %-16s %8s%20s%13s%11s\n", sn.id, sn.name, size, date, clock, icount);
    }
}

struct json *
snapshot_table_json(struct topcow_image *img)
{
    unsigned n = topcow_snapshot_count(img);
    if (!n)
        return NULL;
    struct json *arr = json_new_array();
    for (unsigned i = 0; i < n; i++) {
        struct topcow_snapshot sn = { .struct_size = sizeof sn };
        if (topcow_snapshot_get(img, i, &sn) < 0)
            continue;
        /* Members in qemu's SnapshotInfo order; the printer orders keys. */
        struct json *o = json_new_object();
        json_set_string(o, "id", sn.id);
        json_set_string(o, "name", sn.name);
        json_set_uint(o, "vm-state-size", sn.vm_state_size);
        json_set_uint(o, "date-sec", sn.date_sec);
        json_set_uint(o, "date-nsec", sn.date_nsec);
        json_set_uint(o, "vm-clock-sec", sn.vm_clock_nsec / 1000000000u);
        json_set_uint(o, "vm-clock-nsec", sn.vm_clock_nsec % 1000000000u);
        if (sn.icount != -1)
            json_set_uint(o, "icount", (uint64_t)sn.icount);
        json_append(arr, o);
    }
    return arr;
}
