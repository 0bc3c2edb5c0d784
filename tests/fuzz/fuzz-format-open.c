// SPDX-License-Identifier: MIT
/* Fuzz target: open an untrusted image of the format FUZZ_FORMAT (set at
 * build time: "vdi", "vmdk", "vpc", "vhdx"; one binary per format) read-only
 * and walk what a reader touches: the headers and tables parsed at open,
 * image info, block status over the disk, and reads.  Work per input is
 * bounded (block-status calls, bytes read).  Besides sanitizer reports, a
 * broken API contract aborts: an extent of the wrong length or offset, a
 * range block status calls zero that does not read as zeros, a read past
 * the end that is served. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"
#include "fuzz-common.h"

#ifndef FUZZ_FORMAT
#error "build with -DFUZZ_FORMAT=\"vdi\" (or another format name)"
#endif

#define MAX_BS_CALLS 4096
#define MAX_READ_CALLS 512
#define MAX_READ_BYTES (8ull << 20)
#define READ_STEP (64u << 10)  /* the sweep's request size */
#define MAX_EXTENTS 1024

static uint8_t buf[READ_STEP];

/* Read at most READ_STEP bytes of [@off, @off+@len) (see fuzz_read). */
static void
read_range(struct topcow_image *img, struct fuzz_budget *b, uint64_t off, uint64_t len,
           bool want_zero)
{
    fuzz_read(img, b, buf, off, len < READ_STEP ? len : READ_STEP, want_zero);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct topcow_image *img;
    if (fuzz_open_format(FUZZ_FORMAT, data, size, &img) < 0)
        return 0;

    struct topcow_info info;
    fuzz_get_info(img, &info);
    const uint64_t disk = info.virtual_size;
    if (strcmp(info.format, FUZZ_FORMAT) != 0)
        fuzz_fail("info: format %s", info.format);

    /* Block status from the start of the disk until the budget runs out,
     * then a few unaligned probes including the last byte; remember the
     * allocated and zero extents. */
    struct topcow_extent found[MAX_EXTENTS];
    unsigned nfound = 0, calls = 0;
    for (uint64_t off = 0; off < disk && calls < MAX_BS_CALLS; calls++) {
        struct topcow_extent ext;
        uint64_t len = disk - off;
        if (fuzz_block_status(img, off, len, &ext) < 0) {
            /* A broken table entry: step over one read's worth and go on. */
            off += len < READ_STEP ? len : READ_STEP;
            continue;
        }
        if ((ext.flags & (TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO)) && nfound < MAX_EXTENTS)
            found[nfound++] = ext;
        off += ext.length;
    }
    fuzz_probe_extents(img, disk, READ_STEP, found, MAX_EXTENTS, &nfound);

    /* Reads: the start and the last byte of every extent found, then the
     * disk from the start in READ_STEP requests while the budget lasts. */
    struct fuzz_budget b = { .max_calls = MAX_READ_CALLS, .max_bytes = MAX_READ_BYTES };
    for (unsigned i = 0; i < nfound; i++) {
        const struct topcow_extent *e = &found[i];
        bool zero = (e->flags & TOPCOW_EXTENT_ZERO) != 0;
        read_range(img, &b, e->offset, e->length, zero);
        read_range(img, &b, e->offset + e->length - 1, 1, zero);
    }
    for (uint64_t off = 0; off < disk && b.calls < MAX_READ_CALLS; off += READ_STEP)
        read_range(img, &b, off, disk - off, false);
    if (disk > 0)
        read_range(img, &b, disk - 1, 1, false);
    /* Requests past the end must be refused, not served. */
    if (topcow_image_pread(img, buf, 1, disk) != -EINVAL)
        fuzz_fail("a read past the end of the disk did not fail with -EINVAL");

    topcow_image_close(img);
    return 0;
}
