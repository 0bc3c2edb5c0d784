// SPDX-License-Identifier: MIT
/* topcow info: qemu-img info syntax and output.
 *   info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILE
 * Images are opened read-only.  Without --backing-chain only the named image
 * is opened (its backing file is reported, not read); with it the chain is
 * opened and every layer is described, top first.  The JSON is qemu-img
 * 7.2's ImageInfo, and the human text is what qemu-img prints from it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "json.h"
#include "snapshot-list.h"
#include "util.h"

static void
help(void)
{
    printf("usage: topcow info [-f FMT] [--output=human|json] [--backing-chain] [-U] FILENAME\n\n"
           "Show the size, format and format-specific properties of an image.\n\n"
           "  -f FMT             image format (default: probed)\n"
           "  --output=OFMT      'human' (default) or 'json', as qemu-img prints them\n"
           "  --backing-chain    describe every image of the backing chain, top first\n"
           "  -U, --force-share  open without taking the image lock\n");
}

/* The "encrypt" member of the qcow2 data (QCryptoBlockInfo), or NULL. */
static struct json *
encrypt_info(struct topcow_image *img)
{
    struct topcow_encryption e = { .struct_size = sizeof e };
    if (topcow_image_get_encryption(img, &e) < 0 || !e.format)
        return NULL;
    struct json *d = json_new_object();
    if (strcmp(e.format, "luks")) {
        json_set_string(d, "format", e.format);
        return d;
    }
    json_set_string(d, "ivgen-alg", e.ivgen_alg);
    if (e.ivgen_hash_alg[0])
        json_set_string(d, "ivgen-hash-alg", e.ivgen_hash_alg);
    json_set_string(d, "hash-alg", e.hash_alg);
    json_set_string(d, "cipher-alg", e.cipher_alg);
    json_set_string(d, "uuid", e.uuid);
    json_set_string(d, "format", "luks");
    json_set_string(d, "cipher-mode", e.cipher_mode);
    struct json *slots = json_new_array();
    for (unsigned i = 0; i < TOPCOW_LUKS_SLOTS; i++) {
        struct json *s = json_new_object();
        json_set_bool(s, "active", e.slots[i].active);
        if (e.slots[i].active)
            json_set_uint(s, "iters", e.slots[i].iters);
        json_set_uint(s, "key-offset", e.slots[i].key_offset);
        if (e.slots[i].active)
            json_set_uint(s, "stripes", e.slots[i].stripes);
        json_append(slots, s);
    }
    json_set(d, "slots", slots);
    json_set_uint(d, "payload-offset", e.payload_offset);
    json_set_uint(d, "master-key-iters", e.master_key_iters);
    return d;
}

/* The qcow2 "format-specific" data, members in QEMU's schema order. */
static struct json *
qcow2_specific(struct topcow_image *img, const struct topcow_info *info)
{
    struct json *d = json_new_object();
    bool v3 = info->compat >= 3;
    json_set_string(d, "compat", v3 ? "1.1" : "0.10");
    if (info->data_file) {
        json_set_string(d, "data-file", info->data_file);
        json_set_bool(d, "data-file-raw", info->data_file_raw);
    }
    if (v3) {
        json_set_bool(d, "extended-l2", info->extended_l2);
        json_set_bool(d, "lazy-refcounts", info->lazy_refcounts);
        json_set_bool(d, "corrupt", info->corrupt);
    }
    json_set_uint(d, "refcount-bits", info->refcount_bits);
    json_set_string(d, "compression-type",
                    info->compression_type == TOPCOW_COMPRESSION_ZSTD ? "zstd" : "zlib");
    struct json *enc = encrypt_info(img);
    if (enc)
        json_set(d, "encrypt", enc);
    return d;
}

/* The vmdk "format-specific" data (ImageInfoSpecificVmdk). */
static struct json *
vmdk_specific(const struct topcow_info *info)
{
    struct json *d = json_new_object();
    json_set_uint(d, "cid", info->vmdk_cid);
    json_set_uint(d, "parent-cid", info->vmdk_parent_cid);
    json_set_string(d, "create-type", info->vmdk_create_type ? info->vmdk_create_type : "");
    struct json *list = json_new_array();
    for (size_t i = 0; i < info->vmdk_nextents; i++) {
        const struct topcow_vmdk_extent *x = &info->vmdk_extents[i];
        struct json *e = json_new_object();
        if (x->compressed)
            json_set_bool(e, "compressed", true);
        json_set_uint(e, "virtual-size", x->virtual_size);
        json_set_string(e, "filename", x->filename);
        if (x->cluster_size)
            json_set_uint(e, "cluster-size", x->cluster_size);
        json_set_string(e, "format", x->format);
        json_append(list, e);
    }
    json_set(d, "extents", list);
    return d;
}

/* qemu-img's ImageInfo for one layer, members in schema order. */
static struct json *
image_info(struct topcow_image *img, const struct topcow_info *info)
{
    struct json *o = json_new_object();
    json_set_string(o, "filename", info->filename);
    json_set_string(o, "format", info->format);
    json_set_bool(o, "dirty-flag", info->dirty);
    json_set_uint(o, "actual-size", info->actual_size);
    json_set_uint(o, "virtual-size", info->virtual_size);
    if (info->cluster_size)
        json_set_uint(o, "cluster-size", info->cluster_size);
    if (info->encrypted)
        json_set_bool(o, "encrypted", true);
    if (info->backing_file) {
        json_set_string(o, "backing-filename", info->backing_file);
        if (info->full_backing_filename)
            json_set_string(o, "full-backing-filename", info->full_backing_filename);
        if (info->backing_format)
            json_set_string(o, "backing-filename-format", info->backing_format);
    }
    struct json *snaps = snapshot_table_json(img);
    if (snaps)
        json_set(o, "snapshots", snaps);
    if (!strcmp(info->format, "qcow2")) {
        struct json *fs = json_new_object();
        json_set_string(fs, "type", "qcow2");
        json_set(fs, "data", qcow2_specific(img, info));
        json_set(o, "format-specific", fs);
    } else if (!strcmp(info->format, "vmdk")) {
        struct json *fs = json_new_object();
        json_set_string(fs, "type", "vmdk");
        json_set(fs, "data", vmdk_specific(info));
        json_set(o, "format-specific", fs);
    }
    return o;
}

static void
print_human(struct topcow_image *img, const struct topcow_info *info)
{
    char buf[64];
    printf("image: %s\n", info->filename);
    printf("file format: %s\n", info->format);
    size_to_str(info->virtual_size, buf, sizeof buf);
    printf("virtual size: %s (%llu bytes)\n", buf, (unsigned long long)info->virtual_size);
    size_to_str(info->actual_size, buf, sizeof buf);
    printf("disk size: %s\n", buf);
    if (info->encrypted)
        printf("encrypted: yes\n");
    if (info->cluster_size)
        printf("cluster_size: %u\n", info->cluster_size);
    if (info->dirty)
        printf("cleanly shut down: no\n");
    if (info->backing_file) {
        printf("backing file: %s", info->backing_file);
        if (info->full_backing_filename &&
            strcmp(info->full_backing_filename, info->backing_file))
            printf(" (actual path: %s)", info->full_backing_filename);
        printf("\n");
    }
    if (info->backing_format)
        printf("backing file format: %s\n", info->backing_format);
    if (topcow_snapshot_count(img)) {
        printf("Snapshot list:\n");
        snapshot_table_print(stdout, img);
    }
    if (!strcmp(info->format, "qcow2")) {
        struct json *d = qcow2_specific(img, info);
        printf("Format specific information:\n");
        json_print_human(stdout, d, 1);
        json_free(d);
    } else if (!strcmp(info->format, "vmdk")) {
        struct json *d = vmdk_specific(info);
        printf("Format specific information:\n");
        json_print_human(stdout, d, 1);
        json_free(d);
    }
}

int
cmd_info(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256, OPT_CHAIN };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "backing-chain", no_argument, NULL, OPT_CHAIN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, chain = false;
    unsigned flags = TOPCOW_OPEN_RDONLY;
    int c;
    while ((c = getopt_long(argc, argv, "+hf:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'f': fmt = optarg; break;
        case 'U': flags |= TOPCOW_OPEN_FORCE_SHARE; break;
        case OPT_CHAIN: chain = true; break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json"))
                json = true;
            else if (strcmp(optarg, "human"))
                die("--output must be used with human or json as argument.");
            break;
        default: return 1;
        }
    }
    if (optind != argc - 1)
        die("Expecting one image file name");
    const char *path = argv[optind];

    /* Without --backing-chain the backing file is named, never opened. */
    struct topcow_image *top = open_image(path, fmt, flags | (chain ? 0 : TOPCOW_OPEN_NO_BACKING));
    if (!top)
        return 1;
    /* A single image prints as an object, a chain as an array. */
    struct json *list = json && chain ? json_new_array() : NULL;
    int ret = 0;
    for (struct topcow_image *img = top; img; img = topcow_image_backing(img)) {
        struct topcow_info info = { .struct_size = sizeof info };
        if (topcow_image_get_info(img, &info) < 0) {
            error_msg("%s: %s", path, topcow_last_error());
            ret = 1;
            break;
        }
        if (json) {
            struct json *o = image_info(img, &info);
            if (list) {
                json_append(list, o);
            } else {
                json_print(stdout, o);
                json_free(o);
            }
        } else {
            if (img != top)
                printf("\n");
            print_human(img, &info);
        }
    }
    if (list && ret == 0)
        json_print(stdout, list);
    json_free(list);
    topcow_image_close(top);
    return ret;
}
