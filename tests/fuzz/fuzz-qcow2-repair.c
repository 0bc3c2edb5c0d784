// SPDX-License-Identifier: MIT
/* Fuzz target: `check -r all` on an untrusted qcow2 image, opened the way
 * the check command opens it for repair (a dirty image is not rebuilt by
 * the open, a corrupt one opens).
 *
 * The repair may refuse or fail on hostile metadata, but cleanly.  When it
 * reports that it fixed everything it found (no corruption left, no check
 * error), the library is held to it: a second check of the open image finds
 * neither corruptions nor leaks, and neither does a check of the bytes the
 * close left behind, reopened. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"
#include "fuzz-common.h"

static void
report(void *opaque, const char *line)
{
    (void)opaque;
    fuzz_touch_string(line);
}

static int
run_check(struct topcow_image *img, unsigned flags, struct topcow_check_result *res)
{
    memset(res, 0, sizeof *res);
    res->struct_size = sizeof *res;
    int r = topcow_image_check(img, flags, res, report, NULL);
    if (r < 0)
        fuzz_touch_string(topcow_last_error());
    return r;
}

static void
must_be_clean(struct topcow_image *img, const char *when, const struct topcow_check_result *rep)
{
    struct topcow_check_result res;
    int r = run_check(img, 0, &res);
    if (r == 0 && (res.corruptions || res.leaks || res.check_errors))
        fuzz_fail("check -r all fixed %llu corruptions and %llu leaks and left none, yet the "
                  "check %s finds %llu corruptions, %llu leaks, %llu check errors",
                  (unsigned long long)rep->corruptions_fixed,
                  (unsigned long long)rep->leaks_fixed, when,
                  (unsigned long long)res.corruptions, (unsigned long long)res.leaks,
                  (unsigned long long)res.check_errors);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct topcow_image *img;
    if (fuzz_open_for_repair(data, size, &img) < 0)
        return 0;
    struct topcow_check_result rep;
    int r = run_check(img, TOPCOW_CHECK_REPAIR_ALL, &rep);
    bool fixed_all = r == 0 && rep.corruptions == 0 && rep.leaks == 0 && rep.check_errors == 0;
    if (fixed_all)
        must_be_clean(img, "right after it", &rep);
    if (topcow_image_close(img) < 0) {
        fuzz_touch_string(topcow_last_error());
        fixed_all = false; /* the repaired state may not have reached the file */
    }
    size_t n;
    uint8_t *closed = fuzz_take_closed_image(&n);
    if (fixed_all && closed && fuzz_reopen(closed, n, &img) == 0) {
        must_be_clean(img, "of the closed image", &rep);
        topcow_image_close(img);
    }
    free(closed);
    return 0;
}
