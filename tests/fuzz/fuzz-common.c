// SPDX-License-Identifier: MIT
/* Shared plumbing of the fuzz targets (see fuzz-common.h).
 *
 * The image lives in a memory backend wrapped by a small "capped" backend
 * that refuses to grow the image past FUZZ_MAX_FILE, like a full disk.  An
 * input may name an external data file; the library opens that from the
 * host filesystem relative to the image name, so the image is named inside
 * a private sandbox directory, and inputs whose data-file name could reach
 * outside it (a '/', "..", odd bytes) are rejected before the library
 * sees them; so are VMDK descriptor texts quoting a name that starts with
 * '/' or '.'.  Nothing else of the host is reachable: backing files are
 * never opened (TOPCOW_OPEN_NO_BACKING). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byteorder.h"
#include "image.h"
#include "io.h"
#include "fuzz-common.h"

#define QCOW2_EXT_DATA_FILE 0x44415441u
#define INCOMPAT_DATA_FILE (1ull << 2)
#define DATA_FILE_BYTES 65536

/* Inputs are opened by the thousand: publishing statistics for each would
 * only slow the fuzzer and fill the statistics directory. */
__attribute__((constructor)) static void
fuzz_stats_off(void)
{
    setenv("TOPCOW_STATS", "off", 0);
}

/* ---- the sandbox ---------------------------------------------------------- */

static char sandbox[256];
static char data_path[300];

static void
sandbox_cleanup(void)
{
    if (data_path[0])
        unlink(data_path);
    if (sandbox[0])
        rmdir(sandbox);
}

/* (Re)write the sandbox's data file with a fixed pattern, so every run of
 * an input starts from the same bytes whatever an earlier run wrote. */
static void
reset_data_file(void)
{
    static uint8_t pattern[DATA_FILE_BYTES];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7 + 1);
    int fd = open(data_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, pattern, sizeof pattern) != (ssize_t)sizeof pattern)
        fuzz_fail("cannot write the sandbox data file %s", data_path);
    close(fd);
}

static void
sandbox_init(void)
{
    if (sandbox[0])
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(sandbox, sizeof sandbox, "%s/topcow-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(sandbox))
        fuzz_fail("cannot create a sandbox directory under %s", tmp ? tmp : "/tmp");
    snprintf(data_path, sizeof data_path, "%s/%s", sandbox, FUZZ_DATA_FILE_NAME);
    reset_data_file();
    atexit(sandbox_cleanup);
}

/* A data-file name stays inside the sandbox: one non-empty path component
 * of portable file-name characters, not "." or "..". */
static bool
safe_name(const uint8_t *p, size_t len)
{
    if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Whether every data-file name the library could find in @d is safe.  The
 * library opens a data file only for a version 3 header with the external
 * data bit set, and reads the name from a header extension lying wholly
 * inside the input and inside the first cluster; rather than re-implement
 * the extension walk, check every place in that cluster where such an
 * extension could start.  (Guest data past it may hold any bytes: a write
 * of the fuzz target must not make its own image unopenable.) */
static bool
data_file_names_safe(const uint8_t *d, size_t n)
{
    if (n < 80 || be32_get(d + 4) != 3 || !(be64_get(d + 72) & INCOMPAT_DATA_FILE))
        return true;
    uint32_t bits = be32_get(d + 20);
    if (bits >= 9 && bits <= 21 && n > (size_t)1 << bits)
        n = (size_t)1 << bits; /* other cluster sizes do not open */
    for (size_t p = 0; p + 8 <= n; p++) {
        if (be32_get(d + p) != QCOW2_EXT_DATA_FILE)
            continue;
        uint32_t len = be32_get(d + p + 4);
        if (len > n - p - 8)
            continue; /* runs past the input: the library rejects it */
        const uint8_t *name = d + p + 8;
        const uint8_t *nul = memchr(name, 0, len);
        if (!safe_name(name, nul ? (size_t)(nul - name) : len))
            return false;
    }
    return true;
}

/* ---- the capped memory backend ------------------------------------------ */

struct capped_io {
    struct io base;
    struct io *mem;   /* the io_mem_open() backend holding the bytes */
    bool keep;        /* save the bytes at close (fuzz_open_keep) */
};

static uint8_t *kept;
static size_t kept_size;

static struct io *
inner(struct io *io)
{
    return ((struct capped_io *)io)->mem;
}

/* -ENOSPC when [off, off+len) reaches past FUZZ_MAX_FILE. */
static int
cap_range(uint64_t off, uint64_t len)
{
    return off > FUZZ_MAX_FILE || len > FUZZ_MAX_FILE - off ? -ENOSPC : 0;
}

static int
capped_pread(struct io *io, void *buf, size_t len, uint64_t off)
{
    return io_pread(inner(io), buf, len, off);
}

static int
capped_pwrite(struct io *io, const void *buf, size_t len, uint64_t off)
{
    int r = cap_range(off, len);
    return r < 0 ? r : io_pwrite(inner(io), buf, len, off);
}

static int
capped_flush(struct io *io)
{
    return io_flush(inner(io));
}

static int
capped_get_size(struct io *io, uint64_t *size)
{
    return io_get_size(inner(io), size);
}

static int
capped_truncate(struct io *io, uint64_t size)
{
    int r = cap_range(size, 0);
    return r < 0 ? r : io_truncate(inner(io), size);
}

static int
capped_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags)
{
    int r = cap_range(off, len);
    return r < 0 ? r : io_write_zeroes(inner(io), off, len, flags);
}

static int
capped_discard(struct io *io, uint64_t off, uint64_t len)
{
    return io_discard(inner(io), off, len);
}

static int
capped_preallocate(struct io *io, uint64_t off, uint64_t len)
{
    int r = cap_range(off, len);
    return r < 0 ? r : io_preallocate(inner(io), off, len);
}

static int
capped_allocated_size(struct io *io, uint64_t *bytes)
{
    return io_allocated_size(inner(io), bytes);
}

static void
capped_close(struct io *io)
{
    struct capped_io *c = (struct capped_io *)io;
    if (c->keep) {
        uint64_t size = 0;
        free(kept);
        kept = NULL;
        kept_size = 0;
        if (io_get_size(c->mem, &size) == 0 && size > 0 && size <= FUZZ_MAX_FILE &&
            (kept = malloc((size_t)size)) != NULL) {
            if (io_pread(c->mem, kept, (size_t)size, 0) == 0) {
                kept_size = (size_t)size;
            } else {
                free(kept);
                kept = NULL;
            }
        }
    }
    io_close(c->mem);
    io_base_fini(io);
    free(c);
}

static const struct io_ops capped_ops = {
    .struct_size = sizeof(struct io_ops),
    .name = "fuzz-mem",
    .thread_model = IO_PARALLEL, /* the inner memory backend serializes */
    .close = capped_close,
    .pread = capped_pread,
    .pwrite = capped_pwrite,
    .flush = capped_flush,
    .get_size = capped_get_size,
    .truncate = capped_truncate,
    .write_zeroes = capped_write_zeroes,
    .discard = capped_discard,
    .preallocate = capped_preallocate,
    .allocated_size = capped_allocated_size,
};

/* A capped memory backend holding a copy of @data; NULL on ENOMEM. */
static struct io *
capped_open(const char *name, const uint8_t *data, size_t size, bool read_only, bool keep)
{
    struct capped_io *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (io_mem_open(name, &c->mem) < 0 || io_pwrite(c->mem, data, size, 0) < 0) {
        io_close(c->mem);
        free(c);
        return NULL;
    }
    if (io_base_init(&c->base, &capped_ops, name, read_only ? IO_RDONLY : 0) < 0) {
        io_close(c->mem);
        free(c);
        return NULL;
    }
    c->keep = keep;
    return &c->base;
}

/* ---- opening ---------------------------------------------------------------- */

static int verbose = -1; /* FUZZ_VERBOSE set: say how each open went */

static int
open_common(const char *format, const uint8_t *data, size_t size, bool read_only, bool keep,
            bool reopen, unsigned extra_flags, struct topcow_image **imgp)
{
    *imgp = NULL;
    if (size == 0 || size > (reopen ? FUZZ_MAX_FILE : FUZZ_MAX_INPUT) ||
        !data_file_names_safe(data, size))
        return -1;
    sandbox_init();
    if (!read_only && !reopen)
        reset_data_file();
    char name[sizeof sandbox + 32];
    snprintf(name, sizeof name, "%s/fuzz.%s", sandbox, format);
    struct io *file = capped_open(name, data, size, read_only, keep);
    if (!file)
        return -1;
    struct topcow_open_opts opts = TOPCOW_OPEN_OPTS_INIT;
    opts.format = format;
    opts.flags = TOPCOW_OPEN_NO_BACKING | (read_only ? TOPCOW_OPEN_RDONLY : 0) | extra_flags;
    int r = image_open_io(imgp, file, name, &opts);
    if (verbose < 0)
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "fuzz: open %s: %s\n", read_only ? "read-only" : "read-write",
                r < 0 ? topcow_last_error() : "ok");
    if (r < 0) {
        /* A failed open must leave a message and no handle. */
        if (*imgp)
            fuzz_fail("failed open (%d) returned a handle", r);
        fuzz_touch_string(topcow_last_error());
        return -1;
    }
    return 0;
}

int
fuzz_open(const uint8_t *data, size_t size, bool read_only, struct topcow_image **imgp)
{
    return open_common("qcow2", data, size, read_only, false, false, 0, imgp);
}

int
fuzz_open_for_repair(const uint8_t *data, size_t size, struct topcow_image **imgp)
{
    return open_common("qcow2", data, size, false, true, false,
                       TOPCOW_OPEN_NO_REPAIR | TOPCOW_OPEN_ALLOW_CORRUPT, imgp);
}

int
fuzz_open_keep(const uint8_t *data, size_t size, bool read_only, struct topcow_image **imgp)
{
    return open_common("qcow2", data, size, read_only, true, false, 0, imgp);
}

int
fuzz_reopen(const uint8_t *data, size_t size, struct topcow_image **imgp)
{
    return open_common("qcow2", data, size, true, false, true, 0, imgp);
}

/* Whether a text descriptor in @d could name a file outside the sandbox: a
 * quoted name that starts with '/' or '.' (VMDK extent lines quote their
 * file names).  Such inputs are not opened. */
static bool
names_outside_sandbox(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (d[i] == '"' && (d[i + 1] == '/' || d[i + 1] == '.'))
            return true;
    return false;
}

int
fuzz_open_format(const char *format, const uint8_t *data, size_t size, struct topcow_image **imgp)
{
    *imgp = NULL;
    if (!strcmp(format, "vmdk") && names_outside_sandbox(data, size))
        return -1;
    return open_common(format, data, size, true, false, false, 0, imgp);
}

uint8_t *
fuzz_take_closed_image(size_t *size)
{
    uint8_t *p = kept;
    *size = kept_size;
    kept = NULL;
    kept_size = 0;
    return p;
}

/* ---- checks --------------------------------------------------------------- */

void
fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("fuzz: library contract broken: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

/* Where fuzz_touch_string() leaves its result, so the read is not elided. */
static volatile size_t touch_sink;

void
fuzz_touch_string(const char *s)
{
    if (s)
        touch_sink = touch_sink + strlen(s);
}

bool
fuzz_is_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

void
fuzz_read(struct topcow_image *img, struct fuzz_budget *b, uint8_t *buf, uint64_t off,
          uint64_t len, bool want_zero)
{
    if (len == 0 || b->calls >= b->max_calls || b->bytes + len > b->max_bytes)
        return;
    b->calls++;
    b->bytes += len;
    if (topcow_image_pread(img, buf, (size_t)len, off) < 0) {
        fuzz_touch_string(topcow_last_error());
        return;
    }
    if (want_zero && !fuzz_is_zero(buf, (size_t)len))
        fuzz_fail("block status reports zeros at 0x%llx (+%llu) but the read returns data",
                  (unsigned long long)off, (unsigned long long)len);
}

void
fuzz_probe_extents(struct topcow_image *img, uint64_t disk, uint64_t step,
                   struct topcow_extent *found, unsigned max, unsigned *nfound)
{
    uint64_t probes[] = { disk / 2 + 1, disk - 1, disk / 3 + 7 };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0] && disk > 0; i++) {
        struct topcow_extent ext;
        uint64_t off = probes[i] < disk ? probes[i] : disk - 1;
        uint64_t len = disk - off < 3 * step ? disk - off : 3 * step;
        if (fuzz_block_status(img, off, len, &ext) == 0 && *nfound < max &&
            (ext.flags & (TOPCOW_EXTENT_ALLOCATED | TOPCOW_EXTENT_ZERO)))
            found[(*nfound)++] = ext;
    }
}

int
fuzz_block_status(struct topcow_image *img, uint64_t off, uint64_t len,
                  struct topcow_extent *ext)
{
    int r = topcow_image_block_status(img, off, len, 0, ext);
    if (r < 0) {
        fuzz_touch_string(topcow_last_error());
        return r;
    }
    if (ext->length == 0 || ext->length > len || ext->offset != off)
        fuzz_fail("block status at 0x%llx (+%llu) returned extent 0x%llx (+%llu)",
                  (unsigned long long)off, (unsigned long long)len,
                  (unsigned long long)ext->offset, (unsigned long long)ext->length);
    if (ext->flags & TOPCOW_EXTENT_OFFSET_VALID)
        fuzz_touch_string(ext->file);
    return 0;
}

void
fuzz_get_info(struct topcow_image *img, struct topcow_info *info)
{
    *info = (struct topcow_info){ .struct_size = sizeof *info };
    if (topcow_image_get_info(img, info) < 0)
        fuzz_fail("get_info failed on an open image: %s", topcow_last_error());
    fuzz_touch_string(info->filename);
    fuzz_touch_string(info->format);
    fuzz_touch_string(info->backing_file);
    fuzz_touch_string(info->backing_format);
    fuzz_touch_string(info->full_backing_filename);
    fuzz_touch_string(info->data_file);
    if (info->virtual_size != topcow_image_size(img))
        fuzz_fail("info: virtual size %llu, the handle says %llu",
                  (unsigned long long)info->virtual_size,
                  (unsigned long long)topcow_image_size(img));
}
