// SPDX-License-Identifier: MIT
/* Fuzz target: open an untrusted qcow2 image read-write in memory (a dirty
 * lazy-refcounts image is repaired by the open), run the consistency check,
 * then drive the write path - data writes with copy-on-write, zero writes
 * with and without unmapping, discard, flush - on a few offsets, check
 * again, close, and check the bytes the close left behind.
 *
 * On hostile metadata every call may fail, but cleanly.  When the first
 * check finds the image consistent (no corruption, no check errors), the
 * library is held to more: what a successful write or zero write stored
 * reads back, and neither the later checks nor the closed image show any
 * corruption (leaks are allowed: a failed request may leak clusters). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"
#include "fuzz-common.h"

#define MAX_IO (256u << 10)

static uint8_t pattern[MAX_IO];
static uint8_t readback[MAX_IO];

/* Reports of an unshared cluster whose entry lacks COPIED.  A fuzzed image
 * can map one data cluster from two active L2 entries (refcount 2, COPIED
 * clear: consistent); freeing one of them leaves the other at refcount 1
 * without COPIED.  Check calls that an error, as qemu-img does, but it only
 * costs a copy-on-write on the next write: it does not break the contract
 * checked here (QEMU leaves the same state). */
static uint64_t copied_missing;

static void
report(void *opaque, const char *line)
{
    (void)opaque;
    fuzz_touch_string(line);
    const char *p = strstr(line, "OFLAG_COPIED data cluster: l2_entry=");
    unsigned long long e, rc;
    if (p && sscanf(p, "OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu", &e, &rc) == 2 &&
        rc == 1 && !(e >> 63))
        copied_missing++;
}

/* Run a check; returns 0 and fills *@res (not counting copied_missing
 * reports as corruptions), or -errno. */
static int
check(struct topcow_image *img, struct topcow_check_result *res)
{
    memset(res, 0, sizeof *res);
    res->struct_size = sizeof *res;
    copied_missing = 0;
    int r = topcow_image_check(img, 0, res, report, NULL);
    if (r < 0)
        fuzz_touch_string(topcow_last_error());
    else if (res->corruptions >= copied_missing)
        res->corruptions -= copied_missing; /* not a broken contract: see copied_missing */
    return r;
}

static bool
consistent(int r, const struct topcow_check_result *res)
{
    return r == 0 && res->corruptions == 0 && res->check_errors == 0;
}

/* After a successful request on a consistent image: [@off, @off+@len)
 * must read back as @want (NULL: zeros). */
static void
verify(struct topcow_image *img, bool strict, const char *what, uint64_t off, uint64_t len,
       const uint8_t *want)
{
    if (!strict || len == 0)
        return;
    if (topcow_image_pread(img, readback, (size_t)len, off) < 0)
        fuzz_fail("%s at 0x%llx (+%llu) succeeded but reading it back failed: %s", what,
                  (unsigned long long)off, (unsigned long long)len, topcow_last_error());
    if (want ? memcmp(readback, want, (size_t)len) != 0 : !fuzz_is_zero(readback, (size_t)len))
        fuzz_fail("%s at 0x%llx (+%llu) succeeded but does not read back", what,
                  (unsigned long long)off, (unsigned long long)len);
}

static uint64_t
min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void
do_write(struct topcow_image *img, bool strict, uint64_t off, uint64_t len, unsigned flags)
{
    len = min_u64(len, MAX_IO);
    if (topcow_image_pwrite(img, pattern, (size_t)len, off, flags) < 0)
        fuzz_touch_string(topcow_last_error());
    else
        verify(img, strict, "write", off, len, pattern);
}

static void
do_zero(struct topcow_image *img, bool strict, uint64_t off, uint64_t len, unsigned flags)
{
    len = min_u64(len, MAX_IO);
    if (topcow_image_write_zeroes(img, off, len, flags) < 0)
        fuzz_touch_string(topcow_last_error());
    else
        verify(img, strict, "write zeroes", off, len, NULL);
}

/* Discard; whole clusters of the range then read as zeros (no backing file
 * is open, so nothing shows through). */
static void
do_discard(struct topcow_image *img, bool strict, uint64_t cs, uint64_t off, uint64_t len)
{
    uint64_t disk = topcow_image_size(img);
    len = min_u64(len, MAX_IO);
    if (topcow_image_discard(img, off, len) < 0) {
        fuzz_touch_string(topcow_last_error());
        return;
    }
    uint64_t a = (off + cs - 1) / cs * cs, end = off + len;
    uint64_t b = end == disk ? end : end / cs * cs;
    if (a < b)
        verify(img, strict, "discard", a, b - a, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct topcow_image *img;
    if (fuzz_open_keep(data, size, false, &img) < 0)
        return 0;
    if (!pattern[0])
        for (size_t i = 0; i < sizeof pattern; i++)
            pattern[i] = (uint8_t)(i % 251 + 1);

    struct topcow_check_result res;
    bool clean = consistent(check(img, &res), &res);

    struct topcow_info info = { .struct_size = sizeof info };
    if (topcow_image_get_info(img, &info) < 0)
        fuzz_fail("get_info failed on an open image: %s", topcow_last_error());
    const uint64_t disk = topcow_image_size(img), cs = info.cluster_size;

    if (disk > 0 && cs >= 512) {
        /* Offsets spread over the disk; lengths cross cluster boundaries,
         * cover partial clusters (copy-on-write) and whole ones. */
        do_write(img, clean, 0, min_u64(disk, cs + cs / 2), 0);
        do_write(img, clean, disk / 2, 1, 0);
        uint64_t z = disk / 4 / cs * cs;
        do_zero(img, clean, z, min_u64(2 * cs, disk - z), TOPCOW_ZERO_MAY_UNMAP);
        uint64_t p = min_u64(disk / 3 + 1, disk - 1);
        do_zero(img, clean, p, min_u64(1000, disk - p), 0);
        uint64_t f = disk * 3 / 4 / cs * cs;
        do_zero(img, clean, f, min_u64(cs, disk - f), TOPCOW_ZERO_FAST);
        uint64_t d = disk / 8 / cs * cs;
        do_discard(img, clean, cs, d, min_u64(4 * cs, disk - d));
        if (topcow_image_flush(img) < 0)
            fuzz_touch_string(topcow_last_error());
        uint64_t tail = min_u64(disk, 700);
        do_write(img, clean, disk - tail, tail, 0);
        if (disk > cs)
            do_write(img, clean, cs, min_u64(512, disk - cs), TOPCOW_WRITE_FUA);
        do_discard(img, clean, cs, 0, disk); /* at most MAX_IO of it */
        do_write(img, clean, disk / 5, min_u64(3 * cs, disk - disk / 5), 0);
    }

    int r = check(img, &res);
    if (clean && r == 0 && !consistent(r, &res))
        fuzz_fail("a consistent image became corrupt under writes: check found %llu "
                  "corruptions, %llu check errors",
                  (unsigned long long)res.corruptions, (unsigned long long)res.check_errors);
    bool still_clean = clean && consistent(r, &res);

    r = topcow_image_close(img);
    if (r < 0)
        fuzz_touch_string(topcow_last_error());
    size_t after_size;
    uint8_t *after = fuzz_take_closed_image(&after_size);
    if (still_clean && r == 0 && after) {
        /* What the close left behind opens and is still consistent. */
        if (fuzz_reopen(after, after_size, &img) < 0)
            fuzz_fail("the closed image does not open again: %s", topcow_last_error());
        int r2 = check(img, &res);
        if (!consistent(r2, &res))
            fuzz_fail("the closed image is corrupt: check returned %d, %llu corruptions, "
                      "%llu check errors", r2, (unsigned long long)res.corruptions,
                      (unsigned long long)res.check_errors);
        topcow_image_close(img);
    }
    free(after);
    return 0;
}
