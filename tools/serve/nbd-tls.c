// SPDX-License-Identifier: MIT
/* TLS over GnuTLS (see nbd-tls.h). */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nbd-tls.h"
#include "util.h"

#define TLS_HANDSHAKE_TIMEOUT_MS 10000

struct nbd_tls {
    bool psk;
    bool verify_peer;                           /* x509: require client certificates */
    gnutls_certificate_credentials_t x509;
    gnutls_psk_server_credentials_t psk_creds;
};

struct nbd_tls_session {
    gnutls_session_t s;
};

static int
file_in(char *out, size_t n, const char *dir, const char *name, bool must)
{
    snprintf(out, n, "%s/%s", dir, name);
    if (access(out, R_OK) == 0)
        return 1;
    if (must)
        error_msg("TLS credentials: cannot read '%s': %s", out, strerror(errno));
    return must ? -1 : 0;
}

int
nbd_tls_load(struct nbd_tls **out, const char *type, struct optlist *obj)
{
    static bool inited;
    if (!inited) {
        int r = gnutls_global_init();
        if (r < 0) {
            error_msg("TLS: %s", gnutls_strerror(r));
            return -1;
        }
        inited = true;
    }
    const char *dir = optlist_get(obj, "dir");
    const char *endpoint = optlist_get(obj, "endpoint");
    const char *verify = optlist_get(obj, "verify-peer");
    optlist_get(obj, "id");
    if (!dir) {
        error_msg("%s: parameter 'dir' is missing", type);
        return -1;
    }
    if (endpoint && strcmp(endpoint, "server")) {
        error_msg("%s: a server needs endpoint=server, not '%s'", type, endpoint);
        return -1;
    }
    struct nbd_tls *t = calloc(1, sizeof *t);
    if (!t) {
        error_msg("out of memory");
        return -1;
    }
    char path[4096], key[4096], crl[4096];
    int r;
    if (!strcmp(type, "tls-creds-psk")) {
        t->psk = true;
        optlist_get(obj, "username"); /* a client-side option; accepted */
        if (file_in(path, sizeof path, dir, "keys.psk", true) < 0)
            goto fail;
        if ((r = gnutls_psk_allocate_server_credentials(&t->psk_creds)) < 0 ||
            (r = gnutls_psk_set_server_credentials_file(t->psk_creds, path)) < 0) {
            error_msg("TLS credentials '%s': %s", path, gnutls_strerror(r));
            goto fail;
        }
    } else if (!strcmp(type, "tls-creds-x509")) {
        t->verify_peer = true; /* as qemu-nbd: client certificates by default */
        if (verify && parse_bool(verify, &t->verify_peer) < 0) {
            error_msg("%s: verify-peer must be on or off", type);
            goto fail;
        }
        if ((r = gnutls_certificate_allocate_credentials(&t->x509)) < 0) {
            error_msg("TLS: %s", gnutls_strerror(r));
            goto fail;
        }
        if (file_in(path, sizeof path, dir, "ca-cert.pem", t->verify_peer) < 0)
            goto fail;
        if (access(path, R_OK) == 0 &&
            (r = gnutls_certificate_set_x509_trust_file(t->x509, path, GNUTLS_X509_FMT_PEM)) <
                0) {
            error_msg("TLS credentials '%s': %s", path, gnutls_strerror(r));
            goto fail;
        }
        if (file_in(crl, sizeof crl, dir, "ca-crl.pem", false) == 1 &&
            (r = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM)) < 0) {
            error_msg("TLS credentials '%s': %s", crl, gnutls_strerror(r));
            goto fail;
        }
        if (file_in(path, sizeof path, dir, "server-cert.pem", true) < 0 ||
            file_in(key, sizeof key, dir, "server-key.pem", true) < 0)
            goto fail;
        if ((r = gnutls_certificate_set_x509_key_file(t->x509, path, key, GNUTLS_X509_FMT_PEM)) <
            0) {
            error_msg("TLS credentials '%s': %s", path, gnutls_strerror(r));
            goto fail;
        }
    } else {
        error_msg("--object: unsupported type '%s'", type);
        goto fail;
    }
    if (optlist_unused(obj)) {
        error_msg("%s: invalid parameter '%s'", type, optlist_unused(obj));
        goto fail;
    }
    *out = t;
    return 0;
fail:
    nbd_tls_free(t);
    return -1;
}

void
nbd_tls_free(struct nbd_tls *t)
{
    if (!t)
        return;
    if (t->x509)
        gnutls_certificate_free_credentials(t->x509);
    if (t->psk_creds)
        gnutls_psk_free_server_credentials(t->psk_creds);
    free(t);
}

int
nbd_tls_accept(struct nbd_tls *t, int fd, struct nbd_tls_session **out)
{
    struct nbd_tls_session *ts = calloc(1, sizeof *ts);
    if (!ts)
        return -1;
    gnutls_session_t s;
    int r = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL);
    if (r < 0) {
        free(ts);
        fprintf(stderr, "%s serve: TLS: %s\n", prog_name, gnutls_strerror(r));
        return -1;
    }
    ts->s = s;
    const char *why = NULL;
    if (t->psk) {
        if ((r = gnutls_priority_set_direct(s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", NULL)) < 0 ||
            (r = gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk_creds)) < 0)
            goto fail;
    } else {
        if ((r = gnutls_set_default_priority(s)) < 0 ||
            (r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509)) < 0)
            goto fail;
        gnutls_certificate_server_set_request(s, t->verify_peer ? GNUTLS_CERT_REQUIRE
                                                                : GNUTLS_CERT_IGNORE);
    }
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, TLS_HANDSHAKE_TIMEOUT_MS);
    do
        r = gnutls_handshake(s);
    while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0)
        goto fail;
    if (!t->psk && t->verify_peer) {
        unsigned status = 0;
        r = gnutls_certificate_verify_peers2(s, &status);
        if (r < 0)
            goto fail;
        if (status) {
            why = "the client certificate was not accepted";
            goto fail;
        }
    }
    *out = ts;
    return 0;
fail:
    fprintf(stderr, "%s serve: TLS handshake with a client failed: %s\n", prog_name,
            why ? why : gnutls_strerror(r));
    gnutls_deinit(s);
    free(ts);
    return -1;
}

ssize_t
nbd_tls_recv(struct nbd_tls_session *ts, void *buf, size_t len)
{
    ssize_t r = gnutls_record_recv(ts->s, buf, len);
    if (r >= 0)
        return r;
    if (r == GNUTLS_E_INTERRUPTED)
        return -EINTR;
    if (r == GNUTLS_E_AGAIN)
        return -EAGAIN;
    if (r == GNUTLS_E_PREMATURE_TERMINATION)
        return 0;
    return -EIO;
}

int
nbd_tls_sendv(struct nbd_tls_session *ts, const struct iovec *iov, int n)
{
    gnutls_record_cork(ts->s);
    for (int i = 0; i < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            ssize_t w = gnutls_record_send(ts->s, p, left);
            if (w == GNUTLS_E_INTERRUPTED || w == GNUTLS_E_AGAIN)
                continue;
            if (w < 0) {
                gnutls_record_uncork(ts->s, 0);
                return -EPIPE;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    for (;;) {
        int r = gnutls_record_uncork(ts->s, GNUTLS_RECORD_WAIT);
        if (r >= 0)
            return 0;
        if (r != GNUTLS_E_INTERRUPTED && r != GNUTLS_E_AGAIN)
            return -EPIPE;
    }
}

void
nbd_tls_end(struct nbd_tls_session *ts)
{
    gnutls_bye(ts->s, GNUTLS_SHUT_WR);
    gnutls_deinit(ts->s);
    free(ts);
}
