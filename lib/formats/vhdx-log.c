// SPDX-License-Identifier: MIT
/* The VHDX log ([MS-VHDX] 2.3): finding the active sequence of a log left
 * behind by a writer that did not finish, validating its entries (checksum,
 * log GUID, sequence numbers, descriptor counts and offsets) and replaying
 * it, either into the file (read-write opens) or into an in-memory list of
 * patches consulted on every read (read-only opens never write the file). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "error.h"
#include "minmax.h"
#include "vhdx-internal.h"

#define ENTRY_HEADER_SIZE 64
#define DESCRIPTOR_SIZE 32
#define DATA_PAYLOAD 4084 /* bytes of a data sector that carry data */

/* A log entry that passed validation (2.3.1.1). */
struct entry {
    bool valid;
    uint32_t len;       /* EntryLength */
    uint32_t tail;      /* Tail: log offset of the oldest entry still needed */
    uint64_t seq;
    uint32_t ndesc;
    uint64_t flushed_file_offset;
    uint64_t last_file_offset;
};

struct log {
    struct topcow_image *img;
    struct vhdx_state *s;
    uint8_t *buf;        /* the whole log */
    uint32_t len;
    uint64_t budget;     /* bytes we still allow ourselves to checksum */
};

/* Copy @n bytes of the circular log starting at @pos into @out. */
static void
log_copy(const struct log *l, uint64_t pos, uint8_t *out, size_t n)
{
    pos %= l->len;
    size_t first = (size_t)MIN((uint64_t)n, l->len - pos);
    memcpy(out, l->buf + pos, first);
    memcpy(out + first, l->buf, n - first);
}

/* Whether the descriptor @d of an entry with sequence number @seq is
 * well-formed, counting its data sectors in *@ndata. */
static bool
descriptor_ok(const uint8_t *d, uint64_t seq, uint64_t log_off, uint64_t log_end,
              uint32_t *ndata)
{
    bool is_data = !memcmp(d, "desc", 4);
    if ((!is_data && memcmp(d, "zero", 4)) || le64_get(d + 24) != seq)
        return false;
    uint64_t off = le64_get(d + 16);
    uint64_t len = is_data ? VHDX_LOG_SECTOR : le64_get(d + 8), end;
    if (!IS_ALIGNED(off, VHDX_LOG_SECTOR) || !IS_ALIGNED(len, VHDX_LOG_SECTOR) ||
        ADD_OVERFLOW(off, len, &end) || end > VHDX_MAX_FILE_OFFSET)
        return false;
    /* The log never rewrites the header section or itself. */
    if (off < VHDX_MiB || (off < log_end && end > log_off))
        return false;
    *ndata += is_data;
    return true;
}

/* Decode and validate the entry at log offset @pos into *@e (e->valid false
 * when it is not a complete entry of this log).  Returns -errno only when
 * the work budget is exhausted or on ENOMEM. */
static int
entry_parse(struct log *l, uint32_t pos, struct entry *e)
{
    memset(e, 0, sizeof *e);
    uint8_t h[ENTRY_HEADER_SIZE];
    log_copy(l, pos, h, sizeof h);
    if (memcmp(h, "loge", 4))
        return 0;
    e->len = le32_get(h + 8);
    e->tail = le32_get(h + 12);
    e->seq = le64_get(h + 16);
    e->ndesc = le32_get(h + 24);
    e->flushed_file_offset = le64_get(h + 48);
    e->last_file_offset = le64_get(h + 56);
    if (e->len < VHDX_LOG_SECTOR || e->len > l->len || !IS_ALIGNED(e->len, VHDX_LOG_SECTOR) ||
        e->tail >= l->len || !IS_ALIGNED(e->tail, VHDX_LOG_SECTOR) || e->seq == 0 ||
        memcmp(h + 32, l->s->hdr.log_guid, 16) ||
        e->flushed_file_offset > VHDX_MAX_FILE_OFFSET ||
        e->last_file_offset > VHDX_MAX_FILE_OFFSET)
        return 0;
    uint64_t desc_bytes = ENTRY_HEADER_SIZE + (uint64_t)e->ndesc * DESCRIPTOR_SIZE;
    uint64_t desc_sectors = (desc_bytes + VHDX_LOG_SECTOR - 1) / VHDX_LOG_SECTOR;
    if (desc_sectors * VHDX_LOG_SECTOR > e->len)
        return 0;
    if (l->budget < e->len)
        return err_set(-EUCLEAN, "%s: vhdx: log: too many overlapping entries to examine",
                       l->img->filename);
    l->budget -= e->len;
    CLEANUP_FREE uint8_t *ent = malloc(e->len);
    if (!ent)
        return err_set(-ENOMEM, "out of memory");
    log_copy(l, pos, ent, e->len);
    if (!vhdx_checksum_ok(ent, e->len, 4))
        return 0;
    uint32_t ndata = 0;
    for (uint32_t i = 0; i < e->ndesc; i++)
        if (!descriptor_ok(ent + ENTRY_HEADER_SIZE + (size_t)i * DESCRIPTOR_SIZE, e->seq,
                           l->s->hdr.log_offset, l->s->hdr.log_offset + l->len, &ndata))
            return 0;
    if ((desc_sectors + ndata) * VHDX_LOG_SECTOR != e->len)
        return 0;
    for (uint32_t i = 0; i < ndata; i++) {
        const uint8_t *sec = ent + (desc_sectors + i) * VHDX_LOG_SECTOR;
        uint64_t seq = ((uint64_t)le32_get(sec + 4) << 32) | le32_get(sec + 4092);
        if (memcmp(sec, "data", 4) || seq != e->seq)
            return 0;
    }
    e->valid = true;
    return 0;
}

/* The patches of the entry at @pos, appended to @s->patches. */
static int
entry_patches(struct log *l, uint32_t pos, const struct entry *e)
{
    struct vhdx_state *s = l->s;
    CLEANUP_FREE uint8_t *ent = malloc(e->len);
    struct vhdx_patch *np = realloc(s->patches, (s->npatches + e->ndesc) * sizeof *np);
    if (!ent || !np) {
        if (np)
            s->patches = np;
        return err_set(-ENOMEM, "out of memory");
    }
    s->patches = np;
    log_copy(l, pos, ent, e->len);
    uint64_t desc_bytes = ENTRY_HEADER_SIZE + (uint64_t)e->ndesc * DESCRIPTOR_SIZE;
    size_t data_pos = (size_t)((desc_bytes + VHDX_LOG_SECTOR - 1) / VHDX_LOG_SECTOR) *
                      VHDX_LOG_SECTOR;
    for (uint32_t i = 0; i < e->ndesc; i++) {
        const uint8_t *d = ent + ENTRY_HEADER_SIZE + (size_t)i * DESCRIPTOR_SIZE;
        struct vhdx_patch *p = &s->patches[s->npatches];
        p->off = le64_get(d + 16);
        p->data = NULL;
        if (!memcmp(d, "zero", 4)) {
            p->len = le64_get(d + 8);
        } else {
            /* 2.3.1.3: the sector is LeadingBytes, the data, TrailingBytes. */
            p->len = VHDX_LOG_SECTOR;
            if (!(p->data = malloc(VHDX_LOG_SECTOR)))
                return err_set(-ENOMEM, "out of memory");
            memcpy(p->data, d + 8, 8);
            memcpy(p->data + 8, ent + data_pos + 8, DATA_PAYLOAD);
            memcpy(p->data + 8 + DATA_PAYLOAD, d + 4, 4);
            data_pos += VHDX_LOG_SECTOR;
        }
        s->npatches++;
    }
    return 0;
}

void
vhdx_patches_free(struct vhdx_state *s)
{
    for (size_t i = 0; i < s->npatches; i++)
        free(s->patches[i].data);
    free(s->patches);
    s->patches = NULL;
    s->npatches = 0;
}

/* Whether the chain of entries from @ents[tail] to @ents[head] is complete:
 * each entry directly follows the previous one with the next sequence number. */
static bool
sequence_complete(const struct log *l, const struct entry *ents, uint32_t tail, uint32_t head)
{
    uint32_t n = l->len / VHDX_LOG_SECTOR, cur = tail;
    for (uint32_t steps = 0; steps <= n; steps++) {
        if (!ents[cur].valid)
            return false;
        if (cur == head)
            return true;
        uint32_t next = (uint32_t)((cur + ents[cur].len / VHDX_LOG_SECTOR) % n);
        if (!ents[next].valid || ents[next].seq != ents[cur].seq + 1)
            return false;
        cur = next;
    }
    return false;
}

/* Replay into the file: every patch written, the file grown to the size
 * the log recorded, all flushed before the header forgets the log. */
static int
replay_into_file(struct topcow_image *img, struct vhdx_state *s, uint64_t last_file_offset)
{
    int r = 0;
    for (size_t i = 0; i < s->npatches && r == 0; i++) {
        const struct vhdx_patch *p = &s->patches[i];
        r = p->data ? io_pwrite(img->file, p->data, (size_t)p->len, p->off)
                    : io_write_zeroes(img->file, p->off, p->len, IO_ZERO_MAY_UNMAP);
    }
    uint64_t size;
    if (r == 0)
        r = io_get_size(img->file, &size);
    if (r == 0 && size < last_file_offset)
        r = io_truncate(img->file, last_file_offset);
    if (r == 0)
        r = io_flush(img->file);
    vhdx_patches_free(s);
    if (r < 0)
        return r;
    memset(s->hdr.log_guid, 0, 16);
    return vhdx_header_update(img, s);
}

int
vhdx_log_replay(struct topcow_image *img, struct vhdx_state *s)
{
    if (vhdx_guid_is_zero(s->hdr.log_guid))
        return 0;
    RETURN_ERR_IF(s->hdr.log_length > VHDX_MAX_LOG, -ENOTSUP,
                  "%s: vhdx: log of %" PRIu32 " bytes is larger than topcow replays",
                  img->filename, s->hdr.log_length);
    struct log l = { .img = img, .s = s, .len = s->hdr.log_length };
    l.budget = 64 * (uint64_t)l.len;
    uint32_t n = l.len / VHDX_LOG_SECTOR;
    CLEANUP_FREE uint8_t *buf = malloc(l.len);
    CLEANUP_FREE struct entry *ents = calloc(n, sizeof *ents);
    if (!buf || !ents)
        return err_set(-ENOMEM, "out of memory");
    l.buf = buf;
    int r = io_pread(img->file, buf, l.len, s->hdr.log_offset);
    for (uint32_t i = 0; i < n && r == 0; i++)
        r = entry_parse(&l, i * VHDX_LOG_SECTOR, &ents[i]);
    if (r < 0)
        return r;

    /* 2.3.2: the active sequence is the one with the highest sequence
     * number whose entries from its head's tail onwards are all there.
     * Candidates are tried from the newest; a few failures mean damage. */
    uint64_t below = UINT64_MAX;
    int64_t head = -1;
    for (int tries = 0; tries < 16 && head < 0; tries++) {
        int64_t best = -1;
        for (uint32_t i = 0; i < n; i++)
            if (ents[i].valid && ents[i].seq < below && (best < 0 || ents[i].seq > ents[best].seq))
                best = i;
        if (best < 0)
            break;
        below = ents[best].seq;
        if (sequence_complete(&l, ents, ents[best].tail / VHDX_LOG_SECTOR, (uint32_t)best))
            head = best;
    }
    if (head < 0) {
        /* A log GUID with no complete entry: the writer stopped before its
         * first entry became durable, so there is nothing to replay. */
        RETURN_ERR_IF(below != UINT64_MAX, -EUCLEAN,
                      "%s: vhdx: log: no complete sequence of entries (the log is damaged)",
                      img->filename);
        return img->read_only ? 0 : replay_into_file(img, s, 0);
    }
    const struct entry *h = &ents[head];
    uint64_t size;
    if ((r = io_get_size(img->file, &size)) < 0)
        return r;
    RETURN_ERR_IF(size < h->flushed_file_offset, -EUCLEAN,
                  "%s: vhdx: log: the file is %" PRIu64 " bytes, shorter than the %" PRIu64
                  " the log recorded (truncated?)", img->filename, size,
                  h->flushed_file_offset);
    for (uint32_t cur = h->tail / VHDX_LOG_SECTOR;;) {
        if ((r = entry_patches(&l, cur * VHDX_LOG_SECTOR, &ents[cur])) < 0) {
            vhdx_patches_free(s);
            return r;
        }
        if (cur == (uint32_t)head)
            break;
        cur = (cur + ents[cur].len / VHDX_LOG_SECTOR) % n;
    }
    return img->read_only ? 0 : replay_into_file(img, s, h->last_file_offset);
}
