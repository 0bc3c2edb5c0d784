// SPDX-License-Identifier: MIT
/* topcow_remote_pull: write one generation of a remote image into a local
 * file.  Chunks are fetched only when no local copy has them: the old
 * image (a previous pull) and the part file of an interrupted pull are
 * hashed first, chunk by chunk, and what matches is copied locally.  Every
 * chunk, fetched or copied, is checked against its hash before it is
 * written; the part file becomes the image only when all are in. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "error.h"
#include "io.h"
#include "remote.h"
#include "strbuf.h"
#include "topcow.h"
#include "xfer.h"

#define WRITE_PIECE (64u << 10) /* zero pieces of this size are left as holes */

/* A chunk found in a local file. */
struct local_chunk {
    struct cloud_hash h;
    int fd;
    uint64_t off;
    uint32_t len;
};

struct pull {
    const struct manifest *m;
    int part_fd;
    bool part_reused;          /* the part file held an interrupted pull's data */
    bool *part_ok;             /* chunk i of the part file already matches */
    struct local_chunk *local; /* sorted by hash */
    size_t n_local;
};

static int
cmp_local(const void *a, const void *b)
{
    return memcmp(a, b, CLOUD_HASH_LEN);
}

static int
read_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0) {
            memset((char *)buf + done, 0, len - done);
            break;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Write @len bytes at @off, leaving all-zero pieces unwritten (the range
 * is a hole already: a new file, or punched). */
static int
write_sparse(int fd, const void *buf, size_t len, uint64_t off, const char *path)
{
    for (size_t p = 0; p < len; p += WRITE_PIECE) {
        size_t n = len - p < WRITE_PIECE ? len - p : WRITE_PIECE;
        const char *b = (const char *)buf + p;
        if (cloud_buf_is_zero(b, n))
            continue;
        for (size_t done = 0; done < n;) {
            ssize_t w = pwrite(fd, b + done, n - done, (off_t)(off + p + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return err_set_errno(-errno, "cloud: writing %s", path);
            done += (size_t)w;
        }
    }
    return 0;
}

/* Make [off, off+len) of the part file a hole (its old contents may be an
 * interrupted pull's). */
static int
punch(int fd, uint64_t off, uint64_t len, const char *path)
{
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    /* No hole punching here: write zeros. */
    static const char zeros[WRITE_PIECE];
    for (uint64_t p = 0; p < len; p += WRITE_PIECE) {
        size_t n = len - p < WRITE_PIECE ? (size_t)(len - p) : WRITE_PIECE;
        if (pwrite(fd, zeros, n, (off_t)(off + p)) != (ssize_t)n)
            return err_set_errno(-errno, "cloud: writing %s", path);
    }
    return 0;
}

struct pull_ctx {
    struct pull *p;
    const char *part_path;
};

static int
pull_chunk(struct xfer *x, struct store *st, uint64_t i, void *buf)
{
    struct pull_ctx *c = x->opaque;
    struct pull *p = c->p;
    const struct cloud_hash *want = &p->m->chunks[i];
    uint64_t len = xfer_chunk_len(x, i), off = i * x->chunk_size;
    int r;

    if (cloud_hash_is_zero(want)) {
        atomic_fetch_add(&x->zero, 1);
        if (p->part_reused && (r = punch(p->part_fd, off, len, c->part_path)) < 0)
            return r;
        xfer_chunk_done(x, len);
        return 0;
    }
    if (p->part_ok && p->part_ok[i]) {
        atomic_fetch_add(&x->present, 1);
        xfer_chunk_done(x, len);
        return 0;
    }
    /* A local copy, checked again now (files change). */
    struct local_chunk *lc =
        p->n_local ? bsearch(want, p->local, p->n_local, sizeof *p->local, cmp_local) : NULL;
    if (lc && lc->len == len && read_full(lc->fd, buf, len, lc->off) == 0) {
        struct cloud_hash h;
        if (cloud_hash(buf, len, &h) == 0 && memcmp(&h, want, sizeof h) == 0) {
            if (p->part_reused && (r = punch(p->part_fd, off, len, c->part_path)) < 0)
                return r;
            if ((r = write_sparse(p->part_fd, buf, len, off, c->part_path)) < 0)
                return r;
            atomic_fetch_add(&x->present, 1);
            xfer_chunk_done(x, len);
            return 0;
        }
    }
    void *data;
    size_t wire;
    r = cloud_chunk_get(st, want, len, buf, &data, &wire);
    if (r == -EBADMSG) {
        char why[400];
        snprintf(why, sizeof why, "%s", topcow_last_error());
        return err_set(-EBADMSG, "%s (chunk %" PRIu64 " at file offset %" PRIu64
                       " of generation %s)", why, i, off, p->m->gen);
    }
    if (r < 0)
        return r;
    atomic_fetch_add(&x->transferred, 1);
    atomic_fetch_add(&x->bytes_transferred, wire);
    if (p->part_reused && (r = punch(p->part_fd, off, len, c->part_path)) < 0)
        return r;
    if ((r = write_sparse(p->part_fd, data, len, off, c->part_path)) < 0)
        return r;
    xfer_chunk_done(x, len);
    return 0;
}

/* Hash the chunks of local file @path (if it exists) into p->local, and
 * describe it as manifest @old (size, chunk size, hashes; n_chunks stays 0
 * when there is no such file). */
static int
index_file(struct pull *p, const char *path, int *fd_out, uint32_t cs, void *buf,
           struct manifest *old)
{
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : err_set_errno(-errno, "cloud: %s", path);
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return 0;
    }
    uint64_t n = manifest_chunk_count((uint64_t)sb.st_size, cs);
    struct local_chunk *v = realloc(p->local, (p->n_local + n + 1) * sizeof *v);
    if (!v) {
        close(fd);
        return err_set(-ENOMEM, "cloud: out of memory");
    }
    p->local = v;
    old->size = (uint64_t)sb.st_size;
    old->chunk_size = cs;
    if (manifest_alloc_chunks(old) < 0) {
        close(fd);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = i * cs, left = (uint64_t)sb.st_size - off;
        uint64_t len = left < cs ? left : cs;
        int r = read_full(fd, buf, len, off);
        if (r < 0) {
            close(fd);
            return err_set_errno(r, "cloud: reading %s", path);
        }
        if (cloud_buf_is_zero(buf, len))
            continue;
        struct local_chunk *lc = &p->local[p->n_local];
        if (cloud_hash(buf, len, &lc->h) < 0) {
            close(fd);
            return -EIO;
        }
        old->chunks[i] = lc->h;
        lc->fd = fd;
        lc->off = off;
        lc->len = (uint32_t)len;
        p->n_local++;
    }
    *fd_out = fd;
    return 0;
}

int
topcow_remote_pull(const char *remote, const char *image, const char *generation,
                   const struct topcow_remote_opts *opts, struct topcow_remote_result *res)
{
    static const struct topcow_remote_opts defaults = TOPCOW_REMOTE_OPTS_INIT;
    if (!opts)
        opts = &defaults;
    err_begin("pull");
    struct store_opts sopts = {opts->endpoint, opts->profile};
    struct remote rm;
    struct manifest m = {0}, old = {0}, was = {0};
    struct local_state ls = {0};
    struct pull p = {.part_fd = -1};
    char gen[CLOUD_GEN_MAX];
    int old_fd = -1, r;
    struct io *lock = NULL;
    void *buf = NULL;
    char *part = NULL;

    r = remote_open(remote, true, NULL, &sopts, &rm);
    if (r < 0)
        return r;
    if (generation) {
        if (!cloud_gen_valid(generation)) {
            r = err_set(-EINVAL, "cloud: '%s' is not a generation id (see topcow remote log)",
                        generation);
            goto out;
        }
        snprintf(gen, sizeof gen, "%s", generation);
    } else if ((r = remote_read_head(&rm, gen, NULL)) < 0) {
        goto out;
    }
    if ((r = remote_read_manifest(&rm, gen, &m)) < 0)
        goto out;
    p.m = &m;

    struct strbuf pb = {0};
    strbuf_addf(&pb, "%s.topcow-part", image);
    part = strbuf_release(&pb);
    if (!part || !(buf = malloc(m.chunk_size))) {
        r = err_set(-ENOMEM, "cloud: out of memory");
        goto out;
    }
    /* The part file of an interrupted pull: which of its chunks are done. */
    p.part_fd = open(part, O_RDWR | O_CLOEXEC);
    if (p.part_fd >= 0) {
        p.part_reused = true;
        if (!(p.part_ok = calloc(m.n_chunks + 1, sizeof *p.part_ok))) {
            r = err_set(-ENOMEM, "cloud: out of memory");
            goto out;
        }
        struct stat sb;
        if (fstat(p.part_fd, &sb) == 0 && (uint64_t)sb.st_size == m.size) {
            for (uint64_t i = 0; i < m.n_chunks; i++) {
                uint64_t off = i * m.chunk_size;
                uint64_t len = m.size - off < m.chunk_size ? m.size - off : m.chunk_size;
                struct cloud_hash h;
                if (cloud_hash_is_zero(&m.chunks[i]) || read_full(p.part_fd, buf, len, off) < 0 ||
                    cloud_hash(buf, len, &h) < 0)
                    continue;
                p.part_ok[i] = memcmp(&h, &m.chunks[i], sizeof h) == 0;
            }
        }
    } else if (errno == ENOENT) {
        p.part_fd = open(part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (p.part_fd < 0) {
        r = err_set_errno(-errno, "cloud: %s", part);
        goto out;
    }
    if (ftruncate(p.part_fd, (off_t)m.size) < 0) {
        r = err_set_errno(-errno, "cloud: %s: cannot make it %" PRIu64 " bytes", part, m.size);
        goto out;
    }
    /* An image in use (a VM, topcow serve) is not replaced under it: hold
     * the image lock QEMU uses while the pull runs. */
    r = io_file_open(image, IO_RDONLY, &lock);
    if (r == -EBUSY)
        r = err_set(-EBUSY, "cloud: %s is in use by another process (a VM, topcow serve); stop it "
                    "before pulling over it", image);
    if (r < 0 && r != -ENOENT)
        goto out;
    /* The old image's chunks, found by hash. */
    if ((r = index_file(&p, image, &old_fd, m.chunk_size, buf, &old)) < 0)
        goto out;
    /* Never overwrite local data that is not in the store: the old image
     * must be what its state file says it was pulled or pushed as. */
    if (old_fd >= 0 && !(opts->flags & TOPCOW_REMOTE_FORCE)) {
        r = local_state_read(image, &ls);
        if (r == -ENOENT) {
            r = err_set(-EEXIST, "cloud: %s exists and did not come from a remote; move it away, "
                        "or pull --force to overwrite it", image);
            goto out;
        }
        if (r < 0)
            goto out;
        if (strcmp(ls.remote, rm.url) != 0) {
            r = err_set(-EEXIST, "cloud: %s came from %s, not %s; pull --force to overwrite it",
                        image, ls.remote, rm.url);
            goto out;
        }
        if ((r = remote_read_manifest(&rm, ls.gen, &was)) < 0)
            goto out;
        if (was.size != old.size || was.chunk_size != old.chunk_size ||
            memcmp(was.chunks, old.chunks, was.n_chunks * sizeof *was.chunks) != 0) {
            r = err_set(-EEXIST, "cloud: %s has changes not pushed since generation %s; push them "
                        "first, or pull --force to discard them", image, ls.gen);
            goto out;
        }
    }
    if (p.n_local)
        qsort(p.local, p.n_local, sizeof *p.local, cmp_local);

    struct pull_ctx ctx = {&p, part};
    struct xfer x = {
        .rm = &rm, .sopts = &sopts, .n_chunks = m.n_chunks, .chunk_size = m.chunk_size,
        .file_size = m.size, .jobs = opts->jobs, .fn = pull_chunk, .opaque = &ctx, .opts = opts,
    };
    if ((r = xfer_run(&x)) < 0)
        goto out;
    if (fsync(p.part_fd) < 0) {
        r = err_set_errno(-errno, "cloud: %s", part);
        goto out;
    }
    if (rename(part, image) < 0) {
        r = err_set_errno(-errno, "cloud: renaming %s to %s", part, image);
        goto out;
    }
    if ((r = local_state_write(image, rm.url, m.gen)) < 0)
        goto out;
    if (res && res->struct_size >= sizeof *res) {
        size_t keep = res->struct_size;
        memset(res, 0, sizeof *res);
        res->struct_size = keep;
        snprintf(res->generation, sizeof res->generation, "%s", m.gen);
        snprintf(res->parent, sizeof res->parent, "%s", m.parent);
        res->size = m.size;
        res->chunks = m.n_chunks;
        res->chunks_zero = atomic_load(&x.zero);
        res->chunks_transferred = atomic_load(&x.transferred);
        res->bytes_transferred = atomic_load(&x.bytes_transferred);
        res->chunks_present = atomic_load(&x.present);
        /* The calling thread's requests (HEAD, manifests) count too. */
        struct store_stats ss;
        store_get_stats(rm.st, &ss);
        res->requests = atomic_load(&x.requests) + ss.requests;
        res->retries = atomic_load(&x.retries) + ss.retries;
        res->up_to_date = res->chunks_transferred == 0;
    }
out:
    io_close(lock);
    if (p.part_fd >= 0)
        close(p.part_fd);
    if (old_fd >= 0)
        close(old_fd);
    free(p.part_ok);
    manifest_free(&old);
    manifest_free(&was);
    local_state_clear(&ls);
    free(p.local);
    free(buf);
    free(part);
    manifest_free(&m);
    remote_close(&rm);
    return r;
}
