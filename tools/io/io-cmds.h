// SPDX-License-Identifier: MIT
/* Internal interface of `topcow io`, the qemu-io compatible interpreter:
 * the shell state shared by the entry point (cmd-io.c), the command table
 * (io-cmds.c) and the output and number helpers (io-output.c).  Output lines
 * follow qemu-io 7.2 byte for byte; stdout carries results, stderr carries
 * the messages qemu-io prints through its error reporter. */
#ifndef TOPCOW_TOOLS_IO_CMDS_H
#define TOPCOW_TOOLS_IO_CMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "topcow.h"

/* Largest single request qemu-io accepts: INT_MAX rounded down to 512. */
#define IO_MAX_REQUEST 2147483136ull

/* The interpreter's state.  One per process; commands run one at a time. */
struct io_shell {
    struct topcow_image *img; /* NULL when no image is open */
    char *path;               /* of the open image (for reopen) */
    char *format;             /* as requested at open; NULL: probed */
    unsigned flags;           /* TOPCOW_OPEN_* the image was opened with */
    bool discard;             /* -d unmap (default): discard requests reach the image */
    bool quit;                /* set by `quit`: stop reading commands */
    uint8_t *buf;             /* scratch I/O buffer reused across commands */
    size_t buf_size;
};

/* How to open an image: the union of qemu-io's main options and `open`'s. */
struct io_open_req {
    const char *format;  /* NULL: probe */
    unsigned flags;      /* TOPCOW_OPEN_* */
    bool discard;        /* see struct io_shell */
    const char *snapshot; /* open read-only at this internal snapshot (-l), or NULL */
};

/* ---- cmd-io.c ------------------------------------------------------------ */

/* Open @path into @sh (which must have no image open).  On failure print
 * "topcow: can't open device PATH: why" and return -errno. */
int io_shell_open(struct io_shell *sh, const char *path, const struct io_open_req *req);

/* Close the open image, if any.  Returns 0 or the -errno of the final flush. */
int io_shell_close(struct io_shell *sh);

/* Parse a discard mode: ignore/off -> false, unmap/on -> true.  0 or -1. */
int io_parse_discard_mode(const char *mode, bool *discard);

/* ---- io-cmds.c ----------------------------------------------------------- */

/* One command of the language.  The dispatcher checks that an image is open
 * (unless @nofile_ok), the operand count and, for @writes, that the image is
 * writable, before calling @fn with argv[0] = the name as typed.  @fn returns
 * 0, or a negative errno when the command failed. */
struct io_cmd {
    const char *name;
    const char *altname; /* one-letter alias, or NULL */
    int (*fn)(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
    int argmin, argmax;  /* operands after the name; argmax -1: unlimited */
    bool nofile_ok;
    bool writes;
    const char *args;    /* synopsis; NULL prints none, "" an empty one */
    const char *oneline;
    const char *help;    /* extended help for `help NAME`, or NULL */
};

/* Split @line on spaces (in place) and run it as one command.  Returns 0 on
 * success, a negative value if the command failed (qemu-io's exit status 1).
 * Blank lines succeed and do nothing. */
int io_run_line(struct io_shell *sh, char *line);

/* Print @c's usage line (after an option or operand error); returns -EINVAL. */
int io_usage(const struct io_cmd *c);

/* Reset getopt(3) for a new command's argv.  Options are permuted as glibc
 * does by default, as in qemu-io ("read 0 1 -q" is quiet). */
void io_getopt_reset(void);

/* ---- io-rw.c: the data commands ------------------------------------------ */

int io_cmd_read(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_readv(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_aio_read(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_write(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_writev(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_aio_write(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_discard(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_alloc(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);
int io_cmd_map(struct io_shell *sh, const struct io_cmd *self, int argc, char **argv);


/* ---- io-output.c --------------------------------------------------------- */

/* Report a failed command as qemu-io does: "WHAT failed: strerror" on
 * stdout.  Metadata corruption (-EUCLEAN) also gets the library's
 * description on stderr, as QEMU prints its corruption event. */
void io_report_failure(const char *what, int r);

/* qemu-io's cvtnum: a non-negative number, decimal or 0x-hex, with an optional
 * fraction and suffix b/k/M/G/T/P/E (case-insensitive, powers of 1024), at
 * most INT64_MAX.  Returns 0, -EINVAL (garbage) or -ERANGE (too large).  A
 * suffix on a hex number is accepted with a deprecation warning on stderr. */
int io_cvtnum(const char *s, uint64_t *out);

/* Print the "Parsing error: ..." line for a failed io_cvtnum(). */
void io_print_cvtnum_err(int err, const char *arg);

/* io_cvtnum() that prints the parse error itself. */
int io_parse_num(const char *arg, uint64_t *out);

/* Parse a -P pattern byte (0..255, C integer syntax).  Returns it, or -1
 * after printing "ARG is not a valid pattern byte". */
int io_parse_pattern(const char *arg);

/* Format a byte count or rate the way qemu-io does ("64 KiB", "1.500 MiB",
 * "339.747736 bytes") into @buf of @len bytes. */
void io_cvtstr(double value, char *buf, size_t len);

/* Print the two report lines ("read 512/512 bytes at offset 0" and the
 * timing line), or with @machine the one -C line. */
void io_print_report(const char *op, const struct timespec *elapsed, uint64_t offset,
                     uint64_t count, int ops, bool machine);

/* Hexdump @len bytes of @buf, labelled from guest offset @offset. */
void io_dump_buffer(const uint8_t *buf, uint64_t offset, size_t len);

/* @end - @start, for timing a request. */
struct timespec io_elapsed(const struct timespec *start, const struct timespec *end);

#endif
