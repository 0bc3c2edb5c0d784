// SPDX-License-Identifier: MIT
/* Shared plumbing of the fuzz targets: turning one fuzz input into an
 * open image on a size-capped memory backend, a private sandbox directory
 * for the external data files an input may name, and the checks every
 * target makes on what the library returns.  Used by the libFuzzer builds
 * and by replay.c in the normal test suite alike. */
#ifndef TOPCOW_FUZZ_COMMON_H
#define TOPCOW_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topcow.h"

/* Inputs larger than this are rejected before parsing: the seed images are
 * a few KiB to a few MiB (a VHDX's regions are 1 MiB-aligned, so its
 * smallest images are 4 to 8 MiB), and bigger inputs only slow fuzzing. */
#define FUZZ_MAX_INPUT (12u << 20)

/* The memory image may grow to this many bytes; writes beyond it fail with
 * -ENOSPC (a full disk), so a hostile L2 entry pointing at a host offset of
 * petabytes cannot make the harness allocate that much. */
#define FUZZ_MAX_FILE (32u << 20)

/* The one external data file present in the sandbox.  make-corpus.sh
 * creates its data_file images with this name so that the fuzzer starts
 * from inputs whose data file opens. */
#define FUZZ_DATA_FILE_NAME "fuzz-data.raw"

/* Open @data (@size bytes) as a qcow2 image in memory, without its backing
 * chain, read-only or read-write.  The image is named as a file in the
 * sandbox, so a relative data_file name resolves there.
 * Returns 0 and the image in *@imgp, or -1 when the input is rejected
 * (too large, empty, or naming a data file outside the sandbox) or does
 * not open (any -errno from the library: the expected outcome for most
 * inputs).  Close the image with topcow_image_close().  With FUZZ_VERBOSE
 * set in the environment, each open's outcome is printed on stderr. */
int fuzz_open(const uint8_t *data, size_t size, bool read_only, struct topcow_image **imgp);

/* Like fuzz_open, and in addition keep the bytes of the memory image when
 * it is closed: after topcow_image_close(), fuzz_take_closed_image() hands
 * them out (malloc'd; the caller frees) for a second open. */
int fuzz_open_keep(const uint8_t *data, size_t size, bool read_only, struct topcow_image **imgp);
uint8_t *fuzz_take_closed_image(size_t *size);

/* Like fuzz_open_keep, read-write, as `check -r` opens: a dirty image is not
 * repaired by the open and a corrupt one opens (TOPCOW_OPEN_NO_REPAIR |
 * TOPCOW_OPEN_ALLOW_CORRUPT). */
int fuzz_open_for_repair(const uint8_t *data, size_t size, struct topcow_image **imgp);

/* Open the bytes fuzz_take_closed_image() returned, read-only, keeping the
 * sandbox's data file as the first session left it.  Same returns as
 * fuzz_open; the size limit is FUZZ_MAX_FILE instead. */
int fuzz_reopen(const uint8_t *data, size_t size, struct topcow_image **imgp);

/* Open @data read-only as an image of @format ("vdi", "vmdk", "vpc",
 * "vhdx", ...) in memory, without its backing chain, named as a file in
 * the sandbox (so extent files a descriptor names resolve there).  VMDK
 * inputs whose descriptor text could name a file outside the sandbox are
 * rejected (the other formats open no file but the image without their
 * backing chain).  Same returns as fuzz_open. */
int fuzz_open_format(const char *format, const uint8_t *data, size_t size,
                     struct topcow_image **imgp);

/* Report a broken library contract (not a rejected input) and abort, so
 * that libFuzzer and the replay test both stop on it with @fmt's message. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Touch every byte of @s (NULL allowed), so a sanitizer sees a dangling or
 * unterminated string the library handed out. */
void fuzz_touch_string(const char *s);

/* topcow_image_get_info on an open image, every string it hands out
 * touched, the virtual size matching the handle's; fuzz_fail otherwise. */
void fuzz_get_info(struct topcow_image *img, struct topcow_info *info);

/* Reads of one input, bounded: at most max_calls reads and max_bytes bytes. */
struct fuzz_budget {
    unsigned calls, max_calls;
    uint64_t bytes, max_bytes;
};

/* Read [@off, @off+@len) into @buf (which holds @len bytes) if the budget
 * allows; with @want_zero the bytes must be zeros when the read succeeds
 * (block status said so), else fuzz_fail. */
void fuzz_read(struct topcow_image *img, struct fuzz_budget *b, uint8_t *buf, uint64_t off,
               uint64_t len, bool want_zero);

/* topcow_image_block_status at @off for at most @len bytes, with the
 * extent's contract checked (offset @off, length 1..@len; a file name that
 * can be read).  Returns 0 or -errno. */
int fuzz_block_status(struct topcow_image *img, uint64_t off, uint64_t len,
                      struct topcow_extent *ext);

/* Block status at a few unaligned places of a @disk-byte image (the middle,
 * the last byte, a third), each for at most 3 * @step bytes; extents that
 * hold data or zeros are appended to @found (up to @max, *@nfound of them
 * so far). */
void fuzz_probe_extents(struct topcow_image *img, uint64_t disk, uint64_t step,
                        struct topcow_extent *found, unsigned max, unsigned *nfound);

/* Whether @len bytes at @p are all zero. */
bool fuzz_is_zero(const uint8_t *p, size_t len);

#endif
