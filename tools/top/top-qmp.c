// SPDX-License-Identifier: MIT
/* --qmp SOCKET: the drives of a running QEMU, read over its QMP monitor.
 *
 * Each sample connects, reads the greeting, negotiates capabilities, asks
 * query-block (each drive's device, files, formats and backing chain) and
 * query-blockstats (its counters), then disconnects: QEMU serves one client
 * per QMP socket at a time and queues the others unanswered, so holding the
 * monitor between samples would lock every other client out.  Every wait is
 * bounded (QMP_TIMEOUT_MS per reply), so a stopped QEMU or a monitor some
 * other client holds costs one sample a timeout, never a hang. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "clock.h"
#include "top.h"

#define QMP_TIMEOUT_MS 2000       /* for each reply, the greeting included */
#define QMP_MAX_MESSAGE (64u << 20) /* a reply larger than this is refused */
#define QMP_MAX_DEPTH 256         /* JSON nesting (a backing chain nests twice per layer) */

struct top_qmp {
    int fd;                       /* -1 between samples */
    struct json_tokener *tok;
    size_t fed;                   /* bytes given to tok for the message being parsed */
    size_t pos, len;              /* unparsed bytes are buf[pos .. len) */
    unsigned next_id;
    uint64_t pid;                 /* the QEMU, from SO_PEERCRED; 0 when unknown */
    char buf[65536];
};

static void
disconnect(struct top_qmp *q)
{
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
    q->pos = q->len = q->fed = 0;
    json_tokener_reset(q->tok);
}

/* Whether process @pid is stopped (SIGSTOP, or held by a debugger). */
static bool
process_stopped(uint64_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%llu/stat", (unsigned long long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool stopped = false;
    if (fgets(line, sizeof line, f)) {
        const char *p = strrchr(line, ')'); /* the command name may hold spaces */
        stopped = p && (p[1] == ' ') && (p[2] == 'T' || p[2] == 't');
    }
    fclose(f);
    return stopped;
}

/* Why a reply did not come: the two causes we can tell apart. */
static const char *
silence_reason(const struct top_qmp *q, char *buf, size_t len, bool greeting)
{
    if (q->pid && process_stopped(q->pid))
        snprintf(buf, len, " (QEMU, pid %llu, is stopped)", (unsigned long long)q->pid);
    else if (greeting)
        snprintf(buf, len, " (is another client connected? QEMU serves one client per QMP "
                           "socket at a time)");
    else
        buf[0] = '\0';
    return buf;
}

/* Read the next JSON message into *@out (to be released with
 * json_object_put), waiting until @deadline (monotonic ms).  Returns 0,
 * -ETIMEDOUT, -EPIPE (QEMU closed the connection), -EPROTO (not JSON, or
 * too large) or another -errno from read(2); @why says more. */
static int
read_message(struct top_qmp *q, int64_t deadline, json_object **out, char *why, size_t whylen)
{
    for (;;) {
        while (q->pos < q->len) {
            if (q->fed == 0) { /* between messages: skip the "\r\n" that ends each one */
                while (q->pos < q->len && strchr(" \t\r\n", q->buf[q->pos]))
                    q->pos++;
                if (q->pos == q->len)
                    break;
            }
            size_t n = q->len - q->pos;
            json_object *obj = json_tokener_parse_ex(q->tok, q->buf + q->pos, (int)n);
            enum json_tokener_error e = json_tokener_get_error(q->tok);
            if (obj) {
                size_t used = json_tokener_get_parse_end(q->tok);
                q->pos += used <= n ? used : n;
                q->fed = 0;
                json_tokener_reset(q->tok);
                *out = obj;
                return 0;
            }
            if (e != json_tokener_continue) {
                snprintf(why, whylen, "QEMU sent something that is not JSON (%s)",
                         json_tokener_error_desc(e));
                return -EPROTO;
            }
            q->fed += n; /* the tokener keeps the partial message itself */
            q->pos = q->len;
            if (q->fed > QMP_MAX_MESSAGE) {
                snprintf(why, whylen, "a reply larger than %u MiB", QMP_MAX_MESSAGE >> 20);
                return -EPROTO;
            }
        }
        q->pos = q->len = 0;

        int64_t left = deadline - clock_ms(CLOCK_MONOTONIC);
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "poll: %s", strerror(errno));
            return -errno;
        }
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t got = read(q->fd, q->buf, sizeof q->buf);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            int e = errno;
            snprintf(why, whylen, "read: %s", strerror(e));
            return e == ECONNRESET ? -EPIPE : -e;
        }
        if (got == 0)
            return -EPIPE;
        q->len = (size_t)got;
    }
}

static int
send_all(struct top_qmp *q, const char *s, int64_t deadline, char *why, size_t whylen)
{
    size_t len = strlen(s), done = 0;
    while (done < len) {
        ssize_t w = send(q->fd, s + done, len - done, MSG_NOSIGNAL);
        if (w >= 0) {
            done += (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            snprintf(why, whylen, "send: %s", strerror(errno));
            return -1;
        }
        int64_t left = deadline - clock_ms(CLOCK_MONOTONIC);
        struct pollfd pfd = { .fd = q->fd, .events = POLLOUT };
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            snprintf(why, whylen, "QEMU does not read its monitor (timed out after %d s)",
                     QMP_TIMEOUT_MS / 1000);
            return -1;
        }
    }
    return 0;
}

/* Run @cmd and store its "return" value in *@ret (release the reply with
 * json_object_put on *@reply).  Events and replies to other ids are
 * skipped.  Returns 0, or -1 with @why set. */
static int
command(struct top_qmp *q, const char *cmd, json_object **reply, json_object **ret, char *why,
        size_t whylen)
{
    char msg[128], reason[160];
    unsigned id = ++q->next_id;
    int64_t deadline = clock_ms(CLOCK_MONOTONIC) + QMP_TIMEOUT_MS;
    snprintf(msg, sizeof msg, "{\"execute\":\"%s\",\"id\":%u}\n", cmd, id);
    if (send_all(q, msg, deadline, why, whylen) < 0)
        return -1;
    for (;;) {
        json_object *obj, *v;
        int r = read_message(q, deadline, &obj, why, whylen);
        if (r == -ETIMEDOUT) {
            snprintf(why, whylen, "%s: no reply within %d s%s", cmd, QMP_TIMEOUT_MS / 1000,
                     silence_reason(q, reason, sizeof reason, false));
            return -1;
        }
        if (r == -EPIPE) {
            snprintf(why, whylen, "%s: QEMU closed the connection", cmd);
            return -1;
        }
        if (r < 0)
            return -1;
        if (!json_object_is_type(obj, json_type_object) ||
            !json_object_object_get_ex(obj, "id", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) != id) {
            json_object_put(obj); /* an event, or not ours */
            continue;
        }
        if (json_object_object_get_ex(obj, "return", ret)) {
            *reply = obj;
            return 0;
        }
        json_object *err, *cls = NULL, *desc = NULL;
        if (json_object_object_get_ex(obj, "error", &err)) {
            json_object_object_get_ex(err, "class", &cls);
            json_object_object_get_ex(err, "desc", &desc);
        }
        snprintf(why, whylen, "%s: %s: %s", cmd, cls ? json_object_get_string(cls) : "error",
                 desc ? json_object_get_string(desc) : "no description");
        json_object_put(obj);
        return -1;
    }
}

/* Connect and negotiate: after it, commands can be run.  Returns 0, or -1
 * with @why set. */
static int
qmp_open(struct top_qmp *q, const char *socket_path, char *why, size_t whylen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(socket_path) >= sizeof sa.sun_path) {
        snprintf(why, whylen, "socket path longer than %zu bytes", sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    /* A unix socket connects at once or fails; it never waits in
     * EINPROGRESS.  QEMU listens with a short queue and stops accepting while
     * a client holds the monitor, so a few connections left waiting (ours
     * from earlier samples too) fill it: then EAGAIN. */
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        snprintf(why, whylen, "connect: %s%s", strerror(e),
                 e == ECONNREFUSED ? " (no QEMU listens there any more)"
                 : e == EAGAIN     ? " (QEMU accepts no more connections: another client "
                                     "holds the monitor, or QEMU is stopped)"
                                   : "");
        return -1;
    }
    struct ucred cred;
    socklen_t credlen = sizeof cred;
    q->pid = 0;
    if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0 && cred.pid > 0)
        q->pid = (uint64_t)cred.pid;

    /* QEMU greets a client only once it accepts it: while another client
     * holds the monitor, the connection waits in the queue in silence. */
    json_object *greeting, *v;
    char reason[160];
    int r = read_message(q, clock_ms(CLOCK_MONOTONIC) + QMP_TIMEOUT_MS, &greeting, why, whylen);
    if (r == -ETIMEDOUT) {
        snprintf(why, whylen, "no greeting within %d s%s", QMP_TIMEOUT_MS / 1000,
                 silence_reason(q, reason, sizeof reason, true));
        return -1;
    }
    if (r == -EPIPE) {
        snprintf(why, whylen, "QEMU closed the connection before its greeting");
        return -1;
    }
    if (r < 0)
        return -1;
    bool is_qmp = json_object_is_type(greeting, json_type_object) &&
                  json_object_object_get_ex(greeting, "QMP", &v);
    json_object_put(greeting);
    if (!is_qmp) {
        snprintf(why, whylen, "not a QMP monitor (no QMP greeting)");
        return -1;
    }
    json_object *reply, *ret;
    if (command(q, "qmp_capabilities", &reply, &ret, why, whylen) < 0)
        return -1;
    json_object_put(reply);
    return 0;
}

/* ---- turning replies into images ------------------------------------------ */

static json_object *
member(json_object *o, const char *key)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *
str_member(json_object *o, const char *key)
{
    json_object *v = member(o, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static uint64_t
count(json_object *stats, const char *key)
{
    json_object *v = member(stats, key);
    if (!v || !json_object_is_type(v, json_type_int))
        return 0;
    int64_t n = json_object_get_int64(v);
    return n > 0 ? (uint64_t)n : 0;
}

/* What a drive is called: its -drive id, else its device's id (QEMU
 * reports "/machine/peripheral/ID/virtio-backend" for a device with an id;
 * other paths are kept whole). */
static void
drive_name(json_object *b, char *buf, size_t len)
{
    const char *dev = str_member(b, "device"), *qdev = str_member(b, "qdev");
    static const char pfx[] = "/machine/peripheral/";
    if (*dev) {
        snprintf(buf, len, "%s", dev);
    } else if (strncmp(qdev, pfx, sizeof pfx - 1) == 0) {
        const char *id = qdev + sizeof pfx - 1;
        snprintf(buf, len, "%.*s", (int)strcspn(id, "/"), id);
    } else {
        snprintf(buf, len, "%s", qdev);
    }
}

/* The query-blockstats entry of the query-block entry @b: the same device
 * name, or with none, the same qdev path. */
static json_object *
find_stats(json_object *blockstats, json_object *b)
{
    const char *dev = str_member(b, "device"), *qdev = str_member(b, "qdev");
    size_t n = json_object_array_length(blockstats);
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(blockstats, i);
        if (*dev ? strcmp(dev, str_member(s, "device")) == 0
                 : *qdev && !*str_member(s, "device") && strcmp(qdev, str_member(s, "qdev")) == 0)
            return s;
    }
    return NULL;
}

static void
fill_layers(struct topcow_stats *st, json_object *inserted)
{
    json_object *image = member(inserted, "image");
    if (!image) { /* QEMUs before "image" in query-block: the top file and the depth only */
        snprintf(st->layers[0].filename, sizeof st->layers[0].filename, "%s",
                 str_member(inserted, "file"));
        snprintf(st->layers[0].format, sizeof st->layers[0].format, "%s",
                 str_member(inserted, "drv"));
        uint64_t depth = count(inserted, "backing_file_depth");
        st->nlayers = depth < TOPCOW_STATS_MAX_LAYERS ? (unsigned)depth + 1
                                                      : TOPCOW_STATS_MAX_LAYERS;
        for (unsigned i = 1; i < st->nlayers; i++)
            st->layers[i].depth = i;
        if (st->nlayers > 1)
            snprintf(st->layers[1].filename, sizeof st->layers[1].filename, "%s",
                     str_member(inserted, "backing_file"));
        return;
    }
    st->virtual_size = count(image, "virtual-size");
    for (unsigned i = 0; image && i < TOPCOW_STATS_MAX_LAYERS; i++) {
        struct topcow_stats_layer *l = &st->layers[i];
        snprintf(l->filename, sizeof l->filename, "%s", str_member(image, "filename"));
        snprintf(l->format, sizeof l->format, "%s", str_member(image, "format"));
        l->depth = i;
        st->nlayers = i + 1;
        image = member(image, "backing-image");
    }
}

/* QEMU counts per drive what its guest asked; topcow's layer 0 counts the
 * same.  Requests QEMU refused as invalid count as errors, as topcow's do. */
static void
fill_counters(struct topcow_stats *st, json_object *stats)
{
    static const struct {
        enum topcow_stats_op op;
        const char *ops, *bytes, *failed, *invalid, *time;
    } map[] = {
        { TOPCOW_STATS_READ, "rd_operations", "rd_bytes", "failed_rd_operations",
          "invalid_rd_operations", "rd_total_time_ns" },
        { TOPCOW_STATS_WRITE, "wr_operations", "wr_bytes", "failed_wr_operations",
          "invalid_wr_operations", "wr_total_time_ns" },
        { TOPCOW_STATS_FLUSH, "flush_operations", NULL, "failed_flush_operations",
          "invalid_flush_operations", "flush_total_time_ns" },
        { TOPCOW_STATS_DISCARD, "unmap_operations", "unmap_bytes", "failed_unmap_operations",
          "invalid_unmap_operations", "unmap_total_time_ns" },
    };
    struct topcow_stats_layer *l = &st->layers[0];
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        l->ops[map[i].op] = count(stats, map[i].ops);
        l->bytes[map[i].op] = map[i].bytes ? count(stats, map[i].bytes) : 0;
        l->errors[map[i].op] = count(stats, map[i].failed) + count(stats, map[i].invalid);
        st->latency_nsec[map[i].op] = count(stats, map[i].time);
    }
}

/* "qemu-system-x86_64", with the guest's -name after it when it has one.
 * Returns 0, or -1 with @why set when query-name failed. */
static int
process_name(struct top_qmp *q, char *buf, size_t len, char *why, size_t whylen)
{
    char prog[256] = "qemu";
    if (q->pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%llu/cmdline", (unsigned long long)q->pid);
        FILE *f = fopen(path, "re");
        if (f) {
            char argv0[sizeof prog];
            size_t n = fread(argv0, 1, sizeof argv0 - 1, f);
            fclose(f);
            argv0[n] = '\0';
            const char *base = strrchr(argv0, '/');
            if (n)
                snprintf(prog, sizeof prog, "%s", base ? base + 1 : argv0);
        }
    }
    json_object *reply, *ret;
    if (command(q, "query-name", &reply, &ret, why, whylen) < 0)
        return -1;
    const char *guest = str_member(ret, "name");
    snprintf(buf, len, "%s%s%s", prog, *guest ? " " : "", guest);
    json_object_put(reply);
    return 0;
}

/* "qmp:SOCKET:DEVICE"; when that does not fit, its end is replaced by a
 * hash of the whole, so keys stay apart. */
static void
make_key(char *key, size_t len, const char *socket_path, const char *name)
{
    int n = snprintf(key, len, "qmp:%s:%s", socket_path, name);
    if (n < 0 || (size_t)n < len || len < 32)
        return;
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (const char *s = socket_path; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    h = (h ^ 0xff) * 1099511628211u;
    for (const char *s = name; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    snprintf(key + len - 18, 18, "~%016llx", (unsigned long long)h);
}

static int
add_drives(struct top_qmp *q, const char *socket_path, json_object *block,
           json_object *blockstats, const char *source, struct top_sample *out)
{
    uint64_t now = clock_ns(CLOCK_REALTIME);
    size_t n = json_object_array_length(block);
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(block, i);
        json_object *inserted = member(b, "inserted"), *stats = find_stats(blockstats, b);
        char name[256];
        drive_name(b, name, sizeof name);
        if (!inserted || !stats || !*name) /* an empty CD-ROM drive, or nothing to show */
            continue;
        struct top_image *img = top_sample_add(out);
        if (!img)
            return -1;
        img->from_qmp = true;
        make_key(img->key, sizeof img->key, socket_path, name);
        snprintf(img->source, sizeof img->source, "%s", source);
        img->pid = q->pid;
        struct topcow_stats *st = &img->st;
        st->struct_size = sizeof *st;
        st->pid = q->pid;
        snprintf(st->command, sizeof st->command, "%.*s", (int)sizeof st->command - 1, source);
        st->sample_time_ns = now;
        json_object *ro = member(inserted, "ro");
        st->read_only = ro && json_object_get_boolean(ro);
        fill_layers(st, inserted);
        fill_counters(st, member(stats, "stats"));
        snprintf(img->qmp_name, sizeof img->qmp_name, "%s (%.*s)", name,
                 (int)(sizeof img->qmp_name - sizeof name - 4), st->layers[0].filename);
    }
    return 0;
}

int
top_qmp_collect(struct top_qmp **conn, const char *socket_path, struct top_sample *out,
                char *err, size_t errlen)
{
    struct top_qmp *q = *conn;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (q && !(q->tok = json_tokener_new_ex(QMP_MAX_DEPTH))) {
            free(q);
            q = NULL;
        }
        if (!q) {
            snprintf(err, errlen, "qmp %s: out of memory", socket_path);
            return -1;
        }
        q->fd = -1;
        *conn = q;
    }

    char why[400] = "";
    char source[sizeof out->v->source];
    json_object *r1 = NULL, *r2 = NULL, *block, *blockstats;
    int rc = -1;
    if (qmp_open(q, socket_path, why, sizeof why) < 0 ||
        process_name(q, source, sizeof source, why, sizeof why) < 0 ||
        command(q, "query-block", &r1, &block, why, sizeof why) < 0 ||
        command(q, "query-blockstats", &r2, &blockstats, why, sizeof why) < 0)
        goto out;
    if (!json_object_is_type(block, json_type_array) ||
        !json_object_is_type(blockstats, json_type_array)) {
        snprintf(why, sizeof why, "query-block or query-blockstats did not return a list");
        goto out;
    }
    if (add_drives(q, socket_path, block, blockstats, source, out) < 0) {
        snprintf(why, sizeof why, "out of memory");
        goto out;
    }
    rc = 0;
out:
    json_object_put(r1);
    json_object_put(r2);
    disconnect(q); /* leave the monitor free for other clients until the next sample */
    if (rc < 0)
        snprintf(err, errlen, "qmp %s: %s", socket_path, why);
    return rc;
}

void
top_qmp_close(struct top_qmp *conn)
{
    if (!conn)
        return;
    disconnect(conn);
    json_tokener_free(conn->tok);
    free(conn);
}
