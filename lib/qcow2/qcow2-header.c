// SPDX-License-Identifier: MIT
/* The qcow2 header (spec: "Header", "Header extensions", "Feature name
 * table"): decoding with full validation of everything read from the file,
 * encoding of cluster 0 in QEMU's layout, and in-place rewrites of single
 * field groups (each group lies within one sector, so its write is atomic). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "minmax.h"
#include "error.h"
#include "qcow2-internal.h"

/* The feature table QEMU writes, in its order. */
static const struct qcow2_feature_name builtin_features[] = {
    { 0, 0, "dirty bit" },          { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" }, { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" }, { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },            { 2, 1, "raw external data" },
};

const char *
qcow2_feature_name(struct qcow2_state *s, unsigned type, unsigned bit)
{
    for (unsigned i = 0; i < s->nb_features; i++)
        if (s->features[i].type == type && s->features[i].bit == bit)
            return s->features[i].name;
    return NULL;
}

/* "Unsupported qcow2 feature(s): name, name, Unknown incompatible feature: 80..." */
static int
report_unknown_incompat(struct qcow2_state *s, uint64_t mask)
{
    char msg[400] = "";
    size_t n = 0;
    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(mask & (1ull << bit)))
            continue;
        const char *name = qcow2_feature_name(s, 0, bit);
        if (name) {
            n += (size_t)snprintf(msg + n, n < sizeof msg ? sizeof msg - n : 0, "%s%s",
                                  n ? ", " : "", name);
            mask &= ~(1ull << bit);
        }
    }
    if (mask && n < sizeof msg)
        snprintf(msg + n, sizeof msg - n, "%sUnknown incompatible feature: %" PRIx64,
                 n ? ", " : "", mask);
    return QERR(s, -ENOTSUP, "Unsupported qcow2 feature(s): %s", msg);
}

static char *
dup_string(const uint8_t *p, size_t len)
{
    char *r = malloc(len + 1);
    if (r) {
        memcpy(r, p, len);
        r[len] = '\0';
    }
    return r;
}

/* Validate a table at @off of @bytes bytes: cluster aligned, inside the
 * file, not overlapping the header cluster. */
static int
validate_table(struct qcow2_state *s, const char *what, uint64_t off, uint64_t bytes,
               uint64_t max_bytes, uint64_t file_size)
{
    uint64_t end;
    if (bytes == 0)
        return 0;
    RETURN_ERR_IF(bytes > max_bytes, -EUCLEAN,
                  "%s: qcow2: %s is too large (%" PRIu64 " bytes, limit %" PRIu64 ")",
                  s->img->filename, what, bytes, max_bytes);
    RETURN_ERR_IF(!IS_ALIGNED(off, s->cluster_size), -EUCLEAN,
                  "%s: qcow2: %s offset 0x%" PRIx64 " is not cluster aligned", s->img->filename,
                  what, off);
    RETURN_ERR_IF(off < s->cluster_size, -EUCLEAN,
                  "%s: qcow2: %s at offset 0x%" PRIx64 " overlaps the header", s->img->filename,
                  what, off);
    RETURN_ERR_IF(ADD_OVERFLOW(off, bytes, &end) || end > file_size, -EUCLEAN,
                  "%s: qcow2: %s (offset 0x%" PRIx64 ", %" PRIu64
                  " bytes) is past the end of the file (%" PRIu64 " bytes)",
                  s->img->filename, what, off, bytes, file_size);
    return 0;
}

static int add_preserved_ext(struct qcow2_state *s, uint32_t type, const uint8_t *data,
                             uint32_t len);

int
qcow2_ext_set(struct qcow2_state *s, uint32_t type, const void *data, uint32_t len)
{
    for (unsigned i = 0; i < s->nb_exts; i++) {
        if (s->exts[i].type != type)
            continue;
        uint8_t *d = malloc(len ? len : 1);
        if (!d)
            return err_set(-ENOMEM, "out of memory");
        memcpy(d, data, len);
        free(s->exts[i].data);
        s->exts[i].data = d;
        s->exts[i].len = len;
        return 0;
    }
    return add_preserved_ext(s, type, data, len);
}

static int
add_preserved_ext(struct qcow2_state *s, uint32_t type, const uint8_t *data, uint32_t len)
{
    struct qcow2_ext *n = realloc(s->exts, (s->nb_exts + 1) * sizeof *n);
    if (!n)
        return err_set(-ENOMEM, "out of memory");
    s->exts = n;
    n[s->nb_exts].type = type;
    n[s->nb_exts].len = len;
    n[s->nb_exts].data = malloc(len ? len : 1);
    if (!n[s->nb_exts].data)
        return err_set(-ENOMEM, "out of memory");
    memcpy(n[s->nb_exts].data, data, len);
    s->nb_exts++;
    return 0;
}

static int
parse_extensions(struct qcow2_state *s, const uint8_t *buf, uint64_t start, uint64_t end)
{
    uint64_t off = start;
    const char *fn = s->img->filename;
    while (off < end) {
        RETURN_ERR_IF(end - off < 8, -EUCLEAN,
                      "%s: qcow2: header extension at offset %" PRIu64 " is truncated", fn, off);
        uint32_t type = be32_get(buf + off);
        uint32_t len = be32_get(buf + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END)
            return 0;
        RETURN_ERR_IF(len > end - off, -EUCLEAN,
                      "%s: qcow2: header extension 0x%08x (length %u) at offset %" PRIu64
                      " runs past the header area",
                      fn, type, len, off - 8);
        const uint8_t *data = buf + off;
        switch (type) {
        case QCOW2_EXT_BACKING_FORMAT:
            RETURN_ERR_IF(len > QCOW2_MAX_BACKING_NAME, -EUCLEAN,
                          "%s: qcow2: backing format name too long (%u bytes)", fn, len);
            free(s->img->backing_format);
            s->img->backing_format = dup_string(data, len);
            if (!s->img->backing_format)
                return err_set(-ENOMEM, "out of memory");
            break;
        case QCOW2_EXT_DATA_FILE:
            RETURN_ERR_IF(len > 4096, -EUCLEAN, "%s: qcow2: data file name too long", fn);
            free(s->data_file_name);
            s->data_file_name = dup_string(data, len);
            if (!s->data_file_name)
                return err_set(-ENOMEM, "out of memory");
            break;
        case QCOW2_EXT_FEATURE_TABLE: {
            unsigned n = len / 48;
            free(s->features);
            s->features = calloc(n ? n : 1, sizeof *s->features);
            if (!s->features)
                return err_set(-ENOMEM, "out of memory");
            for (unsigned i = 0; i < n; i++) {
                s->features[i].type = data[i * 48];
                s->features[i].bit = data[i * 48 + 1];
                memcpy(s->features[i].name, data + i * 48 + 2, 46);
                s->features[i].name[46] = '\0';
            }
            s->nb_features = n;
            break;
        }
        default: /* bitmaps, crypto header pointer and unknown types: kept verbatim */
            if (add_preserved_ext(s, type, data, len) < 0)
                return -ENOMEM;
            break;
        }
        off += ALIGN_UP(len, 8);
    }
    return 0;
}

int
qcow2_header_parse(struct qcow2_state *s, const uint8_t *buf, size_t len, uint64_t file_size)
{
    struct qcow2_header *h = &s->h;
    const char *fn = s->img->filename;

    RETURN_ERR_IF(len < QCOW2_V2_HEADER_LEN, -EUCLEAN,
                  "%s: qcow2: header truncated (file has %zu bytes, need %d)", fn, len,
                  QCOW2_V2_HEADER_LEN);
    RETURN_ERR_IF(be32_get(buf) != QCOW2_MAGIC, -EUCLEAN, "%s: qcow2: bad magic", fn);
    h->version = be32_get(buf + 4);
    RETURN_ERR_IF(h->version < 2 || h->version > 3, -ENOTSUP,
                  "%s: qcow2: unsupported qcow2 version %u", fn, h->version);
    h->backing_file_offset = be64_get(buf + 8);
    h->backing_file_size = be32_get(buf + 16);
    h->cluster_bits = be32_get(buf + 20);
    h->size = be64_get(buf + 24);
    h->crypt_method = be32_get(buf + 32);
    h->l1_size = be32_get(buf + 36);
    h->l1_table_offset = be64_get(buf + 40);
    h->refcount_table_offset = be64_get(buf + 48);
    h->refcount_table_clusters = be32_get(buf + 56);
    h->nb_snapshots = be32_get(buf + 60);
    h->snapshots_offset = be64_get(buf + 64);

    if (h->version == 2) {
        h->incompatible_features = h->compatible_features = h->autoclear_features = 0;
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_LEN;
        h->compression_type = 0;
    } else {
        RETURN_ERR_IF(len < QCOW2_V3_HEADER_LEN, -EUCLEAN,
                      "%s: qcow2: version 3 header truncated (file has %zu bytes)", fn, len);
        h->incompatible_features = be64_get(buf + 72);
        h->compatible_features = be64_get(buf + 80);
        h->autoclear_features = be64_get(buf + 88);
        h->refcount_order = be32_get(buf + 96);
        h->header_length = be32_get(buf + 100);
        RETURN_ERR_IF(h->header_length < QCOW2_V3_HEADER_LEN, -EUCLEAN,
                      "%s: qcow2: header too short (header_length %u)", fn, h->header_length);
        h->compression_type = h->header_length > 104 && len > 104 ? buf[104] : 0;
    }

    RETURN_ERR_IF(h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
                      h->cluster_bits > QCOW2_MAX_CLUSTER_BITS,
                  -EUCLEAN, "%s: qcow2: cluster_bits %u out of range (9..21)", fn,
                  h->cluster_bits);
    s->cluster_bits = h->cluster_bits;
    s->cluster_size = 1ull << h->cluster_bits;
    RETURN_ERR_IF(h->header_length > s->cluster_size, -EUCLEAN,
                  "%s: qcow2: header (%u bytes) exceeds the cluster size", fn, h->header_length);
    RETURN_ERR_IF(h->header_length > len, -EUCLEAN,
                  "%s: qcow2: header (%u bytes) is past the end of the file", fn,
                  h->header_length);
    RETURN_ERR_IF(len < MIN(s->cluster_size, file_size), -EUCLEAN,
                  "%s: qcow2: header cluster truncated", fn);
    if (h->header_length > QCOW2_HEADER_LEN_WRITTEN) {
        s->unknown_header_len = h->header_length - QCOW2_HEADER_LEN_WRITTEN;
        s->unknown_header_fields = malloc(s->unknown_header_len);
        if (!s->unknown_header_fields)
            return err_set(-ENOMEM, "out of memory");
        memcpy(s->unknown_header_fields, buf + QCOW2_HEADER_LEN_WRITTEN, s->unknown_header_len);
    }

    RETURN_ERR_IF(h->refcount_order > 6, -EUCLEAN,
                  "%s: qcow2: reference count entry width too large (refcount_order %u)", fn,
                  h->refcount_order);
    RETURN_ERR_IF(h->crypt_method > 2, -EUCLEAN,
                  "%s: qcow2: unsupported encryption method %u", fn, h->crypt_method);

    /* Extensions live between the header and the backing file name (or the
     * end of cluster 0). */
    uint64_t ext_end = s->cluster_size;
    if (h->backing_file_offset) {
        RETURN_ERR_IF(h->backing_file_offset > s->cluster_size, -EUCLEAN,
                      "%s: qcow2: invalid backing file name offset 0x%" PRIx64, fn,
                      h->backing_file_offset);
        RETURN_ERR_IF(h->backing_file_size > QCOW2_MAX_BACKING_NAME, -EUCLEAN,
                      "%s: qcow2: backing file name too long (%u bytes)", fn,
                      h->backing_file_size);
        RETURN_ERR_IF(h->backing_file_offset + h->backing_file_size > len, -EUCLEAN,
                      "%s: qcow2: backing file name is past the end of the file", fn);
        ext_end = MIN(ext_end, h->backing_file_offset);
    }
    if (ext_end > len)
        ext_end = len;
    uint64_t ext_start = h->version == 2 ? QCOW2_V2_HEADER_LEN : h->header_length;
    if (ext_start < ext_end) {
        int r = parse_extensions(s, buf, ext_start, ext_end);
        if (r < 0)
            return r;
    }
    if (h->backing_file_offset && h->backing_file_size) {
        s->img->backing_file = dup_string(buf + h->backing_file_offset, h->backing_file_size);
        if (!s->img->backing_file)
            return err_set(-ENOMEM, "out of memory");
        RETURN_ERR_IF(memchr(s->img->backing_file, '\0', h->backing_file_size), -EUCLEAN,
                      "%s: qcow2: backing file name contains a NUL byte", fn);
    }

    /* Feature bits. */
    uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown)
        return report_unknown_incompat(s, unknown);
    s->external_data = h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
    s->ext_l2 = h->incompatible_features & QCOW2_INCOMPAT_EXTL2;
    s->lazy_refcounts = h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS;
    s->data_file_raw = s->external_data && (h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
    if (h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) {
        RETURN_ERR_IF(h->header_length <= 104, -EUCLEAN,
                      "%s: qcow2: compression type bit set but no compression type field", fn);
        RETURN_ERR_IF(h->compression_type == 0, -EUCLEAN,
                      "%s: qcow2: compression type bit set with zlib compression", fn);
    } else {
        RETURN_ERR_IF(h->compression_type != 0, -EUCLEAN,
                      "%s: qcow2: compression type %u without the compression type bit", fn,
                      h->compression_type);
    }
    RETURN_ERR_IF(h->compression_type > 1, -ENOTSUP,
                  "%s: qcow2: unknown compression type %u", fn, h->compression_type);
    RETURN_ERR_IF(s->ext_l2 && s->cluster_bits < 14, -EUCLEAN,
                  "%s: qcow2: extended L2 entries need clusters of at least 16 KiB", fn);
    RETURN_ERR_IF(s->external_data && !s->data_file_name, -EINVAL,
                  "%s: qcow2: image uses an external data file but does not name it", fn);

    /* Geometry. */
    s->l2_entry_size = s->ext_l2 ? 16 : 8;
    s->l2_entries = s->cluster_size / s->l2_entry_size;
    s->l2_bits = log2_u64(s->l2_entries);
    s->subcluster_bits = s->ext_l2 ? s->cluster_bits - 5 : s->cluster_bits;
    s->subcluster_size = 1ull << s->subcluster_bits;
    s->refcount_order = h->refcount_order;
    s->refcount_bits = 1u << h->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - h->refcount_order;
    s->rb_entries = 1ull << s->rb_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->cluster_offset_mask = (1ull << s->csize_shift) - 1;

    /* Tables. */
    RETURN_ERR_IF(h->size > (1ull << 62), -EUCLEAN,
                  "%s: qcow2: virtual size %" PRIu64 " is too large", fn, h->size);
    uint64_t l2_coverage = s->cluster_size << s->l2_bits;
    uint64_t l1_needed = DIV_ROUND_UP(h->size, l2_coverage);
    RETURN_ERR_IF((uint64_t)h->l1_size * 8 > QCOW2_MAX_L1_BYTES, -EUCLEAN,
                  "%s: qcow2: L1 table is too large (%u entries)", fn, h->l1_size);
    RETURN_ERR_IF(h->l1_size < l1_needed, -EUCLEAN,
                  "%s: qcow2: L1 table is too small (%u entries for %" PRIu64 " needed)", fn,
                  h->l1_size, l1_needed);
    int r = validate_table(s, "L1 table", h->l1_table_offset, (uint64_t)h->l1_size * 8,
                           QCOW2_MAX_L1_BYTES, file_size);
    if (r < 0)
        return r;
    RETURN_ERR_IF(h->refcount_table_clusters == 0, -EUCLEAN,
                  "%s: qcow2: image does not contain a reference count table", fn);
    r = validate_table(s, "refcount table", h->refcount_table_offset,
                       (uint64_t)h->refcount_table_clusters << s->cluster_bits,
                       QCOW2_MAX_REFTABLE_BYTES, file_size);
    if (r < 0)
        return r;
    uint64_t rt_end = h->refcount_table_offset +
                      ((uint64_t)h->refcount_table_clusters << s->cluster_bits);
    uint64_t l1_end = h->l1_table_offset + (uint64_t)h->l1_size * 8;
    RETURN_ERR_IF(h->l1_size && h->l1_table_offset < rt_end &&
                      h->refcount_table_offset < l1_end,
                  -EUCLEAN, "%s: qcow2: L1 table overlaps the refcount table", fn);
    RETURN_ERR_IF(h->nb_snapshots > QCOW2_MAX_SNAPSHOTS, -EUCLEAN,
                  "%s: qcow2: too many snapshots (%u)", fn, h->nb_snapshots);
    RETURN_ERR_IF(h->nb_snapshots && !IS_ALIGNED(h->snapshots_offset, s->cluster_size), -EUCLEAN,
                  "%s: qcow2: snapshot table offset 0x%" PRIx64 " is not cluster aligned", fn,
                  h->snapshots_offset);
    return 0;
}

/* Encode the fixed header fields (the first 112 bytes, or 72 for v2). */
static void
encode_fields(const struct qcow2_state *s, uint8_t *buf)
{
    const struct qcow2_header *h = &s->h;
    be32_put(buf, QCOW2_MAGIC);
    be32_put(buf + 4, h->version);
    be64_put(buf + 8, h->backing_file_offset);
    be32_put(buf + 16, h->backing_file_size);
    be32_put(buf + 20, h->cluster_bits);
    be64_put(buf + 24, h->size);
    be32_put(buf + 32, h->crypt_method);
    be32_put(buf + 36, h->l1_size);
    be64_put(buf + 40, h->l1_table_offset);
    be64_put(buf + 48, h->refcount_table_offset);
    be32_put(buf + 56, h->refcount_table_clusters);
    be32_put(buf + 60, h->nb_snapshots);
    be64_put(buf + 64, h->snapshots_offset);
    if (h->version >= 3) {
        be64_put(buf + 72, h->incompatible_features);
        be64_put(buf + 80, h->compatible_features);
        be64_put(buf + 88, h->autoclear_features);
        be32_put(buf + 96, h->refcount_order);
        be32_put(buf + 100, h->header_length);
        buf[104] = h->compression_type;
    }
}

/* Append one extension at *@off; false if it does not fit below @limit. */
static bool
put_ext(uint8_t *buf, uint64_t *off, uint64_t limit, uint32_t type, const void *data,
        uint32_t len)
{
    uint64_t need = 8 + ALIGN_UP(len, 8);
    if (*off + need > limit)
        return false;
    be32_put(buf + *off, type);
    be32_put(buf + *off + 4, len);
    memcpy(buf + *off + 8, data, len);
    *off += need;
    return true;
}

int
qcow2_header_encode(struct qcow2_state *s, uint8_t *buf)
{
    struct qcow2_header *h = &s->h;
    const uint64_t cs = s->cluster_size;
    const char *fn = s->img ? s->img->filename : "";
    memset(buf, 0, cs);

    uint64_t off;
    if (h->version >= 3) {
        h->header_length = QCOW2_HEADER_LEN_WRITTEN + s->unknown_header_len;
        if (s->unknown_header_len)
            memcpy(buf + QCOW2_HEADER_LEN_WRITTEN, s->unknown_header_fields,
                   s->unknown_header_len);
        off = h->header_length;
    } else {
        off = QCOW2_V2_HEADER_LEN;
    }

    const struct topcow_image *img = s->img;
    const char *bfmt = img ? img->backing_format : NULL;
    const char *bfile = img ? img->backing_file : NULL;
    bool ok = true;
    if (bfmt)
        ok = ok && put_ext(buf, &off, cs, QCOW2_EXT_BACKING_FORMAT, bfmt, (uint32_t)strlen(bfmt));
    if (s->data_file_name)
        ok = ok && put_ext(buf, &off, cs, QCOW2_EXT_DATA_FILE, s->data_file_name,
                           (uint32_t)strlen(s->data_file_name));
    for (unsigned i = 0; ok && i < s->nb_exts; i++)
        if (s->exts[i].type == QCOW2_EXT_CRYPTO)
            ok = put_ext(buf, &off, cs, s->exts[i].type, s->exts[i].data, s->exts[i].len);
    if (ok && h->version >= 3 && cs > 4096) {
        uint8_t table[ARRAY_SIZE(builtin_features) * 48];
        memset(table, 0, sizeof table);
        for (size_t i = 0; i < ARRAY_SIZE(builtin_features); i++) {
            table[i * 48] = builtin_features[i].type;
            table[i * 48 + 1] = builtin_features[i].bit;
            memcpy(table + i * 48 + 2, builtin_features[i].name,
                   strlen(builtin_features[i].name));
        }
        ok = put_ext(buf, &off, cs, QCOW2_EXT_FEATURE_TABLE, table, sizeof table);
    }
    for (unsigned i = 0; ok && i < s->nb_exts; i++)
        if (s->exts[i].type != QCOW2_EXT_CRYPTO)
            ok = put_ext(buf, &off, cs, s->exts[i].type, s->exts[i].data, s->exts[i].len);
    ok = ok && off + 8 <= cs;
    off += 8; /* end marker: already zero */

    if (ok && bfile) {
        size_t blen = strlen(bfile);
        ok = blen <= QCOW2_MAX_BACKING_NAME && off + blen <= cs;
        if (ok) {
            memcpy(buf + off, bfile, blen);
            h->backing_file_offset = off;
            h->backing_file_size = (uint32_t)blen;
        }
    } else {
        h->backing_file_offset = 0;
        h->backing_file_size = 0;
    }
    RETURN_ERR_IF(!ok, -EINVAL,
                  "%s: qcow2: header extensions and backing file name do not fit in one "
                  "cluster (%" PRIu64 " bytes)", fn, cs);
    encode_fields(s, buf);
    return 0;
}

int
qcow2_header_write_field(struct qcow2_state *s, unsigned off, unsigned len)
{
    uint8_t buf[QCOW2_HEADER_LEN_WRITTEN];
    memset(buf, 0, sizeof buf);
    encode_fields(s, buf);
    if (off + len > sizeof buf)
        return err_set(-EINVAL, "internal: header field out of range");
    s->deps_unsynced = true;
    return io_pwrite(s->file, buf + off, len, off);
}
