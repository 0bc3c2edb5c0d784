// SPDX-License-Identifier: MIT
/* The host-file backend: pread/pwrite loops, optional O_DIRECT (with bounce
 * buffers for unaligned requests), fallocate for zeroing and hole punching,
 * SEEK_DATA/SEEK_HOLE for block status, and the image lock.
 *
 * Locking interoperates with QEMU: permissions are advertised as OFD read
 * locks on single bytes, 100 + bit for "I hold permission bit" and 200 + bit
 * for "I do not let others hold it", with bits 0 consistent-read, 1 write,
 * 2 write-unchanged, 3 resize.  Conflicts are probed with F_OFD_GETLK, so a
 * topcow writer and a QEMU writer refuse each other. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "minmax.h"
#include "error.h"
#include "io.h"
#include "io-uring.h"

#define DIRECT_ALIGN 4096u

struct file_io {
    struct io base;
    int fd;
    bool no_punch;            /* the filesystem refused PUNCH_HOLE once */
    bool no_zero_range;       /* ... or ZERO_RANGE */
    pthread_mutex_t rmw_lock; /* serializes read-modify-write bounces under O_DIRECT */
    /* The last run of data SEEK_DATA/SEEK_HOLE found, [data_start, data_end),
     * or data_end == 0.  SEEK_HOLE scans from its offset to the end of the
     * run (page by page on tmpfs), so asking again inside a large run is
     * costly; data stays data under writes, so only discards, zeroing and
     * truncation forget the run. */
    pthread_mutex_t seek_lock;
    uint64_t data_start, data_end;
};

static struct file_io *
to_file(struct io *io)
{
    return (struct file_io *)io;
}

/* ---- image lock --------------------------------------------------------- */

enum { PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE, PERM_BITS };
static const char *const perm_names[PERM_BITS] = { "consistent read", "write",
                                                   "write unchanged", "resize" };
#define LOCK_BASE_PERM 100
#define LOCK_BASE_SHARED 200

static int
lock_byte(int fd, off_t byte)
{
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/* Whether another open file description holds a lock on @byte. */
static int
byte_is_locked(int fd, off_t byte, bool *locked)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return -errno;
    *locked = fl.l_type != F_UNLCK;
    return 0;
}

static int
take_image_lock(struct file_io *f, const char *path, bool writable)
{
    /* What we hold, and what we refuse to share, as QEMU does for a writer
     * and for a plain reader. */
    unsigned held = (1u << PERM_CONSISTENT_READ);
    unsigned unshared = (1u << PERM_WRITE) | (1u << PERM_RESIZE);
    if (writable)
        held |= (1u << PERM_WRITE) | (1u << PERM_RESIZE);

    for (int i = 0; i < PERM_BITS; i++) {
        int r = 0;
        if (held & (1u << i))
            r = lock_byte(f->fd, LOCK_BASE_PERM + i);
        if (r == 0 && (unshared & (1u << i)))
            r = lock_byte(f->fd, LOCK_BASE_SHARED + i);
        if (r == -EAGAIN || r == -EACCES)
            return err_set(-EBUSY, "%s: image is in use by another process "
                                   "(could not get \"%s\" lock)", path, perm_names[i]);
        if (r == -ENOLCK || r == -EINVAL || r == -ENOTSUP)
            return 0; /* filesystem without OFD locks: proceed unlocked, as QEMU does */
        if (r < 0)
            return err_set_errno(r, "%s: locking failed", path);
    }
    for (int i = 0; i < PERM_BITS; i++) {
        bool busy = false;
        int r = 0;
        if (held & (1u << i))
            r = byte_is_locked(f->fd, LOCK_BASE_SHARED + i, &busy);
        if (r == 0 && !busy && (unshared & (1u << i)))
            r = byte_is_locked(f->fd, LOCK_BASE_PERM + i, &busy);
        if (r < 0)
            return err_set_errno(r, "%s: lock probe failed", path);
        if (busy)
            return err_set(-EBUSY, "%s: image is in use by another process (could not get "
                                   "\"%s\" lock); use -U to inspect it read-only",
                           path, perm_names[i]);
    }
    return 0;
}

/* ---- data path ---------------------------------------------------------- */

static int
full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) { /* past EOF reads as zeros */
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int
full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static bool
is_direct_aligned(const struct file_io *f, const void *buf, size_t len, uint64_t off)
{
    return !(f->base.flags & IO_DIRECT) ||
           (IS_ALIGNED((uintptr_t)buf, DIRECT_ALIGN) && IS_ALIGNED(len, DIRECT_ALIGN) &&
            IS_ALIGNED(off, DIRECT_ALIGN));
}

static int
file_pread(struct io *io, void *buf, size_t len, uint64_t off)
{
    struct file_io *f = to_file(io);
    if (is_direct_aligned(f, buf, len, off))
        return full_pread(f->fd, buf, len, off);

    uint64_t start = ALIGN_DOWN(off, DIRECT_ALIGN);
    size_t blen = (size_t)(ALIGN_UP(off + len, DIRECT_ALIGN) - start);
    void *bounce;
    if (posix_memalign(&bounce, DIRECT_ALIGN, blen) != 0)
        return -ENOMEM;
    int r = full_pread(f->fd, bounce, blen, start);
    if (r == 0)
        memcpy(buf, (uint8_t *)bounce + (off - start), len);
    free(bounce);
    return r;
}

static int
file_pwrite(struct io *io, const void *buf, size_t len, uint64_t off)
{
    struct file_io *f = to_file(io);
    if (is_direct_aligned(f, buf, len, off))
        return full_pwrite(f->fd, buf, len, off);

    /* Read-modify-write of the covering aligned blocks, serialized so two
     * unaligned writes into one block cannot lose each other's bytes. */
    uint64_t start = ALIGN_DOWN(off, DIRECT_ALIGN);
    size_t blen = (size_t)(ALIGN_UP(off + len, DIRECT_ALIGN) - start);
    void *bounce;
    if (posix_memalign(&bounce, DIRECT_ALIGN, blen) != 0)
        return -ENOMEM;
    pthread_mutex_lock(&f->rmw_lock);
    int r = full_pread(f->fd, bounce, blen, start);
    if (r == 0) {
        memcpy((uint8_t *)bounce + (off - start), buf, len);
        r = full_pwrite(f->fd, bounce, blen, start);
    }
    pthread_mutex_unlock(&f->rmw_lock);
    free(bounce);
    /* An RMW may have grown the file past its true end; callers that care
     * about the exact size truncate explicitly. */
    return r;
}

static int
file_pwritev(struct io *io, const struct iovec *iov, int iovcnt, uint64_t off)
{
    struct file_io *f = to_file(io);
    bool aligned = true;
    for (int i = 0; i < iovcnt && aligned; i++)
        aligned = is_direct_aligned(f, iov[i].iov_base, iov[i].iov_len, 0);
    aligned = aligned && is_direct_aligned(f, NULL, 0, off);
    if (!aligned || iovcnt > IOV_MAX) {
        for (int i = 0; i < iovcnt; i++) {
            if (iov[i].iov_len == 0)
                continue;
            int r = file_pwrite(io, iov[i].iov_base, iov[i].iov_len, off);
            if (r < 0)
                return r;
            off += iov[i].iov_len;
        }
        return 0;
    }
    /* Fast path; finish a short vector write element by element. */
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    ssize_t n;
    do
        n = pwritev(f->fd, iov, iovcnt, (off_t)off);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if ((size_t)n == total)
        return 0;
    size_t done = (size_t)n;
    for (int i = 0; i < iovcnt; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            off += iov[i].iov_len;
            continue;
        }
        int r = full_pwrite(f->fd, (uint8_t *)iov[i].iov_base + done, iov[i].iov_len - done,
                            off + done);
        if (r < 0)
            return r;
        off += iov[i].iov_len;
        done = 0;
    }
    return 0;
}

/* With IO_URING, up to URING_CHUNK segments at once through this thread's
 * ring when every one is aligned for O_DIRECT (or there is no O_DIRECT);
 * short reads finished with pread.  Otherwise, or where the kernel refuses
 * io_uring, one pread after another. */
#define URING_CHUNK 64

static int
file_pread_batch(struct io *io, const struct io_seg *segs, unsigned n)
{
    struct file_io *f = to_file(io);
    bool uring = (io->flags & IO_URING) != 0;
    for (unsigned i = 0; i < n && uring; i++)
        uring = is_direct_aligned(f, segs[i].buf, segs[i].len, segs[i].off);
    unsigned from = 0; /* segments before it are read */
    while (uring && from < n) {
        unsigned k = n - from < URING_CHUNK ? n - from : URING_CHUNK;
        size_t done[URING_CHUNK];
        int r = uring_pread_batch(f->fd, segs + from, k, done);
        if (r == -ENOSYS)
            break;
        for (unsigned i = 0; i < k && r == 0; i++) {
            const struct io_seg *sg = &segs[from + i];
            if (done[i] < sg->len)
                r = full_pread(f->fd, (uint8_t *)sg->buf + done[i], sg->len - done[i],
                               sg->off + done[i]);
        }
        if (r < 0)
            return r;
        from += k;
    }
    for (unsigned i = from; i < n; i++) {
        int r = file_pread(io, segs[i].buf, segs[i].len, segs[i].off);
        if (r < 0)
            return r;
    }
    return 0;
}

static int
file_flush(struct io *io)
{
    return fdatasync(to_file(io)->fd) == 0 ? 0 : -errno;
}

static int
file_get_size(struct io *io, uint64_t *size)
{
    struct stat st;
    if (fstat(to_file(io)->fd, &st) != 0)
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(to_file(io)->fd, 0, SEEK_END);
        if (end < 0)
            return -errno;
        *size = (uint64_t)end;
        return 0;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Forget the cached data run (see struct file_io). */
static void
forget_data_run(struct file_io *f)
{
    pthread_mutex_lock(&f->seek_lock);
    f->data_start = f->data_end = 0;
    pthread_mutex_unlock(&f->seek_lock);
}

static int
file_truncate(struct io *io, uint64_t size)
{
    forget_data_run(to_file(io));
    return ftruncate(to_file(io)->fd, (off_t)size) == 0 ? 0 : -errno;
}

static int
file_discard(struct io *io, uint64_t off, uint64_t len)
{
    struct file_io *f = to_file(io);
    forget_data_run(f);
    if (f->no_punch)
        return -ENOTSUP;
    if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno == EOPNOTSUPP || errno == ENOSYS) {
        f->no_punch = true;
        return -ENOTSUP;
    }
    return -errno;
}

static int
file_write_zeroes(struct io *io, uint64_t off, uint64_t len, unsigned flags)
{
    struct file_io *f = to_file(io);
    forget_data_run(f);
    uint64_t size;
    int r = file_get_size(io, &size);
    if (r < 0)
        return r;

    if (flags & IO_ZERO_MAY_UNMAP) {
        r = file_discard(io, off, len);
        if (r == 0) {
            if (off + len > size && ftruncate(f->fd, (off_t)(off + len)) != 0)
                return -errno;
            return 0;
        }
        if (r != -ENOTSUP)
            return r;
    }
    if (off >= size) { /* a hole past the end is already zero */
        return ftruncate(f->fd, (off_t)(off + len)) == 0 ? 0 : -errno;
    }
    if (!f->no_zero_range) {
        if (fallocate(f->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0)
            return 0;
        if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
            return -errno;
        f->no_zero_range = true;
    }
    return -ENOTSUP; /* the wrapper writes zeros */
}

static int
file_preallocate(struct io *io, uint64_t off, uint64_t len)
{
    int r = posix_fallocate(to_file(io)->fd, (off_t)off, (off_t)len);
    return -r;
}

static int
file_block_status(struct io *io, uint64_t off, uint64_t len, bool *is_data, uint64_t *pnum)
{
    struct file_io *f = to_file(io);
    int fd = f->fd;
    pthread_mutex_lock(&f->seek_lock);
    bool cached = off >= f->data_start && off < f->data_end;
    uint64_t cached_end = f->data_end;
    pthread_mutex_unlock(&f->seek_lock);
    if (cached) {
        *is_data = true;
        *pnum = MIN(cached_end - off, len);
        return 0;
    }
    off_t data = lseek(fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) { /* no data at or after off */
            *is_data = false;
            *pnum = len;
            return 0;
        }
        *is_data = true; /* SEEK_DATA unsupported: everything is data */
        *pnum = len;
        return 0;
    }
    if ((uint64_t)data > off) {
        *is_data = false;
        *pnum = MIN((uint64_t)data - off, len);
        return 0;
    }
    off_t hole = lseek(fd, (off_t)off, SEEK_HOLE);
    if (hole < 0 || (uint64_t)hole <= off) {
        *is_data = true;
        *pnum = len;
        return 0;
    }
    pthread_mutex_lock(&f->seek_lock);
    f->data_start = off;
    f->data_end = (uint64_t)hole;
    pthread_mutex_unlock(&f->seek_lock);
    *is_data = true;
    *pnum = MIN((uint64_t)hole - off, len);
    return 0;
}

static int
file_allocated_size(struct io *io, uint64_t *bytes)
{
    struct stat st;
    if (fstat(to_file(io)->fd, &st) != 0)
        return -errno;
    *bytes = (uint64_t)st.st_blocks * 512;
    return 0;
}

static void
file_close(struct io *io)
{
    struct file_io *f = to_file(io);
    close(f->fd);
    pthread_mutex_destroy(&f->rmw_lock);
    pthread_mutex_destroy(&f->seek_lock);
    io_base_fini(io);
    free(f);
}

static const struct io_ops io_file_ops = {
    .struct_size = sizeof(struct io_ops),
    .name = "file",
    .thread_model = IO_PARALLEL,
    .close = file_close,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .pwritev = file_pwritev,
    .flush = file_flush,
    .get_size = file_get_size,
    .truncate = file_truncate,
    .write_zeroes = file_write_zeroes,
    .discard = file_discard,
    .preallocate = file_preallocate,
    .block_status = file_block_status,
    .allocated_size = file_allocated_size,
    .pread_batch = file_pread_batch,
};

int
io_file_open(const char *path, unsigned flags, struct io **out)
{
    *out = NULL;
    int oflags = O_CLOEXEC | ((flags & IO_RDONLY) ? O_RDONLY : O_RDWR);
    /* No O_TRUNC: truncating before the lock is held would destroy an
     * image another process is using; truncate once the lock is ours. */
    if (flags & IO_CREATE)
        oflags |= O_CREAT | ((flags & IO_EXCL) ? O_EXCL : 0);
    if (flags & IO_DIRECT)
        oflags |= O_DIRECT;

    int fd = open(path, oflags, 0644);
    if (fd < 0) {
        int e = -errno;
        if (e == -EINVAL && (flags & IO_DIRECT))
            return err_set(e, "%s: the filesystem does not support O_DIRECT (cache=none)", path);
        return err_set_errno(e, "could not open '%s'", path);
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(-EISDIR, "'%s' is a directory", path);
    }

    struct file_io *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return err_set(-ENOMEM, "out of memory");
    }
    f->fd = fd;
    pthread_mutex_init(&f->rmw_lock, NULL);
    pthread_mutex_init(&f->seek_lock, NULL);
    int r = io_base_init(&f->base, &io_file_ops, path, flags);
    if (r < 0) {
        close(fd);
        free(f);
        return r;
    }
    if (flags & IO_DIRECT)
        f->base.alignment = DIRECT_ALIGN;
    if (!(flags & IO_NOLOCK)) {
        r = take_image_lock(f, path, !(flags & IO_RDONLY));
        if (r < 0) {
            file_close(&f->base);
            return r;
        }
    }
    if ((flags & IO_CREATE) && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        ftruncate(fd, 0) != 0) {
        r = err_set_errno(-errno, "could not truncate '%s'", path);
        file_close(&f->base);
        return r;
    }
    *out = &f->base;
    return 0;
}
