// SPDX-License-Identifier: MIT
/* The VHDX format (Hyper-V, [MS-VHDX]): probing, open (headers, log
 * replay, metadata, BAT, in that order), close, flush, info, and the file
 * reads that see a pending log's writes on read-only opens.  The data path
 * is in vhdx-data.c, the header section and metadata in vhdx-header.c,
 * the log in vhdx-log.c, creation in vhdx-create.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "minmax.h"
#include "vhdx-internal.h"

static int
vhdx_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && !memcmp(buf, "vhdxfile", 8) ? 100 : 0;
}

int
vhdx_file_pread(struct topcow_image *img, struct vhdx_state *s, void *buf, size_t len,
                uint64_t off)
{
    int r = io_pread(img->file, buf, len, off);
    if (r < 0)
        return r;
    /* Later patches override earlier ones: apply them in log order. */
    for (size_t i = 0; i < s->npatches; i++) {
        const struct vhdx_patch *p = &s->patches[i];
        uint64_t from = MAX(off, p->off), to = MIN(off + len, p->off + p->len);
        if (from >= to)
            continue;
        uint8_t *dst = (uint8_t *)buf + (from - off);
        if (p->data)
            memcpy(dst, p->data + (from - p->off), (size_t)(to - from));
        else
            memset(dst, 0, (size_t)(to - from));
    }
    return 0;
}

static void
state_free(struct vhdx_state *s)
{
    if (!s)
        return;
    vhdx_patches_free(s);
    free(s->bat);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int
vhdx_open(struct topcow_image *img)
{
    struct vhdx_state *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    int r = vhdx_headers_load(img, s);
    if (r == 0)
        r = vhdx_log_replay(img, s);
    if (r == 0)
        r = vhdx_metadata_load(img, s);
    if (r == 0)
        r = vhdx_bat_load(img, s);
    if (r < 0) {
        state_free(s);
        return r;
    }
    img->size = s->disk_size;
    img->priv = s;
    return 0;
}

static void
vhdx_close(struct topcow_image *img)
{
    state_free(img->priv);
    img->priv = NULL;
}

static int
vhdx_discard(struct topcow_image *img, uint64_t off, uint64_t len)
{
    /* Advisory: blocks stay allocated, as leave_blocks_allocated allows. */
    (void)img;
    (void)off;
    (void)len;
    return 0;
}

static int
vhdx_flush(struct topcow_image *img)
{
    if (img->flags & TOPCOW_OPEN_UNSAFE)
        return 0;
    return io_flush(img->file);
}

static int
vhdx_get_info(struct topcow_image *img, struct topcow_info *info)
{
    const struct vhdx_state *s = img->priv;
    info->cluster_size = s->block_size;
    return 0;
}

const struct format_ops vhdx_format = {
    .struct_size = sizeof(struct format_ops),
    .name = "vhdx",
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .create = vhdx_create,
    .pread = vhdx_data_pread,
    .pwrite = vhdx_data_pwrite,
    .write_zeroes = vhdx_data_write_zeroes,
    .discard = vhdx_discard,
    .flush = vhdx_flush,
    .block_status = vhdx_data_block_status,
    .get_info = vhdx_get_info,
};
