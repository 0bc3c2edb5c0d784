// SPDX-License-Identifier: MIT
/* Shared by the crash test and the fault-injection test: a model of what
 * every guest sector may read as after a crash, self-identifying sector
 * patterns, and the post-crash verification (topcow check, qemu-img check,
 * data).  All guest operations in these tests are 512-byte aligned, so the
 * model works per guest sector and a value is identified by its contents. */
#ifndef TOPCOW_CRASH_HARNESS_H
#define TOPCOW_CRASH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topcow.h"
#include "io.h"

#define H_SECTOR 512u

/* Sector values: zeros, the backing file's pattern, a write's pattern
 * (ids from H_VAL_FIRST_WRITE on), or something else. */
#define H_VAL_ZERO 0u
#define H_VAL_BACKING 1u
#define H_VAL_FIRST_WRITE 2u
#define H_VAL_GARBAGE UINT64_MAX
#define H_VAL_NONE (UINT64_MAX - 1) /* live model: no alternative value */
#define H_VAL_ANY (UINT64_MAX - 2)  /* live model: any pattern (not garbage) */

/* splitmix64: the tests' only source of randomness, so a seed replays. */
uint64_t h_rand(uint64_t *state);
/* Uniform in [0, n); n > 0. */
uint64_t h_below(uint64_t *state, uint64_t n);

/* Fill @nsectors sectors starting at guest sector @first with @value's
 * pattern (@value != H_VAL_ZERO; H_VAL_ZERO fills zeros). */
void h_fill(uint8_t *buf, uint64_t value, uint64_t first, uint64_t nsectors);
/* Which value the sector at guest sector @idx holds (H_VAL_GARBAGE if its
 * bytes match no pattern for that sector). */
uint64_t h_identify(const uint8_t *sector, uint64_t idx);

/* What the disk looks like before the workload and how operations act. */
struct h_guest {
    uint64_t size; /* virtual size, a multiple of 512 */
    uint64_t cluster_size;
    bool v3;               /* compat 1.1: discard leaves zeros; v2 discard is a no-op
                            * over a backing file and deallocates without one */
    uint64_t backing_size; /* 0: no backing file */
};

/* Whether guest sector @idx of the backing file holds data (else zeros). */
bool h_backing_has_data(uint64_t idx);
/* The value of guest sector @idx before any write. */
uint64_t h_initial(const struct h_guest *g, uint64_t idx);

/* Write a backing file of @size bytes at @path holding the backing pattern:
 * "raw", or "qcow2" (unallocated where the pattern is zeros). */
int h_make_backing(const char *path, const char *fmt, uint64_t size);

/* H_OPEN and H_PREALLOC change no guest data; they appear in traces.
 * H_CWRITE is a compressed write of whole clusters (value as H_WRITE). */
enum h_kind { H_WRITE, H_ZERO, H_DISCARD, H_FLUSH, H_READ, H_CLOSE, H_OPEN, H_PREALLOC,
              H_CWRITE };

/* One guest operation as issued.  seq_start/seq_end come from a logical
 * clock shared by all threads, taken just before the call and just after it
 * returns, so "a completed before b started" is a.seq_end < b.seq_start. */
struct h_op {
    enum h_kind kind;
    uint64_t off, len;
    uint64_t value; /* H_WRITE, H_CWRITE: the pattern id */
    unsigned flags; /* TOPCOW_WRITE_FUA, TOPCOW_ZERO_MAY_UNMAP */
    unsigned thread;
    uint64_t seq_start, seq_end;
    int result;                /* 0 or -errno, once done */
    bool done;                 /* the call returned */
    uint64_t io_start, io_end; /* crash test: counted io operations before and after */
};

const char *h_kind_name(enum h_kind k);
/* Print one operation on a line of stderr, prefixed by @prefix. */
void h_print_op(const char *prefix, const struct h_op *op);

/* Sectors [*first, *first + *count) that @op changes, and the value it
 * leaves in sector @idx of them.  Non-changing ops give *count = 0. */
void h_op_range(const struct h_guest *g, const struct h_op *op, uint64_t *first, uint64_t *count);
uint64_t h_op_value(const struct h_guest *g, const struct h_op *op, uint64_t idx);

/* The live model: the value each sector must read as now.  A failed
 * operation may or may not have changed a sector, so it leaves an
 * alternative (and after two, any pattern) acceptable until the next
 * successful operation on the sector. */
struct h_live {
    const struct h_guest *g;
    uint64_t nsectors;
    uint64_t *cur;
    uint64_t *alt; /* H_VAL_NONE, a value, or H_VAL_ANY */
};
int h_live_init(struct h_live *m, const struct h_guest *g);
void h_live_free(struct h_live *m);
/* Record a completed, successful operation. */
void h_live_apply(struct h_live *m, const struct h_op *op);
/* Record an operation that failed (it may have taken effect, or partly). */
void h_live_fail(struct h_live *m, const struct h_op *op);
/* Compare @buf (guest bytes at @off, @len) with the model; print the first
 * mismatch (with @who) and return false if any. */
bool h_live_check(const struct h_live *m, const uint8_t *buf, uint64_t off, uint64_t len,
                  const char *who);

/* What each sector may read as after a crash. */
struct h_allowed {
    const struct h_guest *g;
    uint64_t nsectors;
    uint64_t *base;  /* the value guaranteed by the last successful flush */
    uint32_t *n;     /* how many later candidates */
    uint64_t **vals; /* the candidates: values written since, or in flight */
};
/* Build from the operations of each thread in program order (@ops[t],
 * @nops[t]); sectors are owned by one thread each.  A write is guaranteed
 * when it succeeded and either completed before a successful flush (or
 * close) started, or was FUA. */
int h_allowed_build(struct h_allowed *a, const struct h_guest *g, struct h_op *const *ops,
                    const size_t *nops, unsigned nthreads);
void h_allowed_free(struct h_allowed *a);

/* ---- files and checkers ------------------------------------------------- */

/* Load a host file into a new memory backend named @name. */
int h_mem_load(const char *path, const char *name, struct io **out);
/* A new memory backend named @name holding a copy of @src's contents. */
int h_mem_copy(struct io *src, const char *name, struct io **out);
/* Write the contents of @mem to a host file (replacing it). */
int h_mem_save(struct io *mem, const char *path);

/* Whether qemu-img is on PATH. */
bool h_have_qemu_img(void);
/* Run `qemu-img check -f qcow2 @path`; return its exit status (-1 if it
 * could not run) and leave its output (truncated) in @out. */
int h_qemu_check(const char *path, char *out, size_t outlen);

/* Options for the post-crash verification. */
struct h_verify {
    const char *path; /* the crashed image */
    const char *tag;  /* prefix of every failure line ("seed 12") */
    const struct h_allowed *allowed;
    struct h_op *const *ops; /* per thread, to explain a bad sector */
    const size_t *nops;
    unsigned nthreads;
    bool run_qemu;   /* run qemu-img check */
    bool post_write; /* then write, flush, reopen and check again */
    uint64_t seed;   /* for the post-crash writes */
    bool verbose;
    uint64_t *compressed; /* optional: add the crashed image's compressed clusters */
};

/* Tests of LUKS-encrypted images set the passphrase every verification
 * open (and qemu-img check) uses; NULL: plain images. */
extern const char *h_secret;

/* The post-crash verification.  Returns 0 when the image is consistent
 * (topcow check and qemu-img check: no corruptions, leaks allowed; a dirty
 * lazy-refcounts image must open read-write and then check clean) and every
 * sector reads as the model allows; otherwise prints why on stderr and
 * returns 1. */
int h_verify_image(const struct h_verify *v);

#endif
