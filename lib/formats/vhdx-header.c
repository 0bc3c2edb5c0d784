// SPDX-License-Identifier: MIT
/* The VHDX header section ([MS-VHDX] 2.2: the two headers, the region
 * table) and the metadata region (2.6: file parameters, sizes, page 83
 * data, the parent locator).  Everything is validated as it is decoded;
 * header updates write the copy that is not current first, as 2.2.2.1 asks. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "byteorder.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "error.h"
#include "minmax.h"
#include "vhdx-internal.h"

/* {2DC27766-F623-4200-9D64-115E9BFD4A08} */
const uint8_t vhdx_guid_bat[16] = { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                    0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };
/* {8B7CA206-4790-4B9A-B8FE-575F050F886E} */
const uint8_t vhdx_guid_metadata[16] = { 0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                         0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e };
/* {CAA16737-FA36-4D43-B3B6-33F0AA44E76B} */
const uint8_t vhdx_guid_file_parameters[16] = { 0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
                                                0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b };
/* {2FA54224-CD1B-4876-B211-5DBED83BF4B8} */
const uint8_t vhdx_guid_virtual_disk_size[16] = { 0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd,
                                                  0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe,
                                                  0xd8, 0x3b, 0xf4, 0xb8 };
/* {BECA12AB-B2E6-4523-93EF-C309E000C746} */
const uint8_t vhdx_guid_page83[16] = { 0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
                                       0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46 };
/* {8141BF1D-A96F-4709-BA47-F233A8FAAB5F} */
const uint8_t vhdx_guid_logical_sector[16] = { 0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
                                               0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f };
/* {CDA348C7-445D-4471-9CC9-E9885251C556} */
const uint8_t vhdx_guid_physical_sector[16] = { 0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
                                                0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56 };
/* {A8D35F2D-B30B-454D-ABF7-D3D84834AB0C} */
const uint8_t vhdx_guid_parent_locator[16] = { 0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                               0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c };
/* {B04AEFB7-D19E-4A81-B789-25B8E9445913}: the parent locator type of VHDX parents. */
const uint8_t vhdx_guid_vhdx_locator_type[16] = { 0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1,
                                                  0x81, 0x4a, 0xb7, 0x89, 0x25, 0xb8,
                                                  0xe9, 0x44, 0x59, 0x13 };

bool
vhdx_guid_is_zero(const uint8_t guid[16])
{
    static const uint8_t zero[16];
    return memcmp(guid, zero, 16) == 0;
}

void
vhdx_guid_generate(uint8_t guid[16])
{
    if (getrandom(guid, 16, 0) != 16) {
        /* No entropy source: uniqueness is all a write GUID needs. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t a = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        uint64_t b = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)guid;
        le64_put(guid, a);
        le64_put(guid + 8, b);
    }
    guid[7] = (uint8_t)((guid[7] & 0x0f) | 0x40); /* version 4 (Data3's high byte) */
    guid[8] = (uint8_t)((guid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

/* ---- headers (2.2.2) ------------------------------------------------------ */

/* Decode the header in @buf; false when its signature, checksum or
 * fields make it invalid (then the other copy is used). */
static bool
header_decode(const uint8_t *buf, struct vhdx_header *h)
{
    if (memcmp(buf, "head", 4) || !vhdx_checksum_ok(buf, VHDX_HEADER_SIZE, 4))
        return false;
    h->seq = le64_get(buf + 8);
    memcpy(h->file_write_guid, buf + 16, 16);
    memcpy(h->data_write_guid, buf + 32, 16);
    memcpy(h->log_guid, buf + 48, 16);
    h->log_version = le16_get(buf + 64);
    h->version = le16_get(buf + 66);
    h->log_length = le32_get(buf + 68);
    h->log_offset = le64_get(buf + 72);
    return true;
}

void
vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf)
{
    memset(buf, 0, VHDX_HEADER_SIZE);
    memcpy(buf, "head", 4);
    le64_put(buf + 8, h->seq);
    memcpy(buf + 16, h->file_write_guid, 16);
    memcpy(buf + 32, h->data_write_guid, 16);
    memcpy(buf + 48, h->log_guid, 16);
    buf[64] = (uint8_t)h->log_version;
    buf[65] = (uint8_t)(h->log_version >> 8);
    buf[66] = (uint8_t)h->version;
    buf[67] = (uint8_t)(h->version >> 8);
    le32_put(buf + 68, h->log_length);
    le64_put(buf + 72, h->log_offset);
    vhdx_checksum_set(buf, VHDX_HEADER_SIZE, 4);
}

int
vhdx_header_update(struct topcow_image *img, struct vhdx_state *s)
{
    uint8_t buf[VHDX_HEADER_SIZE];
    /* Both copies, the stale one first: each write is made durable before
     * the next, so one valid header with the newest state always exists. */
    for (int i = 0; i < 2; i++) {
        unsigned slot = s->hdr_slot ^ 1;
        s->hdr.seq++;
        vhdx_header_encode(&s->hdr, buf);
        int r = io_pwrite(img->file, buf, sizeof buf,
                          slot ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
        if (r == 0 && !(img->flags & TOPCOW_OPEN_UNSAFE))
            r = io_flush(img->file);
        if (r < 0)
            return r;
        s->hdr_slot = slot;
    }
    return 0;
}

/* Check the fields of the current header that the rest of the driver relies on. */
static int
header_validate(struct topcow_image *img, const struct vhdx_header *h, uint64_t file_size)
{
    RETURN_ERR_IF(h->version != 1, -ENOTSUP, "%s: vhdx: unsupported header version %u",
                  img->filename, h->version);
    if (vhdx_guid_is_zero(h->log_guid))
        return 0; /* the log is only read when it has something to replay */
    RETURN_ERR_IF(h->log_version != 0, -ENOTSUP, "%s: vhdx: unsupported log version %u",
                  img->filename, h->log_version);
    uint64_t end;
    RETURN_ERR_IF(h->log_length == 0 || !IS_ALIGNED(h->log_length, VHDX_MiB) ||
                      h->log_offset < VHDX_MiB || !IS_ALIGNED(h->log_offset, VHDX_MiB) ||
                      ADD_OVERFLOW(h->log_offset, (uint64_t)h->log_length, &end) ||
                      end > file_size,
                  -EUCLEAN,
                  "%s: vhdx: header: log at offset %" PRIu64 " length %" PRIu32
                  " is misaligned or outside the file (%" PRIu64 " bytes)",
                  img->filename, h->log_offset, h->log_length, file_size);
    return 0;
}

/* ---- region table (2.2.3) ------------------------------------------------- */

static int
regions_decode(struct topcow_image *img, struct vhdx_state *s, const uint8_t *rt,
               uint64_t file_size)
{
    uint32_t count = le32_get(rt + 8);
    RETURN_ERR_IF(count > 2047, -EUCLEAN, "%s: vhdx: region table has %" PRIu32 " entries",
                  img->filename, count);
    bool have_bat = false, have_meta = false;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = rt + 16 + 32 * (size_t)i;
        uint64_t off = le64_get(e + 16), end;
        uint32_t len = le32_get(e + 24);
        bool required = le32_get(e + 28) & 1;
        bool is_bat = !memcmp(e, vhdx_guid_bat, 16);
        bool is_meta = !memcmp(e, vhdx_guid_metadata, 16);
        if (!is_bat && !is_meta) {
            RETURN_ERR_IF(required, -ENOTSUP,
                          "%s: vhdx: region table entry %" PRIu32 " is a required region "
                          "of an unknown kind", img->filename, i);
            continue;
        }
        RETURN_ERR_IF((is_bat && have_bat) || (is_meta && have_meta), -EUCLEAN,
                      "%s: vhdx: region table names the %s region twice", img->filename,
                      is_bat ? "BAT" : "metadata");
        RETURN_ERR_IF(off < VHDX_MiB || !IS_ALIGNED(off, VHDX_MiB) || len == 0 ||
                          !IS_ALIGNED(len, VHDX_MiB) || ADD_OVERFLOW(off, (uint64_t)len, &end) ||
                          end > VHDX_MAX_FILE_OFFSET,
                      -EUCLEAN,
                      "%s: vhdx: region table: %s region at offset %" PRIu64 " length %" PRIu32
                      " is misaligned or out of range", img->filename,
                      is_bat ? "BAT" : "metadata", off, len);
        if (is_bat) {
            s->bat_off = off, s->bat_len = len, have_bat = true;
        } else {
            s->meta_off = off, s->meta_len = len, have_meta = true;
        }
    }
    RETURN_ERR_IF(!have_bat || !have_meta, -EUCLEAN, "%s: vhdx: region table has no %s region",
                  img->filename, have_bat ? "metadata" : "BAT");
    RETURN_ERR_IF(s->bat_off < s->meta_off + s->meta_len && s->meta_off < s->bat_off + s->bat_len,
                  -EUCLEAN, "%s: vhdx: the BAT and metadata regions overlap", img->filename);
    RETURN_ERR_IF(s->meta_off + VHDX_METADATA_TABLE_SIZE > file_size, -EUCLEAN,
                  "%s: vhdx: metadata region at offset %" PRIu64 " lies past the end of the "
                  "file (%" PRIu64 " bytes)", img->filename, s->meta_off, file_size);
    return 0;
}

int
vhdx_headers_load(struct topcow_image *img, struct vhdx_state *s)
{
    uint64_t file_size;
    int r = io_get_size(img->file, &file_size);
    if (r < 0)
        return r;
    RETURN_ERR_IF(file_size < VHDX_MiB, -EUCLEAN,
                  "%s: vhdx: file is too short (%" PRIu64 " bytes) to hold the header section",
                  img->filename, file_size);
    uint8_t id[8];
    if ((r = io_pread(img->file, id, sizeof id, VHDX_FILE_ID_OFF)) < 0)
        return r;
    RETURN_ERR_IF(memcmp(id, "vhdxfile", 8), -EUCLEAN, "%s: vhdx: no 'vhdxfile' signature",
                  img->filename);

    CLEANUP_FREE uint8_t *buf = malloc(VHDX_REGION_SIZE);
    if (!buf)
        return err_set(-ENOMEM, "out of memory");
    struct vhdx_header h[2];
    bool valid[2];
    for (int i = 0; i < 2; i++) {
        r = io_pread(img->file, buf, VHDX_HEADER_SIZE, i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF);
        if (r < 0)
            return r;
        valid[i] = header_decode(buf, &h[i]);
    }
    RETURN_ERR_IF(!valid[0] && !valid[1], -EUCLEAN,
                  "%s: vhdx: neither header is valid (bad signature or checksum)",
                  img->filename);
    s->hdr_slot = !valid[0] || (valid[1] && h[1].seq > h[0].seq);
    s->hdr = h[s->hdr_slot];
    if ((r = header_validate(img, &s->hdr, file_size)) < 0)
        return r;

    /* 2.2.3: two identical copies; the first valid one is used. */
    for (int i = 0; i < 2; i++) {
        r = io_pread(img->file, buf, VHDX_REGION_SIZE, i ? VHDX_REGION2_OFF : VHDX_REGION1_OFF);
        if (r < 0)
            return r;
        if (!memcmp(buf, "regi", 4) && vhdx_checksum_ok(buf, VHDX_REGION_SIZE, 4))
            return regions_decode(img, s, buf, file_size);
    }
    return err_set(-EUCLEAN, "%s: vhdx: neither region table is valid (bad signature or "
                   "checksum)", img->filename);
}

/* ---- metadata region (2.6) ------------------------------------------------ */

/* UTF-16LE @p[0..bytes) as a new UTF-8 string with backslashes turned into
 * slashes (Windows paths); NULL on ENOMEM or malformed text. */
static char *
utf16_to_path(const uint8_t *p, size_t bytes)
{
    size_t n = bytes / 2, o = 0;
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = le16_get(p + 2 * i);
        if (c >= 0xD800 && c < 0xDC00 && i + 1 < n) {
            uint32_t lo = le16_get(p + 2 * (i + 1));
            if (lo >= 0xDC00 && lo < 0xE000) {
                c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                i++;
            }
        }
        if (c == 0 || (c >= 0xD800 && c < 0xE000)) {
            free(out);
            return NULL;
        }
        if (c == '\\')
            c = '/';
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c < 0x800) {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | (c >> 12));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            /* 4 bytes for 2 UTF-16 units: within the n * 3 budget. */
            out[o++] = (char)(0xF0 | (c >> 18));
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = '\0';
    return out;
}

/* 2.6.2.6: the parent locator.  The parent is found through relative_path
 * (against the child's directory), then absolute_win32_path; the backing
 * format is always vhdx. */
static int
parent_locator_decode(struct topcow_image *img, const uint8_t *item, uint32_t len)
{
    RETURN_ERR_IF(len < 20, -EUCLEAN, "%s: vhdx: parent locator is too short (%" PRIu32
                  " bytes)", img->filename, len);
    RETURN_ERR_IF(memcmp(item, vhdx_guid_vhdx_locator_type, 16), -ENOTSUP,
                  "%s: vhdx: parent locator of an unknown type", img->filename);
    uint16_t count = le16_get(item + 18);
    RETURN_ERR_IF(20 + 12 * (uint64_t)count > len, -EUCLEAN,
                  "%s: vhdx: parent locator's %u entries do not fit in its %" PRIu32 " bytes",
                  img->filename, count, len);
    CLEANUP_FREE char *rel = NULL;
    CLEANUP_FREE char *abs = NULL;
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *e = item + 20 + 12 * (size_t)i;
        uint32_t koff = le32_get(e), voff = le32_get(e + 4);
        uint16_t klen = le16_get(e + 8), vlen = le16_get(e + 10);
        RETURN_ERR_IF((uint64_t)koff + klen > len || (uint64_t)voff + vlen > len || klen == 0 ||
                          vlen == 0 || (klen | vlen) & 1,
                      -EUCLEAN, "%s: vhdx: parent locator entry %u is out of bounds",
                      img->filename, i);
        CLEANUP_FREE char *key = utf16_to_path(item + koff, klen);
        RETURN_ERR_IF(!key, -EUCLEAN, "%s: vhdx: parent locator entry %u: bad key text",
                      img->filename, i);
        char **dst = !strcmp(key, "relative_path")         ? &rel
                     : !strcmp(key, "absolute_win32_path") ? &abs
                                                           : NULL;
        if (!dst)
            continue; /* parent_linkage, volume_path, ...: not needed to find the file */
        RETURN_ERR_IF(*dst, -EUCLEAN, "%s: vhdx: parent locator names %s twice",
                      img->filename, key);
        *dst = utf16_to_path(item + voff, vlen);
        RETURN_ERR_IF(!*dst, -EUCLEAN, "%s: vhdx: parent locator: bad %s text", img->filename,
                      key);
    }
    RETURN_ERR_IF(!rel && !abs, -EUCLEAN,
                  "%s: vhdx: parent locator has neither relative_path nor absolute_win32_path",
                  img->filename);
    /* backing_file is the name as stored; full_backing_filename the file found. */
    char *full = rel ? image_resolve_relative(img->filename, rel) : strdup(abs);
    if (full && rel && abs && access(full, F_OK) != 0 && access(abs, F_OK) == 0) {
        free(full);
        full = strdup(abs);
    }
    img->full_backing_filename = full;
    img->backing_file = strdup(rel ? rel : abs);
    img->backing_format = strdup("vhdx");
    if (!img->backing_file || !img->backing_format)
        return err_set(-ENOMEM, "out of memory");
    return 0;
}

/* Read metadata item [@off, @off+@len) of the region into a new buffer. */
static int
read_item(struct topcow_image *img, struct vhdx_state *s, uint32_t off, uint32_t len,
          uint8_t **out)
{
    *out = malloc(len ? len : 1);
    if (!*out)
        return err_set(-ENOMEM, "out of memory");
    int r = len ? vhdx_file_pread(img, s, *out, len, s->meta_off + off) : 0;
    if (r < 0) {
        free(*out);
        *out = NULL;
    }
    return r;
}

int
vhdx_metadata_load(struct topcow_image *img, struct vhdx_state *s)
{
    CLEANUP_FREE uint8_t *tab = malloc(VHDX_METADATA_TABLE_SIZE);
    if (!tab)
        return err_set(-ENOMEM, "out of memory");
    int r = vhdx_file_pread(img, s, tab, VHDX_METADATA_TABLE_SIZE, s->meta_off);
    if (r < 0)
        return r;
    RETURN_ERR_IF(memcmp(tab, "metadata", 8), -EUCLEAN,
                  "%s: vhdx: no metadata table signature at offset %" PRIu64, img->filename,
                  s->meta_off);
    uint16_t count = le16_get(tab + 10);
    RETURN_ERR_IF(count > 2047, -EUCLEAN, "%s: vhdx: metadata table has %u entries",
                  img->filename, count);
    enum { PARAMS, SIZE, PAGE83, LSEC, PSEC, PARENT, NITEMS };
    const uint8_t *const ids[NITEMS] = {
        vhdx_guid_file_parameters, vhdx_guid_virtual_disk_size, vhdx_guid_page83,
        vhdx_guid_logical_sector, vhdx_guid_physical_sector, vhdx_guid_parent_locator,
    };
    static const char *const names[NITEMS] = {
        "file parameters", "virtual disk size", "page 83 data",
        "logical sector size", "physical sector size", "parent locator",
    };
    static const uint32_t sizes[NITEMS] = { 8, 8, 16, 4, 4, 0 };
    uint32_t item_off[NITEMS] = { 0 }, item_len[NITEMS] = { 0 };
    bool found[NITEMS] = { false };
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *e = tab + 32 + 32 * (size_t)i;
        uint32_t off = le32_get(e + 16), len = le32_get(e + 20), flags = le32_get(e + 24);
        bool is_user = flags & 1, required = flags & 4;
        int k = -1;
        for (int j = 0; j < NITEMS && !is_user; j++)
            if (!memcmp(e, ids[j], 16))
                k = j;
        if (k < 0) {
            RETURN_ERR_IF(required, -ENOTSUP,
                          "%s: vhdx: metadata entry %u is a required item topcow does not "
                          "know", img->filename, i);
            continue;
        }
        RETURN_ERR_IF(found[k], -EUCLEAN, "%s: vhdx: metadata names the %s item twice",
                      img->filename, names[k]);
        RETURN_ERR_IF((len && off < VHDX_METADATA_TABLE_SIZE) || (uint64_t)off + len > s->meta_len ||
                          (sizes[k] && len != sizes[k]) || (k == PARENT && len > VHDX_MiB),
                      -EUCLEAN,
                      "%s: vhdx: metadata item %s at offset %" PRIu32 " length %" PRIu32
                      " is out of bounds or has the wrong size", img->filename, names[k], off, len);
        found[k] = true;
        item_off[k] = off;
        item_len[k] = len;
    }
    for (int k = 0; k < PARENT; k++)
        RETURN_ERR_IF(!found[k], -EUCLEAN, "%s: vhdx: metadata has no %s item", img->filename,
                      names[k]);

    uint8_t v[16];
    for (int k = 0; k < PARENT; k++) {
        if ((r = vhdx_file_pread(img, s, v, sizes[k], s->meta_off + item_off[k])) < 0)
            return r;
        switch (k) {
        case PARAMS:
            s->block_size = le32_get(v);
            s->leave_blocks_allocated = v[4] & 1;
            s->has_parent = v[4] & 2;
            break;
        case SIZE: s->disk_size = le64_get(v); break;
        case PAGE83: memcpy(s->page83, v, 16); break;
        case LSEC: s->logical_sector = le32_get(v); break;
        case PSEC: s->physical_sector = le32_get(v); break;
        }
    }
    RETURN_ERR_IF(s->block_size < VHDX_MiB || s->block_size > 256 * VHDX_MiB ||
                      (s->block_size & (s->block_size - 1)),
                  -EUCLEAN, "%s: vhdx: block size %" PRIu32 " is not a power of two in "
                  "1 MiB .. 256 MiB", img->filename, s->block_size);
    RETURN_ERR_IF(s->logical_sector != 512 && s->logical_sector != 4096, -EUCLEAN,
                  "%s: vhdx: logical sector size %" PRIu32 " is neither 512 nor 4096",
                  img->filename, s->logical_sector);
    RETURN_ERR_IF(s->physical_sector != 512 && s->physical_sector != 4096, -EUCLEAN,
                  "%s: vhdx: physical sector size %" PRIu32 " is neither 512 nor 4096",
                  img->filename, s->physical_sector);
    RETURN_ERR_IF(s->disk_size > VHDX_MAX_SIZE || !IS_ALIGNED(s->disk_size, s->logical_sector),
                  -EUCLEAN, "%s: vhdx: virtual disk size %" PRIu64 " is not a multiple of the "
                  "logical sector size up to 64 TiB", img->filename, s->disk_size);
    RETURN_ERR_IF(s->has_parent && !found[PARENT], -EUCLEAN,
                  "%s: vhdx: differencing image without a parent locator", img->filename);
    if (!s->has_parent)
        return 0;
    CLEANUP_FREE uint8_t *loc = NULL;
    if ((r = read_item(img, s, item_off[PARENT], item_len[PARENT], &loc)) < 0)
        return r;
    return parent_locator_decode(img, loc, item_len[PARENT]);
}
