// SPDX-License-Identifier: MIT
/* Fixed newstyle negotiation for one client (see nbd-server.h).  Every
 * length the client sends is checked against what was received before it
 * is used; malformed options get NBD_REP_ERR_INVALID, unknown ones
 * NBD_REP_ERR_UNSUP, and what cannot be answered drops the client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-proto.h"
#include "nbd-server.h"
#include "nbd-tls.h"

uint16_t
export_tflags(const struct nbd_export *e, bool structured)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_CACHE;
    if (e->multi_conn)
        f |= NBD_FLAG_CAN_MULTI_CONN;
    if (e->readonly)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    if (structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

/* Send an option reply.  Returns 0 or -errno. */
static int
reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data, size_t len)
{
    uint8_t h[20];
    be64_put(h, NBD_REP_MAGIC);
    be32_put(h + 8, opt);
    be32_put(h + 12, type);
    be32_put(h + 16, (uint32_t)len);
    struct iovec v[2] = { { h, sizeof h }, { (void *)data, len } };
    return chan_writev(&c->chan, v, len ? 2 : 1);
}

static int
reply_err(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
    return reply(c, opt, type, msg, strlen(msg));
}

/* Whether @name (of @len bytes, not terminated) names our export.  The
 * empty name always selects the default (our only) export. */
static bool
is_our_export(const struct nbd_conn *c, const uint8_t *name, size_t len)
{
    return len == 0 || (len == strlen(c->exp->name) && !memcmp(name, c->exp->name, len));
}

static int
reply_info(struct nbd_conn *c, uint32_t opt, uint16_t type, const void *data, size_t len)
{
    uint8_t buf[2 + NBD_MAX_STRING];
    if (len > NBD_MAX_STRING)
        len = NBD_MAX_STRING;
    be16_put(buf, type);
    memcpy(buf + 2, data, len);
    return reply(c, opt, NBD_REP_INFO, buf, 2 + len);
}

/* The export name that starts the data of INFO, GO and the META_CONTEXT
 * options: a 32-bit length, the name, then at least @tail more bytes.
 * Returns 1 with *@nlen set, or the result of an ERR_INVALID reply (0, or
 * -errno if it could not be sent). */
static int
take_name(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len, uint32_t tail,
          uint32_t *nlen)
{
    if (len < 4 + tail)
        return reply_err(c, opt, NBD_REP_ERR_INVALID, "option too short");
    *nlen = be32_get(d);
    if (*nlen > len - 4 - tail)
        return reply_err(c, opt, NBD_REP_ERR_INVALID, "name length exceeds the option");
    return 1;
}

/* NBD_OPT_INFO / NBD_OPT_GO.  Returns 1 if GO succeeded, 0 to continue
 * negotiating, -errno on a stream error. */
static int
opt_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    uint32_t nlen;
    int r = take_name(c, opt, d, len, 2, &nlen);
    if (r != 1)
        return r;
    uint16_t ninfo = be16_get(d + 4 + nlen);
    if ((uint64_t)len != 6ull + nlen + 2ull * ninfo)
        return reply_err(c, opt, NBD_REP_ERR_INVALID, "information requests do not fit");
    if (!is_our_export(c, d + 4, nlen))
        return reply_err(c, opt, NBD_REP_ERR_UNKNOWN, "export not found");
    bool want_name = false;
    for (unsigned i = 0; i < ninfo; i++)
        if (be16_get(d + 6 + nlen + 2 * i) == NBD_INFO_NAME)
            want_name = true;
    const struct nbd_export *e = c->exp;
    uint8_t ex[10], bs[12];
    be64_put(ex, e->size);
    be16_put(ex + 8, export_tflags(e, c->structured));
    be32_put(bs, e->min_block);
    be32_put(bs + 4, e->pref_block);
    be32_put(bs + 8, NBD_MAX_PAYLOAD);
    if ((r = reply_info(c, opt, NBD_INFO_EXPORT, ex, sizeof ex)) < 0 ||
        (r = reply_info(c, opt, NBD_INFO_BLOCK_SIZE, bs, sizeof bs)) < 0 ||
        (want_name && (r = reply_info(c, opt, NBD_INFO_NAME, e->name, strlen(e->name))) < 0) ||
        (e->description && (r = reply_info(c, opt, NBD_INFO_DESCRIPTION, e->description,
                                           strlen(e->description))) < 0) ||
        (r = reply(c, opt, NBD_REP_ACK, NULL, 0)) < 0)
        return r;
    return opt == NBD_OPT_GO;
}

/* The contexts query @q (@qlen bytes) selects, as a bit mask of
 * 1 << NBD_CTX_*.  @list: for NBD_OPT_LIST_META_CONTEXT (namespace wildcards
 * list every context of the namespace).  -1: the query is malformed. */
static int
match_query(const struct nbd_conn *c, const uint8_t *q, uint32_t qlen, bool list)
{
    const uint8_t *colon = memchr(q, ':', qlen);
    if (!colon)
        return -1;
    int depth = c->exp->allocation_depth ? 1 << NBD_CTX_ALLOCATION_DEPTH : 0;
#define IS(s) (qlen == sizeof(s) - 1 && !memcmp(q, s, qlen))
    if (IS("base:allocation"))
        return 1 << NBD_CTX_BASE_ALLOCATION;
    if (IS("base:"))
        return list ? 1 << NBD_CTX_BASE_ALLOCATION : 0;
    if (IS("qemu:allocation-depth"))
        return depth;
    if (IS("qemu:"))
        return list ? depth : 0;
#undef IS
    return 0; /* unknown namespace or leaf: ignored */
}

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
static int
opt_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    bool set = opt == NBD_OPT_SET_META_CONTEXT;
    if (set)
        c->contexts = 0; /* replaced even when this fails */
    if (!c->structured)
        return reply_err(c, opt, NBD_REP_ERR_INVALID, "structured replies not negotiated");
    uint32_t nlen;
    int r = take_name(c, opt, d, len, 4, &nlen);
    if (r != 1)
        return r;
    uint32_t nq = be32_get(d + 4 + nlen);
    uint64_t pos = 8ull + nlen;
    int mask = 0;
    for (uint32_t i = 0; i < nq; i++) {
        if (pos + 4 > len)
            return reply_err(c, opt, NBD_REP_ERR_INVALID, "query count exceeds the option");
        uint32_t qlen = be32_get(d + pos);
        pos += 4;
        if (qlen > len - pos)
            return reply_err(c, opt, NBD_REP_ERR_INVALID, "query length exceeds the option");
        int m = match_query(c, d + pos, qlen, !set);
        if (m < 0)
            return reply_err(c, opt, NBD_REP_ERR_INVALID, "query without a namespace");
        mask |= m;
        pos += qlen;
    }
    if (pos != len)
        return reply_err(c, opt, NBD_REP_ERR_INVALID, "trailing bytes after the queries");
    if (!is_our_export(c, d + 4, nlen))
        return reply_err(c, opt, NBD_REP_ERR_UNKNOWN, "export not found");
    if (nq == 0 && !set)
        mask = 1 << NBD_CTX_BASE_ALLOCATION |
               (c->exp->allocation_depth ? 1 << NBD_CTX_ALLOCATION_DEPTH : 0);
    static const struct { uint32_t id; const char *name; } ctxs[] = {
        { NBD_CTX_BASE_ALLOCATION, "base:allocation" },
        { NBD_CTX_ALLOCATION_DEPTH, "qemu:allocation-depth" },
    };
    for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0]; i++) {
        if (!(mask & (1 << ctxs[i].id)))
            continue;
        uint8_t buf[64];
        size_t n = strlen(ctxs[i].name);
        be32_put(buf, set ? ctxs[i].id : 0);
        memcpy(buf + 4, ctxs[i].name, n);
        if ((r = reply(c, opt, NBD_REP_META_CONTEXT, buf, 4 + n)) < 0)
            return r;
    }
    r = reply(c, opt, NBD_REP_ACK, NULL, 0);
    if (r == 0 && set)
        c->contexts = (unsigned)mask;
    return r;
}

/* NBD_OPT_EXPORT_NAME: no error reply exists, so a wrong name drops the
 * client.  Returns 1 to enter transmission, -ENOENT to drop, -errno. */
static int
opt_export_name(struct nbd_conn *c, const uint8_t *d, uint32_t len)
{
    if (!is_our_export(c, d, len)) {
        nbd_note(c, "NBD_OPT_EXPORT_NAME names an unknown export");
        return -ENOENT;
    }
    uint8_t buf[10 + 124] = { 0 };
    be64_put(buf, c->exp->size);
    be16_put(buf + 8, export_tflags(c->exp, c->structured));
    int r = chan_write(&c->chan, buf, c->no_zeroes ? 10 : sizeof buf);
    return r < 0 ? r : 1;
}

static int
opt_list(struct nbd_conn *c, uint32_t len)
{
    if (len)
        return reply_err(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
    const char *name = c->exp->name, *desc = c->exp->description ? c->exp->description : "";
    size_t n = strlen(name), dn = strlen(desc);
    if (n > NBD_MAX_STRING)
        n = NBD_MAX_STRING;
    if (dn > NBD_MAX_STRING)
        dn = NBD_MAX_STRING;
    uint8_t buf[4 + 2 * NBD_MAX_STRING];
    be32_put(buf, (uint32_t)n);
    memcpy(buf + 4, name, n);
    memcpy(buf + 4 + n, desc, dn);
    int r = reply(c, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + n + dn);
    return r < 0 ? r : reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static int
opt_starttls(struct nbd_conn *c, uint32_t len)
{
    if (len)
        return reply_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                         "NBD_OPT_STARTTLS takes no data");
    if (!c->srv->opts->tls)
        return reply_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, "TLS is not configured");
    if (c->chan.tls)
        return reply_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already active");
    int r = reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
    if (r < 0)
        return r;
    if (chan_start_tls(&c->chan, c->srv->opts->tls) < 0)
        return -EPROTO;
    /* Nothing negotiated in clear text survives the upgrade. */
    c->structured = false;
    c->contexts = 0;
    return 0;
}

int
nbd_handshake(struct nbd_conn *c)
{
    uint8_t hello[18];
    be64_put(hello, NBD_MAGIC);
    be64_put(hello + 8, NBD_IHAVEOPT);
    be16_put(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    uint8_t cf[4];
    if (chan_write(&c->chan, hello, sizeof hello) < 0 || chan_read(&c->chan, cf, 4) < 0)
        return 0;
    uint32_t cflags = be32_get(cf);
    if (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
        nbd_note(c, "unknown client flags");
        return -1;
    }
    c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
    bool tls_required = c->srv->opts->tls_mode == TLS_REQUIRE;
    uint8_t *d = NULL;
    int ret = 0;
    for (;;) {
        uint8_t h[16];
        int r = chan_read(&c->chan, h, sizeof h);
        if (r < 0) {
            ret = r == -EPIPE ? 0 : -1;
            break;
        }
        if (be64_get(h) != NBD_IHAVEOPT) {
            nbd_note(c, "bad option magic");
            ret = -1;
            break;
        }
        uint32_t opt = be32_get(h + 8), len = be32_get(h + 12);
        if (len > NBD_MAX_OPTION) {
            nbd_note(c, "option too long");
            ret = -1;
            break;
        }
        free(d);
        d = malloc(len ? len : 1);
        if (!d || chan_read(&c->chan, d, len) < 0) {
            ret = 0;
            break;
        }
        if (tls_required && !c->chan.tls && opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
            if (opt == NBD_OPT_EXPORT_NAME) {
                nbd_note(c, "NBD_OPT_EXPORT_NAME without TLS");
                ret = 0;
                break;
            }
            r = reply_err(c, opt, NBD_REP_ERR_TLS_REQD, "TLS is required");
        } else if (c->srv->stopping) {
            r = reply_err(c, opt, NBD_REP_ERR_SHUTDOWN, "the server is shutting down");
        } else {
            switch (opt) {
            case NBD_OPT_EXPORT_NAME:
                r = opt_export_name(c, d, len);
                break;
            case NBD_OPT_ABORT:
                reply(c, opt, NBD_REP_ACK, NULL, 0);
                r = -EPIPE;
                break;
            case NBD_OPT_LIST:
                r = opt_list(c, len);
                break;
            case NBD_OPT_STARTTLS:
                r = opt_starttls(c, len);
                break;
            case NBD_OPT_INFO:
            case NBD_OPT_GO:
                r = opt_info_go(c, opt, d, len);
                break;
            case NBD_OPT_STRUCTURED_REPLY:
                if (len)
                    r = reply_err(c, opt, NBD_REP_ERR_INVALID, "option takes no data");
                else if (c->structured)
                    r = reply_err(c, opt, NBD_REP_ERR_INVALID, "already negotiated");
                else {
                    c->structured = true;
                    r = reply(c, opt, NBD_REP_ACK, NULL, 0);
                }
                break;
            case NBD_OPT_LIST_META_CONTEXT:
            case NBD_OPT_SET_META_CONTEXT:
                r = opt_meta(c, opt, d, len);
                break;
            default:
                r = reply_err(c, opt, NBD_REP_ERR_UNSUP, "unsupported option");
                break;
            }
        }
        if (r != 0) {
            ret = r > 0 ? 1 : (r == -EPROTO || r == -ENOENT) ? -1 : 0;
            break;
        }
    }
    free(d);
    return ret;
}
