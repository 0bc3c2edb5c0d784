// SPDX-License-Identifier: MIT
/* The internal snapshot table (spec: "Snapshots"): reading and validating
 * it.  Every entry is kept whole, unknown extra data included, so that a
 * later rewrite of the table preserves what other tools stored. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

#define SNAPSHOT_TABLE_MAX (64u << 20)
#define SNAPSHOT_EXTRA_MAX 1024u

void
qcow2_snapshot_table_free(struct qcow2_state *s)
{
    for (unsigned i = 0; i < s->nb_snapshots; i++) {
        free(s->snapshots[i].id_str);
        free(s->snapshots[i].name);
        free(s->snapshots[i].extra_data);
    }
    free(s->snapshots);
    s->snapshots = NULL;
    s->nb_snapshots = 0;
}

static char *
dup_bytes(const uint8_t *p, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, p, n);
        r[n] = '\0';
    }
    return r;
}

int
qcow2_snapshot_table_read(struct qcow2_state *s)
{
    uint32_t n = s->h.nb_snapshots;
    if (n == 0)
        return 0;
    uint64_t file_size;
    int r = io_get_size(s->file, &file_size);
    if (r < 0)
        return r;
    uint64_t off = s->h.snapshots_offset;
    RETURN_ERR_IF(off >= file_size, -EUCLEAN,
                  "%s: qcow2: snapshot table offset 0x%" PRIx64 " is past the end of the file",
                  s->img->filename, off);

    s->snapshots = calloc(n, sizeof *s->snapshots);
    if (!s->snapshots)
        return err_set(-ENOMEM, "out of memory");

    /* Read the table in one piece, bounded by the limit and the file. */
    uint64_t avail = MIN(file_size - off, SNAPSHOT_TABLE_MAX);
    uint8_t *buf = malloc(avail);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    r = io_pread(s->file, buf, avail, off);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        if (avail - pos < 40) {
            r = err_set(-EUCLEAN, "%s: qcow2: snapshot table entry %u is past the end of the "
                                  "file or table limit", s->img->filename, i);
            break;
        }
        const uint8_t *p = buf + pos;
        sn->l1_table_offset = be64_get(p);
        sn->l1_size = be32_get(p + 8);
        uint16_t id_len = be16_get(p + 12), name_len = be16_get(p + 14);
        sn->date_sec = be32_get(p + 16);
        sn->date_nsec = be32_get(p + 20);
        sn->vm_clock_nsec = be64_get(p + 24);
        sn->vm_state_size = be32_get(p + 32);
        sn->extra_data_size = be32_get(p + 36);
        sn->icount = -1;
        uint64_t need = 40ull + sn->extra_data_size + id_len + name_len;
        if (sn->extra_data_size > SNAPSHOT_EXTRA_MAX || need > avail - pos) {
            r = err_set(-EUCLEAN, "%s: qcow2: snapshot table entry %u is truncated or too large",
                        s->img->filename, i);
            break;
        }
        const uint8_t *extra = p + 40;
        if (sn->extra_data_size >= 8)
            sn->vm_state_size = be64_get(extra);
        if (sn->extra_data_size >= 16)
            sn->disk_size = be64_get(extra + 8);
        else
            sn->disk_size = s->h.size;
        if (sn->extra_data_size >= 24)
            sn->icount = (int64_t)be64_get(extra + 16);
        sn->extra_data = malloc(sn->extra_data_size ? sn->extra_data_size : 1);
        sn->id_str = dup_bytes(extra + sn->extra_data_size, id_len);
        sn->name = dup_bytes(extra + sn->extra_data_size + id_len, name_len);
        s->nb_snapshots = i + 1;
        if (!sn->extra_data || !sn->id_str || !sn->name) {
            r = err_set(-ENOMEM, "out of memory");
            break;
        }
        memcpy(sn->extra_data, extra, sn->extra_data_size);
        uint64_t l1_bytes = (uint64_t)sn->l1_size * 8, l1_end;
        if (sn->l1_size && (!IS_ALIGNED(sn->l1_table_offset, s->cluster_size) ||
                            l1_bytes > QCOW2_MAX_L1_BYTES ||
                            ADD_OVERFLOW(sn->l1_table_offset, l1_bytes, &l1_end) ||
                            l1_end > file_size)) {
            r = err_set(-EUCLEAN, "%s: qcow2: snapshot '%s' has an invalid L1 table "
                                  "(offset 0x%" PRIx64 ", %u entries)",
                        s->img->filename, sn->name, sn->l1_table_offset, sn->l1_size);
            break;
        }
        pos += ALIGN_UP(need, 8);
    }
    free(buf);
    return r;
}
