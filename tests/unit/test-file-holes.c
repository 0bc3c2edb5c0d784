// SPDX-License-Identifier: MIT
/* The file backend's block status remembers the last run of data it found
 * (io-file.c); a discard, a zeroing or a truncation must make it look
 * again.  One process, one handle, a real file: write data, ask inside the
 * run (answered from memory), change the file, ask again - the holes the
 * change made must show.  (Where the filesystem cannot punch holes the
 * test skips.) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

#define MIB (1ull << 20)

static int failures;

/* Block status at @off; expect @want_data for at least one byte. */
static void
expect(struct io *f, const char *what, uint64_t off, bool want_data)
{
    bool data = !want_data;
    uint64_t n = 0;
    int r = io_block_status(f, off, 4 * MIB, &data, &n);
    bool ok = r == 0 && data == want_data && n > 0;
    printf("%s %-46s data=%d n=%llu\n", ok ? "ok  " : "FAIL", what, data,
           (unsigned long long)n);
    if (!ok)
        failures++;
}

int
main(void)
{
    char path[] = "/var/tmp/topcow-holes.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    struct io *f;
    if (io_file_open(path, IO_NOLOCK, &f) < 0) {
        unlink(path);
        return 1;
    }
    uint8_t *buf = malloc(4 * MIB);
    memset(buf, 0x5a, 4 * MIB);
    if (!buf || io_pwrite(f, buf, 4 * MIB, 0) < 0)
        return 1;
    expect(f, "written data", 0, true);
    expect(f, "inside the run (remembered)", 2 * MIB, true);
    int r = io_discard(f, MIB, MIB);
    if (r == -ENOTSUP) {
        printf("SKIP: no hole punching here\n");
        io_close(f);
        unlink(path);
        return 77;
    }
    expect(f, "after a discard of [1M, 2M)", MIB, false);
    expect(f, "data after the hole", 2 * MIB, true);
    expect(f, "asked inside the new run", 3 * MIB, true);
    if (io_write_zeroes(f, 3 * MIB, MIB, IO_ZERO_MAY_UNMAP) < 0)
        failures++;
    expect(f, "after zeroing [3M, 4M) with unmap", 3 * MIB, false);
    expect(f, "data before it", 2 * MIB, true);
    if (io_truncate(f, 2 * MIB + 4096) < 0 || io_truncate(f, 4 * MIB) < 0)
        failures++;
    expect(f, "after cutting at 2M+4K and growing", 3 * MIB, false);
    io_close(f);
    unlink(path);
    free(buf);
    printf("%s\n", failures ? "FAILED" : "PASS");
    return failures ? 1 : 0;
}
