// SPDX-License-Identifier: MIT
/* topcow io: the data commands (read, readv, aio_read, write, writev,
 * aio_write, discard) and the allocation queries (alloc, map).  Checks run in
 * the order qemu-io 7.2 runs them, so a bad command prints the same first
 * complaint.  The aio_* commands complete synchronously, printing what
 * qemu-io prints once its requests are drained. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io-cmds.h"
#include "minmax.h"
#include "util.h"

/* Scratch buffers up to this size stay allocated between commands. */
#define BUF_KEEP (64u << 20)
/* Default pattern of write, writev and aio_write. */
#define WRITE_PATTERN 0xcd

/* A page-aligned buffer of at least @len bytes, valid until buf_release(). */
static uint8_t *
buf_get(struct io_shell *sh, size_t len)
{
    if (len == 0)
        len = 1;
    if (len <= sh->buf_size)
        return sh->buf;
    void *p;
    if (posix_memalign(&p, 4096, len) != 0) {
        error_msg("out of memory (%zu bytes)", len);
        return NULL;
    }
    free(sh->buf);
    sh->buf = p;
    sh->buf_size = len;
    return p;
}

/* Drop a scratch buffer too large to keep around. */
static void
buf_release(struct io_shell *sh)
{
    if (sh->buf_size > BUF_KEEP) {
        free(sh->buf);
        sh->buf = NULL;
        sh->buf_size = 0;
    }
}

/* qemu-io checks ranges against the image size itself and reports EIO. */
static int
check_range(struct io_shell *sh, uint64_t off, uint64_t len)
{
    uint64_t size = topcow_image_size(sh->img);
    return off > size || len > size - off ? -EIO : 0;
}

static bool
all_equal(const uint8_t *p, size_t n, uint8_t v)
{
    return n == 0 || (p[0] == v && memcmp(p, p + 1, n - 1) == 0);
}

/* Parse the "off len" operands at @args. */
static int
parse_off_len(char **args, uint64_t *off, uint64_t *len)
{
    int r = io_parse_num(args[0], off);
    return r < 0 ? r : io_parse_num(args[1], len);
}

/* Sum the length operands of readv/writev/aio_*, checking each against the
 * request limit as qemu-io does. */
static int
parse_lengths(int n, char **args, uint64_t *total)
{
    *total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t len;
        int r = io_parse_num(args[i], &len);
        if (r < 0)
            return r;
        if (len > IO_MAX_REQUEST) {
            printf("Argument '%s' exceeds maximum size %llu\n", args[i], IO_MAX_REQUEST);
            return -EINVAL;
        }
        if (len > IO_MAX_REQUEST - *total) {
            printf("The total number of bytes exceed the maximum size %llu\n", IO_MAX_REQUEST);
            return -EINVAL;
        }
        *total += len;
    }
    return 0;
}

/* -b and -c need sector-aligned requests. */
static int
check_sector_aligned(uint64_t off, uint64_t len)
{
    if (off & 511) {
        printf("%" PRIu64 " is not a sector-aligned value for 'offset'\n", off);
        return -EINVAL;
    }
    if (len & 511) {
        printf("%" PRIu64 " is not a sector-aligned value for 'count'\n", len);
        return -EINVAL;
    }
    return 0;
}

static void
now(struct timespec *t)
{
    clock_gettime(CLOCK_MONOTONIC, t);
}

static int
do_read(struct io_shell *sh, uint8_t *buf, uint64_t off, uint64_t len)
{
    int r = check_range(sh, off, len);
    return r < 0 ? r : topcow_image_pread(sh->img, buf, (size_t)len, off);
}

static int
do_write_compressed(struct io_shell *sh, const uint8_t *buf, uint64_t off, uint64_t len)
{
    int r = check_range(sh, off, len);
    return r < 0 ? r : topcow_image_pwrite_compressed(sh->img, buf, (size_t)len, off);
}

static int
do_write(struct io_shell *sh, const uint8_t *buf, uint64_t off, uint64_t len, unsigned flags)
{
    int r = check_range(sh, off, len);
    return r < 0 ? r : topcow_image_pwrite(sh->img, buf, (size_t)len, off, flags);
}

/* Unlike discard, -u deallocates even with -d ignore, as in qemu-io. */
static int
do_write_zeroes(struct io_shell *sh, uint64_t off, uint64_t len, unsigned flags)
{
    int r = check_range(sh, off, len);
    return r < 0 ? r : topcow_image_write_zeroes(sh->img, off, len, flags);
}

/* Fill @buf with the contents of @path, repeated.  Messages as qemu-io's. */
static int
fill_from_file(uint8_t *buf, size_t len, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -errno;
    }
    size_t n = fread(buf, 1, len, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: %s\n", path, strerror(err));
        return -err;
    }
    if (n == 0 && len > 0) {
        fprintf(stderr, "%s: file is empty\n", path);
        return -EINVAL;
    }
    for (size_t done = n; done < len; done += MIN(n, len - done))
        memcpy(buf + done, buf, MIN(n, len - done));
    return 0;
}

/* ---- read / readv / aio_read --------------------------------------------- */

int
io_cmd_read(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    bool Cflag = false, qflag = false, vflag = false, bflag = false;
    bool Pflag = false, sflag = false, lflag = false;
    int pattern = 0;
    uint64_t poff = 0, plen = 0;
    int c, r;

    io_getopt_reset();
    while ((c = getopt(argc, argv, "bCl:pP:qs:v")) != -1) {
        switch (c) {
        case 'b': bflag = true; break;
        case 'C': Cflag = true; break;
        case 'l':
            lflag = true;
            if ((r = io_parse_num(optarg, &plen)) < 0)
                return r;
            break;
        case 'p': break;
        case 'P':
            Pflag = true;
            if ((pattern = io_parse_pattern(optarg)) < 0)
                return -EINVAL;
            break;
        case 'q': qflag = true; break;
        case 's':
            sflag = true;
            if ((r = io_parse_num(optarg, &poff)) < 0)
                return r;
            break;
        case 'v': vflag = true; break;
        default: return io_usage(self);
        }
    }
    if (optind != argc - 2)
        return io_usage(self);

    uint64_t off, len;
    if ((r = parse_off_len(argv + optind, &off, &len)) < 0)
        return r;
    if (len > IO_MAX_REQUEST) {
        printf("length cannot exceed %llu, given %s\n", IO_MAX_REQUEST, argv[optind + 1]);
        return -EINVAL;
    }
    if (!Pflag && (lflag || sflag))
        return io_usage(self);
    if (!lflag)
        plen = len - MIN(poff, len);
    if (poff > len || plen > len - poff) {
        printf("pattern verification range exceeds end of read data\n");
        return -EINVAL;
    }
    if (bflag && (r = check_sector_aligned(off, len)) < 0)
        return r;

    uint8_t *buf = buf_get(sh, (size_t)len);
    if (!buf)
        return -ENOMEM;
    struct timespec t1, t2;
    now(&t1);
    r = bflag ? -ENOTSUP : do_read(sh, buf, off, len);
    now(&t2);
    if (r < 0) {
        io_report_failure("read", r);
        goto out;
    }
    if (Pflag && !all_equal(buf + poff, (size_t)plen, (uint8_t)pattern)) {
        printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
               off + poff, plen);
        r = -EINVAL;
    }
    if (qflag)
        goto out;
    if (vflag)
        io_dump_buffer(buf, off, (size_t)len);
    struct timespec t = io_elapsed(&t1, &t2);
    io_print_report("read", &t, off, len, 1, Cflag);
out:
    buf_release(sh);
    return r;
}

/* readv and aio_read share everything but their option letters and how
 * failures count: an aio request "succeeds" once submitted. */
static int
vector_read(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv, bool aio)
{
    bool Cflag = false, qflag = false, vflag = false, Pflag = false;
    int pattern = 0, c, r;

    io_getopt_reset();
    while ((c = getopt(argc, argv, aio ? "CiP:qv" : "CP:qv")) != -1) {
        switch (c) {
        case 'C': Cflag = true; break;
        case 'i':
            printf("injecting invalid read request\n");
            return 0;
        case 'P':
            Pflag = true;
            if ((pattern = io_parse_pattern(optarg)) < 0)
                return -EINVAL;
            break;
        case 'q': qflag = true; break;
        case 'v': vflag = true; break;
        default: return io_usage(self);
        }
    }
    if (optind > argc - 2)
        return io_usage(self);

    uint64_t off, len;
    if ((r = io_parse_num(argv[optind], &off)) < 0)
        return r;
    if ((r = parse_lengths(argc - optind - 1, argv + optind + 1, &len)) < 0)
        return r;

    uint8_t *buf = buf_get(sh, (size_t)len);
    if (!buf)
        return -ENOMEM;
    struct timespec t1, t2;
    now(&t1);
    r = do_read(sh, buf, off, len);
    now(&t2);
    if (r < 0) {
        io_report_failure("readv", r);
        goto out;
    }
    if (Pflag && !all_equal(buf, (size_t)len, (uint8_t)pattern)) {
        printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n", off,
               len);
        r = -EINVAL;
    }
    if (qflag)
        goto out;
    if (vflag)
        io_dump_buffer(buf, off, (size_t)len);
    struct timespec t = io_elapsed(&t1, &t2);
    io_print_report("read", &t, off, len, 1, Cflag);
out:
    buf_release(sh);
    return aio ? 0 : r;
}

int
io_cmd_readv(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    return vector_read(sh, self, argc, argv, false);
}

int
io_cmd_aio_read(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    return vector_read(sh, self, argc, argv, true);
}

/* ---- write / writev / aio_write ------------------------------------------ */

int
io_cmd_write(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    bool Cflag = false, qflag = false, bflag = false, cflag = false, zflag = false;
    bool Pflag = false, nflag = false, uflag = false;
    unsigned flags = 0;
    const char *src = NULL;
    int pattern = WRITE_PATTERN, c, r;

    io_getopt_reset();
    while ((c = getopt(argc, argv, "bcCfnpP:quzs:")) != -1) {
        switch (c) {
        case 'b': bflag = true; break;
        case 'c': cflag = true; break;
        case 'C': Cflag = true; break;
        case 'f': flags |= TOPCOW_WRITE_FUA; break;
        case 'n': nflag = true; break;
        case 'p': break;
        case 'P':
            Pflag = true;
            if ((pattern = io_parse_pattern(optarg)) < 0)
                return -EINVAL;
            break;
        case 'q': qflag = true; break;
        case 'u': uflag = true; break;
        case 'z': zflag = true; break;
        case 's': src = optarg; break;
        default: return io_usage(self);
        }
    }
    if (optind != argc - 2)
        return io_usage(self);
    if (nflag && !zflag) {
        printf("-n requires -z to be specified\n");
        return -EINVAL;
    }
    if (uflag && !zflag) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    if ((int)zflag + (int)Pflag + (int)(src != NULL) > 1) {
        printf("Only one of -z, -P, and -s can be specified at the same time\n");
        return -EINVAL;
    }

    uint64_t off, len;
    if ((r = parse_off_len(argv + optind, &off, &len)) < 0)
        return r;
    if (len > IO_MAX_REQUEST && !nflag) {
        printf("length cannot exceed %llu without -n, given %s\n", IO_MAX_REQUEST,
               argv[optind + 1]);
        return -EINVAL;
    }
    if ((bflag || cflag) && (r = check_sector_aligned(off, len)) < 0)
        return r;
    if (cflag && (flags & TOPCOW_WRITE_FUA)) {
        printf("-f and -b or -c cannot be specified at the same time\n");
        return -EINVAL;
    }

    uint8_t *buf = NULL;
    if (!zflag) {
        if (!(buf = buf_get(sh, (size_t)len)))
            return -ENOMEM;
        if (src) {
            if ((r = fill_from_file(buf, (size_t)len, src)) < 0)
                goto out;
        } else {
            memset(buf, pattern, (size_t)len);
        }
    }
    if (zflag)
        flags |= (uflag ? TOPCOW_ZERO_MAY_UNMAP : 0) | (nflag ? TOPCOW_ZERO_FAST : 0);

    struct timespec t1, t2;
    now(&t1);
    if (bflag)
        r = -ENOTSUP;
    else if (zflag)
        r = do_write_zeroes(sh, off, len, flags);
    else if (cflag)
        r = do_write_compressed(sh, buf, off, len);
    else
        r = do_write(sh, buf, off, len, flags);
    now(&t2);
    if (r < 0) {
        io_report_failure("write", r);
        goto out;
    }
    if (!qflag) {
        struct timespec t = io_elapsed(&t1, &t2);
        io_print_report("wrote", &t, off, len, 1, Cflag);
    }
out:
    buf_release(sh);
    return r;
}

/* writev and aio_write: as vector_read. */
static int
vector_write(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv,
             bool aio)
{
    bool Cflag = false, qflag = false, zflag = false, uflag = false;
    unsigned flags = 0;
    int pattern = WRITE_PATTERN, c, r;

    io_getopt_reset();
    while ((c = getopt(argc, argv, aio ? "CfiP:quz" : "CfqP:")) != -1) {
        switch (c) {
        case 'C': Cflag = true; break;
        case 'f': flags |= TOPCOW_WRITE_FUA; break;
        case 'i':
            printf("injecting invalid write request\n");
            return 0;
        case 'P':
            if ((pattern = io_parse_pattern(optarg)) < 0)
                return -EINVAL;
            break;
        case 'q': qflag = true; break;
        case 'u': uflag = true; break;
        case 'z': zflag = true; break;
        default: return io_usage(self);
        }
    }
    if (optind > argc - 2)
        return io_usage(self);
    if (uflag && !zflag) {
        printf("-u requires -z to be specified\n");
        return -EINVAL;
    }
    if (zflag && optind != argc - 2) {
        printf("-z supports only a single length parameter\n");
        return -EINVAL;
    }

    uint64_t off, len;
    if ((r = io_parse_num(argv[optind], &off)) < 0)
        return r;
    if (zflag)
        r = io_parse_num(argv[optind + 1], &len);
    else
        r = parse_lengths(argc - optind - 1, argv + optind + 1, &len);
    if (r < 0)
        return r;

    uint8_t *buf = NULL;
    if (!zflag) {
        if (!(buf = buf_get(sh, (size_t)len)))
            return -ENOMEM;
        memset(buf, pattern, (size_t)len);
    }
    struct timespec t1, t2;
    now(&t1);
    if (zflag)
        r = do_write_zeroes(sh, off, len, flags | (uflag ? TOPCOW_ZERO_MAY_UNMAP : 0));
    else
        r = do_write(sh, buf, off, len, flags);
    now(&t2);
    if (r < 0) {
        io_report_failure(aio ? "aio_write" : "writev", r);
        goto out;
    }
    if (!qflag) {
        struct timespec t = io_elapsed(&t1, &t2);
        io_print_report("wrote", &t, off, len, 1, Cflag);
    }
out:
    buf_release(sh);
    return aio ? 0 : r;
}

int
io_cmd_writev(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    return vector_write(sh, self, argc, argv, false);
}

int
io_cmd_aio_write(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    return vector_write(sh, self, argc, argv, true);
}

int
io_cmd_discard(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    bool Cflag = false, qflag = false;
    int c, r;

    io_getopt_reset();
    while ((c = getopt(argc, argv, "Cq")) != -1) {
        switch (c) {
        case 'C': Cflag = true; break;
        case 'q': qflag = true; break;
        default: return io_usage(self);
        }
    }
    if (optind != argc - 2)
        return io_usage(self);
    uint64_t off, len;
    if ((r = parse_off_len(argv + optind, &off, &len)) < 0)
        return r;
    if (len > IO_MAX_REQUEST) {
        printf("length cannot exceed %llu, given %s\n", IO_MAX_REQUEST, argv[optind + 1]);
        return -EINVAL;
    }

    struct timespec t1, t2;
    now(&t1);
    r = check_range(sh, off, len);
    if (r == 0 && sh->discard)
        r = topcow_image_discard(sh->img, off, len);
    now(&t2);
    if (r < 0) {
        io_report_failure("discard", r);
        return r;
    }
    if (!qflag) {
        struct timespec t = io_elapsed(&t1, &t2);
        io_print_report("discard", &t, off, len, 1, Cflag);
    }
    return 0;
}

/* Whether [@off, @off+@len) of the top layer is allocated, and for how many
 * bytes (at most @len) that stays the same. */
static int
top_allocated(struct io_shell *sh, uint64_t off, uint64_t len, bool *alloc, uint64_t *n)
{
    struct topcow_extent e;
    int r = topcow_image_block_status(sh->img, off, len, TOPCOW_BS_TOP_ONLY, &e);
    if (r < 0)
        return r;
    *alloc = (e.flags & TOPCOW_EXTENT_ALLOCATED) != 0;
    *n = e.length;
    return 0;
}

int
io_cmd_alloc(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)self;
    uint64_t off, count = 512;
    int r;
    if ((r = io_parse_num(argv[1], &off)) < 0)
        return r;
    if (argc == 3 && (r = io_parse_num(argv[2], &count)) < 0)
        return r;

    /* Like qemu-io, look no further than the end of the image. */
    uint64_t size = topcow_image_size(sh->img);
    uint64_t remaining = off >= size ? 0 : MIN(count, size - off);
    uint64_t pos = off, sum = 0, seen = 0;
    while (remaining > 0) {
        bool alloc;
        uint64_t n;
        if ((r = top_allocated(sh, pos, remaining, &alloc, &n)) < 0) {
            io_report_failure("alloc", r);
            return r;
        }
        if (alloc)
            sum += n;
        seen += n;
        pos += n;
        remaining -= n;
    }
    char s[64];
    io_cvtstr((double)off, s, sizeof s);
    printf("%" PRIu64 "/%" PRIu64 " bytes allocated at offset %s\n", sum, seen, s);
    return 0;
}

int
io_cmd_map(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)self, (void)argc, (void)argv;
    uint64_t size = topcow_image_size(sh->img), off = 0;
    int r;
    while (off < size) {
        /* One line per run of equal allocation state, however many extents
         * the library reports for it. */
        bool alloc, next_alloc;
        uint64_t n, m;
        if ((r = top_allocated(sh, off, size - off, &alloc, &n)) < 0)
            goto fail;
        while (off + n < size) {
            if ((r = top_allocated(sh, off + n, size - off - n, &next_alloc, &m)) < 0)
                goto fail;
            if (next_alloc != alloc)
                break;
            n += m;
        }
        char s1[64], s2[64];
        io_cvtstr((double)n, s1, sizeof s1);
        io_cvtstr((double)off, s2, sizeof s2);
        printf("%s (0x%" PRIx64 ") bytes %s allocated at offset %s (0x%" PRIx64 ")\n", s1, n,
               alloc ? "   " : "not", s2, off);
        off += n;
    }
    return 0;
fail:
    printf("Failed to get allocation status: %s\n", strerror(-r));
    return r;
}
