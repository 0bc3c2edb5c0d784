// SPDX-License-Identifier: MIT
/* Seeded mutation test: flip 1..8 bytes inside the metadata of a valid
 * image - header, header extensions, backing file name, L1 and L2 tables,
 * refcount table and blocks, snapshot table and the snapshots' L1/L2
 * tables, bitmap directory and bitmap tables - and require that everything
 * a user may run on the result either works or fails cleanly: never a
 * crash, sanitizer report, hang or multi-line error.
 *
 * In-process (the default), each mutant goes through the library as the
 * tools use it: a read-only open, get_info, the snapshot list, block status
 * and reads over the whole disk (as convert does), a check; then, on a
 * copy, a read-write open with NO_REPAIR|ALLOW_CORRUPT and a check with
 * REPAIR_ALL (as check -r all does), a re-check, a close, and a fresh
 * read-only open that checks and reads again.  Every call that fails must
 * return a negative errno and leave a one-line, non-empty message; every
 * check report line must be one non-empty line.
 *
 * With --cli TOPCOW the same mutants (same seeds) go through the real
 * command line instead: `topcow info`, `check -f qcow2`, `convert -f qcow2
 * -O raw` and `check -f qcow2 -r all` on a copy.  What is accepted:
 *   info, convert: exit 0 with nothing on stderr, or exit 1 with exactly one
 *     line on stderr, starting "topcow: ".
 *   check (and -r all): exit 0, 2 (corruptions) or 3 (leaks) with any number
 *     of report lines on stderr, as qemu-img prints one line per problem; or
 *     exit 1 ("check failed") whose last stderr line starts "topcow: ".
 *   Never: a signal, a timeout, another exit status, an empty stderr line, or
 *     a sanitizer report (children run with ASan/UBSan exit codes 86/87).
 *
 * usage: robust-mutate [options] IMAGEDIR   (images from make-images.sh)
 *   --types A,B      these types only (default: all in IMAGEDIR/types)
 *   --mutants N      mutants per type (default 1000), from --first I (default 0)
 *   --mutant I       mutant I only (replay)
 *   --seed S         base seed (default 1)
 *   --cli TOPCOW     through the command line (see above)
 *   --timeout SEC    per mutant in-process, per command with --cli (default 30)
 *   --keep DIR       save each failing mutant there as TYPE-I.qcow2
 *   --print          print each mutant's mutations and outcome
 * A failure prints the type, mutant and seed and a one-line replay command
 * (set ROBUST_REPLAY to the command prefix; mutate.sh does).  Mutants depend
 * only on the seed, the type name, the index and the base image.
 * Exit status: 0 all clean, 1 failures, 2 usage, 3 a mutant hung. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "topcow.h"
#include "byteorder.h"

/* Sanitizer hooks, present only when the build has the runtime. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

#define MAX_REGIONS 4096
#define LEAK_BATCH 100 /* mutants between leak checks */

/* Work per mutant is bounded, so a mutated huge virtual size cannot make a
 * mutant run for minutes (the library itself must not hang: the timeout). */
#define MAX_BS_CALLS 20000
#define MAX_READ_BYTES (64ull << 20)

enum kind {
    K_HEADER, K_EXT, K_BACKING_NAME, K_L1, K_L2, K_REFTABLE, K_REFBLOCK, K_SNAPTABLE,
    K_SNAP_L1, K_BITMAP_DIR, K_BITMAP_TABLE, K_NKINDS
};
static const char *const kind_names[K_NKINDS] = {
    "header", "header-ext", "backing-name", "l1", "l2", "reftable", "refblock",
    "snapshot-table", "snapshot-l1", "bitmap-dir", "bitmap-table",
};

struct region {
    enum kind kind;
    uint64_t off, len;
};

struct base {
    const char *name;
    uint8_t *img;
    size_t size;
    struct region regions[MAX_REGIONS];
    unsigned nregions;
    unsigned nkind[K_NKINDS];
    char backing[256]; /* backing file name (a file next to the image), or "" */
    char datafile[256];
};

static const char *imgdir, *cli_topcow, *keep_dir;
static uint64_t base_seed = 1;
static unsigned timeout_sec = 30;
static bool print_each;
static char work[256];
static unsigned long failures, mutants_run, leak_failures;
static unsigned long outcome_ok, outcome_err;
static unsigned long found_damage, repaired, clean_after_repair;
static unsigned long errno_count[256];

/* What the crash handlers print: the current mutant and how to replay it. */
static char note[2048];
static size_t note_len;
static uint8_t *cur_img;
static size_t cur_size;
static char cur_keep_path[512];

/* ---- randomness: splitmix64, so a seed replays everywhere ---------------- */

static uint64_t
rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t
below(uint64_t *s, uint64_t n)
{
    return rnd(s) % n;
}

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* ---- files ------------------------------------------------------------------ */

static uint8_t *
slurp(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(path);
        exit(1);
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
        perror(path);
        exit(1);
    }
    close(fd);
    *size = (size_t)st.st_size;
    return buf;
}

static void
spill(const char *path, const uint8_t *buf, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, size) != (ssize_t)size) {
        perror(path);
        exit(1);
    }
    close(fd);
}

static void
copy_file(const char *from, const char *to)
{
    size_t n;
    uint8_t *b = slurp(from, &n);
    spill(to, b, n);
    free(b);
}

/* ---- where the metadata is ----------------------------------------------- */

static void
add_region(struct base *b, enum kind k, uint64_t off, uint64_t len)
{
    if (len == 0 || off >= b->size)
        return;
    if (len > b->size - off)
        len = b->size - off;
    for (unsigned i = 0; i < b->nregions; i++)
        if (b->regions[i].off == off && b->regions[i].kind == k)
            return; /* an L2 table shared by a snapshot and the active L1 */
    if (b->nregions == MAX_REGIONS)
        return;
    b->regions[b->nregions++] = (struct region){ k, off, len };
    b->nkind[k]++;
}

#define L2_OFFSET_MASK 0x00fffffffffffe00ull

static void
add_l1(struct base *b, enum kind k, uint64_t l1_off, uint64_t l1_size, uint64_t cs)
{
    add_region(b, k, l1_off, l1_size * 8);
    for (uint64_t i = 0; i < l1_size && l1_off + 8 * i + 8 <= b->size; i++) {
        uint64_t l2 = be64_get(b->img + l1_off + 8 * i) & L2_OFFSET_MASK;
        if (l2)
            add_region(b, K_L2, l2, cs);
    }
}

/* Parse the (valid) base image and list its metadata regions. */
static void
find_regions(struct base *b)
{
    const uint8_t *h = b->img;
    if (b->size < 104 || be32_get(h) != 0x514649fb) {
        fprintf(stderr, "%s: not a qcow2 image\n", b->name);
        exit(1);
    }
    unsigned version = be32_get(h + 4);
    uint64_t cs = 1ull << be32_get(h + 20);
    uint64_t bf_off = be64_get(h + 8), bf_size = be32_get(h + 16);
    uint64_t l1_size = be32_get(h + 36), l1_off = be64_get(h + 40);
    uint64_t rt_off = be64_get(h + 48), rt_clusters = be32_get(h + 56);
    uint64_t nb_snap = be32_get(h + 60), snap_off = be64_get(h + 64);
    uint64_t hlen = version >= 3 ? be32_get(h + 100) : 72;

    add_region(b, K_HEADER, 0, hlen);
    /* Header extensions, up to and including the end marker. */
    uint64_t p = hlen, bitmap_ext = 0;
    while (p + 8 <= cs && p + 8 <= b->size) {
        uint32_t type = be32_get(h + p), len = be32_get(h + p + 4);
        if (type == 0x23852875 && len >= 24)
            bitmap_ext = p + 8;
        if (type == 0x44415441 && len < sizeof b->datafile)
            memcpy(b->datafile, h + p + 8, len);
        p += 8 + ((len + 7ull) & ~7ull);
        if (type == 0)
            break;
    }
    add_region(b, K_EXT, hlen, p - hlen);
    if (bf_size) {
        add_region(b, K_BACKING_NAME, bf_off, bf_size);
        if (bf_size < sizeof b->backing)
            memcpy(b->backing, h + bf_off, bf_size);
    }
    add_l1(b, K_L1, l1_off, l1_size, cs);
    add_region(b, K_REFTABLE, rt_off, rt_clusters * cs);
    for (uint64_t i = 0; i < rt_clusters * cs / 8 && rt_off + 8 * i + 8 <= b->size; i++) {
        uint64_t rb = be64_get(h + rt_off + 8 * i) & ~0x1ffull;
        if (rb)
            add_region(b, K_REFBLOCK, rb, cs);
    }
    /* Snapshot table: entries of 40 bytes + extra data + id + name, 8-aligned. */
    uint64_t q = snap_off;
    for (uint64_t i = 0; i < nb_snap && q + 40 <= b->size; i++) {
        uint64_t sl1_off = be64_get(h + q), sl1_size = be32_get(h + q + 8);
        uint64_t id_len = be16_get(h + q + 12), name_len = be16_get(h + q + 14);
        uint64_t extra = be32_get(h + q + 36);
        add_l1(b, K_SNAP_L1, sl1_off, sl1_size, cs);
        q += (40 + extra + id_len + name_len + 7) & ~7ull;
    }
    if (nb_snap)
        add_region(b, K_SNAPTABLE, snap_off, q - snap_off);
    /* Bitmap directory: entries of 24 bytes + extra data + name, 8-aligned. */
    if (bitmap_ext) {
        uint64_t dir_size = be64_get(h + bitmap_ext + 8), dir_off = be64_get(h + bitmap_ext + 16);
        add_region(b, K_BITMAP_DIR, dir_off, dir_size);
        for (uint64_t e = dir_off; e + 24 <= dir_off + dir_size && e + 24 <= b->size;) {
            uint64_t t_off = be64_get(h + e), t_size = be32_get(h + e + 8);
            uint64_t name = be16_get(h + e + 18), extra = be32_get(h + e + 20);
            add_region(b, K_BITMAP_TABLE, t_off, t_size * 8);
            e += (24 + extra + name + 7) & ~7ull;
        }
    }
}

/* ---- mutations ----------------------------------------------------------- */

/* Mutate @img (a copy of the base image) as mutant @index; describe the
 * mutations in @desc. */
static void
mutate(const struct base *b, uint64_t index, uint8_t *img, char *desc, size_t desclen)
{
    uint64_t s = base_seed * 0x2545f4914f6cdd1dull ^ fnv1a(b->name) ^
                 (index * 0x9e3779b97f4a7c15ull);
    rnd(&s);
    unsigned n = 1 + (unsigned)below(&s, 8);
    size_t used = 0;
    desc[0] = 0;
    /* One kind of structure for all flips, uniformly among those present,
     * so that small structures (the header) get as many mutants as large
     * ones (refcount blocks); flips cluster there like real damage does. */
    enum kind kinds[K_NKINDS];
    unsigned nk = 0;
    for (unsigned k = 0; k < K_NKINDS; k++)
        if (b->nkind[k])
            kinds[nk++] = k;
    enum kind k = kinds[below(&s, nk)];
    unsigned pick = (unsigned)below(&s, b->nkind[k]);
    const struct region *r = NULL;
    for (unsigned i = 0; i < b->nregions; i++)
        if (b->regions[i].kind == k && pick-- == 0) {
            r = &b->regions[i];
            break;
        }
    for (unsigned i = 0; i < n; i++) {
        uint64_t off = r->off + below(&s, r->len);
        /* Half the time, prefer bytes of a non-zero 8-byte word: the entries
         * in use, rather than the empty tail of a table. */
        if (below(&s, 2))
            for (int tries = 0; tries < 16; tries++) {
                uint64_t w = off & ~7ull;
                if (w + 8 <= cur_size && be64_get(img + w))
                    break;
                off = r->off + below(&s, r->len);
            }
        uint8_t old = img[off], v;
        unsigned how = (unsigned)below(&s, 4);
        if (how < 2)
            v = old ^ (uint8_t)(1u << below(&s, 8));          /* one bit */
        else if (how == 2)
            v = old ^ (uint8_t)(1 + below(&s, 255));          /* any other value */
        else
            v = (const uint8_t[]){ 0x00, 0xff, 0x80, 0x7f, 0x01 }[below(&s, 5)];
        img[off] = v;
        used += (size_t)snprintf(desc + used, used < desclen ? desclen - used : 0,
                                 "%s%s+0x%" PRIx64 ":%02x->%02x", i ? " " : "", kind_names[k],
                                 off - r->off, old, v);
        if (used >= desclen)
            used = desclen - 1;
    }
}

/* ---- reporting ------------------------------------------------------------ */

static void
save_mutant(void)
{
    if (!cur_keep_path[0] || !cur_img)
        return;
    int fd = open(cur_keep_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, cur_img, cur_size);
        (void)w;
        close(fd);
    }
}

static void
write_note(void)
{
    ssize_t w = write(2, note, note_len);
    (void)w;
}

/* Sanitizer death callback: the report has been printed; name the mutant. */
static void
on_death(void)
{
    write_note();
    save_mutant();
}

static void
on_signal(int sig)
{
    static const char hang[] = "robust-mutate: TIMEOUT: the mutant below hung\n";
    static const char crash[] = "robust-mutate: CRASH: a signal in the mutant below\n";
    if (sig == SIGALRM) {
        ssize_t w = write(2, hang, sizeof hang - 1);
        (void)w;
    } else {
        ssize_t w = write(2, crash, sizeof crash - 1);
        (void)w;
    }
    on_death();
    if (sig == SIGALRM)
        _exit(3);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void
set_note(const struct base *b, uint64_t index, const char *desc)
{
    const char *replay = getenv("ROBUST_REPLAY");
    note_len = (size_t)snprintf(note, sizeof note,
                                "  type %s mutant %" PRIu64 " (seed %" PRIu64 "): %s\n"
                                "  replay: %s --seed %" PRIu64 " --types %s --mutant %" PRIu64
                                "%s%s\n",
                                b->name, index, base_seed, desc,
                                replay ? replay : "robust-mutate IMAGEDIR", base_seed, b->name,
                                index, cli_topcow ? " --cli " : "", cli_topcow ? cli_topcow : "");
    if (note_len >= sizeof note)
        note_len = sizeof note - 1;
    if (keep_dir)
        snprintf(cur_keep_path, sizeof cur_keep_path, "%s/%s-%" PRIu64 ".qcow2", keep_dir,
                 b->name, index);
}

static void
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
    va_list ap;
    fputs("FAIL: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    write_note();
    save_mutant();
    failures++;
}

/* ---- in-process ----------------------------------------------------------- */

static const char *cur_op;

/* A failed call must return -errno and leave a one-line message. */
static bool
clean_error(const char *call, int r)
{
    if (r >= 0)
        return true;
    const char *m = topcow_last_error();
    if (r < -4095 || !m || !m[0] || strchr(m, '\n') || strchr(m, '\r')) {
        fail("%s: %s returned %d with message \"%s\"", cur_op, call, r, m ? m : "(null)");
        return false;
    }
    errno_count[-r < 256 ? -r : 0]++;
    if (print_each)
        fprintf(stderr, "    %s: %s: %s\n", cur_op, call, m);
    return true;
}

static void
report_line(void *opaque, const char *line)
{
    (void)opaque;
    if (!line || !line[0] || strchr(line, '\n'))
        fail("%s: check reported a line that is not one line: \"%s\"", cur_op,
             line ? line : "(null)");
}

static int
do_check(struct topcow_image *img, unsigned flags, struct topcow_check_result *res)
{
    memset(res, 0, sizeof *res);
    res->struct_size = sizeof *res;
    int r = topcow_image_check(img, flags, res, report_line, NULL);
    clean_error(flags ? "check -r all" : "check", r);
    return r;
}

static uint8_t *readbuf;
#define READ_CHUNK (1u << 20)

/* Block status and reads over the whole disk, as convert does. */
static void
walk_and_read(struct topcow_image *img)
{
    uint64_t disk = topcow_image_size(img), read = 0;
    unsigned calls = 0;
    for (uint64_t off = 0; off < disk && calls < MAX_BS_CALLS && read < MAX_READ_BYTES; calls++) {
        struct topcow_extent e;
        uint64_t len = disk - off;
        int r = topcow_image_block_status(img, off, len, 0, &e);
        if (!clean_error("block_status", r)) {
            return;
        } else if (r < 0) {
            /* Read it anyway, as a copy that goes on past bad metadata would;
             * then skip a chunk. */
            e.length = len < READ_CHUNK ? len : READ_CHUNK;
            e.flags = TOPCOW_EXTENT_DATA;
        } else if (e.offset != off || e.length == 0 || e.length > len) {
            fail("%s: block status at 0x%" PRIx64 " returned extent 0x%" PRIx64 " +%" PRIu64,
                 cur_op, off, e.offset, e.length);
            return;
        }
        if (!(e.flags & TOPCOW_EXTENT_ZERO)) {
            for (uint64_t o = off; o < off + e.length && read < MAX_READ_BYTES;) {
                size_t n = off + e.length - o < READ_CHUNK ? (size_t)(off + e.length - o)
                                                           : READ_CHUNK;
                r = topcow_image_pread(img, readbuf, n, o);
                clean_error("pread", r);
                read += n;
                o += n;
                if (r < 0)
                    break;
            }
        }
        off += e.length;
    }
}

static void
inspect(struct topcow_image *img)
{
    struct topcow_info info = { .struct_size = sizeof info };
    int r = topcow_image_get_info(img, &info);
    if (!clean_error("get_info", r) || r < 0)
        return;
    /* The strings must be readable (a sanitizer sees a dangling one). */
    const char *strs[] = { info.filename, info.format, info.backing_file, info.backing_format,
                           info.full_backing_filename, info.data_file };
    volatile size_t sink = 0;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i])
            sink += strlen(strs[i]);
    unsigned n = topcow_snapshot_count(img);
    for (unsigned i = 0; i < n && i < 1000; i++) {
        struct topcow_snapshot sn = { .struct_size = sizeof sn };
        r = topcow_snapshot_get(img, i, &sn);
        if (clean_error("snapshot_get", r) && r == 0)
            sink += strlen(sn.id) + strlen(sn.name);
    }
    (void)sink;
}

static void
run_in_process(const struct base *b)
{
    char m[300], rep[300];
    snprintf(m, sizeof m, "%s/m.qcow2", work);
    snprintf(rep, sizeof rep, "%s/r.qcow2", work);
    spill(m, cur_img, cur_size);
    spill(rep, cur_img, cur_size);
    if (b->datafile[0]) {
        char from[600], to[600];
        snprintf(from, sizeof from, "%s/%s", imgdir, b->datafile);
        snprintf(to, sizeof to, "%s/%s", work, b->datafile);
        copy_file(from, to);
    }
    alarm(timeout_sec);

    /* As info, check and convert do: read-only. */
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.format = "qcow2";
    o.flags = TOPCOW_OPEN_RDONLY;
    struct topcow_image *img;
    struct topcow_check_result res;
    cur_op = "read-only";
    int r = topcow_image_open(&img, m, &o);
    clean_error("open", r);
    if (r == 0) {
        inspect(img);
        walk_and_read(img);
        if (do_check(img, 0, &res) == 0 && (res.corruptions || res.leaks || res.check_errors))
            found_damage++;
        clean_error("close", topcow_image_close(img));
        outcome_ok++;
    } else {
        outcome_err++;
    }

    /* As check -r all does, on a copy; then what the repair left. */
    cur_op = "repair";
    o.flags = TOPCOW_OPEN_NO_REPAIR | TOPCOW_OPEN_ALLOW_CORRUPT;
    r = topcow_image_open(&img, rep, &o);
    clean_error("open", r);
    if (r == 0) {
        r = do_check(img, TOPCOW_CHECK_REPAIR_ALL, &res);
        if (r == 0 && (res.corruptions_fixed || res.leaks_fixed)) {
            repaired++;
            do_check(img, 0, &res);
        }
        clean_error("close", topcow_image_close(img));
        cur_op = "after repair";
        o.flags = TOPCOW_OPEN_RDONLY;
        r = topcow_image_open(&img, rep, &o);
        clean_error("open", r);
        if (r == 0) {
            walk_and_read(img);
            if (do_check(img, 0, &res) == 0 && !res.corruptions && !res.leaks &&
                !res.check_errors)
                clean_after_repair++;
            clean_error("close", topcow_image_close(img));
        }
    }
    alarm(0);
}

/* ---- through the command line ------------------------------------------- */

static char *child_env[64];

static void
build_child_env(void)
{
    extern char **environ;
    size_t n = 0;
    for (char **e = environ; *e && n < 60; e++)
        if (strncmp(*e, "ASAN_OPTIONS=", 13) && strncmp(*e, "UBSAN_OPTIONS=", 14))
            child_env[n++] = *e;
    child_env[n++] = "ASAN_OPTIONS=exitcode=86:detect_leaks=1:abort_on_error=0";
    child_env[n++] = "UBSAN_OPTIONS=halt_on_error=1:exitcode=87:print_stacktrace=1";
    child_env[n] = NULL;
}

/* Run argv with stderr into @errpath; returns the wait status, or -1 on a
 * timeout (the child is killed). */
static int
spawn(char *const argv[], const char *errpath)
{
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR), err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC,
                                                           0644);
        if (null < 0 || err < 0)
            _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(err, 2);
        if (chdir(work) < 0)
            _exit(127);
        execve(argv[0], argv, child_env);
        dprintf(2, "robust-mutate: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    struct timespec t0, now, nap = { 0, 50000 };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return st;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= (time_t)timeout_sec) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 2000000)
            nap.tv_nsec *= 2;
    }
}

/* Judge one command's outcome (see the top of the file). */
static void
judge(const char *cmd, bool is_check, int st, const char *errpath)
{
    size_t n;
    uint8_t *e = slurp(errpath, &n);
    e[n] = 0;
    char *text = (char *)e;
    unsigned lines = 0;
    bool empty_line = false;
    const char *last = text;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        if (nl == p)
            empty_line = true;
        last = p;
        lines++;
        p = nl ? nl + 1 : p + strlen(p);
    }
    bool unterminated = n > 0 && text[n - 1] != '\n';
    bool sanitizer = strstr(text, "Sanitizer") || strstr(text, "runtime error:");
    const char *why = NULL;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (st == -1)
        why = "timed out";
    else if (WIFSIGNALED(st))
        why = "killed by a signal";
    else if (sanitizer || code == 86 || code == 87)
        why = "sanitizer report";
    else if (empty_line || unterminated)
        why = "an empty or unterminated line on stderr";
    else if (!is_check && code == 0 && lines != 0)
        why = "succeeded but wrote on stderr";
    else if (!is_check && code == 1 && (lines != 1 || strncmp(text, "topcow: ", 8)))
        why = "failed without exactly one \"topcow: \" line on stderr";
    else if (is_check && code == 1 && (lines == 0 || strncmp(last, "topcow: ", 8)))
        why = "check failed without a last \"topcow: \" line on stderr";
    else if (code != 0 && code != 1 && !(is_check && (code == 2 || code == 3)))
        why = "unexpected exit status";
    if (code == 0 && !is_check)
        outcome_ok++;
    else if (!is_check)
        outcome_err++;
    if (print_each)
        fprintf(stderr, "    %s: exit %d, %u line(s)%s%.*s\n", cmd, code, lines,
                lines ? ": " : "", lines ? (int)strcspn(last, "\n") : 0, last);
    if (why)
        fail("topcow %s: %s (status %d); stderr:\n%s", cmd, why, code, text);
    free(e);
}

static void
run_cli(const struct base *b)
{
    char m[300], rep[300], out[300], err[300];
    snprintf(m, sizeof m, "%s/m.qcow2", work);
    snprintf(rep, sizeof rep, "%s/r.qcow2", work);
    snprintf(out, sizeof out, "%s/out.raw", work);
    snprintf(err, sizeof err, "%s/stderr.txt", work);
    spill(m, cur_img, cur_size);
    spill(rep, cur_img, cur_size);
    if (b->datafile[0]) {
        char from[600], to[600];
        snprintf(from, sizeof from, "%s/%s", imgdir, b->datafile);
        snprintf(to, sizeof to, "%s/%s", work, b->datafile);
        copy_file(from, to);
    }
    char *t = (char *)cli_topcow;
    char *info[] = { t, "info", "m.qcow2", NULL };
    char *check[] = { t, "check", "-f", "qcow2", "m.qcow2", NULL };
    char *convert[] = { t, "convert", "-f", "qcow2", "-O", "raw", "m.qcow2", "out.raw", NULL };
    char *repair[] = { t, "check", "-f", "qcow2", "-r", "all", "r.qcow2", NULL };
    judge("info", false, spawn(info, err), err);
    judge("check", true, spawn(check, err), err);
    judge("convert -O raw", false, spawn(convert, err), err);
    unlink(out);
    judge("check -r all", true, spawn(repair, err), err);
}

/* ---- main ----------------------------------------------------------------- */

static void
load_base(struct base *b, const char *name)
{
    char path[600];
    memset(b, 0, sizeof *b);
    b->name = name;
    snprintf(path, sizeof path, "%s/%s.qcow2", imgdir, name);
    b->img = slurp(path, &b->size);
    find_regions(b);
    if (b->backing[0]) {
        char from[600], to[600];
        snprintf(from, sizeof from, "%s/%s", imgdir, b->backing);
        snprintf(to, sizeof to, "%s/%s", work, b->backing);
        copy_file(from, to);
    }
}

static void
leak_check(const struct base *b, uint64_t first, uint64_t n)
{
    if (!__lsan_do_recoverable_leak_check || cli_topcow || n == 0)
        return;
    if (__lsan_do_recoverable_leak_check()) {
        const char *replay = getenv("ROBUST_REPLAY");
        fprintf(stderr,
                "FAIL: memory leaked (report above) by one of mutants %" PRIu64 "..%" PRIu64
                " of type %s\n  replay: %s --seed %" PRIu64 " --types %s --first %" PRIu64
                " --mutants %" PRIu64 "\n",
                first, first + n - 1, b->name, replay ? replay : "robust-mutate IMAGEDIR",
                base_seed, b->name, first, n);
        leak_failures++;
    }
}

static void
usage(void)
{
    fprintf(stderr, "usage: robust-mutate [--types A,B] [--mutants N] [--first I] [--mutant I]"
                    " [--seed S] [--cli TOPCOW] [--timeout SEC] [--keep DIR] [--print]"
                    " IMAGEDIR\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    uint64_t nmutants = 1000, first = 0;
    char *types = NULL;
    int i;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--print")) {
            print_each = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--types"))
            types = strdup(v);
        else if (!strcmp(a, "--mutants"))
            nmutants = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--first"))
            first = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--mutant"))
            first = strtoull(v, NULL, 0), nmutants = 1;
        else if (!strcmp(a, "--seed"))
            base_seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--cli"))
            cli_topcow = v;
        else if (!strcmp(a, "--timeout"))
            timeout_sec = (unsigned)strtoul(v, NULL, 0);
        else if (!strcmp(a, "--keep"))
            keep_dir = v;
        else
            usage();
    }
    if (i != argc - 1)
        usage();
    imgdir = argv[i];
    if (!types) {
        char path[600];
        size_t n;
        snprintf(path, sizeof path, "%s/types", imgdir);
        types = (char *)slurp(path, &n);
        types[n] = 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/topcow-robust.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(work)) {
        perror("mkdtemp");
        return 1;
    }
    if (keep_dir)
        mkdir(keep_dir, 0755);
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(on_death);
    int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM };
    for (size_t s = 0; s < sizeof sigs / sizeof sigs[0]; s++)
        signal(sigs[s], on_signal);
    if (cli_topcow)
        build_child_env();
    readbuf = malloc(READ_CHUNK);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    static struct base b;
    unsigned ntypes = 0;
    for (char *save = NULL, *name = strtok_r(types, ", \n", &save); name;
         name = strtok_r(NULL, ", \n", &save)) {
        load_base(&b, name);
        ntypes++;
        unsigned long before = failures;
        uint64_t batch = first;
        cur_img = malloc(b.size);
        cur_size = b.size;
        for (uint64_t idx = first; idx < first + nmutants; idx++) {
            char desc[1024];
            memcpy(cur_img, b.img, b.size);
            mutate(&b, idx, cur_img, desc, sizeof desc);
            set_note(&b, idx, desc);
            if (print_each)
                fprintf(stderr, "%s %" PRIu64 ": %s\n", b.name, idx, desc);
            if (cli_topcow)
                run_cli(&b);
            else
                run_in_process(&b);
            mutants_run++;
            if (idx + 1 - batch == LEAK_BATCH) {
                leak_check(&b, batch, idx + 1 - batch);
                batch = idx + 1;
            }
        }
        leak_check(&b, batch, first + nmutants - batch);
        fprintf(stderr, "robust-mutate: %-10s %4" PRIu64 " mutants, %u regions "
                        "(%u L2, %u refblocks), %lu failed\n",
                b.name, nmutants, b.nregions, b.nkind[K_L2], b.nkind[K_REFBLOCK],
                failures - before);
        free(cur_img);
        cur_img = NULL;
        free(b.img);
    }
    /* A leak report at exit belongs to no mutant in particular. */
    note_len = 0;
    cur_keep_path[0] = 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr,
            "robust-mutate: %lu mutants of %u types %s in %.1f s: %lu opened/succeeded, "
            "%lu refused; %lu failures, %lu leak reports\n",
            mutants_run, ntypes, cli_topcow ? "through the CLI" : "in-process", secs, outcome_ok,
            outcome_err, failures, leak_failures);
    if (!cli_topcow) {
        fprintf(stderr,
                "robust-mutate: check found damage in %lu opened mutants; check -r all "
                "repaired %lu; %lu check clean after the repair\n",
                found_damage, repaired, clean_after_repair);
        fprintf(stderr, "robust-mutate: errors returned:");
        for (int e = 0; e < 256; e++)
            if (errno_count[e])
                fprintf(stderr, " %s %lu;", e ? strerrorname_np(e) : "other", errno_count[e]);
        fputc('\n', stderr);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (system(cmd) != 0)
        fprintf(stderr, "robust-mutate: could not remove %s\n", work);
    free(readbuf);
    free(types);
    return failures || leak_failures ? 1 : 0;
}
