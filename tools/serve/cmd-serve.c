// SPDX-License-Identifier: MIT
/* topcow serve: export an image over NBD, with qemu-nbd's command line.
 *   serve [-f FMT] [-r] [-s] [-l SNAPSHOT] [-t] [-e N] [-x NAME] [-D TEXT]
 *         [-k SOCKET | -b ADDR -p PORT] [--cache=MODE] [--aio=MODE]
 *         [--discard=MODE] [--detect-zeroes=MODE] [-A] [--fork] [--pid-file=F]
 *         [-U] [--tls-creds=ID] [--object ...] [--image-opts] FILE
 * The protocol lives in nbd-*.c; this file turns options into an open
 * image and a server configuration. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "nbd-server.h"
#include "nbd-tls.h"
#include "secrets.h"
#include "util.h"

static void
help(void)
{
    printf(
        "usage: topcow serve [OPTIONS] FILE\n\n"
        "Export a disk image over the NBD protocol (qemu-nbd compatible options).\n"
        "QEMU, nbdinfo, nbdcopy, fio and other NBD clients can then use it, e.g.\n"
        "  -drive file=nbd+unix:///?socket=SOCKET,format=raw\n\n"
        "Connection:\n"
        "  -k, --socket=PATH        listen on a Unix socket\n"
        "  -b, --bind=ADDR          TCP address to listen on (default 127.0.0.1)\n"
        "  -p, --port=PORT          TCP port (default 10809)\n"
        "  -e, --shared=N           serve up to N clients at once (default 1)\n"
        "  -t, --persistent         keep serving after the last client disconnects\n"
        "                           (without it the server exits then)\n"
        "  -x, --export-name=NAME   export name (default: the empty default name)\n"
        "  -D, --description=TEXT   export description shown to clients\n"
        "      --fork               go to the background once the socket is listening\n"
        "      --pid-file=PATH      write the server's process id to PATH\n"
        "      --tls-creds=ID       require TLS with the credentials of --object ID\n"
        "                           (tls-creds-x509,id=ID,dir=DIR or\n"
        "                           tls-creds-psk,id=ID,dir=DIR with DIR/keys.psk)\n"
        "      --tls=MODE           with --tls-creds: require (the default: clients\n"
        "                           that do not start TLS are refused), on (TLS\n"
        "                           offered, clear text allowed) or off (TLS not\n"
        "                           offered)\n"
        "      --object SPEC        secret,id=..,data=|file=.. or tls-creds-* objects\n"
        "Image:\n"
        "  -f, --format=FMT         image format (default: probed)\n"
        "  -r, --read-only          export read-only\n"
        "  -s, --snapshot           send writes to a temporary overlay, deleted at exit\n"
        "  -l, --load-snapshot=SN   export internal snapshot SN (id or name, or\n"
        "                           snapshot.id=ID / snapshot.name=NAME) read-only\n"
        "  -U, --force-share        open without the image lock (read-only only)\n"
        "      --image-opts         FILE is an option string (driver=,file.filename=,\n"
        "                           encrypt.key-secret=)\n"
        "  -n, --nocache            same as --cache=none\n"
        "      --cache=MODE         none, writeback (default), writethrough,\n"
        "                           directsync or unsafe (flushes do nothing)\n"
        "      --aio=MODE           threads (default), native or io_uring: with\n"
        "                           io_uring, the parts of one read that lie in\n"
        "                           several places of the file go to the kernel at\n"
        "                           once (pread where the kernel refuses io_uring);\n"
        "                           requests run on worker threads in every mode\n"
        "      --discard=MODE       ignore (default: TRIM is a no-op) or unmap\n"
        "                           (TRIM frees clusters, so the image stops growing)\n"
        "      --detect-zeroes=MODE off (default), on (all-zero writes become zero\n"
        "                           clusters), unmap (and free them, with --discard=unmap)\n"
        "  -A, --allocation-depth   offer the qemu:allocation-depth metadata context\n"
        "      --workers=N          worker threads per connection (default: 2 per CPU,\n"
        "                           4..16); 0 runs each request on the reading thread\n"
        "  -v, --verbose            log clients connecting and leaving on stderr\n"
        "\n"
        "SIGINT or SIGTERM stops the server cleanly: no new clients, requests already\n"
        "received finish, the image is flushed and closed clean.\n");
}

struct serve_args {
    const char *fmt, *snapshot, *tls_creds, *file, *export_name, *description;
    bool readonly, temp_overlay, force_share, allocation_depth, discard;
    enum detect_zeroes dz;
    unsigned open_flags;
    bool aio_uring;
    bool tls_mode_set;          /* --tls given */
    uint32_t min_block;
    struct nbd_server_opts so;
};

/* --cache / -n: the open flags, and the block size O_DIRECT needs. */
static int
parse_cache(const char *mode, struct serve_args *a)
{
    if (parse_cache_mode(mode, &a->open_flags) < 0) {
        error_msg("Invalid cache mode '%s'", mode);
        return -1;
    }
    a->min_block = (a->open_flags & TOPCOW_OPEN_DIRECT) ? 512 : 1;
    return 0;
}

static int
parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out,
            const char *what)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *s == '-' || *end || v < min || v > max) {
        error_msg("Invalid %s '%s' (expecting %lu..%lu)", what, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns optind, 0 after --help/--version, -1 after a message. */
static int
parse_args(int argc, char **argv, struct serve_args *a)
{
    enum { OPT_CACHE = 256, OPT_AIO, OPT_DISCARD, OPT_DZ, OPT_FORK, OPT_PIDFILE,
           OPT_TLSCREDS, OPT_TLS, OPT_WORKERS };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "socket", required_argument, NULL, 'k' },
        { "bind", required_argument, NULL, 'b' },
        { "port", required_argument, NULL, 'p' },
        { "shared", required_argument, NULL, 'e' },
        { "persistent", no_argument, NULL, 't' },
        { "export-name", required_argument, NULL, 'x' },
        { "description", required_argument, NULL, 'D' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "snapshot", no_argument, NULL, 's' },
        { "load-snapshot", required_argument, NULL, 'l' },
        { "force-share", no_argument, NULL, 'U' },
        { "nocache", no_argument, NULL, 'n' },
        { "allocation-depth", no_argument, NULL, 'A' },
        { "verbose", no_argument, NULL, 'v' },
        { "connect", required_argument, NULL, 'c' },
        { "disconnect", no_argument, NULL, 'd' },
        { "bitmap", required_argument, NULL, 'B' },
        { "cache", required_argument, NULL, OPT_CACHE },
        { "aio", required_argument, NULL, OPT_AIO },
        { "discard", required_argument, NULL, OPT_DISCARD },
        { "detect-zeroes", required_argument, NULL, OPT_DZ },
        { "fork", no_argument, NULL, OPT_FORK },
        { "pid-file", required_argument, NULL, OPT_PIDFILE },
        { "tls-creds", required_argument, NULL, OPT_TLSCREDS },
        { "tls", required_argument, NULL, OPT_TLS },
        { "workers", required_argument, NULL, OPT_WORKERS },
        { NULL, 0, NULL, 0 },
    };
    unsigned long v;
    a->so.shared = 1;
    a->export_name = "";
    a->min_block = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+hVk:b:p:e:tx:D:f:rsl:UnAvc:dB:", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 'h': help(); return 0;
        case 'V': printf("topcow serve %s\n", topcow_version_string()); return 0;
        case 'k': a->so.socket_path = optarg; break;
        case 'b': a->so.bind_addr = optarg; break;
        case 'p':
            if (parse_ulong(optarg, 1, 65535, &v, "port") < 0)
                return -1;
            a->so.port = optarg;
            break;
        case 'e':
            if (parse_ulong(optarg, 1, 1024, &v, "shared device number") < 0)
                return -1;
            a->so.shared = (unsigned)v;
            break;
        case 't': a->so.persistent = true; break;
        case 'x': a->export_name = optarg; break;
        case 'D': a->description = optarg; break;
        case 'f': a->fmt = optarg; break;
        case 'r': a->readonly = true; break;
        case 's': a->temp_overlay = true; break;
        case 'l': a->snapshot = optarg; a->readonly = true; break;
        case 'U': a->force_share = true; break;
        case 'n':
            if (parse_cache("none", a) < 0)
                return -1;
            break;
        case 'A': a->allocation_depth = true; break;
        case 'v': a->so.verbose = true; break;
        case 'c':
        case 'd':
            error_msg("the kernel NBD client is not driven by topcow: connect QEMU, "
                      "nbdfuse or nbd-client to the server instead");
            return -1;
        case 'B':
            error_msg("Bitmap '%s' is not found (this image has no dirty bitmaps)", optarg);
            return -1;
        case OPT_CACHE:
            if (parse_cache(optarg, a) < 0)
                return -1;
            break;
        case OPT_AIO:
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
                strcmp(optarg, "io_uring")) {
                error_msg("invalid aio mode '%s'", optarg);
                return -1;
            }
            a->aio_uring = !strcmp(optarg, "io_uring");
            break;
        case OPT_DISCARD:
            if (!strcmp(optarg, "unmap") || !strcmp(optarg, "on"))
                a->discard = true;
            else if (!strcmp(optarg, "ignore") || !strcmp(optarg, "off"))
                a->discard = false;
            else {
                error_msg("Invalid discard option '%s'", optarg);
                return -1;
            }
            break;
        case OPT_DZ:
            if (!strcmp(optarg, "off"))
                a->dz = DETECT_ZEROES_OFF;
            else if (!strcmp(optarg, "on"))
                a->dz = DETECT_ZEROES_ON;
            else if (!strcmp(optarg, "unmap"))
                a->dz = DETECT_ZEROES_UNMAP;
            else {
                error_msg("Invalid detect-zeroes mode '%s'", optarg);
                return -1;
            }
            break;
        case OPT_FORK: a->so.fork = true; break;
        case OPT_PIDFILE: a->so.pid_file = optarg; break;
        case OPT_TLSCREDS: a->tls_creds = optarg; break;
        case OPT_TLS:
            if (!strcmp(optarg, "require"))
                a->so.tls_mode = TLS_REQUIRE;
            else if (!strcmp(optarg, "on"))
                a->so.tls_mode = TLS_ALLOW;
            else if (!strcmp(optarg, "off"))
                a->so.tls_mode = TLS_OFF;
            else {
                error_msg("invalid --tls mode '%s' (require, on or off)", optarg);
                return -1;
            }
            a->tls_mode_set = true;
            break;
        case OPT_WORKERS:
            if (parse_ulong(optarg, 0, 256, &v, "worker count") < 0)
                return -1;
            a->so.workers = (unsigned)v;
            a->so.workers_set = true;
            break;
        default: return -1;
        }
    }
    if (optind != argc - 1) {
        error_msg(optind == argc ? "Not enough arguments" : "Too many arguments");
        return -1;
    }
    a->file = argv[optind];
    if (a->so.socket_path && (a->so.bind_addr || a->so.port)) {
        error_msg("-k is incompatible with -b and -p");
        return -1;
    }
    if (a->force_share && !a->readonly) {
        error_msg("--force-share (-U) requires --read-only (-r)");
        return -1;
    }
    if (a->temp_overlay && a->snapshot) {
        error_msg("-s and -l cannot be used together");
        return -1;
    }
    if (a->dz == DETECT_ZEROES_UNMAP && !a->discard) {
        error_msg("setting detect-zeroes to unmap is not allowed without setting discard "
                  "operation to unmap");
        return -1;
    }
    return optind;
}

/* The temporary overlay of -s: a qcow2 file in $TMPDIR backed by @path
 * (format @fmt), unlinked as soon as it is open.  Returns 0 or -1. */
static int
make_overlay(const char *path, const char *fmt, char *out, size_t outlen)
{
    char base[PATH_MAX];
    if (!realpath(path, base)) {
        error_msg("Could not open '%s': %s", path, strerror(errno));
        return -1;
    }
    const char *dir = getenv("TMPDIR");
    snprintf(out, outlen, "%s/topcow-serve-snapshot.XXXXXX", dir && *dir ? dir : "/var/tmp");
    int fd = mkstemp(out);
    if (fd < 0) {
        error_msg("Could not create a temporary overlay in '%s': %s", out, strerror(errno));
        return -1;
    }
    close(fd);
    struct topcow_create_opts co = TOPCOW_CREATE_OPTS_INIT;
    co.format = "qcow2";
    co.backing_file = base;
    co.backing_format = fmt;
    if (topcow_image_create(out, &co) < 0) {
        error_msg("Could not create a temporary overlay '%s': %s", out, topcow_last_error());
        unlink(out);
        return -1;
    }
    return 0;
}

static struct topcow_image *
open_export_image(struct serve_args *a)
{
    struct image_spec spec;
    if (image_spec_parse(a->file, &spec) < 0)
        return NULL;
    const char *fmt = spec.driver ? spec.driver : a->fmt;
    unsigned flags = a->open_flags | OPEN_NEED_KEY;
    if (a->aio_uring)
        flags |= TOPCOW_OPEN_IO_URING;
    if (a->readonly)
        flags |= TOPCOW_OPEN_RDONLY;
    if (a->force_share)
        flags |= TOPCOW_OPEN_FORCE_SHARE;
    struct topcow_image *img = NULL;
    if (a->temp_overlay) {
        /* The base's format, probed if not given, goes into the overlay. */
        struct topcow_image *base = open_image_path(
            spec.path, fmt, TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_FORCE_SHARE, spec.key_secret);
        char overlay[PATH_MAX];
        if (base) {
            struct topcow_info info = { .struct_size = sizeof info };
            topcow_image_get_info(base, &info);
            char *bfmt = strdup(info.format);
            topcow_image_close(base);
            if (bfmt && make_overlay(spec.path, bfmt, overlay, sizeof overlay) == 0) {
                img = open_image_path(overlay, "qcow2", flags, spec.key_secret);
                unlink(overlay);
            }
            free(bfmt);
        }
    } else if (a->snapshot) {
        char *id = snapshot_param_id(a->snapshot);
        if (!id)
            error_msg("Invalid snapshot '%s'", a->snapshot);
        else
            img = open_image_snapshot(spec.path, fmt, flags, spec.key_secret, id);
        free(id);
    } else {
        img = open_image_path(spec.path, fmt, flags, spec.key_secret);
    }
    image_spec_free(&spec);
    return img;
}

int
cmd_serve(int argc, char **argv)
{
    struct serve_args a = { 0 };
    int r = parse_args(argc, argv, &a);
    if (r <= 0)
        return r < 0 ? 1 : 0;
    if (!a.tls_mode_set)
        a.so.tls_mode = a.tls_creds ? TLS_REQUIRE : TLS_OFF;
    if (a.so.tls_mode != TLS_OFF && !a.tls_creds) {
        error_msg("--tls=%s needs --tls-creds", a.so.tls_mode == TLS_ALLOW ? "on" : "require");
        return 1;
    }
    if (a.tls_creds && a.so.tls_mode != TLS_OFF) {
        const char *type;
        struct optlist ol;
        if (tool_object_find(a.tls_creds, &type, &ol) < 0)
            return 1;
        r = nbd_tls_load(&a.so.tls, type, &ol);
        optlist_free(&ol);
        if (r < 0)
            return 1;
    }
    struct topcow_image *img = open_export_image(&a);
    if (!img) {
        nbd_tls_free(a.so.tls);
        return 1;
    }
    struct topcow_info info = { .struct_size = sizeof info };
    topcow_image_get_info(img, &info);
    struct nbd_export exp = {
        .sparse_reads = info.format && !strcmp(info.format, "qcow2"),
        .img = img,
        .name = a.export_name,
        .description = a.description,
        .size = topcow_image_size(img),
        .readonly = a.readonly,
        .discard = a.discard,
        .detect_zeroes = a.dz,
        .allocation_depth = a.allocation_depth,
        .multi_conn = a.so.shared > 1,
        .direct = (a.open_flags & TOPCOW_OPEN_DIRECT) != 0,
        .min_block = a.min_block,
        .pref_block = 4096,
    };
    int rc = nbd_serve(&exp, &a.so);
    if (topcow_image_close(img) < 0) {
        error_msg("closing '%s': %s", a.file, topcow_last_error());
        rc = 1;
    }
    nbd_tls_free(a.so.tls);
    return rc;
}
