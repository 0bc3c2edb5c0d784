// SPDX-License-Identifier: MIT
/* The writer lease of an image, and gc's lease of a store (remote.h; the
 * rules in docs/internals/cloud-layout.md).  A lease object is replaced only
 * by compare-and-swap, so of two machines racing for it exactly one wins. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "error.h"
#include "remote.h"
#include "strbuf.h"

#define LEASE_MAX 4096
#define LEASE_WAIT_S 15 /* how long a push waits for another push's lease */

static int
lease_format(const struct lease_info *li, char **text, size_t *len)
{
    struct strbuf b = {0};
    strbuf_addf(&b, "topcow-lease 1\nholder %s\nmachine %s\nop %s\ntoken %s\nexpires %" PRId64 "\n",
                li->holder, li->machine, li->op, li->token, li->expires);
    if (strbuf_failed(&b)) {
        strbuf_free(&b);
        return err_set(-ENOMEM, "cloud: out of memory");
    }
    *len = b.len;
    *text = strbuf_release(&b);
    return 0;
}

/* "KEY VALUE" at the start of @p (a NUL-terminated copy of the object):
 * the value up to the line's end into @dst. */
static bool
get_line(const char *text, const char *key, char *dst, size_t size)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
            const char *v = p + kl + 1, *nl = strchr(v, '\n');
            size_t n = nl ? (size_t)(nl - v) : strlen(v);
            if (n >= size)
                return false;
            memcpy(dst, v, n);
            dst[n] = '\0';
            return true;
        }
    }
    return false;
}

int
lease_read(struct store *st, const char *key, struct lease_info *info, char etag[STORE_ETAG_MAX])
{
    void *data;
    size_t len;
    struct store_info si;
    memset(info, 0, sizeof *info);
    int r = store_get(st, key, &data, &len, &si);
    if (r < 0)
        return r;
    char *t = len <= LEASE_MAX ? malloc(len + 1) : NULL;
    if (!t) {
        free(data);
        return err_set(-EPROTO, "cloud: %s: not a lease (%zu bytes)", key, len);
    }
    memcpy(t, data, len);
    t[len] = '\0';
    free(data);
    char exp[32] = "";
    bool ok = strncmp(t, "topcow-lease 1\n", 15) == 0 &&
              get_line(t, "holder", info->holder, sizeof info->holder) &&
              get_line(t, "machine", info->machine, sizeof info->machine) &&
              get_line(t, "op", info->op, sizeof info->op) &&
              get_line(t, "token", info->token, sizeof info->token) &&
              get_line(t, "expires", exp, sizeof exp);
    free(t);
    char *end;
    errno = 0;
    long long e = ok ? strtoll(exp, &end, 10) : 0;
    RETURN_ERR_IF(!ok || errno || end == exp || *end || e < 0, -EPROTO,
                  "cloud: %s is not a topcow lease", key);
    info->expires = e;
    const char *pid = strstr(info->holder, " pid ");
    info->pid = pid ? atoi(pid + 5) : 0;
    if (etag)
        snprintf(etag, STORE_ETAG_MAX, "%s", si.etag);
    return 0;
}

bool
lease_is_held(const struct lease_info *info)
{
    return info->expires != 0 && info->expires > (int64_t)time(NULL);
}

static void
format_until(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(out, 32, "%" PRId64, t);
}

/* Whether the holder is a process of this machine that is gone. */
static bool
holder_is_dead_here(const struct lease_info *li, const char *machine)
{
    return strcmp(li->machine, machine) == 0 && li->pid > 0 && kill(li->pid, 0) < 0 &&
           errno == ESRCH;
}

static int
lease_write(struct store *st, struct lease *l, const char *expected)
{
    char *text = NULL;
    size_t len = 0;
    char etag[STORE_ETAG_MAX];
    int r = lease_format(&l->info, &text, &len);
    if (r < 0)
        return r;
    r = expected ? store_put_cas(st, l->key, text, len, expected, etag)
                 : store_put_once(st, l->key, text, len, etag);
    free(text);
    if (r == 0)
        snprintf(l->etag, sizeof l->etag, "%s", etag);
    return r;
}

static void *
renew_thread(void *arg)
{
    struct lease *l = arg;
    pthread_mutex_lock(&l->lock);
    while (!l->stop && !l->lost) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += l->ttl_s / 3 ? l->ttl_s / 3 : 1;
        while (!l->stop && pthread_cond_timedwait(&l->cond, &l->lock, &ts) == 0)
            ;
        if (l->stop)
            break;
        int64_t expires = (int64_t)time(NULL) + l->ttl_s;
        char expected[STORE_ETAG_MAX];
        snprintf(expected, sizeof expected, "%s", l->etag);
        struct lease_info li = l->info;
        li.expires = expires;
        pthread_mutex_unlock(&l->lock);
        struct lease tmp = *l; /* the write works on a copy of the fields it needs */
        tmp.info = li;
        int r = lease_write(l->st, &tmp, expected);
        pthread_mutex_lock(&l->lock);
        if (r == 0) {
            l->info.expires = expires;
            snprintf(l->etag, sizeof l->etag, "%s", tmp.etag);
        } else if (r == -ESTALE) {
            l->lost = true;
            fprintf(stderr, "topcow: the lease %s was taken over by another writer\n", l->key);
        }
        /* Other errors (network): try again at the next period; the lease
         * lasts three periods. */
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static int lease_acquire_once(struct remote *rm, const struct store_opts *opts, const char *op,
                              unsigned ttl_s, unsigned flags, struct lease *l, bool *pushing);

int
lease_acquire(struct remote *rm, const struct store_opts *opts, const char *op, unsigned ttl_s,
              unsigned flags, struct lease *l)
{
    /* Another push holds it: pushes are short, so wait for it to finish
     * (up to LEASE_WAIT_S) rather than fail at once;
     * this push then meets the other's HEAD and reports a conflict. */
    time_t deadline = time(NULL) + LEASE_WAIT_S;
    for (;;) {
        bool pushing = false;
        int r = lease_acquire_once(rm, opts, op, ttl_s, flags, l, &pushing);
        if (r != -EBUSY || !(flags & LEASE_WAIT_PUSH) || !pushing || time(NULL) >= deadline)
            return r;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int
lease_acquire_once(struct remote *rm, const struct store_opts *opts, const char *op,
                   unsigned ttl_s, unsigned flags, struct lease *l, bool *pushing)
{
    memset(l, 0, sizeof *l);
    l->r = rm;
    l->ttl_s = ttl_s ? ttl_s : 60;
    remote_key_lease(rm, l->key);
    char user[64], host[128], machine[64];
    cloud_whoami(user, sizeof user, host, sizeof host, machine, sizeof machine);
    snprintf(l->info.holder, sizeof l->info.holder, "%s@%s pid %d", user, host, (int)getpid());
    snprintf(l->info.machine, sizeof l->info.machine, "%s", machine);
    snprintf(l->info.op, sizeof l->info.op, "%s", op);
    l->info.pid = (int)getpid();
    unsigned char tok[16];
    RETURN_ERR_IF(RAND_bytes(tok, sizeof tok) != 1, -EIO, "cloud: no randomness from libcrypto");
    for (int i = 0; i < 16; i++)
        snprintf(l->info.token + 2 * i, 3, "%02x", tok[i]);
    l->info.expires = (int64_t)time(NULL) + l->ttl_s;

    struct lease_info cur;
    char etag[STORE_ETAG_MAX];
    int r = lease_read(rm->st, l->key, &cur, etag);
    const char *what = rm->name[0] ? rm->url : "gc";
    if (r == -ENOENT) {
        r = lease_write(rm->st, l, NULL);
    } else if (r == 0) {
        char until[32];
        format_until(cur.expires, until);
        bool expired = cur.expires <= (int64_t)time(NULL);
        *pushing = strcmp(cur.op, "push") == 0;
        if (lease_is_held(&cur) && !holder_is_dead_here(&cur, machine))
            return err_set(-EBUSY, "cloud: %s is leased to %s (%s) until %s", what, cur.holder,
                           cur.op, until);
        if (cur.expires != 0 && expired && !(flags & LEASE_TAKE_OVER) &&
            strcmp(cur.machine, machine) != 0)
            return err_set(-EBUSY,
                           "cloud: %s: the lease of %s (%s) expired at %s without being released; "
                           "take it over with --take-lease if that writer is gone",
                           what, cur.holder, cur.op, until);
        r = lease_write(rm->st, l, etag);
    }
    if (r == -EEXIST || r == -ESTALE) {
        *pushing = true; /* whoever it was: look again */
        return err_set(-EBUSY, "cloud: %s: another writer took the lease at the same moment",
                       what);
    }
    if (r < 0)
        return r;

    if (rm->name[0]) {
        /* gc and writers exclude each other: see cloud-layout.md. */
        struct lease_info gc;
        int g = lease_read(rm->st, "gc/LEASE", &gc, NULL);
        if (g == 0 && lease_is_held(&gc)) {
            char until[32];
            format_until(gc.expires, until);
            struct lease tmp = *l;
            tmp.info.expires = 0;
            lease_write(rm->st, &tmp, l->etag);
            return err_set(-EBUSY, "cloud: %s: gc is running (%s, until %s); try again later", what,
                           gc.holder, until);
        }
        if (g < 0 && g != -ENOENT)
            return g;
    }

    r = remote_open_store(rm, opts, &l->st);
    if (r < 0)
        goto release;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    if (pthread_create(&l->thread, NULL, renew_thread, l) != 0) {
        r = err_set(-EAGAIN, "cloud: cannot start the lease renewal thread");
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->cond);
        store_close(l->st);
        l->st = NULL;
        goto release;
    }
    l->thread_running = true;
    return 0;
release: {
    struct lease tmp = *l;
    tmp.info.expires = 0;
    lease_write(rm->st, &tmp, l->etag);
    return r;
}
}

void
lease_fork_prepare(struct lease *l)
{
    if (l->thread_running)
        pthread_mutex_lock(&l->lock);
}

void
lease_fork_parent(struct lease *l)
{
    if (l->thread_running)
        pthread_mutex_unlock(&l->lock);
}

void
lease_fork_child(struct lease *l)
{
    if (!l->thread_running)
        return;
    pthread_mutex_unlock(&l->lock);
    /* The parent's renewal thread waited on the condition: in the child
     * that waiter never returns, and destroying it would wait forever. */
    pthread_cond_init(&l->cond, NULL);
    l->orphaned = true;
}

bool
lease_ok(struct lease *l)
{
    if (!l->thread_running)
        return false;
    pthread_mutex_lock(&l->lock);
    if (l->orphaned) {
        l->orphaned = false;
        if (pthread_create(&l->thread, NULL, renew_thread, l) != 0)
            l->lost = true; /* cannot renew: stop writing */
    }
    bool ok = !l->lost && l->info.expires > (int64_t)time(NULL);
    pthread_mutex_unlock(&l->lock);
    return ok;
}

int
lease_release(struct lease *l)
{
    if (!l->thread_running)
        return 0;
    if (l->orphaned)
        lease_ok(l); /* a thread to join, and the lease to release */
    pthread_mutex_lock(&l->lock);
    l->stop = true;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    l->thread_running = false;
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    int r = 0;
    if (!l->lost) {
        l->info.expires = 0;
        r = lease_write(l->st, l, l->etag);
        if (r == -ESTALE)
            r = 0; /* taken over meanwhile: not ours to release */
    }
    store_close(l->st);
    l->st = NULL;
    return r;
}
