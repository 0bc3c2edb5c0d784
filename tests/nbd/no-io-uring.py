#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Run a command as on a kernel that refuses io_uring.

usage: no-io-uring.py COMMAND [ARGS...]

Installs a seccomp filter under which io_uring_setup(2) fails with ENOSYS
(what a kernel built without io_uring, or one with
kernel.io_uring_disabled=2, answers), then executes COMMAND.  x86_64 only:
on another architecture the filter lets everything through, and the test
using it sees io_uring work (its strace check then fails loudly)."""
import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
ENOSYS = 38
AUDIT_ARCH_X86_64 = 0xC000003E
NR_IO_URING_SETUP = 425
# Classic BPF opcodes.
LD_W_ABS = 0x20
JEQ_K = 0x15
RET_K = 0x06


def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    prog = b"".join([
        insn(LD_W_ABS, 0, 0, 4),                        # seccomp_data.arch
        insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(RET_K, 0, 0, SECCOMP_RET_ALLOW),
        insn(LD_W_ABS, 0, 0, 0),                        # seccomp_data.nr
        insn(JEQ_K, 0, 1, NR_IO_URING_SETUP),
        insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
        insn(RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ])
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = struct.pack("HxxxxxxP", len(prog) // 8, ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fbuf), 0, 0) != 0:
        sys.exit("no-io-uring: cannot install the seccomp filter: %s"
                 % os.strerror(ctypes.get_errno()))
    os.execvp(sys.argv[1], sys.argv[1:])


main()
