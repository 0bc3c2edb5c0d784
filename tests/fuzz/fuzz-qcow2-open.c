// SPDX-License-Identifier: MIT
/* Fuzz target: open an untrusted qcow2 image read-only and walk every
 * metadata structure a reader touches - header and extensions, L1/L2 and
 * refcount tables, snapshot table (all at open), then image info, block
 * status over the disk and reads of its clusters, compressed ones included.
 * Work per input is bounded (block-status calls, L2 entries scanned, bytes
 * read) so that no input takes seconds.  Besides sanitizer reports, a
 * broken API contract aborts: an extent of the wrong length, or a range
 * block status calls zero that does not read as zeros. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"
#include "fuzz-common.h"

#define MAX_BS_CALLS 4096
#define MAX_SCANNED_CLUSTERS (1ull << 22) /* L2 entries block status may look at */
#define MAX_READ_CALLS 1024
#define MAX_READ_BYTES (8ull << 20)
#define MAX_EXTENTS 1024

static uint8_t *buf;  /* one cluster (up to 2 MiB), reused */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct topcow_image *img;
    if (fuzz_open(data, size, true, &img) < 0)
        return 0;

    struct topcow_info info;
    fuzz_get_info(img, &info);
    const uint64_t disk = info.virtual_size;
    const uint64_t cs = info.cluster_size;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
        fuzz_fail("info: cluster size %llu", (unsigned long long)cs);
    buf = malloc((size_t)cs);
    if (!buf) {
        topcow_image_close(img);
        return 0;
    }

    /* Block status, one L2 table's span per call, from the start of the
     * disk until a budget runs out; remember allocated and zero extents. */
    const uint64_t span = cs * (cs / (info.extended_l2 ? 16 : 8));
    struct topcow_extent found[MAX_EXTENTS];
    unsigned nfound = 0, calls = 0;
    uint64_t scanned = 0;
    for (uint64_t off = 0; off < disk && calls < MAX_BS_CALLS && scanned < MAX_SCANNED_CLUSTERS;
         calls++) {
        uint64_t len = span - off % span;
        if (len > disk - off)
            len = disk - off;
        struct topcow_extent ext;
        if (fuzz_block_status(img, off, len, &ext) < 0) {
            off += len; /* this table is broken; go on with the next */
            scanned += len / cs + 1;
            continue;
        }
        if ((ext.flags & (TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO)) && nfound < MAX_EXTENTS)
            found[nfound++] = ext;
        off += ext.length;
        scanned += ext.length / cs + 1;
    }
    fuzz_probe_extents(img, disk, cs, found, MAX_EXTENTS, &nfound);

    /* Reads: the first cluster of every extent found (compressed clusters
     * are decompressed here), the last byte of each, then the disk in
     * cluster steps from the start while the budget lasts. */
    struct fuzz_budget b = { .max_calls = MAX_READ_CALLS, .max_bytes = MAX_READ_BYTES };
    for (unsigned i = 0; i < nfound; i++) {
        const struct topcow_extent *e = &found[i];
        bool zero = (e->flags & TOPCOW_EXTENT_ZERO) != 0;
        fuzz_read(img, &b, buf, e->offset, e->length < cs ? e->length : cs, zero);
        fuzz_read(img, &b, buf, e->offset + e->length - 1, 1, zero);
    }
    for (uint64_t off = 0; off < disk; off += cs) {
        if (b.calls >= MAX_READ_CALLS || b.bytes + cs > MAX_READ_BYTES)
            break;
        fuzz_read(img, &b, buf, off, disk - off < cs ? disk - off : cs, false);
    }
    /* Requests past the end must be refused, not served. */
    if (topcow_image_pread(img, buf, 1, disk) != -EINVAL)
        fuzz_fail("a read past the end of the disk did not fail with -EINVAL");

    free(buf);
    buf = NULL;
    topcow_image_close(img);
    return 0;
}
