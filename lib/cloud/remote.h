// SPDX-License-Identifier: MIT
/* One image in a store, as docs/internals/cloud-layout.md lays it out:
 * naming (STORE/NAME URLs), reading HEAD and manifests, committing a
 * generation, listing images and generations, the writer lease, and the
 * local state file beside a pulled image.
 *
 * Errors are 0 or -errno with a one-line message (topcow_last_error()).
 * Thread-safety: one thread at a time per struct remote; open one per
 * thread for parallel transfers (remote_open_store). */
#ifndef TOPCOW_REMOTE_H
#define TOPCOW_REMOTE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "manifest.h"
#include "store.h"

struct remote {
    struct store *st;
    char *store_url;               /* "s3://bucket/prefix" */
    char name[CLOUD_NAME_MAX + 1]; /* "" for a store-only URL (remote ls, gc) */
    char *url;                     /* store_url + "/" + name */
};

/* Split @url into store and image name and open the store.  With
 * @need_name, a URL ending in '/' takes @default_name (may be NULL: then
 * such a URL is -EINVAL).  Without it the whole URL is the store.
 * Returns 0 or -errno; close with remote_close(). */
int remote_open(const char *url, bool need_name, const char *default_name,
                const struct store_opts *opts, struct remote *out);
void remote_close(struct remote *r);
/* Another connection to the same store, for a worker thread. */
int remote_open_store(const struct remote *r, const struct store_opts *opts,
                      struct store **out);

/* Keys of the image's objects into @out (STORE_KEY_MAX + 1 bytes). */
void remote_key_head(const struct remote *r, char *out);
void remote_key_lease(const struct remote *r, char *out);
void remote_key_manifest(const struct remote *r, const char *gen, char *out);

/* HEAD's generation and ETag: 0, -ENOENT (the image does not exist). */
int remote_read_head(struct remote *r, char gen[CLOUD_GEN_MAX], char etag[STORE_ETAG_MAX]);
/* One generation's manifest (free with manifest_free). */
int remote_read_manifest(struct remote *r, const char *gen, struct manifest *out);
/* Store manifest @m (create-once; already stored with the same bytes is
 * fine), then point HEAD at it: create HEAD when @head_etag is NULL, else
 * compare-and-swap against it.  -ESTALE / -EEXIST: HEAD moved (a conflict;
 * the manifest stays stored). */
int remote_commit(struct remote *r, const struct manifest *m, const char *head_etag);
/* Point HEAD at the stored generation @gen (compare-and-swap on @head_etag). */
int remote_set_head(struct remote *r, const char *gen, const char *head_etag);

/* Every generation of the image, oldest first (by sequence, then id):
 * @fn gets each id.  Non-zero from @fn stops the walk and is returned. */
int remote_list_gens(struct remote *r, int (*fn)(void *opaque, const char *gen),
                     void *opaque);
/* Every image name in the store (those with a HEAD), in byte order. */
int remote_list_images(struct remote *r, int (*fn)(void *opaque, const char *name),
                       void *opaque);

/* ---- the writer lease ---------------------------------------------------- */

struct lease_info {
    char holder[200];   /* "alice@office-pc pid 4242" */
    char machine[64];
    char op[16];        /* "serve", "push", "rollback", "gc" */
    char token[33];
    int64_t expires;    /* Unix seconds; 0 = released */
    int pid;
};

struct lease {
    struct remote *r;   /* the image (or the store, for gc) */
    struct store *st;   /* own connection, used by the renewal thread */
    char key[STORE_KEY_MAX + 1];
    char etag[STORE_ETAG_MAX];
    struct lease_info info;
    unsigned ttl_s;
    pthread_t thread;
    bool thread_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    bool lost;          /* a renewal found the lease taken over */
    bool orphaned;      /* in a forked child: the renewal thread must be restarted */
};

/* Read the lease of @key: 0 and *@info (*@etag if not NULL), -ENOENT. */
int lease_read(struct store *st, const char *key, struct lease_info *info,
               char etag[STORE_ETAG_MAX]);
/* Whether @info is held now (not released, not expired). */
bool lease_is_held(const struct lease_info *info);

enum {
    LEASE_TAKE_OVER = 1 << 0, /* take an expired lease of another machine */
    LEASE_WAIT_PUSH = 1 << 1, /* held by a push: wait for it to end (15 s at most) */
};

/* Take the lease of image @r (or of gc for a store-only remote) for @op,
 * valid @ttl_s seconds, and start a thread renewing it every third of
 * that.  -EBUSY with "NAME is leased to HOLDER (op) until TIME" when
 * another holder has it (@flags LEASE_TAKE_OVER: unless it expired).
 * For an image lease it then checks that gc is not running (-EBUSY). */
int lease_acquire(struct remote *r, const struct store_opts *opts, const char *op,
                  unsigned ttl_s, unsigned flags, struct lease *out);
/* Whether the lease is still ours (false once a renewal found it taken).
 * In a child forked while it was held, the first call starts the renewal
 * thread again (threads do not survive fork). */
bool lease_ok(struct lease *l);
/* For a pthread_atfork child handler: the renewal thread is gone; forget it
 * (lease_ok() starts a new one).  @l's lock must not have been held by
 * another thread at the fork (lease_fork_prepare() takes it). */
void lease_fork_prepare(struct lease *l);
void lease_fork_parent(struct lease *l);
void lease_fork_child(struct lease *l);
/* Stop renewing and release (write it expired).  Returns 0, or -errno when
 * the release could not be written (the lease then expires by itself). */
int lease_release(struct lease *l);

/* ---- the local state file IMAGE.topcow ----------------------------------- */

struct local_state {
    char *remote; /* "s3://bucket/prefix/name" */
    char gen[CLOUD_GEN_MAX];
};
/* Read @image's state file: 0, -ENOENT (none), -EPROTO (malformed, with a
 * message naming the file) or -errno.  Free with local_state_clear(). */
int local_state_read(const char *image, struct local_state *out);
/* Write it atomically (temporary file, fsync, rename).  Returns 0 or -errno. */
int local_state_write(const char *image, const char *remote, const char *gen);
void local_state_clear(struct local_state *s);
/* The state file's path for @image (malloc'ed) or NULL. */
char *local_state_path(const char *image);

/* Who we are, for manifests and leases: "user", "host", the machine id
 * (TOPCOW_MACHINE_ID, else /etc/machine-id, else the host name). */
void cloud_whoami(char *user, size_t user_size, char *host, size_t host_size, char *machine,
                  size_t machine_size);

#endif
