// SPDX-License-Identifier: MIT
/* Overflow-checked arithmetic for sizes and offsets that come from untrusted
 * image metadata.  Each macro stores the (wrapped) result in *r and evaluates
 * to true when the mathematically exact result did not fit. */
#ifndef TOPCOW_COMMON_CHECKED_OVERFLOW_H
#define TOPCOW_COMMON_CHECKED_OVERFLOW_H

#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow((a), (b), (r))
#define SUB_OVERFLOW(a, b, r) __builtin_sub_overflow((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow((a), (b), (r))

#endif
