// SPDX-License-Identifier: MIT
/* The file:// object store: a key is a file under the store's directory.
 * Writes go to a temporary file in DIR/.topcow-tmp, are fsynced, and are
 * moved into place with one rename, so readers see whole objects only.
 * Create-once renames with RENAME_NOREPLACE (or link(2) where the file
 * system lacks it): exactly one of several writers gets the name.
 * Compare-and-swap holds an OFD lock on DIR/.topcow-tmp/lock (which also
 * works between machines on NFS) while it compares the current content's MD5
 * with the expected ETag and renames over it.  A key cannot also be a
 * "directory" of other keys here (S3 allows "a" beside "a/b"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "error.h"
#include "store.h"
#include "strbuf.h"

#define TMP_DIR ".topcow-tmp"

struct file_store {
    struct store base;
    char *root; /* absolute, no trailing '/' */
    int root_fd;
};

static struct file_store *
fs_of(struct store *st)
{
    return (struct file_store *)st;
}

/* ---- content hashes ----------------------------------------------------- */

struct md5 {
    EVP_MD_CTX *ctx;
};

static int
md5_begin(struct md5 *m)
{
    m->ctx = EVP_MD_CTX_new();
    if (!m->ctx || !EVP_DigestInit_ex(m->ctx, EVP_md5(), NULL)) {
        EVP_MD_CTX_free(m->ctx);
        m->ctx = NULL;
        return err_set(-EIO, "file: MD5 is not available from libcrypto");
    }
    return 0;
}

static void
md5_end(struct md5 *m, char out[STORE_ETAG_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[16];
    unsigned int n = 0;
    EVP_DigestFinal_ex(m->ctx, d, &n);
    EVP_MD_CTX_free(m->ctx);
    m->ctx = NULL;
    for (unsigned i = 0; i < 16; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[32] = '\0';
}

static int
md5_buf(const void *data, size_t len, char out[STORE_ETAG_MAX])
{
    struct md5 m;
    int r = md5_begin(&m);
    if (r < 0)
        return r;
    EVP_DigestUpdate(m.ctx, data, len);
    md5_end(&m, out);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

/* Open @key for reading; -ENOENT (with a message naming @op) if there is
 * no such object (a "directory" of other keys is none either). */
static int
open_object(struct file_store *fs, const char *op, const char *key, struct stat *stp)
{
    int fd = openat(fs->root_fd, key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
            return err_set(-ENOENT, "file: %s %s: no such object", op, key);
        return err_set_errno(-errno, "file: %s %s", op, key);
    }
    if (fstat(fd, stp) < 0 || !S_ISREG(stp->st_mode)) {
        int e = S_ISDIR(stp->st_mode) ? ENOENT : errno ? errno : EINVAL;
        close(fd);
        if (e == ENOENT)
            return err_set(-ENOENT, "file: %s %s: no such object", op, key);
        return err_set_errno(-e, "file: %s %s", op, key);
    }
    return fd;
}

/* Hash all of @fd (@size bytes by fstat) and, if @data is not NULL, keep
 * the bytes in a new buffer there; hashing alone reads in small blocks. */
static int
read_all(int fd, const char *key, uint64_t size, void **data, char etag[STORE_ETAG_MAX])
{
    struct md5 m;
    char *buf = NULL;
    size_t bufsize = data ? (size_t)size : 1u << 16;
    uint64_t n = 0;
    int r;

    if (size > SIZE_MAX - 1)
        return err_set(-EFBIG, "file: GET %s: too large", key);
    if ((r = md5_begin(&m)) < 0)
        return r;
    buf = malloc(bufsize ? bufsize : 1);
    if (!buf) {
        EVP_MD_CTX_free(m.ctx);
        return err_set(-ENOMEM, "file: out of memory");
    }
    while (n < size) {
        size_t want = size - n < bufsize ? (size_t)(size - n) : bufsize;
        char *dst = data ? buf + n : buf;
        ssize_t k = pread(fd, dst, want, (off_t)n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            r = k < 0 ? err_set_errno(-errno, "file: GET %s", key)
                      : err_set(-EIO, "file: GET %s: shorter than its size", key);
            EVP_MD_CTX_free(m.ctx);
            free(buf);
            return r;
        }
        EVP_DigestUpdate(m.ctx, dst, (size_t)k);
        n += (uint64_t)k;
    }
    md5_end(&m, etag);
    if (data)
        *data = buf;
    else
        free(buf);
    return 0;
}

/* Create the directories of @key's parent, like mkdir -p. */
static int
make_parents(struct file_store *fs, const char *key)
{
    char path[STORE_KEY_MAX + 1];
    snprintf(path, sizeof path, "%s", key);
    for (char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdirat(fs->root_fd, path, 0777) < 0 && errno != EEXIST)
            return err_set_errno(-errno, "file: cannot create directory %s/%s", fs->root, path);
        *p = '/';
    }
    return 0;
}

/* fsync the directory that holds @key, so a rename in it is durable. */
static int
sync_parent(struct file_store *fs, const char *key)
{
    char path[STORE_KEY_MAX + 1];
    snprintf(path, sizeof path, "%s", key);
    char *slash = strrchr(path, '/');
    const char *dir = ".";
    if (slash) {
        *slash = '\0';
        dir = path;
    }
    int fd = openat(fs->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return err_set_errno(-e, "file: cannot sync directory of %s", key);
    }
    close(fd);
    return 0;
}

/* Write @data to a new temporary file; *@tmp gets its path (free(3)). */
static int
write_temp(struct file_store *fs, const char *op, const char *key, const void *data, size_t len,
           char **tmp)
{
    struct strbuf b = {0};
    strbuf_addf(&b, "%s/" TMP_DIR "/put.XXXXXX", fs->root);
    char *path = strbuf_release(&b);
    RETURN_ERR_IF(!path, -ENOMEM, "file: out of memory");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        int r = err_set_errno(-errno, "file: %s %s: cannot create a temporary file in %s/" TMP_DIR,
                              op, key, fs->root);
        free(path);
        return r;
    }
    size_t n = 0;
    int r = 0;
    while (n < len && r == 0) {
        ssize_t k = write(fd, (const char *)data + n, len - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            r = err_set_errno(-errno, "file: %s %s: writing %s", op, key, path);
        else
            n += (size_t)k;
    }
    if (r == 0 && fsync(fd) < 0)
        r = err_set_errno(-errno, "file: %s %s: syncing %s", op, key, path);
    if (fchmod(fd, 0644) < 0 && r == 0)
        r = err_set_errno(-errno, "file: %s %s: chmod %s", op, key, path);
    close(fd);
    if (r < 0) {
        unlink(path);
        free(path);
        return r;
    }
    *tmp = path;
    return 0;
}

/* Move @tmp to @key only if @key does not exist: RENAME_NOREPLACE where the
 * file system has it, link(2) elsewhere (NFS).  Returns 0 (@tmp is gone),
 * -EEXIST or another -errno (@tmp is still there). */
static int
rename_noreplace(struct file_store *fs, const char *tmp, const char *key)
{
    if (renameat2(AT_FDCWD, tmp, fs->root_fd, key, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -errno;
    if (linkat(AT_FDCWD, tmp, fs->root_fd, key, 0) < 0)
        return -errno;
    unlink(tmp);
    return 0;
}

/* The store-wide lock for compare-and-swap and delete: an OFD lock, so that
 * threads and processes (and NFS clients) exclude each other.  Returns the
 * fd to close, or -errno. */
static int
lock_store(struct file_store *fs)
{
    int fd = openat(fs->root_fd, TMP_DIR "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set_errno(-errno, "file: cannot open the lock file in %s/" TMP_DIR, fs->root);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    while (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
        if (errno == EINTR)
            continue;
        int r = err_set_errno(-errno, "file: cannot lock %s/" TMP_DIR "/lock", fs->root);
        close(fd);
        return r;
    }
    return fd;
}

/* ---- the operations ------------------------------------------------------ */

static int
file_get(struct store *st, const char *key, void **data, size_t *len, struct store_info *info)
{
    struct file_store *fs = fs_of(st);
    struct stat sb;
    char etag[STORE_ETAG_MAX];
    int fd = open_object(fs, "GET", key, &sb);
    if (fd < 0)
        return fd;
    int r = read_all(fd, key, (uint64_t)sb.st_size, data, etag);
    close(fd);
    if (r < 0)
        return r;
    *len = (size_t)sb.st_size;
    if (info) {
        info->size = (uint64_t)sb.st_size;
        memcpy(info->etag, etag, sizeof etag);
    }
    return 0;
}

static int
file_get_range(struct store *st, const char *key, uint64_t off, void *buf, size_t len,
               size_t *got)
{
    struct file_store *fs = fs_of(st);
    struct stat sb;
    int fd = open_object(fs, "GET", key, &sb);
    if (fd < 0)
        return fd;
    size_t n = 0;
    int r = 0;
    while (n < len && off < (uint64_t)sb.st_size && n < (uint64_t)sb.st_size - off) {
        ssize_t k = pread(fd, (char *)buf + n, len - n, (off_t)(off + n));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            r = err_set_errno(-errno, "file: GET %s", key);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    *got = n;
    return r;
}

static int
file_put_once(struct store *st, const char *key, const void *data, size_t len,
              char etag[STORE_ETAG_MAX])
{
    struct file_store *fs = fs_of(st);
    char *tmp = NULL, sum[STORE_ETAG_MAX];
    int r;

    if ((r = md5_buf(data, len, sum)) < 0 ||
        (r = write_temp(fs, "PUT", key, data, len, &tmp)) < 0)
        return r;
    /* A delete may remove a directory it left empty between our mkdir and
     * our rename: then make it again. */
    for (int tries = 0; tries < 5; tries++) {
        if ((r = make_parents(fs, key)) < 0)
            break;
        if ((r = rename_noreplace(fs, tmp, key)) != -ENOENT)
            break;
    }
    if (r < 0) {
        unlink(tmp);
        free(tmp);
        if (r == -EEXIST || r == -ENOTEMPTY || r == -EISDIR)
            return err_set(-EEXIST, "file: PUT %s: already exists (create-once)", key);
        return err_set_errno(r, "file: PUT %s", key);
    }
    free(tmp);
    if ((r = sync_parent(fs, key)) < 0)
        return r;
    if (etag)
        memcpy(etag, sum, STORE_ETAG_MAX);
    return 0;
}

static int
file_put_cas(struct store *st, const char *key, const void *data, size_t len,
             const char *expected, char etag[STORE_ETAG_MAX])
{
    struct file_store *fs = fs_of(st);
    char *tmp = NULL, sum[STORE_ETAG_MAX], cur[STORE_ETAG_MAX];
    struct stat sb;
    int r, lock;

    if ((r = md5_buf(data, len, sum)) < 0 ||
        (r = write_temp(fs, "PUT", key, data, len, &tmp)) < 0)
        return r;
    if ((lock = lock_store(fs)) < 0) {
        unlink(tmp);
        free(tmp);
        return lock;
    }
    int fd = open_object(fs, "PUT", key, &sb);
    if (fd == -ENOENT) {
        r = err_set(-ESTALE, "file: PUT %s: no such object to compare-and-swap", key);
    } else if (fd < 0) {
        r = fd;
    } else {
        r = read_all(fd, key, (uint64_t)sb.st_size, NULL, cur);
        close(fd);
        if (r == 0 && strcmp(cur, expected) != 0)
            r = err_set(-ESTALE, "file: PUT %s: the ETag is %s, not %s (compare-and-swap)", key,
                        cur, expected);
    }
    if (r == 0 && renameat(AT_FDCWD, tmp, fs->root_fd, key) < 0)
        r = err_set_errno(-errno, "file: PUT %s", key);
    if (r == 0)
        r = sync_parent(fs, key);
    close(lock); /* releases the OFD lock */
    if (r < 0)
        unlink(tmp);
    free(tmp);
    if (r == 0 && etag)
        memcpy(etag, sum, STORE_ETAG_MAX);
    return r;
}

static int
file_head(struct store *st, const char *key, struct store_info *info)
{
    struct file_store *fs = fs_of(st);
    struct stat sb;
    int fd = open_object(fs, "HEAD", key, &sb);
    if (fd < 0)
        return fd;
    /* The ETag is a content hash: HEAD reads the object. */
    int r = read_all(fd, key, (uint64_t)sb.st_size, NULL, info->etag);
    close(fd);
    info->size = (uint64_t)sb.st_size;
    return r;
}

static int
file_del(struct store *st, const char *key)
{
    struct file_store *fs = fs_of(st);
    int lock = lock_store(fs), r = 0;
    if (lock < 0)
        return lock;
    if (unlinkat(fs->root_fd, key, 0) < 0 && errno != ENOENT && errno != ENOTDIR) {
        r = errno == EISDIR ? 0 : err_set_errno(-errno, "file: DELETE %s", key);
    } else {
        /* Drop directories left empty, so the names are free for keys. */
        char path[STORE_KEY_MAX + 1];
        snprintf(path, sizeof path, "%s", key);
        for (char *s = strrchr(path, '/'); s; s = strrchr(path, '/')) {
            *s = '\0';
            if (unlinkat(fs->root_fd, path, AT_REMOVEDIR) < 0)
                break;
        }
    }
    close(lock);
    return r;
}

struct walk {
    struct file_store *fs;
    const char *prefix;
    struct store_entry *v;
    size_t n, cap;
};

static int
cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct store_entry *)a)->key, ((const struct store_entry *)b)->key);
}

/* Collect the regular files under directory @dir ("" for the root) whose
 * keys start with the prefix. */
static int
walk_dir(struct walk *w, const char *dir)
{
    int dfd = openat(w->fs->root_fd, *dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT || errno == ENOTDIR
                   ? 0
                   : err_set_errno(-errno, "file: LIST %s/%s", w->fs->root, dir);
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return err_set_errno(-errno, "file: LIST %s/%s", w->fs->root, dir);
    }
    int r = 0;
    struct dirent *e;
    while (r == 0 && (errno = 0, e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            (!*dir && strcmp(e->d_name, TMP_DIR) == 0))
            continue;
        struct strbuf kb = {0};
        strbuf_addf(&kb, "%s%s%s", dir, *dir ? "/" : "", e->d_name);
        char *key = strbuf_release(&kb);
        if (!key) {
            r = err_set(-ENOMEM, "file: out of memory");
            break;
        }
        struct stat sb;
        size_t plen = strlen(w->prefix), klen = strlen(key);
        size_t cmp = plen < klen ? plen : klen;
        if (strncmp(key, w->prefix, cmp) != 0 ||
            fstatat(w->fs->root_fd, key, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            free(key); /* off the prefix, or gone meanwhile */
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            r = walk_dir(w, key);
            free(key);
        } else if (S_ISREG(sb.st_mode) && klen >= plen) {
            if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 256;
                struct store_entry *v = realloc(w->v, cap * sizeof *v);
                if (!v) {
                    free(key);
                    r = err_set(-ENOMEM, "file: out of memory");
                    break;
                }
                w->v = v;
                w->cap = cap;
            }
            w->v[w->n++] = (struct store_entry){key, (uint64_t)sb.st_size, NULL, sb.st_mtime};
        } else {
            free(key);
        }
    }
    if (r == 0 && errno)
        r = err_set_errno(-errno, "file: LIST %s/%s", w->fs->root, dir);
    closedir(d);
    return r;
}

static int
file_list(struct store *st, const char *prefix,
          int (*fn)(void *opaque, const struct store_entry *e), void *opaque)
{
    struct walk w = {.fs = fs_of(st), .prefix = prefix};
    /* Start at the deepest directory the prefix names in full. */
    char dir[STORE_KEY_MAX + 1];
    snprintf(dir, sizeof dir, "%s", prefix);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
    int r = walk_dir(&w, dir);
    if (r == 0)
        qsort(w.v, w.n, sizeof *w.v, cmp_entry); /* byte order, as S3 lists */
    for (size_t i = 0; i < w.n && r == 0; i++)
        r = fn(opaque, &w.v[i]);
    for (size_t i = 0; i < w.n; i++)
        free((char *)w.v[i].key);
    free(w.v);
    return r;
}

static void
file_close(struct store *st)
{
    struct file_store *fs = fs_of(st);
    if (fs->root_fd >= 0)
        close(fs->root_fd);
    free(fs->root);
    free(fs->base.url);
    free(fs);
}

static const struct store_ops file_store_ops = {
    .struct_size = sizeof(struct store_ops),
    .name = "file",
    .close = file_close,
    .get = file_get,
    .get_range = file_get_range,
    .put_once = file_put_once,
    .put_cas = file_put_cas,
    .head = file_head,
    .list = file_list,
    .del = file_del,
};

int
store_file_open(const char *dir, struct store **out)
{
    struct file_store *fs = calloc(1, sizeof *fs);
    struct strbuf url = {0};
    int r;

    *out = NULL;
    RETURN_ERR_IF(!fs, -ENOMEM, "file: out of memory");
    fs->base.ops = &file_store_ops;
    fs->root_fd = -1;
    fs->root = strdup(dir);
    if (!fs->root) {
        r = err_set(-ENOMEM, "file: out of memory");
        goto fail;
    }
    for (size_t n = strlen(fs->root); n > 1 && fs->root[n - 1] == '/';)
        fs->root[--n] = '\0';
    strbuf_addf(&url, "file://%s", fs->root);
    fs->base.url = strbuf_release(&url);
    fs->root_fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->root_fd < 0) {
        r = err_set_errno(-errno, "file: cannot open store directory %s", fs->root);
        goto fail;
    }
    if (mkdirat(fs->root_fd, TMP_DIR, 0755) < 0 && errno != EEXIST) {
        r = err_set_errno(-errno, "file: cannot create %s/" TMP_DIR, fs->root);
        goto fail;
    }
    if (!fs->base.url) {
        r = err_set(-ENOMEM, "file: out of memory");
        goto fail;
    }
    *out = &fs->base;
    return 0;
fail:
    file_close(&fs->base);
    return r;
}
