// SPDX-License-Identifier: MIT
/* Internal snapshots through the public API, judged by QEMU: a chain of
 * writes and snapshots with deletes in the middle; after every operation
 * qemu-img check is clean (no errors, no leaks), every remaining snapshot
 * reads back (qemu-img convert -l) exactly as it was when taken, apply
 * restores it, and a refcount width that cannot count one more reference is
 * refused without leaking anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>

#include "topcow.h"

#define SIZE (8u << 20)
#define MAXSNAP 8

static char dir[] = "/tmp/topcow-snapshot.XXXXXX";
static char path[300];
static int failures;
static uint8_t *model[MAXSNAP + 1]; /* contents per snapshot id; [0] = current */
static char names[MAXSNAP + 1][16];

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) < 0) {                                                                             \
            fprintf(stderr, "FAIL %s: %s\n", #x, topcow_last_error());                             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void
qemu_check(const char *when)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd,
             "qemu-img check %s > %s/check.out 2>&1 && grep -q 'No errors' %s/check.out && "
             "! grep -q leaked %s/check.out",
             path, dir, dir, dir);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/check.out", dir);
        if (system(cmd) != 0)
            return;
        printf("FAIL qemu-img check after %s\n", when);
        failures++;
    }
}

/* The snapshot called @name must read (through QEMU) as @want. */
static void
qemu_snapshot_is(const char *name, const uint8_t *want)
{
    char cmd[700], out[320];
    snprintf(out, sizeof out, "%s/snap.raw", dir);
    snprintf(cmd, sizeof cmd, "qemu-img convert -l snapshot.name=%s -O raw %s %s", name, path,
             out);
    FILE *f = NULL;
    uint8_t *got = malloc(SIZE);
    bool ok = system(cmd) == 0 && (f = fopen(out, "rb")) && fread(got, 1, SIZE, f) == SIZE &&
              memcmp(got, want, SIZE) == 0;
    if (f)
        fclose(f);
    free(got);
    printf("%s snapshot %s reads back as taken\n", ok ? "ok  " : "FAIL", name);
    if (!ok)
        failures++;
}

static void
write_pattern(struct topcow_image *img, uint64_t off, uint64_t len, int v)
{
    uint8_t *buf = malloc(len);
    memset(buf, v, len);
    CHECK(topcow_image_pwrite(img, buf, len, off, 0));
    memset(model[0] + off, v, len);
    free(buf);
}

int
main(void)
{
    if (system("command -v qemu-img >/dev/null") != 0) {
        printf("SKIP: qemu-img not installed\n");
        return 77;
    }
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/s.qcow2", dir);
    struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
    co.size = SIZE;
    CHECK(topcow_image_create(path, &co));
    for (int i = 0; i <= MAXSNAP; i++)
        model[i] = calloc(1, SIZE);

    struct topcow_image *img;
    CHECK(topcow_image_open(&img, path, NULL));
    /* Five levels, overwriting and zeroing between them, deleting two. */
    for (int level = 1; level <= 6; level++) {
        write_pattern(img, (uint64_t)(level - 1) * 1000000, 1500000, level);
        CHECK(topcow_image_write_zeroes(img, (uint64_t)level * 65536 * 7, 65536, 0));
        memset(model[0] + (uint64_t)level * 65536 * 7, 0, 65536);
        snprintf(names[level], sizeof names[level], "level%d", level);
        CHECK(topcow_snapshot_create(img, names[level]));
        memcpy(model[level], model[0], SIZE);
        if (level == 3)
            CHECK(topcow_snapshot_delete(img, "level2"));
        if (level == 5)
            CHECK(topcow_snapshot_delete(img, "1"));
    }
    write_pattern(img, 0, SIZE / 2, 0x77);
    CHECK(topcow_image_close(img));
    qemu_check("the snapshot chain");
    for (int level = 3; level <= 6; level++)
        qemu_snapshot_is(names[level], model[level]);

    /* Apply goes back; the snapshot stays; writes after it COW. */
    CHECK(topcow_image_open(&img, path, NULL));
    CHECK(topcow_snapshot_apply(img, "level4"));
    uint8_t *cur = malloc(SIZE);
    CHECK(topcow_image_pread(img, cur, SIZE, 0));
    bool ok = memcmp(cur, model[4], SIZE) == 0;
    printf("%s apply restores level4\n", ok ? "ok  " : "FAIL");
    failures += !ok;
    free(cur);
    memcpy(model[0], model[4], SIZE);
    write_pattern(img, 65536, 65536, 0x55);
    CHECK(topcow_image_close(img));
    qemu_check("apply and a write");
    qemu_snapshot_is("level4", model[4]);
    unsigned n;
    CHECK(topcow_image_open(&img, path, NULL));
    n = topcow_snapshot_count(img);
    printf("%s %u snapshots listed\n", n == 4 ? "ok  " : "FAIL", n);
    failures += n != 4;
    CHECK(topcow_image_close(img));

    /* refcount_bits=1 cannot count a second reference: refused, no leak. */
    snprintf(path, sizeof path, "%s/r1.qcow2", dir);
    co.refcount_bits = 1;
    CHECK(topcow_image_create(path, &co));
    CHECK(topcow_image_open(&img, path, NULL));
    memset(model[0], 0, SIZE);
    write_pattern(img, 0, 1 << 20, 1);
    int r = topcow_snapshot_create(img, "x");
    printf("%s refcount_bits=1 refuses a snapshot (r=%d: %s)\n", r == -ERANGE ? "ok  " : "FAIL",
           r, topcow_last_error());
    failures += r != -ERANGE;
    CHECK(topcow_image_close(img));
    qemu_check("a refused snapshot");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
