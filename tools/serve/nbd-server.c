// SPDX-License-Identifier: MIT
/* Listening, accepting, the client limit and clean shutdown (see
 * nbd-server.h).  The main thread waits in ppoll() with SIGINT and SIGTERM
 * unblocked only there; every other thread runs with them blocked, so a
 * signal never interrupts image I/O.  On a signal: stop accepting, stop
 * reading from every client, let the requests already received finish and
 * reply, then return (the caller flushes and closes the image). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nbd-server.h"
#include "util.h"

#define HANDSHAKE_TIMEOUT_S 10
#define SHUTDOWN_GRACE_S 5 /* for requests in flight at SIGTERM */
#define MAX_LISTENERS 8

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
    stop_signal = sig;
}

struct listeners {
    int fd[MAX_LISTENERS];
    unsigned n;
};

static int
listen_unix(struct listeners *l, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        error_msg("socket path too long: '%s'", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_msg("socket: %s", strerror(errno));
        return -1;
    }
    unlink(path); /* a stale socket of an earlier server */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        error_msg("Failed to bind socket to %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    l->fd[l->n++] = fd;
    return 0;
}

static int
listen_tcp(struct listeners *l, const char *addr, const char *port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *res;
    int e = getaddrinfo(addr, port, &hints, &res);
    if (e) {
        error_msg("address '%s' port '%s': %s", addr, port, gai_strerror(e));
        return -1;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai && l->n < MAX_LISTENERS; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            err = errno;
            close(fd);
            continue;
        }
        l->fd[l->n++] = fd;
    }
    freeaddrinfo(res);
    if (l->n == 0) {
        error_msg("Failed to bind socket to %s:%s: %s", addr, port, strerror(err));
        return -1;
    }
    return 0;
}

void
nbd_note(const struct nbd_conn *c, const char *why)
{
    if (c->srv->opts->verbose)
        fprintf(stderr, "topcow serve: dropping a client: %s\n", why);
}

/* The self-pipe a leaving client writes to, to wake the accept loop. */
static int wake_pipe[2] = { -1, -1 };

static void *
conn_main(void *arg)
{
    struct nbd_conn *c = arg;
    struct nbd_server *srv = c->srv;
    chan_set_timeout(&c->chan, HANDSHAKE_TIMEOUT_S);
    if (nbd_handshake(c) == 1) {
        chan_set_timeout(&c->chan, 0);
        topcow_image_stats_note(c->exp->img, TOPCOW_STATS_NOTE_CLIENTS, 1);
        nbd_transmit(c);
        topcow_image_stats_note(c->exp->img, TOPCOW_STATS_NOTE_CLIENTS, -1);
    }
    pthread_mutex_lock(&srv->lock);
    for (struct nbd_conn **p = &srv->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    pthread_mutex_unlock(&srv->lock);
    chan_close(&c->chan);
    pthread_mutex_destroy(&c->send_lock);
    pthread_mutex_destroy(&c->qlock);
    pthread_cond_destroy(&c->qwork);
    pthread_cond_destroy(&c->qdrained);
    free(c);
    pthread_mutex_lock(&srv->lock);
    srv->nconns--;
    if (srv->opts->verbose)
        fprintf(stderr, "topcow serve: a client left (%u connected)\n", srv->nconns);
    ssize_t w = write(wake_pipe[1], "x", 1);
    (void)w;
    pthread_cond_broadcast(&srv->changed);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

static void
accept_one(struct nbd_server *srv, int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return; /* EAGAIN, ECONNABORTED, EMFILE...: the loop comes back */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on unix */
    struct nbd_conn *c = calloc(1, sizeof *c);
    if (!c || chan_init(&c->chan, fd) < 0) {
        free(c);
        close(fd);
        return;
    }
    c->srv = srv;
    c->exp = srv->exp;
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->qlock, NULL);
    pthread_cond_init(&c->qwork, NULL);
    pthread_cond_init(&c->qdrained, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&srv->lock);
    c->next = srv->conns;
    srv->conns = c;
    srv->nconns++;
    srv->served++;
    pthread_t reader;
    int e = pthread_create(&reader, &attr, conn_main, c);
    if (e) {
        srv->conns = c->next;
        srv->nconns--;
    }
    pthread_mutex_unlock(&srv->lock);
    pthread_attr_destroy(&attr);
    if (e) {
        chan_close(&c->chan);
        free(c);
        return;
    }
    if (srv->opts->verbose)
        fprintf(stderr, "topcow serve: a client connected\n");
}

static unsigned
online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (unsigned)n;
}

static unsigned
default_workers(void)
{
    unsigned n = online_cpus() * 2;
    return n > 16 ? 16 : n < 4 ? 4 : n;
}

static int
write_pid_file(const char *path, pid_t pid)
{
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%ld\n", (long)pid) < 0 || fclose(f) != 0) {
        error_msg("Failed to write pid file '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int
nbd_serve(struct nbd_export *exp, const struct nbd_server_opts *o)
{
    struct listeners l = { .n = 0 };
    if (o->socket_path ? listen_unix(&l, o->socket_path) < 0
                       : listen_tcp(&l, o->bind_addr ? o->bind_addr : "127.0.0.1",
                                    o->port ? o->port : "10809") < 0)
        return 1;
    int rc = 1;
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        error_msg("pipe: %s", strerror(errno));
        goto out_listeners;
    }
    if (o->fork) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            error_msg("fork: %s", strerror(errno));
            goto out_pipe;
        }
        if (pid > 0) /* the parent: the socket is listening; report the child */
            _exit(o->pid_file && write_pid_file(o->pid_file, pid) < 0 ? 1 : 0);
        /* Detach from the caller's terminal and pipes (a caller that
         * captures our output must not wait for the server to end); -v
         * keeps stderr for its log. */
        setsid();
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            if (!o->verbose)
                dup2(null, 2);
            if (null > 2)
                close(null);
        }
    } else if (o->pid_file && write_pid_file(o->pid_file, getpid()) < 0) {
        goto out_pipe;
    }

    /* Signals: blocked everywhere but in the main thread's ppoll(). */
    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &orig);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t waitmask = orig;
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGHUP);

    struct nbd_server srv = { .exp = exp, .opts = o };
    srv.workers = o->workers_set ? o->workers : default_workers();
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.changed, NULL);
    unsigned shared = o->shared ? o->shared : 1;
    while (!stop_signal) {
        pthread_mutex_lock(&srv.lock);
        bool full = srv.nconns >= shared;
        bool done = !o->persistent && srv.served > 0 && srv.nconns == 0;
        pthread_mutex_unlock(&srv.lock);
        if (done)
            break;
        struct pollfd p[MAX_LISTENERS + 1];
        p[0] = (struct pollfd){ .fd = wake_pipe[0], .events = POLLIN };
        unsigned np = 1;
        for (unsigned i = 0; i < l.n && !full; i++)
            p[np++] = (struct pollfd){ .fd = l.fd[i], .events = POLLIN };
        int n = ppoll(p, np, NULL, &waitmask);
        if (n < 0)
            continue; /* EINTR: the loop condition looks at the signal */
        if (p[0].revents) {
            char buf[64];
            while (read(wake_pipe[0], buf, sizeof buf) > 0)
                ;
        }
        for (unsigned i = 1; i < np; i++)
            if (p[i].revents & POLLIN)
                accept_one(&srv, p[i].fd);
    }

    /* Shut down: no new clients; current ones finish what they received. */
    for (unsigned i = 0; i < l.n; i++)
        close(l.fd[i]);
    l.n = 0;
    pthread_mutex_lock(&srv.lock);
    srv.stopping = true;
    for (struct nbd_conn *c = srv.conns; c; c = c->next)
        chan_stop_reading(&c->chan);
    /* A client that stopped reading its replies would hold us forever:
     * after a grace period, cut the remaining streams both ways. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SHUTDOWN_GRACE_S;
    while (srv.nconns > 0)
        if (pthread_cond_timedwait(&srv.changed, &srv.lock, &deadline) == ETIMEDOUT) {
            for (struct nbd_conn *c = srv.conns; c; c = c->next)
                chan_shutdown(&c->chan);
            deadline.tv_sec += SHUTDOWN_GRACE_S;
        }
    pthread_mutex_unlock(&srv.lock);
    pthread_mutex_destroy(&srv.lock);
    pthread_cond_destroy(&srv.changed);
    if (o->verbose && stop_signal)
        fprintf(stderr, "topcow serve: %s: shutting down\n", strsignal(stop_signal));
    rc = 0;
out_pipe:
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    wake_pipe[0] = wake_pipe[1] = -1;
out_listeners:
    for (unsigned i = 0; i < l.n; i++)
        close(l.fd[i]);
    if (o->socket_path)
        unlink(o->socket_path);
    if (o->pid_file && rc == 0)
        unlink(o->pid_file);
    return rc;
}
