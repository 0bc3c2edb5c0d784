// SPDX-License-Identifier: MIT
/* Test-only io backends, built into the internal library only (never the
 * shared one): a crash simulator that keeps unflushed operations volatile
 * and models a power cut, and a fault injector that fails the Nth call of a
 * chosen kind.  Both wrap a lower backend they borrow: the caller keeps the
 * lower backend open until the wrapper is closed, and closes it afterwards. */
#ifndef TOPCOW_IO_TEST_H
#define TOPCOW_IO_TEST_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"

/* ---- crash simulation (io-crash.c) ---------------------------------------- */

/* How a power cut treats each operation logged since the last flush.  Each
 * operation is independently kept whole (keep_pct), torn (tear_pct: each of
 * its 512-byte sectors survives with probability sector_pct; only operations
 * spanning more than one sector can tear) or dropped (the rest).  Survivors
 * reach the durable store in a random order, so any sector may end up with
 * any value it held since the last flush, or its value at that flush.
 * Percentages are 0..100 and keep_pct + tear_pct <= 100. */
struct io_crash_model {
    unsigned keep_pct;
    unsigned tear_pct;
    unsigned sector_pct;
};
#define IO_CRASH_MODEL_DEFAULT                                                                     \
    {                                                                                              \
        .keep_pct = 40, .tear_pct = 30, .sector_pct = 50                                           \
    }

/* What io_crash_simulate() did, for diagnostics. */
struct io_crash_report {
    uint64_t ops; /* operations logged since the last flush */
    uint64_t kept, torn, dropped;
    uint64_t sectors_written; /* sectors that reached the durable store */
};

/* Wrap @durable (borrowed; it must outlive the new backend), whose contents
 * are the disk as of the last flush.  Writes, zero writes, discards and
 * truncates (and preallocations that extend the file, as truncates) are
 * kept in an ordered log in memory; reads see them (read-your-writes) and
 * get_size reflects them.  A successful flush applies the log to @durable in
 * order and flushes it.  Discard is modelled as zeroing (as the memory
 * backend does it).  The name is copied from @durable so messages name the
 * same file.  Thread model: serialized. */
int io_crash_open(struct io *durable, struct io **out);

/* Cut the power just before the @nth counted operation since open (1-based):
 * that operation and every later call fail with -EIO and have no effect.
 * Counted operations are writes, zero writes, discards, truncates,
 * preallocations and flushes with something to flush (not reads, nor
 * flushes of an empty log: a cut there is the same as one just after).  0 disarms.  Thread-safe. */
void io_crash_set_trigger(struct io *io, uint64_t nth);

/* Counted operations issued so far (including the refused one, if the
 * trigger fired).  Thread-safe. */
uint64_t io_crash_op_count(struct io *io);

/* Whether the power is off (the trigger fired or io_crash_simulate ran). */
bool io_crash_is_dead(struct io *io);

/* Model the power cut now: apply a random subset of the log, chosen by
 * @seed and @model (NULL: IO_CRASH_MODEL_DEFAULT), to the durable store,
 * flush it, and forget the log.  Afterwards the durable store is the disk the
 * next open sees, and this backend is dead: every call fails with -EIO until
 * it is closed.  The same @seed, model and log give the same result.
 * @rep (optional) receives statistics.  Returns 0, or -errno if the durable
 * store failed.  Call it with no I/O in flight on @io. */
int io_crash_simulate(struct io *io, uint64_t seed, const struct io_crash_model *model,
                      struct io_crash_report *rep);

/* ---- fault injection (io-faulty.c) ---------------------------------------- */

enum io_fault_kind {
    IO_FAULT_READ,
    IO_FAULT_WRITE, /* pwrite, pwritev */
    IO_FAULT_FLUSH,
    IO_FAULT_TRUNCATE,
    IO_FAULT_ZERO,    /* write_zeroes, preallocate */
    IO_FAULT_DISCARD, /* discard (advisory: callers may ignore its failure) */
    IO_FAULT_KINDS
};

#define IO_FAULT_PERSIST (1u << 0) /* fail every call of the kind from the Nth on */

/* Wrap @lower (borrowed; it must outlive the new backend).  Every call is
 * passed through and counted by kind; armed faults fail calls before they
 * reach @lower.  The name is copied from @lower so messages name the same
 * file.  Thread model: parallel (calls reach @lower concurrently, where its
 * own wrappers serialize them if it asked for that). */
int io_faulty_open(struct io *lower, struct io **out);

/* Fail the @nth call of @kind since open (1-based; with IO_FAULT_PERSIST,
 * every call from the @nth on) with @neg_errno (e.g. -EIO, -ENOSPC).  One
 * fault is armed at a time; arming replaces it.  Not concurrently with I/O
 * on @io. */
void io_faulty_arm(struct io *io, enum io_fault_kind kind, uint64_t nth, int neg_errno,
                   unsigned flags);
/* Remove the armed fault (later calls pass through).  Not concurrently with
 * I/O on @io. */
void io_faulty_disarm(struct io *io);

/* Calls of @kind since open, failed ones included.  Thread-safe. */
uint64_t io_faulty_calls(struct io *io, enum io_fault_kind kind);
/* Faults injected since open.  Thread-safe. */
uint64_t io_faulty_injected(struct io *io);

/* A short name for @kind ("read", "write", ...). */
const char *io_fault_kind_name(enum io_fault_kind kind);

#endif
