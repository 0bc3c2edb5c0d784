// SPDX-License-Identifier: MIT
/* Changing header options of an existing image: the backing file (rebase,
 * commit, amend) and qemu-img amend's compat, lazy_refcounts and
 * refcount_bits.
 *
 * Every change first makes all metadata durable, so the header never names
 * a state that is not on disk yet.  Header rewrites go through
 * qcow2_header_encode and replace the header cluster in one write; a new
 * refcount width swaps the refcount structure (qcow2_rebuild_refcounts). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "minmax.h"
#include "qcow2-internal.h"

int
qcow2_header_rewrite(struct qcow2_state *s)
{
    int r = qcow2_flush_locked(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0)
        return r;
    uint8_t *buf = malloc(s->cluster_size);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    r = qcow2_header_encode(s, buf);
    if (r == 0)
        r = io_pwrite(s->file, buf, s->cluster_size, 0);
    free(buf);
    bool unsafe = s->unsafe;
    s->unsafe = false; /* a header change is always made durable */
    if (r == 0)
        r = qcow2_sync(s);
    s->unsafe = unsafe;
    return r;
}

static int
dup_or_null(const char *in, char **out)
{
    *out = NULL;
    if (in && !(*out = strdup(in)))
        return err_set(-ENOMEM, "out of memory");
    return 0;
}

int
qcow2_set_backing(struct topcow_image *img, const char *file, const char *format)
{
    struct qcow2_state *s = qcow2_state(img);
    RETURN_ERR_IF(file && strlen(file) > QCOW2_MAX_BACKING_NAME, -EINVAL,
                  "%s: backing file name longer than %d bytes", img->filename,
                  QCOW2_MAX_BACKING_NAME);
    char *nfile, *nfmt, *nfull = NULL;
    if (dup_or_null(file, &nfile) < 0 || dup_or_null(format, &nfmt) < 0) {
        free(nfile);
        return -ENOMEM;
    }
    if (file && !(nfull = image_resolve_relative(img->filename, file))) {
        free(nfile);
        free(nfmt);
        return err_set(-ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&s->lock);
    char *ofile = img->backing_file, *ofmt = img->backing_format;
    char *ofull = img->full_backing_filename;
    img->backing_file = nfile;
    img->backing_format = nfmt;
    img->full_backing_filename = nfull;
    int r = s->corrupt ? QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused")
                       : qcow2_header_rewrite(s);
    if (r < 0) {
        img->backing_file = ofile;
        img->backing_format = ofmt;
        img->full_backing_filename = ofull;
        ofile = nfile;
        ofmt = nfmt;
        ofull = nfull;
    }
    pthread_mutex_unlock(&s->lock);
    free(ofile);
    free(ofmt);
    free(ofull);
    return r;
}

/* Set the refcount geometry of *s for 2^@order-bit refcounts. */
static void
set_refcount_order(struct qcow2_state *s, uint32_t order)
{
    s->h.refcount_order = order;
    s->refcount_order = order;
    s->refcount_bits = 1u << order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - order;
    s->rb_entries = 1ull << s->rb_bits;
}

static int
change_refcount_bits(struct qcow2_state *s, unsigned bits)
{
    uint32_t order = 0, old = s->refcount_order;
    while ((1u << order) < bits)
        order++;
    if (order == old)
        return 0;
    int r = qcow2_flush_locked(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0)
        return r;
    set_refcount_order(s, order);
    r = qcow2_rebuild_refcounts(s, false, true);
    if (r < 0)
        set_refcount_order(s, old);
    return r;
}

static int
set_lazy_refcounts(struct qcow2_state *s, bool on)
{
    if (on == s->lazy_refcounts)
        return 0;
    int r = qcow2_flush_locked(s);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0)
        return r;
    uint64_t oincompat = s->h.incompatible_features, ocompat = s->h.compatible_features;
    if (on) {
        s->h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    } else {
        /* Refcounts are exact after the flush: the image is clean. */
        s->h.compatible_features &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        s->h.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY;
    }
    /* incompat, compat: 16 bytes in one write. */
    r = qcow2_header_write_field(s, QCOW2_HDR_INCOMPAT, 16);
    if (r == 0)
        r = qcow2_sync(s);
    if (r < 0) {
        s->h.incompatible_features = oincompat;
        s->h.compatible_features = ocompat;
        return r;
    }
    s->lazy_refcounts = on;
    if (!on)
        s->dirty_bit_set = false;
    return 0;
}

/* Zeros as an encrypted image stores them, at host cluster @host (guest
 * @guest). */
static int
write_encrypted_zeros(struct qcow2_state *s, uint64_t host, uint64_t guest)
{
    uint8_t *z = calloc(1, s->cluster_size);
    if (!z)
        return err_set(-ENOMEM, "out of memory");
    int r = qcow2_crypto_pwrite(s, z, s->cluster_size, host, guest);
    free(z);
    return r;
}

/* compat=0.10 has no zero flag: clusters that read as zeros through it
 * become unallocated (nothing shows through) or zero-filled clusters. */
static int
expand_zero_clusters(struct qcow2_state *s)
{
    const uint64_t cs = s->cluster_size;
    const bool backing = s->img->backing_file != NULL;
    int r = 0;
    for (uint64_t l1i = 0; l1i < s->l1_size && r == 0; l1i++) {
        if (!(s->l1[l1i] & L1E_OFFSET_MASK))
            continue;
        uint8_t *l2;
        if ((r = qcow2_get_l2(s, l1i, true, &l2)) < 0)
            break;
        bool dirty = false;
        for (uint64_t i = 0; i < s->l2_entries && r == 0; i++) {
            uint64_t e = qcow2_l2e_get(s, l2, i);
            if ((e & QCOW_OFLAG_COMPRESSED) || !(e & QCOW_OFLAG_ZERO))
                continue;
            uint64_t host = e & L2E_OFFSET_MASK, ne;
            if (host) {
                ne = host | (e & QCOW_OFLAG_COPIED);
            } else if (!backing) {
                ne = 0;
            } else {
                bool fresh;
                r = qcow2_alloc_clusters(s, 1, &host, NULL, &fresh);
                ne = host | QCOW_OFLAG_COPIED;
            }
            /* The zeros are written before the entry that maps them. */
            if (r == 0 && host && s->h.crypt_method)
                r = write_encrypted_zeros(s, host, (l1i << (s->cluster_bits + s->l2_bits)) +
                                                       (i << s->cluster_bits));
            else if (r == 0 && host)
                r = io_write_zeroes(s->file, host, cs, 0);
            if (r == 0) {
                s->deps_unsynced = true;
                qcow2_l2e_set(s, l2, i, ne, 0);
                dirty = true;
            }
        }
        if (dirty)
            qcow2_cache_mark_dirty(s->l2_cache, l2);
        qcow2_cache_put(s->l2_cache, l2);
    }
    return r;
}

static int
downgrade(struct qcow2_state *s)
{
    const char *why = NULL;
    if (s->ext_l2)
        why = "it uses extended L2 entries";
    else if (s->external_data)
        why = "it uses an external data file";
    else if (s->refcount_bits != 16)
        why = "its refcounts are not 16 bits wide (amend refcount_bits=16 too)";
    else if (s->lazy_refcounts)
        why = "lazy refcounts are on (amend lazy_refcounts=off too)";
    else if (s->h.compression_type != 0)
        why = "it uses zstd compression";
    else if (s->nb_snapshots > 0)
        why = "it has internal snapshots";
    if (why)
        return QERR(s, -ENOTSUP, "qcow2: cannot downgrade to compat=0.10: %s", why);
    int r = expand_zero_clusters(s);
    if (r < 0)
        return r;
    struct qcow2_header old = s->h;
    s->h.version = 2;
    s->h.incompatible_features = 0;
    s->h.compatible_features = 0;
    s->h.autoclear_features = 0;
    r = qcow2_header_rewrite(s);
    if (r < 0)
        s->h = old;
    else
        s->dirty_bit_set = false;
    return r;
}

static int
upgrade(struct qcow2_state *s)
{
    struct qcow2_header old = s->h;
    s->h.version = 3;
    s->h.refcount_order = s->refcount_order;
    s->h.incompatible_features = 0;
    s->h.compatible_features = 0;
    s->h.autoclear_features = 0;
    s->h.compression_type = 0;
    int r = qcow2_header_rewrite(s);
    if (r < 0)
        s->h = old;
    return r;
}

int
qcow2_amend(struct topcow_image *img, const struct topcow_amend_opts *o)
{
    struct qcow2_state *s = qcow2_state(img);
    pthread_mutex_lock(&s->lock);
    int r = 0;
    unsigned compat = o->compat ? o->compat : (s->h.version >= 3 ? 3 : 2);
    if (s->corrupt)
        r = QERR(s, -EIO, "qcow2: image is marked corrupt; writes are refused");
    else if (compat < 3 && o->lazy_refcounts == 1)
        r = QERR(s, -EINVAL, "qcow2: lazy refcounts need compat=1.1");
    else if (compat < 3 && o->refcount_bits && o->refcount_bits != 16)
        r = QERR(s, -EINVAL, "qcow2: refcounts other than 16 bits wide need compat=1.1");
    /* Upgrade first, downgrade last, so the other changes find what they need. */
    if (r == 0 && compat == 3 && s->h.version < 3)
        r = upgrade(s);
    if (r == 0 && o->refcount_bits)
        r = change_refcount_bits(s, o->refcount_bits);
    if (r == 0 && o->lazy_refcounts >= 0)
        r = set_lazy_refcounts(s, o->lazy_refcounts == 1);
    if (r == 0 && compat == 2 && s->h.version >= 3)
        r = downgrade(s);
    pthread_mutex_unlock(&s->lock);
    if (r == 0 && o->encrypt_state)
        r = qcow2_crypto_amend(s, o);
    return r;
}
