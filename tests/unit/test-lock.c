// SPDX-License-Identifier: MIT
/* Image locking: a second writer is refused with -EBUSY and a message that
 * says the image is in use; readers share; FORCE_SHARE (qemu-img -U) takes
 * no lock.  The same holds against QEMU: topcow refuses an image a qemu-io
 * process has open for writing, and qemu-img refuses one topcow writes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "topcow.h"

static int failures;

static void
expect(const char *what, int got, int want)
{
    bool ok = got == want;
    printf("%s %-50s r=%d %s\n", ok ? "ok  " : "FAIL", what, got, got ? topcow_last_error() : "");
    if (!ok)
        failures++;
}

static int
try_open(const char *path, unsigned flags, struct topcow_image **out)
{
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.flags = flags;
    struct topcow_image *img = NULL;
    int r = topcow_image_open(&img, path, &o);
    if (out)
        *out = img;
    else
        topcow_image_close(img);
    return r;
}

static bool
have(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

int
main(void)
{
    char dir[] = "/tmp/topcow-lock.XXXXXX", path[300], cmd[700];
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/img.qcow2", dir);
    struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
    co.size = 1 << 20;
    if (topcow_image_create(path, &co) < 0)
        return 1;

    struct topcow_image *a, *b;
    expect("first read-write open", try_open(path, 0, &a), 0);
    expect("second read-write open is refused", try_open(path, 0, NULL), -EBUSY);
    if (!strstr(topcow_last_error(), "in use by another process")) {
        printf("FAIL message does not say the image is in use: %s\n", topcow_last_error());
        failures++;
    }
    expect("read-only open while written is refused", try_open(path, TOPCOW_OPEN_RDONLY, NULL),
           -EBUSY);
    expect("force-share open while written works",
           try_open(path, TOPCOW_OPEN_FORCE_SHARE, NULL), 0);
    topcow_image_close(a);
    expect("readers share", try_open(path, TOPCOW_OPEN_RDONLY, &a), 0);
    expect("second reader", try_open(path, TOPCOW_OPEN_RDONLY, &b), 0);
    expect("writer refused while read", try_open(path, 0, NULL), -EBUSY);
    topcow_image_close(a);
    topcow_image_close(b);
    expect("writer after readers closed", try_open(path, 0, NULL), 0);

    if (have("qemu-io") && have("qemu-img")) {
        /* qemu-io keeps the image open for writing while it waits for stdin. */
        snprintf(cmd, sizeof cmd, "sleep 4 | qemu-io -f qcow2 %s >/dev/null 2>&1 &", path);
        if (system(cmd) != 0)
            return 1;
        int r = 0;
        for (int i = 0; i < 40 && r == 0; i++) { /* wait until qemu-io has it */
            r = try_open(path, 0, NULL);
            if (r == 0)
                usleep(50000);
        }
        expect("topcow refuses an image qemu-io writes", r, -EBUSY);
        sleep(5);
        expect("after qemu-io exits", try_open(path, 0, &a), 0);
        snprintf(cmd, sizeof cmd, "qemu-img info %s >/dev/null 2>&1", path);
        expect("qemu-img info refuses an image topcow writes", system(cmd) != 0 ? -EBUSY : 0,
               -EBUSY);
        snprintf(cmd, sizeof cmd, "qemu-img info -U %s >/dev/null 2>&1", path);
        expect("qemu-img info -U reads it", system(cmd), 0);
        topcow_image_close(a);
    } else {
        printf("SKIP: qemu-io/qemu-img not installed\n");
        return 77;
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
