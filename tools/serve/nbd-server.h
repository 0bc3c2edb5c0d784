// SPDX-License-Identifier: MIT
/* topcow serve: an NBD server for one image.  The pieces:
 *   nbd-server.c     listening sockets, accepting, the client limit,
 *                    shutdown on SIGINT/SIGTERM
 *   nbd-handshake.c  fixed newstyle option haggling (one connection)
 *   nbd-conn.c       transmission: reading requests, the connection's
 *                    workers, the reply lock
 *   nbd-cmd.c        what each request does to the image, and its reply
 *   nbd-chan.c       the byte stream (socket or TLS) under a connection
 * The image is thread-safe: requests of every connection run in parallel
 * on it, and a flush covers every completed write of every connection,
 * which is what makes NBD_FLAG_CAN_MULTI_CONN honest. */
#ifndef TOPCOW_NBD_SERVER_H
#define TOPCOW_NBD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nbd-chan.h"

struct topcow_image;
struct nbd_tls;

enum detect_zeroes { DETECT_ZEROES_OFF, DETECT_ZEROES_ON, DETECT_ZEROES_UNMAP };

/* The one export a server offers. */
struct nbd_export {
    struct topcow_image *img;
    const char *name;          /* "" is the default export */
    const char *description;   /* NULL: none */
    uint64_t size;
    bool readonly;
    bool discard;              /* --discard=unmap: TRIM deallocates */
    enum detect_zeroes detect_zeroes;
    bool allocation_depth;     /* -A: offer qemu:allocation-depth */
    bool multi_conn;           /* advertise NBD_FLAG_CAN_MULTI_CONN: only when more
                                * than one client may connect, or clients that
                                * open several connections would wait forever */
    bool sparse_reads;         /* long reads send zero runs as holes, found with
                                * block status: only where that is a metadata
                                * lookup (qcow2), not a file system walk (raw) */
    bool direct;               /* --cache=none/directsync: I/O waits on the device */
    uint32_t min_block;        /* NBD_INFO_BLOCK_SIZE */
    uint32_t pref_block;
};

/* Transmission flags for a client that negotiated structured replies or not. */
uint16_t export_tflags(const struct nbd_export *e, bool structured);

/* --tls: off (STARTTLS refused), on (offered; clear text allowed), require
 * (every option but STARTTLS and ABORT refused until TLS is up). */
enum tls_mode { TLS_OFF, TLS_ALLOW, TLS_REQUIRE };

struct nbd_server_opts {
    const char *socket_path;   /* -k; NULL: TCP */
    const char *bind_addr;     /* -b; default "127.0.0.1" */
    const char *port;          /* -p; default "10809" */
    unsigned shared;           /* -e: simultaneous clients (default 1) */
    bool persistent;           /* -t: keep serving after the last client leaves */
    unsigned workers;          /* per-connection worker threads (with workers_set) */
    bool workers_set;          /* false: 2 per CPU, 4..16 */
    struct nbd_tls *tls;       /* --tls-creds */
    enum tls_mode tls_mode;
    const char *pid_file;
    bool fork;                 /* --fork: detach once listening */
    bool verbose;              /* -v: a line per client on stderr */
};

struct nbd_conn;

struct nbd_server {
    struct nbd_export *exp;
    const struct nbd_server_opts *opts;
    unsigned workers;          /* resolved per-connection worker limit */
    pthread_mutex_t lock;      /* guards the fields below */
    pthread_cond_t changed;    /* a client left */
    struct nbd_conn *conns;    /* live connections (a list) */
    unsigned nconns;
    unsigned long served;      /* clients ever accepted */
    atomic_bool stopping;      /* no new clients; wake the old ones */
};

/* Serve @exp as @o says until a signal (or, without -t, the last client)
 * ends it.  Returns the exit code (0 for a clean shutdown). */
int nbd_serve(struct nbd_export *exp, const struct nbd_server_opts *o);

/* Metadata contexts; the value is also the context id on the wire. */
enum { NBD_CTX_BASE_ALLOCATION = 1, NBD_CTX_ALLOCATION_DEPTH = 2 };

/* With -v, say on stderr why a client is dropped. */
void nbd_note(const struct nbd_conn *c, const char *why);

/* A negotiated client connection. */
struct nbd_req;
struct nbd_conn {
    struct nbd_server *srv;
    struct nbd_export *exp;
    struct nbd_chan chan;
    struct nbd_conn *next;            /* in srv->conns */

    /* Negotiated in the handshake. */
    bool structured;                  /* NBD_OPT_STRUCTURED_REPLY */
    bool no_zeroes;                   /* NBD_FLAG_C_NO_ZEROES */
    unsigned contexts;                /* selected metadata contexts, 1 << NBD_CTX_* */

    /* Transmission. */
    pthread_mutex_t send_lock;        /* one reply at a time on the stream */
    atomic_bool broken;               /* a reply could not be sent: stop */
    pthread_mutex_t qlock;            /* guards the queue and the counts */
    pthread_cond_t qwork;             /* work queued, or closing */
    pthread_cond_t qdrained;          /* a request finished */
    struct nbd_req *qhead, *qtail;
    unsigned queued;                  /* requests queued or running on workers */
    uint64_t queued_bytes;            /* their payload and reply buffers */
    unsigned nworkers, idle_workers;
    _Atomic uint64_t run_ns;          /* moving average of a request's run time */
    pthread_t *worker_threads;
    bool closing;
};

/* nbd-handshake.c: negotiate with a fresh client.  Returns 1 to enter
 * transmission, 0 when the client went away or was refused (nothing more
 * to do), -1 on a protocol violation (reason already logged with -v). */
int nbd_handshake(struct nbd_conn *c);

/* nbd-conn.c: the transmission phase, until the client disconnects or the
 * server stops. */
void nbd_transmit(struct nbd_conn *c);

/* One transmission request. */
struct nbd_req {
    struct nbd_req *next;
    uint16_t flags, type;
    uint64_t cookie, offset;
    uint32_t len;
    void *payload;                    /* WRITE data (len bytes), owned */
    uint64_t send_ns;                 /* time spent sending its reply */
};

/* nbd-conn.c: a buffer for request data (free() it): with O_DIRECT
 * (--cache=none, directsync) aligned to NBD_DIRECT_ALIGN, so the image's
 * file reads and writes it without a bounce buffer. */
#define NBD_DIRECT_ALIGN 4096
void *nbd_buf_alloc(const struct nbd_conn *c, size_t len);

/* nbd-cmd.c: execute @r on @c's export and send its reply.  Returns 0, or
 * -1 when the reply could not be sent (the connection is broken). */
int nbd_cmd_run(struct nbd_conn *c, struct nbd_req *r);
/* Send an error reply for a request that could not be run at all. */
int nbd_cmd_reply_error(struct nbd_conn *c, struct nbd_req *r, uint32_t nbd_err);

#endif
