// SPDX-License-Identifier: MIT
/* Checking a VMDK image, as qemu-img check does it: every grain a sparse
 * extent maps must start inside the extent's file.  The first grain that
 * does not is reported ("ERROR: cluster offset for sector N points after
 * EOF") and fails the check with -EINVAL, which is what qemu-img 7.2 prints
 * and returns for such an image.  Nothing is repaired. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "error.h"
#include "vmdk-internal.h"

static int
check_extent(struct topcow_image *img, const struct vmdk_extent *e,
             struct topcow_check_result *res, topcow_report_fn report, void *opaque)
{
    struct vmdk_sparse *sp = e->sp;
    const char *name = e->path ? e->path : img->filename;
    uint64_t end = e->length < sp->capacity ? e->length : sp->capacity;
    for (uint64_t rel = 0; rel < end;) {
        uint64_t idx = rel / sp->gt_span;
        if (!sp->stream && (!sp->gd || sp->gd[idx] == 0)) {
            rel = (idx + 1) * sp->gt_span; /* no grain table: nothing mapped */
            continue;
        }
        enum vmdk_grain_kind kind;
        uint64_t sector;
        int r = vmdk_sparse_lookup(sp, e->file, name, rel, &kind, &sector);
        if (r < 0) {
            res->check_errors++;
            return r;
        }
        if ((kind == VMDK_GRAIN_DATA || kind == VMDK_GRAIN_COMPRESSED) &&
            sector * VMDK_SECTOR >= sp->file_size) {
            char line[128];
            snprintf(line, sizeof line, "ERROR: cluster offset for sector %" PRIu64
                     " points after EOF", (e->start + rel) / VMDK_SECTOR);
            if (report)
                report(opaque, line);
            res->corruptions++;
            return err_set(-EINVAL, "%s: vmdk: grain at sector %" PRIu64 " lies outside the "
                           "file", name, sector);
        }
        rel += sp->grain;
    }
    return 0;
}

int
vmdk_check(struct topcow_image *img, unsigned flags, struct topcow_check_result *res,
           topcow_report_fn report, void *opaque)
{
    const struct vmdk_state *s = img->priv;
    RETURN_ERR_IF(flags, -ENOTSUP, "%s: vmdk images cannot be repaired", img->filename);
    for (size_t i = 0; i < s->nextents; i++) {
        if (!s->extents[i].sp)
            continue;
        int r = check_extent(img, &s->extents[i], res, report, opaque);
        if (r < 0)
            return r;
    }
    return 0;
}
