// SPDX-License-Identifier: MIT
/* Concurrency stress: T threads share one image handle.  Thread t owns the
 * 512-byte sectors s with s % T == t, so every cluster is written by all
 * threads at once - allocation, copy-on-write over a backing file and zero
 * writes race on the same clusters.  Each thread writes, zeroes and
 * read-verifies its own sectors against its model; at the end the whole
 * image is verified and `qemu-img check` must find no errors or leaks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"

#define NTHREADS 4
#define SECTOR 512u

struct worker {
    struct topcow_image *img;
    unsigned id;
    uint64_t nsectors;
    uint8_t *model;     /* byte value of every sector (0 = zeros) */
    unsigned iterations;
    int failed;
};

static uint64_t
xorshift(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void *
work(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0x1234567ull + w->id * 7919;
    uint8_t buf[SECTOR];
    for (unsigned it = 0; it < w->iterations && !w->failed; it++) {
        /* One of my sectors, anywhere in the image. */
        uint64_t s = (xorshift(&rng) % (w->nsectors / NTHREADS)) * NTHREADS + w->id;
        unsigned op = (unsigned)(xorshift(&rng) % 10);
        int r = 0;
        if (op < 6) {
            uint8_t v = (uint8_t)(1 + xorshift(&rng) % 255);
            memset(buf, v, SECTOR);
            r = topcow_image_pwrite(w->img, buf, SECTOR, s * SECTOR, 0);
            w->model[s] = v;
        } else if (op < 8) {
            r = topcow_image_write_zeroes(w->img, s * SECTOR, SECTOR,
                                          op == 7 ? TOPCOW_ZERO_MAY_UNMAP : 0);
            w->model[s] = 0;
        } else {
            r = topcow_image_pread(w->img, buf, SECTOR, s * SECTOR);
            for (unsigned i = 0; r == 0 && i < SECTOR; i++)
                if (buf[i] != w->model[s]) {
                    fprintf(stderr, "thread %u: sector %llu byte %u is %u, expected %u\n", w->id,
                            (unsigned long long)s, i, buf[i], w->model[s]);
                    w->failed = 1;
                    break;
                }
        }
        if (r < 0) {
            fprintf(stderr, "thread %u: %s\n", w->id, topcow_last_error());
            w->failed = 1;
        }
    }
    return NULL;
}

static int
run(const char *dir, uint32_t cluster_size, bool ext_l2, bool backing)
{
    char path[300], base[300], cmd[700];
    const uint64_t size = 8 << 20, nsectors = size / SECTOR;
    snprintf(path, sizeof path, "%s/c.qcow2", dir);
    snprintf(base, sizeof base, "%s/b.qcow2", dir);
    uint8_t *model = calloc(nsectors, 1);
    struct topcow_create_opts o = TOPCOW_CREATE_OPTS_INIT;
    o.size = size;
    if (backing) { /* every sector of the base holds 0xbb */
        if (topcow_image_create(base, &o) < 0)
            goto fail;
        struct topcow_image *b;
        uint8_t *fill = malloc(size);
        memset(fill, 0xbb, size);
        if (topcow_image_open(&b, base, NULL) < 0 || topcow_image_pwrite(b, fill, size, 0, 0) < 0)
            goto fail;
        free(fill);
        topcow_image_close(b);
        memset(model, 0xbb, nsectors);
        o.backing_file = "b.qcow2";
        o.backing_format = "qcow2";
    }
    o.cluster_size = cluster_size;
    o.extended_l2 = ext_l2;
    if (topcow_image_create(path, &o) < 0)
        goto fail;
    struct topcow_image *img;
    if (topcow_image_open(&img, path, NULL) < 0)
        goto fail;
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        w[t] = (struct worker){ img, t, nsectors, model, 20000, 0 };
        pthread_create(&th[t], NULL, work, &w[t]);
    }
    int failed = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        failed |= w[t].failed;
    }
    uint8_t *all = malloc(size);
    if (topcow_image_pread(img, all, size, 0) < 0)
        goto fail;
    for (uint64_t s = 0; s < nsectors && !failed; s++)
        for (unsigned i = 0; i < SECTOR; i++)
            if (all[s * SECTOR + i] != model[s]) {
                fprintf(stderr, "final: sector %llu is %u, expected %u\n", (unsigned long long)s,
                        all[s * SECTOR + i], model[s]);
                failed = 1;
                break;
            }
    free(all);
    if (topcow_image_close(img) < 0)
        goto fail;
    snprintf(cmd, sizeof cmd,
             "qemu-img check %s >%s/check.out 2>&1 && grep -q 'No errors' %s/check.out && "
             "! grep -q leaked %s/check.out || { cat %s/check.out; exit 1; }",
             path, dir, dir, dir, dir);
    if (system(cmd) != 0)
        failed = 1;
    printf("%s cluster_size=%u extended_l2=%d backing=%d\n", failed ? "FAIL" : "ok  ",
           cluster_size, ext_l2, backing);
    free(model);
    return failed;
fail:
    fprintf(stderr, "setup: %s\n", topcow_last_error());
    free(model);
    return 1;
}

int
main(void)
{
    if (system("command -v qemu-img >/dev/null 2>&1") != 0) {
        printf("SKIP: qemu-img not installed\n");
        return 77;
    }
    char dir[] = "/tmp/topcow-concurrency.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    int failed = 0;
    failed |= run(dir, 65536, false, false);
    failed |= run(dir, 4096, false, true);
    failed |= run(dir, 65536, false, true);
    failed |= run(dir, 65536, true, true);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return failed;
}
