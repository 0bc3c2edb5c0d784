// SPDX-License-Identifier: MIT
/* The internal-snapshot table as qemu-img prints it, shared by `snapshot -l`
 * and `info` (human table and JSON SnapshotInfo list). */
#ifndef TOPCOW_TOOLS_SNAPSHOT_LIST_H
#define TOPCOW_TOOLS_SNAPSHOT_LIST_H

#include <stdio.h>

#include "topcow.h"
#include "json.h"

/* Print the "ID TAG VM SIZE DATE VM CLOCK ICOUNT" table of @img's
 * snapshots (header included; dates in local time). */
void snapshot_table_print(FILE *f, struct topcow_image *img);

/* The JSON "snapshots" array of @img, or NULL when it has none. */
struct json *snapshot_table_json(struct topcow_image *img);

#endif
