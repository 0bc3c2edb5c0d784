// SPDX-License-Identifier: MIT
/* topcow io: qemu-io's command line.
 *   io [-f FMT] [-r] [-U] [-n] [-t CACHE] [-d DISCARD] [-c CMD]... [FILE]
 * Opens FILE, then runs the -c commands in order, or with none the lines
 * of stdin (prompting only on a terminal).  Exits 1 if any command failed,
 * as qemu-io does.  This file also owns opening and closing the image for
 * the `open`, `close` and `reopen` commands. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "io-cmds.h"
#include "secrets.h"
#include "util.h"

int
io_parse_discard_mode(const char *mode, bool *discard)
{
    if (!strcmp(mode, "ignore") || !strcmp(mode, "off"))
        *discard = false;
    else if (!strcmp(mode, "unmap") || !strcmp(mode, "on"))
        *discard = true;
    else
        return -1;
    return 0;
}

int
io_shell_open(struct io_shell *sh, const char *path, const struct io_open_req *req)
{
    if ((req->flags & TOPCOW_OPEN_FORCE_SHARE) && !(req->flags & TOPCOW_OPEN_RDONLY)) {
        error_msg("can't open device %s: force-share=on can only be used with read-only images",
                  path);
        return -EINVAL;
    }
    struct image_spec spec;
    if (image_spec_parse(path, &spec) < 0)
        return -EINVAL;
    struct topcow_open_opts o = TOPCOW_OPEN_OPTS_INIT;
    o.format = spec.driver ? spec.driver : req->format;
    o.flags = req->flags;
    o.snapshot = req->snapshot;
    if (req->snapshot)
        o.flags |= TOPCOW_OPEN_RDONLY;
    if (spec.key_secret && !(o.secret = secret_lookup(spec.key_secret, &o.secret_len))) {
        image_spec_free(&spec);
        return -EINVAL;
    }
    struct topcow_image *img;
    bool locked;
    int r = open_or_prompt(&img, spec.path, &o, &locked);
    image_spec_free(&spec);
    if (r < 0) {
        const char *why = topcow_last_error();
        if (!strncmp(why, "open: ", 6))
            why += 6;
        error_msg("can't open device %s: %s", path, why);
        return r;
    }
    char *p = strdup(path);
    /* Reopening (open/reopen commands) goes through the same string. */
    char *f = req->format ? strdup(req->format) : NULL;
    if (!p || (req->format && !f)) {
        free(p);
        topcow_image_close(img);
        error_msg("out of memory");
        return -ENOMEM;
    }
    if (locked) {
        /* qemu-io's refusal: the data cannot be read without the key. */
        error_msg("can't open device %s: Parameter 'encrypt.key-secret' is required for cipher",
                  path);
        free(p);
        free(f);
        topcow_image_close(img);
        return -ENOKEY;
    }
    sh->img = img;
    sh->path = p;
    sh->format = f;
    sh->flags = req->flags;
    sh->discard = req->discard;

    /* As qemu-io, warn about a probed raw image only when it is writable. */
    if (!req->format && !(req->flags & TOPCOW_OPEN_RDONLY)) {
        struct topcow_info info = { .struct_size = sizeof info };
        if (topcow_image_get_info(img, &info) == 0 && !strcmp(info.format, "raw"))
            fprintf(stderr, "WARNING: Image format was not specified for '%s' and probing "
                            "guessed raw.\n"
                            "         Specify the 'raw' format explicitly to avoid probing.\n",
                    path);
    }
    return 0;
}

int
io_shell_close(struct io_shell *sh)
{
    if (!sh->img)
        return 0;
    int r = topcow_image_close(sh->img);
    sh->img = NULL;
    free(sh->path);
    free(sh->format);
    sh->path = sh->format = NULL;
    sh->flags = 0;
    return r;
}

static void
help(void)
{
    printf("usage: topcow io [OPTIONS]... [-c COMMAND]... [FILE]\n"
           "\n"
           "Run qemu-io commands on a disk image: the -c commands in order, or the\n"
           "lines of standard input.  Exits 1 if any command failed.\n"
           "\n"
           "  -c, --cmd COMMAND      run COMMAND (repeatable); 'help' lists the commands\n"
           "  -f, --format FMT       image format (qcow2, raw, vdi, ...); default: probe\n"
           "  -r, --read-only        open read-only\n"
           "  -l, --load-snapshot S  read the image as it was at internal snapshot S\n"
           "                         (id or name; read-only; a topcow extension)\n"
           "  -U, --force-share      take no lock (needs -r)\n"
           "  -n, --nocache          bypass the host page cache (same as -t none)\n"
           "  -t, --cache MODE       none, writeback, writethrough, directsync, unsafe\n"
           "  -d, --discard MODE     unmap (default) or ignore\n"
           "  -i, --aio MODE, -k, -m, -T, --object   accepted for compatibility; ignored\n"
           "  -h, --help             show this help\n"
           "  -V, --version          show the version\n");
}

/* Read commands from stdin until EOF or `quit`.  Returns false if any failed. */
static bool
run_stdin(struct io_shell *sh)
{
    bool ok = true, tty = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) {
            fputs("qemu-io> ", stdout);
            fflush(stdout);
        }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0)
            break;
        if (n > 0 && line[n - 1] == '\n')
            line[n - 1] = '\0';
        if (io_run_line(sh, line) < 0)
            ok = false;
        if (sh->quit)
            break;
    }
    free(line);
    return ok;
}

int
cmd_io(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "cmd", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "read-only", no_argument, NULL, 'r' },
        { "snapshot", no_argument, NULL, 's' },
        { "nocache", no_argument, NULL, 'n' },
        { "copy-on-read", no_argument, NULL, 'C' },
        { "misalign", no_argument, NULL, 'm' },
        { "native-aio", no_argument, NULL, 'k' },
        { "aio", required_argument, NULL, 'i' },
        { "cache", required_argument, NULL, 't' },
        { "discard", required_argument, NULL, 'd' },
        { "trace", required_argument, NULL, 'T' },
        { "force-share", no_argument, NULL, 'U' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "object", required_argument, NULL, 'O' },
        { "image-opts", no_argument, NULL, 'I' },
        { "load-snapshot", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    struct io_open_req req = { .discard = true };
    struct io_shell sh = { .discard = true };
    char **cmds = calloc((size_t)argc, sizeof *cmds);
    int ncmds = 0, c, status = 1;
    if (!cmds)
        die("out of memory");

    while ((c = getopt_long(argc, argv, "hVc:d:f:l:rsnCmki:t:T:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': cmds[ncmds++] = optarg; break;
        case 'f': req.format = optarg; break;
        case 'r': req.flags |= TOPCOW_OPEN_RDONLY; break;
        case 'l': req.snapshot = optarg; break;
        case 'n': req.flags = (req.flags & ~OPEN_CACHE_FLAGS) | TOPCOW_OPEN_DIRECT; break;
        case 'U': req.flags |= TOPCOW_OPEN_FORCE_SHARE; break;
        case 't':
            if (parse_cache_mode(optarg, &req.flags) < 0) {
                error_msg("Invalid cache option: %s", optarg);
                goto out;
            }
            break;
        case 'd':
            if (io_parse_discard_mode(optarg, &req.discard) < 0) {
                error_msg("Invalid discard option: %s", optarg);
                goto out;
            }
            break;
        case 'i':
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
                strcmp(optarg, "io_uring")) {
                error_msg("Invalid aio option: %s", optarg);
                goto out;
            }
            break;
        case 's':
            error_msg("snapshot mode (-s) is not supported");
            goto out;
        case 'C':
            error_msg("copy-on-read (-C) is not supported");
            goto out;
        case 'I':
            error_msg("--image-opts is not supported");
            goto out;
        case 'm': case 'k': case 'T': case 'O': break;
        case 'h':
            help();
            status = 0;
            goto out;
        case 'V':
            printf("topcow io version %s\n", topcow_version_string());
            status = 0;
            goto out;
        default:
            fprintf(stderr, "Try 'topcow io --help' for more information.\n");
            goto out;
        }
    }
    if (argc - optind > 1) {
        error_msg("io: too many arguments (one image at most)");
        goto out;
    }

    /* Thousands of commands may print two lines each: buffer fully unless a
     * person is watching. */
    if (!isatty(STDOUT_FILENO))
        setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    if (optind < argc && io_shell_open(&sh, argv[optind], &req) < 0)
        goto out;

    bool ok = true;
    if (ncmds == 0) {
        ok = run_stdin(&sh);
    } else {
        for (int i = 0; i < ncmds && !sh.quit; i++)
            if (io_run_line(&sh, cmds[i]) < 0)
                ok = false;
    }
    if (io_shell_close(&sh) < 0) {
        error_msg("close: %s", topcow_last_error());
        ok = false;
    }
    status = ok ? 0 : 1;
out:
    free(sh.buf);
    free(cmds);
    return status;
}
