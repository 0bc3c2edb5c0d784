// SPDX-License-Identifier: MIT
/* topcow io: the command table, the dispatcher and the commands that are
 * not data transfers (info, length, flush, open, close, reopen, help, ...).
 * Output and messages follow qemu-io 7.2 as observed, including the order
 * in which argument errors are reported; help texts are topcow's own. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io-cmds.h"
#include "minmax.h"
#include "util.h"

int
io_usage(const struct io_cmd *c)
{
    if (c->args)
        printf("%s %s -- %s\n", c->name, c->args, c->oneline);
    else
        printf("%s -- %s\n", c->name, c->oneline);
    return -EINVAL;
}

void
io_getopt_reset(void)
{
    /* glibc: 0 reinitializes completely, permutation state included. */
    optind = 0;
    opterr = 1;
}

/* ---- help texts ----------------------------------------------------------- */

static const char read_help[] =
    "\n"
    " Reads LEN bytes at OFFSET of the open image.\n"
    "\n"
    " Example: 'read -v 512 1k' hexdumps one kilobyte starting at byte 512.\n"
    "\n"
    " -b, -- read the VM state area (not supported by topcow)\n"
    " -C, -- print the statistics as one machine-readable line\n"
    " -l, -- how many bytes to check against the pattern (needs -P)\n"
    " -p, -- accepted and ignored, for old scripts\n"
    " -P, -- check that every byte read equals the pattern byte\n"
    " -q, -- print no statistics\n"
    " -s, -- where in the buffer the pattern check starts (needs -P)\n"
    " -v, -- hexdump the data read\n"
    "\n";

static const char readv_help[] =
    "\n"
    " Reads the sum of the LEN operands at OFFSET into one buffer per LEN.\n"
    "\n"
    " Example: 'readv -v 512 1k 1k' hexdumps two kilobytes starting at byte 512.\n"
    "\n"
    " -C, -- print the statistics as one machine-readable line\n"
    " -P, -- check that every byte read equals the pattern byte\n"
    " -v, -- hexdump the data read\n"
    " -q, -- print no statistics\n"
    "\n";

static const char aio_read_help[] =
    "\n"
    " Like readv, but as an asynchronous request; topcow completes it before\n"
    " the next command.  A failed or mismatching request is reported but does\n"
    " not fail the command, as in qemu-io.\n"
    "\n"
    " -C, -- print the statistics as one machine-readable line\n"
    " -P, -- check that every byte read equals the pattern byte\n"
    " -i, -- account an invalid request instead of reading\n"
    " -v, -- hexdump the data read\n"
    " -q, -- print no statistics\n"
    "\n";

static const char write_help[] =
    "\n"
    " Writes LEN bytes at OFFSET of the open image, filled with the pattern\n"
    " byte (0xcd unless -P says otherwise).\n"
    "\n"
    " Example: 'write -P 0xaa 512 1k' writes one kilobyte of 0xaa at byte 512.\n"
    "\n"
    " -b, -- write the VM state area (not supported by topcow)\n"
    " -c, -- write compressed clusters: OFFSET and LEN whole clusters (LEN may end\n"
    "        at the end of the image); unlike qemu-io, allocated clusters may be\n"
    "        overwritten\n"
    " -f, -- force unit access: the data is durable when the command ends\n"
    " -n, -- with -z: fail rather than write explicit zeros\n"
    " -p, -- accepted and ignored, for old scripts\n"
    " -P, -- the pattern byte to write\n"
    " -s, -- take the data from a file (repeated to fill LEN)\n"
    " -C, -- print the statistics as one machine-readable line\n"
    " -q, -- print no statistics\n"
    " -u, -- with -z: the range may be deallocated\n"
    " -z, -- make the range read as zeros without transferring data\n"
    "\n";

static const char writev_help[] =
    "\n"
    " Writes the sum of the LEN operands at OFFSET from one buffer per LEN,\n"
    " filled with the pattern byte (0xcd unless -P says otherwise).\n"
    "\n"
    " Example: 'writev 512 1k 1k' writes two kilobytes at byte 512.\n"
    "\n"
    " -P, -- the pattern byte to write\n"
    " -C, -- print the statistics as one machine-readable line\n"
    " -f, -- force unit access: the data is durable when the command ends\n"
    " -q, -- print no statistics\n"
    "\n";

static const char aio_write_help[] =
    "\n"
    " Like writev, but as an asynchronous request; topcow completes it before\n"
    " the next command.  A failed request is reported but does not fail the\n"
    " command, as in qemu-io.\n"
    "\n"
    " -P, -- the pattern byte to write\n"
    " -C, -- print the statistics as one machine-readable line\n"
    " -f, -- force unit access: the data is durable when the command ends\n"
    " -i, -- account an invalid request instead of writing\n"
    " -q, -- print no statistics\n"
    " -u, -- with -z: the range may be deallocated\n"
    " -z, -- make the range read as zeros (one LEN only)\n"
    "\n";

static const char discard_help[] =
    "\n"
    " Tells the image that LEN bytes at OFFSET are no longer needed.  What they\n"
    " read as afterwards depends on the format: whole clusters of a qcow2 v3\n"
    " image read as zeros.  With -d ignore the request is dropped.\n"
    "\n"
    " Example: 'discard 64k 64k' discards the second 64 KiB cluster.\n"
    "\n"
    " -C, -- print the statistics as one machine-readable line\n"
    " -q, -- print no statistics\n"
    "\n";

static const char open_help[] =
    "\n"
    " Opens an image for the other commands.\n"
    "\n"
    " Example: 'open -r -o driver=raw disk.img' opens a raw image read-only.\n"
    "\n"
    " -r, -- open read-only\n"
    " -f, -- the image format (topcow extension; same as -o driver=FMT)\n"
    " -n, -- bypass the host page cache (same as -t none)\n"
    " -U, -- take no lock (needs -r)\n"
    " -t, -- cache mode: none, writeback, writethrough, directsync, unsafe\n"
    " -d, -- discard mode: unmap (default) or ignore\n"
    " -o, -- options: driver=FMT\n"
    " -k, -i -- AIO mode: accepted and ignored\n"
    " -s, -C -- snapshot and copy-on-read modes: not supported by topcow\n"
    "\n";

static const char reopen_help[] =
    "\n"
    " Closes and reopens the image with changed options.\n"
    "\n"
    " Example: 'reopen -r' makes the image read-only.\n"
    "\n"
    " -r, -- reopen read-only\n"
    " -w, -- reopen read-write\n"
    " -c, -- cache mode: none, writeback, writethrough, directsync, unsafe\n"
    " -o, -- driver options (not supported by topcow)\n"
    "\n";

/* ---- flush / truncate / length / info ------------------------------------ */

static int
cmd_flush(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)self, (void)argc, (void)argv;
    int r = topcow_image_flush(sh->img);
    if (r < 0)
        io_report_failure("flush", r);
    return r;
}

static int
cmd_truncate(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    int c, r;
    (void)sh;

    io_getopt_reset();
    while ((c = getopt(argc, argv, "m:")) != -1) {
        switch (c) {
        case 'm':
            if (strcmp(optarg, "off") && strcmp(optarg, "metadata") &&
                strcmp(optarg, "falloc") && strcmp(optarg, "full")) {
                error_msg("Invalid preallocation mode '%s'", optarg);
                return -EINVAL;
            }
            break;
        default: return io_usage(self);
        }
    }
    if (optind != argc - 1)
        return io_usage(self);
    uint64_t size;
    if ((r = io_parse_num(argv[optind], &size)) < 0)
        return r;
    error_msg("truncate is not supported yet");
    return -ENOTSUP;
}

static int
cmd_length(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)self, (void)argc, (void)argv;
    char s[64];
    io_cvtstr((double)topcow_image_size(sh->img), s, sizeof s);
    printf("%s\n", s);
    return 0;
}

static const char *
bool_str(bool b)
{
    return b ? "true" : "false";
}

static int
cmd_info(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)self, (void)argc, (void)argv;
    struct topcow_info info = { .struct_size = sizeof info };
    int r = topcow_image_get_info(sh->img, &info);
    if (r < 0) {
        error_msg("%s", topcow_last_error());
        return r;
    }
    char s[64];
    printf("format name: %s\n", info.format);
    io_cvtstr(info.cluster_size, s, sizeof s);
    printf("cluster size: %s\n", s);
    io_cvtstr((double)info.vm_state_offset, s, sizeof s);
    printf("vm state offset: %s\n", s);
    if (strcmp(info.format, "qcow2") != 0)
        return 0;
    /* The format-specific block, in the order qemu-io prints its fields. */
    printf("Format specific information:\n");
    printf("    compat: %s\n", info.compat == 2 ? "0.10" : "1.1");
    printf("    compression type: %s\n",
           info.compression_type == TOPCOW_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (info.compat != 2)
        printf("    lazy refcounts: %s\n", bool_str(info.lazy_refcounts));
    printf("    refcount bits: %u\n", info.refcount_bits);
    if (info.compat == 2)
        return 0;
    if (info.data_file) {
        printf("    data file: %s\n", info.data_file);
        printf("    data file raw: %s\n", bool_str(info.data_file_raw));
    }
    printf("    corrupt: %s\n", bool_str(info.corrupt));
    printf("    extended l2: %s\n", bool_str(info.extended_l2));
    return 0;
}

/* ---- open / close / reopen ----------------------------------------------- */

static int
cmd_open(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    struct io_open_req req = { .discard = true };
    struct optlist ol = { 0 }; /* -o key=value: only driver= is understood */
    bool readonly = false, force_share = false;
    unsigned cache = 0;
    int c, r = -EINVAL;

    io_getopt_reset();
    while ((c = getopt(argc, argv, "rsCnkUt:d:o:i:f:")) != -1) {
        switch (c) {
        case 'r': readonly = true; break;
        case 's':
            error_msg("snapshot mode (-s) is not supported");
            r = -ENOTSUP;
            goto out;
        case 'C':
            error_msg("copy-on-read (-C) is not supported");
            r = -ENOTSUP;
            goto out;
        case 'n': cache = TOPCOW_OPEN_DIRECT; break;
        case 'k': break;
        case 'U': force_share = true; break;
        case 't':
            if (parse_cache_mode(optarg, &cache) < 0) {
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
        case 'o':
            if (optlist_parse(&ol, optarg) < 0)
                goto out;
            break;
        case 'i':
            if (strcmp(optarg, "threads") && strcmp(optarg, "native") &&
                strcmp(optarg, "io_uring")) {
                error_msg("Invalid aio option: %s", optarg);
                goto out;
            }
            break;
        case 'f': req.format = optarg; break;
        default: r = io_usage(self); goto out;
        }
    }
    if (optind != argc - 1) {
        r = io_usage(self);
        goto out;
    }
    const char *driver = optlist_get(&ol, "driver");
    if (driver)
        req.format = driver;
    const char *unknown = optlist_unused(&ol);
    if (unknown) {
        error_msg("open option '%s' is not supported", unknown);
        r = -ENOTSUP;
        goto out;
    }
    if (sh->img) {
        error_msg("file open already, try 'help close'");
        r = -EBUSY;
        goto out;
    }
    req.flags = cache | (readonly ? TOPCOW_OPEN_RDONLY : 0);
    if (force_share)
        req.flags |= TOPCOW_OPEN_FORCE_SHARE;
    r = io_shell_open(sh, argv[optind], &req);
out:
    optlist_free(&ol);
    return r;
}

static int
cmd_close(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)self, (void)argc, (void)argv;
    int r = io_shell_close(sh);
    if (r < 0)
        error_msg("close: %s", topcow_last_error());
    return r;
}

static int
cmd_reopen(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    unsigned flags = sh->flags;
    bool rw_given = false;
    int c;

    io_getopt_reset();
    while ((c = getopt(argc, argv, "c:o:rw")) != -1) {
        switch (c) {
        case 'c': {
            unsigned cache = flags;
            if (parse_cache_mode(optarg, &cache) < 0) {
                error_msg("Invalid cache option: %s", optarg);
                return -EINVAL;
            }
            flags = cache;
            break;
        }
        case 'o':
            error_msg("reopen options (-o) are not supported");
            return -ENOTSUP;
        case 'r':
        case 'w':
            if (rw_given) {
                error_msg("Only one -r/-w option may be given");
                return -EINVAL;
            }
            rw_given = true;
            if (c == 'r')
                flags |= TOPCOW_OPEN_RDONLY;
            else
                flags &= ~(TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_FORCE_SHARE);
            break;
        default: return io_usage(self);
        }
    }
    if (optind != argc)
        return io_usage(self);

    /* The write lock must go before a read-write open can take it again. */
    char *path = strdup(sh->path);
    char *format = sh->format ? strdup(sh->format) : NULL;
    if (!path || (sh->format && !format)) {
        free(path);
        error_msg("out of memory");
        return -ENOMEM;
    }
    unsigned old_flags = sh->flags;
    struct io_open_req req = { .format = format, .flags = flags, .discard = sh->discard };
    int r = io_shell_close(sh);
    if (r == 0)
        r = io_shell_open(sh, path, &req);
    if (r < 0 && !sh->img) {
        req.flags = old_flags;
        io_shell_open(sh, path, &req);
    }
    free(path);
    free(format);
    return r;
}

/* ---- misc ----------------------------------------------------------------- */

static int
cmd_quit(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)self, (void)argc, (void)argv;
    sh->quit = true;
    return 0;
}

static int
cmd_sleep(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)sh, (void)self, (void)argc;
    char *end;
    errno = 0;
    long ms = strtol(argv[1], &end, 0);
    if (errno || end == argv[1] || *end || ms < 0) {
        printf("%s is not a valid number\n", argv[1]);
        return -EINVAL;
    }
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 0;
}

static int
cmd_abort(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    /* A simulated crash: nothing is flushed, stdio included. */
    (void)sh, (void)self, (void)argc, (void)argv;
    abort();
}

static int
cmd_sigraise(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)sh, (void)self, (void)argc;
    uint64_t sig;
    int r = io_parse_num(argv[1], &sig);
    if (r < 0)
        return r;
    if (sig > NSIG) {
        printf("signal argument '%s' is too large to be a valid signal\n", argv[1]);
        return -EINVAL;
    }
    /* Unlike abort, the output so far is kept. */
    fflush(stdout);
    fflush(stderr);
    raise((int)sig);
    return 0;
}

/* blkdebug breakpoints: topcow has no blkdebug, so these fail as qemu-io's
 * do on an image without one. */
static int
cmd_break(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)sh, (void)self, (void)argc, (void)argv;
    printf("Could not set breakpoint: %s\n", strerror(ENOTSUP));
    return -ENOTSUP;
}

static int
cmd_remove_break(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)sh, (void)self, (void)argc;
    printf("Could not remove breakpoint %s: %s\n", argv[1], strerror(ENOTSUP));
    return -ENOTSUP;
}

static int
cmd_resume(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)sh, (void)self, (void)argc, (void)argv;
    printf("Could not resume request: %s\n", strerror(ENOTSUP));
    return -ENOTSUP;
}

static int
cmd_wait_break(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)sh, (void)self, (void)argc;
    printf("Could not wait for breakpoint %s: %s\n", argv[1], strerror(ENOTSUP));
    return -ENOTSUP;
}

static int cmd_help(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);

static int
cmd_aio_flush(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    /* Every aio request has completed already: nothing to wait for. */
    (void)sh, (void)self, (void)argc, (void)argv;
    return 0;
}

/* ---- the table ------------------------------------------------------------ */

/* Sorted by name: `help` lists it in this order. */
static const struct io_cmd cmds[] = {
    { "abort", NULL, cmd_abort, 0, 0, true, false, NULL,
      "simulate a program crash using abort(3)", NULL },
    { "aio_flush", NULL, cmd_aio_flush, 0, 0, false, false, NULL,
      "completes all outstanding aio requests", NULL },
    { "aio_read", NULL, io_cmd_aio_read, 2, -1, false, false,
      "[-Ciqv] [-P pattern] off len [len..]", "asynchronously reads a number of bytes",
      aio_read_help },
    { "aio_write", NULL, io_cmd_aio_write, 2, -1, false, true,
      "[-Cfiquz] [-P pattern] off len [len..]", "asynchronously writes a number of bytes",
      aio_write_help },
    { "alloc", "a", io_cmd_alloc, 1, 2, false, false, "offset [count]",
      "checks if offset is allocated in the file", NULL },
    { "break", NULL, cmd_break, 2, 2, false, false, "event tag",
      "sets a breakpoint on event and tags the stopped request as tag", NULL },
    { "close", "c", cmd_close, 0, 0, false, false, NULL, "close the current open file", NULL },
    { "discard", "d", io_cmd_discard, 2, -1, false, true, "[-Cq] off len",
      "discards a number of bytes at a specified offset", discard_help },
    { "flush", "f", cmd_flush, 0, 0, false, false, NULL, "flush all in-core file state to disk",
      NULL },
    { "help", "?", cmd_help, 0, 1, true, false, "[command]", "help for one or all commands",
      NULL },
    { "info", "i", cmd_info, 0, 0, false, false, NULL,
      "prints information about the current file", NULL },
    { "length", "l", cmd_length, 0, 0, false, false, NULL, "gets the length of the current file",
      NULL },
    { "map", NULL, io_cmd_map, 0, 0, false, false, "", "prints the allocated areas of a file",
      NULL },
    { "open", "o", cmd_open, 1, -1, true, false,
      "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]", "open the file specified by path",
      open_help },
    { "quit", "q", cmd_quit, 0, -1, true, false, NULL, "exit the program", NULL },
    { "read", "r", io_cmd_read, 2, -1, false, false,
      "[-abCqv] [-P pattern [-s off] [-l len]] off len",
      "reads a number of bytes at a specified offset", read_help },
    { "readv", NULL, io_cmd_readv, 2, -1, false, false, "[-Cqv] [-P pattern] off len [len..]",
      "reads a number of bytes at a specified offset", readv_help },
    { "remove_break", NULL, cmd_remove_break, 1, 1, false, false, "tag",
      "remove a breakpoint by tag", NULL },
    { "reopen", NULL, cmd_reopen, 0, -1, false, false, "[(-r|-w)] [-c cache] [-o options]",
      "reopens an image with new options", reopen_help },
    { "resume", NULL, cmd_resume, 1, 1, false, false, "tag",
      "resumes the request tagged as tag", NULL },
    { "sigraise", NULL, cmd_sigraise, 1, 1, true, false, "signal", "raises a signal", NULL },
    { "sleep", NULL, cmd_sleep, 1, 1, true, false, NULL,
      "waits for the given value in milliseconds", NULL },
    { "truncate", "t", cmd_truncate, 1, 3, false, true, "[-m prealloc_mode] off",
      "truncates the current file at the given offset", NULL },
    { "wait_break", NULL, cmd_wait_break, 1, 1, false, false, "tag",
      "waits for the suspension of a request", NULL },
    { "write", "w", io_cmd_write, 2, -1, false, true,
      "[-bcCfnquz] [-P pattern | -s source_file] off len",
      "writes a number of bytes at a specified offset", write_help },
    { "writev", NULL, io_cmd_writev, 2, -1, false, true, "[-Cfq] [-P pattern] off len [len..]",
      "writes a number of bytes at a specified offset", writev_help },
};

static const struct io_cmd *
find_cmd(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
        if (!strcmp(cmds[i].name, name) || (cmds[i].altname && !strcmp(cmds[i].altname, name)))
            return &cmds[i];
    return NULL;
}

static int
cmd_help(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv)
{
    (void)sh, (void)self;
    if (argc == 1) {
        for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
            io_usage(&cmds[i]);
        printf("\nUse 'help commandname' for extended help.\n");
        return 0;
    }
    const struct io_cmd *c = find_cmd(argv[1]);
    if (!c) {
        printf("command %s not found\n", argv[1]);
        return -EINVAL;
    }
    /* The synopsis names the command as typed, alias included. */
    if (c->args)
        printf("%s %s -- %s\n", argv[1], c->args, c->oneline);
    else
        printf("%s -- %s\n", argv[1], c->oneline);
    if (c->help)
        fputs(c->help, stdout);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------- */

int
io_run_line(struct io_shell *sh, char *line)
{
    /* qemu-io splits on single spaces only; empty fields vanish. */
    char *stackv[32];
    char **argv = stackv;
    size_t cap = ARRAY_SIZE(stackv);
    int argc = 0;
    for (char *tok, *p = line; (tok = strsep(&p, " ")) != NULL;) {
        if (!*tok)
            continue;
        if ((size_t)argc + 1 >= cap) {
            char **n = malloc(2 * cap * sizeof *n);
            if (!n) {
                error_msg("out of memory");
                if (argv != stackv)
                    free(argv);
                return -ENOMEM;
            }
            memcpy(n, argv, (size_t)argc * sizeof *n);
            if (argv != stackv)
                free(argv);
            argv = n;
            cap *= 2;
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    if (argc == 0)
        return 0;

    int r = -EINVAL;
    const struct io_cmd *c = find_cmd(argv[0]);
    int nargs = argc - 1;
    if (!c) {
        fprintf(stderr, "command \"%s\" not found\n", argv[0]);
    } else if (!c->nofile_ok && !sh->img) {
        fprintf(stderr, "no file open, try 'help open'\n");
    } else if (nargs < c->argmin || (c->argmax != -1 && nargs > c->argmax)) {
        if (c->argmax == -1)
            fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n",
                    nargs, argv[0], c->argmin);
        else if (c->argmin == c->argmax)
            fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n", nargs,
                    argv[0], c->argmin);
        else
            fprintf(stderr, "bad argument count %d to %s, expected between %d and %d arguments\n",
                    nargs, argv[0], c->argmin, c->argmax);
    } else if (c->writes && (sh->flags & (TOPCOW_OPEN_RDONLY | TOPCOW_OPEN_FORCE_SHARE))) {
        error_msg("Block node is read-only");
    } else {
        r = c->fn(sh, c, argc, argv);
    }
    if (argv != stackv)
        free(argv);
    return r;
}
