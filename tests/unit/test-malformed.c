// SPDX-License-Identifier: MIT
/* Malformed qcow2 images: each damaged structure must make open (or the
 * first read that touches it) fail with the right errno and a one-line
 * message naming the structure - never crash, hang or return data.
 * Each case starts from a valid image made by topcow_image_create and
 * patches bytes in it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "topcow.h"
#include "byteorder.h"

static char dir[] = "/tmp/topcow-malformed.XXXXXX";
static int failures;
static const char *keep_dir; /* --keep DIR: leave each damaged image there */

/* Make a fresh 64 MiB v3 image with one written cluster; returns its path. */
static const char *
fresh_image(void)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/img.qcow2", dir);
    struct topcow_create_opts o = TOPCOW_CREATE_OPTS_INIT;
    o.size = 64 << 20;
    if (topcow_image_create(path, &o) < 0) {
        fprintf(stderr, "create: %s\n", topcow_last_error());
        exit(1);
    }
    struct topcow_image *img;
    static char buf[65536];
    memset(buf, 0x5a, sizeof buf);
    if (topcow_image_open(&img, path, NULL) < 0 || topcow_image_pwrite(img, buf, sizeof buf, 0, 0) < 0 ||
        topcow_image_close(img) < 0) {
        fprintf(stderr, "setup: %s\n", topcow_last_error());
        exit(1);
    }
    return path;
}

static void
patch(const char *path, off_t off, const void *bytes, size_t len)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, bytes, len, off) != (ssize_t)len) {
        perror("patch");
        exit(1);
    }
    close(fd);
}

static void
patch_be64(const char *path, off_t off, uint64_t v)
{
    uint8_t b[8];
    be64_put(b, v);
    patch(path, off, b, 8);
}

static void
patch_be32(const char *path, off_t off, uint32_t v)
{
    uint8_t b[4];
    be32_put(b, v);
    patch(path, off, b, 4);
}

static uint64_t
read_be64(const char *path, off_t off)
{
    uint8_t b[8] = { 0 };
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, b, 8, off) != 8) {
        perror("read");
        exit(1);
    }
    close(fd);
    return be64_get(b);
}

/* Open (explicitly as qcow2) and read the first cluster; the first failure
 * must carry @want_errno and a message containing @want_text. */
static void
expect(const char *name, const char *path, int want_errno, const char *want_text)
{
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.format = "qcow2";
    o.flags = TOPCOW_OPEN_RDONLY;
    struct topcow_image *img = NULL;
    static char buf[65536];
    char msg[512] = "";
    int r = topcow_image_open(&img, path, &o);
    if (r == 0)
        r = topcow_image_pread(img, buf, sizeof buf, 0);
    snprintf(msg, sizeof msg, "%s", topcow_last_error()); /* before close resets it */
    topcow_image_close(img);
    bool ok = r == -want_errno && strstr(msg, want_text) && !strchr(msg, '\n');
    if (keep_dir) {
        /* DIR/NN.qcow2 plus DIR/NN.expect holding the text the error must name. */
        static int n;
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "cp %s %s/%02d.qcow2 && printf '%%s\\n' '%s' > %s/%02d.expect",
                 path, keep_dir, n, want_text, keep_dir, n);
        n++;
        if (system(cmd) != 0)
            failures++;
    }
    printf("%s %-28s r=%d msg=%s\n", ok ? "ok  " : "FAIL", name, r, msg);
    if (!ok) {
        printf("     expected errno %d and a message containing \"%s\"\n", want_errno,
               want_text);
        failures++;
    }
}

int
main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--keep"))
        keep_dir = argv[2];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    const char *p;

    p = fresh_image();
    patch(p, 0, "QFI\xfc", 4);
    expect("bad magic", p, EUCLEAN, "bad magic");

    p = fresh_image();
    if (truncate(p, 60) != 0)
        return 1;
    expect("truncated header", p, EUCLEAN, "header truncated");

    p = fresh_image();
    if (truncate(p, 90) != 0)
        return 1;
    expect("truncated v3 header", p, EUCLEAN, "header truncated");

    p = fresh_image();
    patch_be32(p, 4, 4);
    expect("unsupported version", p, ENOTSUP, "version 4");

    p = fresh_image();
    patch_be32(p, 20, 8);
    expect("cluster_bits too small", p, EUCLEAN, "cluster_bits 8 out of range");

    p = fresh_image();
    patch_be32(p, 20, 22);
    expect("cluster_bits too large", p, EUCLEAN, "cluster_bits 22 out of range");

    p = fresh_image();
    patch_be64(p, 40, 1ull << 40);
    expect("L1 past EOF", p, EUCLEAN, "L1 table");

    p = fresh_image();
    patch_be64(p, 40, 0);
    expect("L1 overlapping header", p, EUCLEAN, "L1 table at offset 0x0 overlaps the header");

    p = fresh_image();
    patch_be64(p, 40, 0x30200);
    expect("L1 unaligned", p, EUCLEAN, "L1 table offset 0x30200 is not cluster aligned");

    p = fresh_image();
    patch_be32(p, 36, 0);
    expect("L1 too small", p, EUCLEAN, "L1 table is too small");

    p = fresh_image();
    patch_be64(p, 48, 1ull << 40);
    expect("refcount table past EOF", p, EUCLEAN, "refcount table");

    p = fresh_image();
    patch_be64(p, 48, 0);
    expect("refcount table over header", p, EUCLEAN, "refcount table at offset 0x0 overlaps");

    p = fresh_image();
    patch_be32(p, 56, 0);
    expect("no refcount table", p, EUCLEAN, "does not contain a reference count table");

    p = fresh_image();
    patch_be32(p, 96, 7);
    expect("refcount_order too large", p, EUCLEAN, "reference count entry width too large");

    p = fresh_image();
    patch_be32(p, 100, 64);
    expect("header_length too small", p, EUCLEAN, "header too short");

    p = fresh_image();
    patch_be64(p, 72, 1ull << 63);
    expect("unknown incompatible bit", p, ENOTSUP,
           "Unsupported qcow2 feature(s): Unknown incompatible feature: 8000000000000000");

    p = fresh_image();
    patch_be64(p, 72, 1ull << 4 | 1ull << 40);
    expect("named + unknown feature", p, ENOTSUP,
           "Unsupported qcow2 feature(s): Unknown incompatible feature: 10000000000");

    p = fresh_image();
    {
        /* The second refcount table entry repeats the first block. */
        uint64_t rt = read_be64(p, 48);
        patch_be64(p, rt + 8, read_be64(p, rt));
    }
    expect("refcount block loop", p, EUCLEAN, "used by two refcount table entries");

    p = fresh_image();
    {
        uint64_t rt = read_be64(p, 48);
        patch_be64(p, rt, 0x20200);
    }
    expect("refcount block unaligned", p, EUCLEAN, "invalid refcount block offset 0x20200");

    p = fresh_image();
    {
        uint64_t l1 = read_be64(p, 40);
        uint64_t l2 = read_be64(p, l1) & 0x00fffffffffffe00ull;
        patch_be64(p, l1, (l2 + 0x200) | (1ull << 63));
    }
    expect("L2 offset unaligned", p, EUCLEAN, "L2 table offset 0x40200 in L1 entry 0");

    p = fresh_image();
    {
        uint64_t l1 = read_be64(p, 40);
        uint64_t l2 = read_be64(p, l1) & 0x00fffffffffffe00ull;
        patch_be64(p, l2, 0x50200 | (1ull << 63));
    }
    expect("data cluster unaligned", p, EUCLEAN, "unaligned host offset 0x50200");

    p = fresh_image();
    patch_be64(p, 8, 70000);
    patch_be32(p, 16, 10);
    expect("backing name offset", p, EUCLEAN, "invalid backing file name offset");

    p = fresh_image();
    patch_be32(p, 60, 70000);
    expect("too many snapshots", p, EUCLEAN, "too many snapshots");

    p = fresh_image();
    patch_be32(p, 60, 1);
    patch_be64(p, 64, 1ull << 30);
    expect("snapshot table past EOF", p, EUCLEAN, "snapshot table offset");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
