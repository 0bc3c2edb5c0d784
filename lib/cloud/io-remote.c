// SPDX-License-Identifier: MIT
/* Running an image straight from a remote (io-remote.h): an io backend over
 * one generation of a remote image file, with a persistent local cache.
 *
 * The cache of a remote lives in CACHE_ROOT/<hash of its URL>/:
 *   data     a sparse file as large as the image file: the chunks fetched
 *            or written so far, at their own offsets
 *   state    "topcow-cache 1", the base generation, the size, then one byte
 *            per chunk: 0 absent, 1 present (fetched and verified), 2 dirty
 *            (written here, not pushed)
 *   trace    the chunks the last run read first, in order (prefetched by the
 *            next open, so a boot's reads find their chunks already local)
 *   lock     flock: one read-write user, or any number of readers
 * A chunk is fetched whole on its first read (verified against its hash),
 * written to data, made durable, and only then marked present; a chunk is
 * marked dirty (durably) before it is first written.  A crash therefore
 * never leaves a chunk marked present that is not, nor written but not
 * dirty.  Reads of present chunks are plain preads of the data file; a miss
 * also queues the next chunks for the background fetchers (readahead).
 *
 * A read-write open holds the image's writer lease; closing it pushes the
 * dirty chunks as a new generation (parent: the base) and swaps HEAD.
 *
 * Threads (the fetchers, the lease's renewal) do not survive fork(), and
 * `topcow serve --fork` forks after opening: a pthread_atfork handler
 * quiesces every open backend around a fork, and the child starts its
 * threads again on first use. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chunk.h"
#include "error.h"
#include "io-remote.h"
#include "io.h"
#include "remote.h"
#include "strbuf.h"
#include "topcow.h"

enum { CHUNK_ABSENT = 0, CHUNK_PRESENT = 1, CHUNK_DIRTY = 2 };

#define FETCHERS 2          /* background fetch threads */
#define READAHEAD 2         /* chunks queued after a miss */
#define TRACE_MAX 8192      /* chunks remembered for the next open's prefetch */
#define QUEUE_MAX 16384
#define STATE_HDR 128       /* bytes before the chunk bytes in the state file */

struct io_remote {
    struct io base;
    struct remote rm;
    struct store_opts sopts;
    bool rw;
    struct manifest m;      /* the base generation */
    uint64_t size;          /* the file's size now (grows with writes) */
    uint64_t n_chunks;      /* chunks of @size, >= m.n_chunks possible */
    char *dir;
    int data_fd, state_fd, lock_fd;
    uint8_t *state;         /* n_chunks bytes (CHUNK_*) */
    uint8_t *inflight;      /* being fetched */
    uint8_t *touched;       /* read in this run (for the trace) */
    uint32_t *trace;
    size_t n_trace;
    struct lease lease;
    bool have_lease;
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* a fetch finished, or the queue changed */
    uint64_t queue[QUEUE_MAX];
    size_t q_head, q_len;
    bool stop;
    pthread_t fetchers[FETCHERS];
    unsigned n_fetchers;
    bool fetchers_started;  /* (again, in a forked child) */
    struct io_remote *next; /* in the list of open backends, for fork */
    uint64_t serial;        /* unique per open, for the per-thread connections */
    bool no_push_on_close;  /* io_remote_push_cache pushed (or reported) already */
};

/* Every open backend, for the fork handlers. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_remote *all;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void
fork_prepare(void)
{
    pthread_mutex_lock(&all_lock);
    for (struct io_remote *ir = all; ir; ir = ir->next) {
        pthread_mutex_lock(&ir->lock);
        if (ir->have_lease)
            lease_fork_prepare(&ir->lease);
    }
}

static void
fork_parent(void)
{
    for (struct io_remote *ir = all; ir; ir = ir->next) {
        if (ir->have_lease)
            lease_fork_parent(&ir->lease);
        pthread_mutex_unlock(&ir->lock);
    }
    pthread_mutex_unlock(&all_lock);
}

/* In the child only the forking thread runs: fetches in flight in other
 * threads will never finish, and no fetcher is left. */
static void
fork_child(void)
{
    for (struct io_remote *ir = all; ir; ir = ir->next) {
        memset(ir->inflight, 0, ir->n_chunks);
        pthread_cond_init(&ir->cond, NULL); /* its waiters were the parent's threads */
        ir->n_fetchers = 0;
        ir->fetchers_started = false;
        if (ir->have_lease)
            lease_fork_child(&ir->lease);
        pthread_mutex_unlock(&ir->lock);
    }
    pthread_mutex_unlock(&all_lock);
}

static void
atfork_register(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static struct io_remote *
ir_of(struct io *io)
{
    return (struct io_remote *)io;
}

static uint64_t
chunk_len(const struct io_remote *ir, uint64_t i)
{
    uint64_t off = i * ir->m.chunk_size, left = ir->size > off ? ir->size - off : 0;
    return left < ir->m.chunk_size ? left : ir->m.chunk_size;
}

/* Bytes of chunk @i in the base generation (what its object holds). */
static uint64_t
base_chunk_len(const struct io_remote *ir, uint64_t i)
{
    uint64_t off = i * ir->m.chunk_size, left = ir->m.size > off ? ir->m.size - off : 0;
    return left < ir->m.chunk_size ? left : ir->m.chunk_size;
}

/* Whether chunk @i needs no fetch: beyond the base, or all zeros in it. */
static bool
chunk_is_local_zero(const struct io_remote *ir, uint64_t i)
{
    return i >= ir->m.n_chunks || cloud_hash_is_zero(&ir->m.chunks[i]);
}

/* Write the state byte of chunk @i to the state file; @sync makes it
 * durable first (dirty marks). Called with the lock held. */
static int
state_set(struct io_remote *ir, uint64_t i, uint8_t v, bool sync)
{
    ir->state[i] = v;
    if (pwrite(ir->state_fd, &v, 1, (off_t)(STATE_HDR + i)) != 1)
        return err_set_errno(-errno, "cloud cache: writing %s/state", ir->dir);
    if (sync && fdatasync(ir->state_fd) < 0)
        return err_set_errno(-errno, "cloud cache: syncing %s/state", ir->dir);
    return 0;
}

static int
state_write_header(struct io_remote *ir)
{
    char hdr[STATE_HDR];
    memset(hdr, 0, sizeof hdr);
    snprintf(hdr, sizeof hdr, "topcow-cache 1\n%s\n%" PRIu64 "\n", ir->m.gen, ir->size);
    if (pwrite(ir->state_fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
        fdatasync(ir->state_fd) < 0)
        return err_set_errno(-errno, "cloud cache: writing %s/state", ir->dir);
    return 0;
}

/* Fetch chunk @i into the data file with connection @st (scratch @buf of
 * 2 chunks) and mark it present.  Called without the lock; the caller has
 * set inflight[i]. */
static int
fetch_chunk(struct io_remote *ir, struct store *st, uint64_t i, void *buf)
{
    uint64_t len = base_chunk_len(ir, i);
    void *data;
    size_t wire;
    int r = cloud_chunk_get(st, &ir->m.chunks[i], len, buf, &data, &wire);
    if (r < 0)
        return r;
    const char *p = data;
    for (uint64_t done = 0; done < len;) {
        ssize_t n = pwrite(ir->data_fd, p + done, len - done, (off_t)(i * ir->m.chunk_size + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set_errno(-errno, "cloud cache: writing %s/data", ir->dir);
        done += (uint64_t)n;
    }
    /* The data is durable before the mark that says it is there. */
    if (fdatasync(ir->data_fd) < 0)
        return err_set_errno(-errno, "cloud cache: syncing %s/data", ir->dir);
    return 0;
}

/* Make chunk @i local (fetching it, or waiting for a fetcher that is).
 * Called with the lock held; may drop it while fetching. */
static int
ensure_chunk(struct io_remote *ir, uint64_t i, struct store *st, void *buf)
{
    while (ir->state[i] == CHUNK_ABSENT) {
        if (chunk_is_local_zero(ir, i))
            return state_set(ir, i, CHUNK_PRESENT, false);
        if (ir->inflight[i]) {
            pthread_cond_wait(&ir->cond, &ir->lock);
            continue;
        }
        ir->inflight[i] = 1;
        pthread_mutex_unlock(&ir->lock);
        int r = fetch_chunk(ir, st, i, buf);
        pthread_mutex_lock(&ir->lock);
        ir->inflight[i] = 0;
        if (r == 0)
            r = state_set(ir, i, CHUNK_PRESENT, false);
        pthread_cond_broadcast(&ir->cond);
        return r;
    }
    return 0;
}

static void *fetcher_main(void *arg);

/* Start the fetchers if they are not running (first use, or in a forked
 * child).  Called with the lock held. */
static void
start_fetchers(struct io_remote *ir)
{
    if (ir->fetchers_started || ir->stop)
        return;
    ir->fetchers_started = true;
    for (unsigned k = 0; k < FETCHERS; k++)
        if (pthread_create(&ir->fetchers[ir->n_fetchers], NULL, fetcher_main, ir) == 0)
            ir->n_fetchers++;
}

static void
queue_push(struct io_remote *ir, uint64_t i)
{
    if (i >= ir->n_chunks || ir->state[i] != CHUNK_ABSENT || ir->inflight[i] ||
        ir->q_len == QUEUE_MAX)
        return;
    ir->queue[(ir->q_head + ir->q_len++) % QUEUE_MAX] = i;
    start_fetchers(ir);
    pthread_cond_broadcast(&ir->cond);
}

static void *
fetcher_main(void *arg)
{
    struct io_remote *ir = arg;
    struct store *st = NULL;
    void *buf = malloc(2 * (size_t)ir->m.chunk_size);
    if (!buf || remote_open_store(&ir->rm, &ir->sopts, &st) < 0) {
        free(buf);
        return NULL; /* no background fetching: reads still fetch what they need */
    }
    pthread_mutex_lock(&ir->lock);
    while (!ir->stop) {
        if (!ir->q_len) {
            pthread_cond_wait(&ir->cond, &ir->lock);
            continue;
        }
        uint64_t i = ir->queue[ir->q_head];
        ir->q_head = (ir->q_head + 1) % QUEUE_MAX;
        ir->q_len--;
        if (ir->state[i] != CHUNK_ABSENT || ir->inflight[i])
            continue;
        /* Errors here are left for the read that needs the chunk to report. */
        if (ensure_chunk(ir, i, st, buf) < 0)
            err_clear();
    }
    pthread_mutex_unlock(&ir->lock);
    store_close(st);
    free(buf);
    return NULL;
}

/* ---- io ops ---------------------------------------------------------------- */

/* The calling thread's connection and buffer for fetches on demand, kept
 * per thread (serve runs one thread per client) and freed when the thread
 * exits.  An entry belongs to the backend with serial number @serial: a
 * closed backend's address may be reused, its serial never is. */
struct tls_fetch {
    uint64_t serial;
    struct store *st;
    void *buf;
};
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t next_serial = 1;

static void
tls_free(void *p)
{
    struct tls_fetch *t = p;
    if (t) {
        store_close(t->st);
        free(t->buf);
        free(t);
    }
}

static void
tls_init(void)
{
    pthread_key_create(&tls_key, tls_free);
}

/* The calling thread's entry for @ir (made on first use), or NULL. */
static struct tls_fetch *
tls_get(struct io_remote *ir, int *r)
{
    pthread_once(&tls_once, tls_init);
    struct tls_fetch *t = pthread_getspecific(tls_key);
    *r = 0;
    if (t && t->serial == ir->serial)
        return t;
    tls_free(t);
    pthread_setspecific(tls_key, NULL);
    t = calloc(1, sizeof *t);
    if (t)
        t->buf = malloc(2 * (size_t)ir->m.chunk_size);
    if (!t || !t->buf) {
        tls_free(t);
        *r = err_set(-ENOMEM, "cloud cache: out of memory");
        return NULL;
    }
    if ((*r = remote_open_store(&ir->rm, &ir->sopts, &t->st)) < 0) {
        tls_free(t);
        return NULL;
    }
    t->serial = ir->serial;
    pthread_setspecific(tls_key, t);
    return t;
}

/* Drop the calling thread's entry if it is @ir's. */
static void
tls_drop(struct io_remote *ir)
{
    pthread_once(&tls_once, tls_init);
    struct tls_fetch *t = pthread_getspecific(tls_key);
    if (t && t->serial == ir->serial) {
        tls_free(t);
        pthread_setspecific(tls_key, NULL);
    }
}

/* Make [off, off+len) local; note first reads for the trace. */
static int
make_local(struct io_remote *ir, uint64_t off, uint64_t len, bool reading)
{
    if (len == 0 || off >= ir->size)
        return 0;
    uint64_t end = off + len < ir->size ? off + len : ir->size;
    uint64_t first = off / ir->m.chunk_size, last = (end - 1) / ir->m.chunk_size;
    int r = 0;
    pthread_mutex_lock(&ir->lock);
    for (uint64_t i = first; i <= last && r == 0; i++) {
        if (reading && !ir->touched[i]) {
            ir->touched[i] = 1;
            if (ir->n_trace < TRACE_MAX)
                ir->trace[ir->n_trace++] = (uint32_t)i;
        }
        if (ir->state[i] != CHUNK_ABSENT)
            continue;
        for (uint64_t k = 1; k <= READAHEAD; k++)
            queue_push(ir, last + k);
        pthread_mutex_unlock(&ir->lock);
        struct tls_fetch *t = tls_get(ir, &r);
        pthread_mutex_lock(&ir->lock);
        if (t)
            r = ensure_chunk(ir, i, t->st, t->buf);
    }
    pthread_mutex_unlock(&ir->lock);
    return r;
}

static int
full_pread(int fd, void *buf, size_t len, uint64_t off, const char *what)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set_errno(-errno, "cloud cache: reading %s", what);
        if (n == 0) {
            memset((char *)buf + done, 0, len - done);
            break;
        }
        done += (size_t)n;
    }
    return 0;
}

static int
ir_pread(struct io *io, void *buf, size_t len, uint64_t off)
{
    struct io_remote *ir = ir_of(io);
    if (ir->have_lease && ir->lease.orphaned)
        (void)lease_ok(&ir->lease); /* restarts the renewal in a forked child */
    int r = make_local(ir, off, len, true);
    if (r < 0)
        return r;
    if (off >= ir->size) {
        memset(buf, 0, len);
        return 0;
    }
    return full_pread(ir->data_fd, buf, len, off, ir->dir);
}

static int
ir_pwrite(struct io *io, const void *buf, size_t len, uint64_t off)
{
    struct io_remote *ir = ir_of(io);
    RETURN_ERR_IF(!ir->rw, -EROFS, "cloud cache: %s is open read-only", ir->rm.url);
    RETURN_ERR_IF(ir->have_lease && !lease_ok(&ir->lease), -EBUSY,
                  "cloud: %s: the writer lease was lost; writes are refused", ir->rm.url);
    int r = 0;
    uint64_t end = off + len;
    pthread_mutex_lock(&ir->lock);
    if (end > ir->size) {
        uint64_t n = manifest_chunk_count(end, ir->m.chunk_size);
        if (n > ir->n_chunks) {
            uint8_t *s = realloc(ir->state, n), *f = realloc(ir->inflight, n),
                    *t = realloc(ir->touched, n);
            if (s)
                ir->state = s;
            if (f)
                ir->inflight = f;
            if (t)
                ir->touched = t;
            if (!s || !f || !t) {
                pthread_mutex_unlock(&ir->lock);
                return err_set(-ENOMEM, "cloud cache: out of memory");
            }
            memset(ir->state + ir->n_chunks, CHUNK_PRESENT, n - ir->n_chunks);
            memset(ir->inflight + ir->n_chunks, 0, n - ir->n_chunks);
            memset(ir->touched + ir->n_chunks, 0, n - ir->n_chunks);
            for (uint64_t i = ir->n_chunks; i < n && r == 0; i++)
                r = state_set(ir, i, CHUNK_PRESENT, false);
            ir->n_chunks = n;
        }
        ir->size = end;
        if (r == 0)
            r = state_write_header(ir);
    }
    /* The chunks written must be local first: a partial write keeps the
     * rest of the chunk (the old last chunk too, when the file grows). */
    pthread_mutex_unlock(&ir->lock);
    if (r == 0)
        r = make_local(ir, off, len, false);
    pthread_mutex_lock(&ir->lock);
    for (uint64_t i = off / ir->m.chunk_size; r == 0 && len && i <= (end - 1) / ir->m.chunk_size;
         i++)
        if (ir->state[i] != CHUNK_DIRTY)
            r = state_set(ir, i, CHUNK_DIRTY, true); /* durable before the data */
    pthread_mutex_unlock(&ir->lock);
    if (r < 0)
        return r;
    for (size_t done = 0; done < len;) {
        ssize_t n = pwrite(ir->data_fd, (const char *)buf + done, len - done,
                           (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set_errno(-errno, "cloud cache: writing %s/data", ir->dir);
        done += (size_t)n;
    }
    return 0;
}

static int
ir_flush(struct io *io)
{
    struct io_remote *ir = ir_of(io);
    if (ir->have_lease)
        (void)lease_ok(&ir->lease); /* restarts the renewal in a forked child */
    if (ir->rw && fdatasync(ir->data_fd) < 0)
        return err_set_errno(-errno, "cloud cache: syncing %s/data", ir->dir);
    return 0;
}

static int
ir_get_size(struct io *io, uint64_t *size)
{
    *size = ir_of(io)->size;
    return 0;
}

static int
ir_truncate(struct io *io, uint64_t size)
{
    struct io_remote *ir = ir_of(io);
    if (size == ir->size)
        return 0;
    /* Growing goes through a write of the last byte; shrinking a remote
     * image's file is not supported. */
    RETURN_ERR_IF(size < ir->size, -ENOTSUP, "cloud cache: %s: shrinking a remote image's file",
                  ir->rm.url);
    static const char zero;
    return ir_pwrite(io, &zero, 1, size - 1);
}

/* ---- opening, closing, pushing ---------------------------------------------- */

/* Push the dirty chunks as a new generation; on success they become the
 * base.  Called at close of a read-write open. */
static int
push_dirty(struct io_remote *ir)
{
    uint64_t dirty = 0;
    for (uint64_t i = 0; i < ir->n_chunks; i++)
        dirty += ir->state[i] == CHUNK_DIRTY;
    if (!dirty && ir->size == ir->m.size)
        return 0;
    struct manifest nm = ir->m;
    nm.chunks = NULL;
    nm.size = ir->size;
    snprintf(nm.parent, sizeof nm.parent, "%s", ir->m.gen);
    nm.created = (int64_t)time(NULL);
    char machine[64];
    cloud_whoami(nm.user, sizeof nm.user, nm.host, sizeof nm.host, machine, sizeof machine);
    int r = manifest_alloc_chunks(&nm);
    if (r < 0)
        return r;
    void *buf = malloc(2 * (size_t)nm.chunk_size);
    if (!buf) {
        manifest_free(&nm);
        return err_set(-ENOMEM, "cloud cache: out of memory");
    }
    for (uint64_t i = 0; i < nm.n_chunks && r == 0; i++) {
        if (ir->state[i] != CHUNK_DIRTY && i < ir->m.n_chunks &&
            !(i == ir->m.n_chunks - 1 && ir->size != ir->m.size)) {
            nm.chunks[i] = ir->m.chunks[i];
            continue;
        }
        /* Dirty, new, or the old last chunk that grew: hash what is local. */
        uint64_t len = chunk_len(ir, i);
        pthread_mutex_lock(&ir->lock);
        r = ensure_chunk(ir, i, ir->rm.st, buf);
        pthread_mutex_unlock(&ir->lock);
        if (r == 0)
            r = full_pread(ir->data_fd, buf, len, i * nm.chunk_size, ir->dir);
        if (r < 0 || cloud_buf_is_zero(buf, len))
            continue;
        if ((r = cloud_hash(buf, len, &nm.chunks[i])) < 0)
            break;
        char key[STORE_KEY_MAX + 1];
        struct store_info info;
        cloud_chunk_key(&nm.chunks[i], key, sizeof key);
        if (store_head(ir->rm.st, key, &info) == 0)
            continue;
        uint64_t sent;
        r = cloud_chunk_put(ir->rm.st, &nm.chunks[i], buf, len, false, (char *)buf + len, &sent);
        if (r == -EEXIST)
            r = 0;
    }
    free(buf);
    char head[CLOUD_GEN_MAX], etag[STORE_ETAG_MAX];
    if (r == 0)
        r = remote_read_head(&ir->rm, head, etag);
    if (r == 0 && strcmp(head, ir->m.gen) != 0)
        r = err_set(-ESTALE, "cloud: %s moved to generation %s while it was served from %s; the "
                    "changes stay in the cache %s", ir->rm.url, head, ir->m.gen, ir->dir);
    if (r == 0 && ir->have_lease && !lease_ok(&ir->lease))
        r = err_set(-EBUSY, "cloud: %s: the writer lease was lost; the changes stay in the cache "
                    "%s", ir->rm.url, ir->dir);
    if (r == 0 && (r = cloud_gen_new(cloud_gen_seq(head) + 1, nm.gen)) == 0)
        r = remote_commit(&ir->rm, &nm, etag);
    if (r == 0) {
        manifest_free(&ir->m);
        ir->m = nm;
        pthread_mutex_lock(&ir->lock);
        r = state_write_header(ir);
        for (uint64_t i = 0; i < ir->n_chunks && r == 0; i++)
            if (ir->state[i] == CHUNK_DIRTY)
                r = state_set(ir, i, CHUNK_PRESENT, false);
        pthread_mutex_unlock(&ir->lock);
        if (r == 0 && fdatasync(ir->state_fd) < 0)
            r = err_set_errno(-errno, "cloud cache: syncing %s/state", ir->dir);
    } else {
        manifest_free(&nm);
    }
    return r;
}

static void
save_trace(struct io_remote *ir)
{
    if (!ir->n_trace)
        return;
    struct strbuf p = {0}, t = {0};
    strbuf_addf(&p, "%s/trace", ir->dir);
    for (size_t i = 0; i < ir->n_trace; i++)
        strbuf_addf(&t, "%" PRIu32 "\n", ir->trace[i]);
    if (!strbuf_failed(&p) && !strbuf_failed(&t)) {
        FILE *f = fopen(p.s, "we");
        if (f) {
            fwrite(t.s, 1, t.len, f);
            fclose(f);
        }
    }
    strbuf_free(&p);
    strbuf_free(&t);
}

static void
stop_fetchers(struct io_remote *ir)
{
    pthread_mutex_lock(&ir->lock);
    ir->stop = true;
    pthread_cond_broadcast(&ir->cond);
    pthread_mutex_unlock(&ir->lock);
    for (unsigned k = 0; k < ir->n_fetchers; k++)
        pthread_join(ir->fetchers[k], NULL);
    ir->n_fetchers = 0;
}

static void
ir_close(struct io *io)
{
    struct io_remote *ir = ir_of(io);
    pthread_mutex_lock(&all_lock);
    for (struct io_remote **p = &all; *p; p = &(*p)->next)
        if (*p == ir) {
            *p = ir->next;
            break;
        }
    pthread_mutex_unlock(&all_lock);
    stop_fetchers(ir);
    tls_drop(ir);
    if (ir->rw && ir->state && !ir->no_push_on_close) {
        int r = push_dirty(ir);
        if (r < 0)
            fprintf(stderr, "topcow: %s\n", topcow_last_error());
    }
    if (ir->state)
        save_trace(ir);
    if (ir->have_lease)
        lease_release(&ir->lease);
    if (ir->data_fd >= 0)
        close(ir->data_fd);
    if (ir->state_fd >= 0)
        close(ir->state_fd);
    if (ir->lock_fd >= 0)
        close(ir->lock_fd);
    free(ir->state);
    free(ir->inflight);
    free(ir->touched);
    free(ir->trace);
    free(ir->dir);
    manifest_free(&ir->m);
    remote_close(&ir->rm);
    pthread_mutex_destroy(&ir->lock);
    pthread_cond_destroy(&ir->cond);
    io_base_fini(&ir->base);
    free(ir);
}

static const struct io_ops io_remote_ops = {
    .struct_size = sizeof(struct io_ops),
    .name = "remote",
    .thread_model = IO_PARALLEL,
    .close = ir_close,
    .pread = ir_pread,
    .pwrite = ir_pwrite,
    .flush = ir_flush,
    .get_size = ir_get_size,
    .truncate = ir_truncate,
};

char *
io_remote_cache_dir(const char *url)
{
    struct strbuf b = {0};
    const char *root = getenv("TOPCOW_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    if (root && *root)
        strbuf_add(&b, root);
    else if (xdg && *xdg)
        strbuf_addf(&b, "%s/topcow", xdg);
    else
        strbuf_addf(&b, "%s/.cache/topcow", home && *home ? home : "/tmp");
    struct cloud_hash h;
    char hex[CLOUD_HASH_HEX];
    if (cloud_hash(url, strlen(url), &h) < 0) {
        strbuf_free(&b);
        return NULL;
    }
    cloud_hash_hex(&h, hex);
    strbuf_addf(&b, "/remote-%.24s", hex);
    return strbuf_release(&b);
}

static int
mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
                return err_set_errno(-errno, "cloud cache: cannot create %s", tmp);
            *p = '/';
        }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return err_set_errno(-errno, "cloud cache: cannot create %s", tmp);
    return 0;
}

static int
open_in(struct io_remote *ir, const char *name, int flags, int *fd)
{
    struct strbuf b = {0};
    strbuf_addf(&b, "%s/%s", ir->dir, name);
    RETURN_ERR_IF(strbuf_failed(&b), -ENOMEM, "cloud cache: out of memory");
    *fd = open(b.s, flags | O_CLOEXEC, 0600);
    int r = *fd < 0 ? err_set_errno(-errno, "cloud cache: %s", b.s) : 0;
    strbuf_free(&b);
    return r;
}

/* Load the state file, or start afresh; reconcile with the base generation
 * @m (HEAD now).  Chunks of an older cached generation that the new one
 * shares stay; others are forgotten.  Dirty chunks of an older generation
 * are a conflict. */
static int
load_state(struct io_remote *ir, struct manifest *head_m)
{
    char hdr[STATE_HDR + 1] = {0};
    ssize_t n = pread(ir->state_fd, hdr, STATE_HDR, 0);
    char gen[CLOUD_GEN_MAX] = "";
    uint64_t size = 0;
    bool have = n == STATE_HDR &&
                sscanf(hdr, "topcow-cache 1\n%17s\n%" SCNu64 "\n", gen, &size) == 2 &&
                cloud_gen_valid(gen);
    uint64_t cached_chunks = have ? manifest_chunk_count(size, head_m->chunk_size) : 0;
    uint64_t n_now = manifest_chunk_count(head_m->size, head_m->chunk_size);
    uint64_t cap = (cached_chunks > n_now ? cached_chunks : n_now) + 1;
    ir->state = calloc(cap, 1);
    ir->inflight = calloc(cap, 1);
    ir->touched = calloc(cap, 1);
    ir->trace = calloc(TRACE_MAX, sizeof *ir->trace);
    RETURN_ERR_IF(!ir->state || !ir->inflight || !ir->touched || !ir->trace, -ENOMEM,
                  "cloud cache: out of memory");
    if (have && pread(ir->state_fd, ir->state, cached_chunks, STATE_HDR) != (ssize_t)cached_chunks)
        have = false;
    bool dirty = false;
    for (uint64_t i = 0; have && i < cached_chunks; i++) {
        if (ir->state[i] > CHUNK_DIRTY)
            have = false;
        dirty |= ir->state[i] == CHUNK_DIRTY;
    }
    ir->m = *head_m;
    memset(head_m, 0, sizeof *head_m);
    if (have && strcmp(gen, ir->m.gen) == 0) {
        /* The cache is of HEAD (with the local writes of a run that could
         * not push: they are pushed at the next clean close). */
        ir->size = size;
        ir->n_chunks = cached_chunks;
        return 0;
    }
    if (have && dirty)
        return err_set(-ESTALE, "cloud: %s moved to generation %s, but the cache %s holds "
                       "changes made to generation %s that were never pushed",
                       ir->rm.url, ir->m.gen, ir->dir, gen);
    /* Another generation (or no cache): keep the chunks both share. */
    struct manifest old = {0};
    bool reuse = have && remote_read_manifest(&ir->rm, gen, &old) == 0 &&
                 old.chunk_size == ir->m.chunk_size;
    if (have && !reuse)
        err_clear();
    ir->size = ir->m.size;
    ir->n_chunks = n_now;
    for (uint64_t i = 0; i < cap; i++) {
        bool keep = reuse && i < n_now && i < old.n_chunks && ir->state[i] == CHUNK_PRESENT &&
                    memcmp(&old.chunks[i], &ir->m.chunks[i], sizeof old.chunks[i]) == 0 &&
                    (i + 1 < n_now || ir->m.size == old.size);
        ir->state[i] = keep ? CHUNK_PRESENT : CHUNK_ABSENT;
    }
    manifest_free(&old);
    /* Forget the rest on disk: holes where chunks are absent. */
    for (uint64_t i = 0; i < n_now; i++)
        if (ir->state[i] == CHUNK_ABSENT)
            fallocate(ir->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(i * ir->m.chunk_size), (off_t)ir->m.chunk_size);
    if (ftruncate(ir->data_fd, (off_t)ir->size) < 0 ||
        ftruncate(ir->state_fd, (off_t)(STATE_HDR + n_now)) < 0 ||
        pwrite(ir->state_fd, ir->state, n_now, STATE_HDR) != (ssize_t)n_now)
        return err_set_errno(-errno, "cloud cache: resetting %s", ir->dir);
    if (fdatasync(ir->data_fd) < 0)
        return err_set_errno(-errno, "cloud cache: syncing %s/data", ir->dir);
    return state_write_header(ir);
}

/* Queue the chunks the last run read first. */
static void
prefetch_trace(struct io_remote *ir)
{
    struct strbuf p = {0};
    strbuf_addf(&p, "%s/trace", ir->dir);
    FILE *f = strbuf_failed(&p) ? NULL : fopen(p.s, "re");
    strbuf_free(&p);
    if (!f)
        return;
    unsigned long long i;
    pthread_mutex_lock(&ir->lock);
    while (fscanf(f, "%llu", &i) == 1)
        queue_push(ir, i);
    pthread_mutex_unlock(&ir->lock);
    fclose(f);
}

int
io_remote_open(const char *url, unsigned flags, struct io **out)
{
    *out = NULL;
    struct io_remote *ir = calloc(1, sizeof *ir);
    RETURN_ERR_IF(!ir, -ENOMEM, "cloud cache: out of memory");
    ir->data_fd = ir->state_fd = ir->lock_fd = -1;
    ir->serial = atomic_fetch_add(&next_serial, 1);
    ir->rw = !(flags & IO_RDONLY);
    pthread_mutex_init(&ir->lock, NULL);
    pthread_cond_init(&ir->cond, NULL);
    int r = io_base_init(&ir->base, &io_remote_ops, url, flags);
    if (r < 0) {
        pthread_mutex_destroy(&ir->lock);
        pthread_cond_destroy(&ir->cond);
        free(ir);
        return r;
    }
    struct manifest head_m = {0};
    char head[CLOUD_GEN_MAX];
    if ((r = remote_open(url, true, NULL, &ir->sopts, &ir->rm)) < 0)
        goto fail;
    if (ir->rw) {
        r = lease_acquire(&ir->rm, &ir->sopts, "serve", 0, 0, &ir->lease);
        if (r < 0)
            goto fail;
        ir->have_lease = true;
    }
    if ((r = remote_read_head(&ir->rm, head, NULL)) < 0 ||
        (r = remote_read_manifest(&ir->rm, head, &head_m)) < 0)
        goto fail;
    if (!(ir->dir = io_remote_cache_dir(ir->rm.url))) {
        r = err_set(-ENOMEM, "cloud cache: out of memory");
        goto fail;
    }
    if ((r = mkdir_p(ir->dir)) < 0 || (r = open_in(ir, "lock", O_RDWR | O_CREAT, &ir->lock_fd)) < 0)
        goto fail;
    if (flock(ir->lock_fd, (ir->rw ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
        r = err_set(-EBUSY, "cloud cache: %s is in use by another process%s", ir->dir,
                    ir->rw ? "" : " that writes to it");
        goto fail;
    }
    if ((r = open_in(ir, "data", O_RDWR | O_CREAT, &ir->data_fd)) < 0 ||
        (r = open_in(ir, "state", O_RDWR | O_CREAT, &ir->state_fd)) < 0 ||
        (r = load_state(ir, &head_m)) < 0)
        goto fail;
    prefetch_trace(ir);
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&all_lock);
    ir->next = all;
    all = ir;
    pthread_mutex_unlock(&all_lock);
    *out = &ir->base;
    return 0;
fail:
    manifest_free(&head_m);
    {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", topcow_last_error());
        ir->rw = false; /* nothing to push */
        free(ir->state);
        ir->state = NULL;
        ir_close(&ir->base);
        err_restore(r, msg);
    }
    return r;
}

int
io_remote_push_cache(const char *url, char gen[CLOUD_GEN_MAX], bool *pushed)
{
    struct io *io;
    int r = io_remote_open(url, 0, &io);
    if (r < 0)
        return r;
    struct io_remote *ir = ir_of(io);
    stop_fetchers(ir);
    char before[CLOUD_GEN_MAX];
    snprintf(before, sizeof before, "%s", ir->m.gen);
    r = push_dirty(ir);
    ir->no_push_on_close = true;
    snprintf(gen, CLOUD_GEN_MAX, "%s", ir->m.gen);
    *pushed = strcmp(before, ir->m.gen) != 0;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", topcow_last_error());
    io_close(io);
    if (r < 0)
        err_restore(r, msg);
    return r;
}
