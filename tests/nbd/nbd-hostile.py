#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Hostile NBD clients against a running server (topcow serve or qemu-nbd).

    nbd-hostile.py layout          qemu-io commands that build the test image
    nbd-hostile.py final           qemu-io commands for the writes the cases make
    nbd-hostile.py size            the image size
    nbd-hostile.py ready SOCKET [EXPORT] [--pid PID]   wait until the server serves
    nbd-hostile.py run SOCKET [--readonly-socket SOCK2] [--readonly-export NAME]
                   [--pid PID] [--strict] [--only SUBSTRING] [--cycles N]
                   [--threads N] [-v]

`run` speaks the protocol of the NBD spec (fixed newstyle, options, structured
replies, transmission requests) over raw Unix sockets and runs one named case
after another.  Each case decides from the spec what the server may do (an
error reply, or a disconnect where the client broke a MUST) and fails on
anything else: a hang (every read has a timeout), wrong data, a malformed
reply, or a server that stops serving.  After every case a fresh client checks
that the server still answers correctly; with --pid the process must still be
alive, and the cases that send huge lengths check that the server did not
allocate them (VmSize, VmHWM in /proc/PID/status).  The last cases are a storm
of connect/disconnect cycles from concurrent clients and a full read-back.
Prints "FAIL case: reason" per failed case; exits 0 when all pass, else 1.

The image the server exports is SIZE bytes with the known content of REGIONS;
the cases write only WRITE_REGION (pattern 0x5a) and DISC_REGION (0x6b), whose
final content is given by `final`.  Every other write a case sends must fail,
and the case reads the region back to prove that it did not land.

What qemu-nbd 7.2 does (-t -e 64; all accepted, being within the spec):
  handshake: garbage, unknown or high client flag bits, a request in place
    of the flags, 2 bytes of flags -> disconnect; the client side of a GO
    handshake (STRUCTURED_REPLY, SET_META_CONTEXT, GO) cut after each of its
    90 bytes, then EOF -> close.
  option lengths 0xffffffff and 64 MiB (unknown option, GO, LIST, SET_META)
    -> disconnect at once, nothing allocated.  Wrong option magic, a request
    instead of an option, a request after OPT_INFO -> disconnect.
  unknown options (0, 4, 12, 0x1234, 2^31-1, 2^31, 2^32-1; 3000 in a row)
    -> ERR_UNSUP, the session goes on.  LIST or STRUCTURED_REPLY with data,
    STRUCTURED_REPLY twice -> ERR_INVALID; STARTTLS without TLS ->
    ERR_POLICY; ABORT with data -> ACK, close.
  GO/INFO with a name length past the data or 0xffffffff, data under 6
    bytes, fewer info requests than counted, a trailing byte, a 4097-byte
    name -> ERR_INVALID, the session goes on; unknown info requests are
    ignored; an unknown export -> ERR_UNKNOWN; EXPORT_NAME of one ->
    disconnect.  A GO and a READ in one packet: the READ is answered.
  SET_META_CONTEXT before STRUCTURED_REPLY -> ERR_INVALID (BLOCK_STATUS
    then EINVAL); LIST_META_CONTEXT before it -> ACK; query, count or
    export-name lengths past the option end -> ERR_INVALID; a query without
    a colon -> ACK; an unknown export -> ERR_UNKNOWN; 20000 queries -> ACK;
    an unknown namespace -> ACK with no context.
  transmission: wrong request magic, a request header cut short then EOF ->
    disconnect; unknown commands (8, 9, 12, 100, 0x7fff, 0xffff) -> EINVAL,
    the session goes on; unknown command flags, and flags of other commands
    -> EINVAL (a WRITE with one is not written); BLOCK_STATUS without
    structured replies or without a context -> EINVAL.
  offsets at or past the end, straddling it, wrapping 2^64, at 2^63, or
    0xffffffff bytes from near the end -> EINVAL for every command (writes
    included: the payload is read, nothing is written).  Length 0 ->
    success, except BLOCK_STATUS -> EINVAL.
  WRITE of 0xffffffff or 32 MiB+1 -> disconnect without reading the
    payload; READ of 0xffffffff (inside the export) or 32 MiB+1 -> EINVAL.
  20000 READs and no reply read: it stops reading after ~1800 and cleans up
    when the client goes.  A WRITE header (and part of its payload), then a
    close or EOF -> nothing written.
  DISC behind 32 requests: the writes are done, 20 to 31 replies come before
    the close; DISC with nonzero offset/length, requests after DISC -> close.
  read-only (-r): WRITE, TRIM, WRITE_ZEROES -> EINVAL where the spec says
    SHOULD EPERM (so --strict, which the wrapper passes for topcow, fails it).
  the storm (1000 cycles, 64 clients): no error; fds back, RSS 8 -> 13 MiB.
"""
import random
import socket
import struct
import sys
import threading
import time

# --- protocol constants (NBD proto.md) -------------------------------------
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
C_FIXED_NEWSTYLE = 1
C_NO_ZEROES = 2

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_PEEK, OPT_STARTTLS = 1, 2, 3, 4, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 9, 10

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR = 1 << 31
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = REP_ERR + 1, REP_ERR + 2, REP_ERR + 3
REP_ERR_PLATFORM, REP_ERR_TLS_REQD, REP_ERR_UNKNOWN = REP_ERR + 4, REP_ERR + 5, REP_ERR + 6
REP_ERR_SHUTDOWN, REP_ERR_BLOCK_SIZE_REQD, REP_ERR_TOO_BIG = REP_ERR + 7, REP_ERR + 8, REP_ERR + 9
REP_NAMES = {REP_ACK: 'ACK', REP_SERVER: 'SERVER', REP_INFO: 'INFO',
             REP_META_CONTEXT: 'META_CONTEXT', REP_ERR_UNSUP: 'ERR_UNSUP',
             REP_ERR_POLICY: 'ERR_POLICY', REP_ERR_INVALID: 'ERR_INVALID',
             REP_ERR_PLATFORM: 'ERR_PLATFORM', REP_ERR_TLS_REQD: 'ERR_TLS_REQD',
             REP_ERR_UNKNOWN: 'ERR_UNKNOWN', REP_ERR_SHUTDOWN: 'ERR_SHUTDOWN',
             REP_ERR_BLOCK_SIZE_REQD: 'ERR_BLOCK_SIZE_REQD', REP_ERR_TOO_BIG: 'ERR_TOO_BIG'}
ANY_REP_ERR = 'any option error'

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3

TF_HAS_FLAGS, TF_READ_ONLY, TF_SEND_FLUSH, TF_SEND_FUA = 1, 2, 4, 8
TF_SEND_TRIM, TF_SEND_WRITE_ZEROES, TF_SEND_DF = 32, 64, 128
TF_SEND_CACHE = 1 << 10

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 5, 6, 7
CMD_NAMES = {0: 'read', 1: 'write', 2: 'disc', 3: 'flush', 4: 'trim', 5: 'cache',
             6: 'write-zeroes', 7: 'block-status'}
CMDF_FUA, CMDF_NO_HOLE, CMDF_DF, CMDF_REQ_ONE, CMDF_FAST_ZERO = 1, 2, 4, 8, 16

REPLY_FLAG_DONE = 1
RT_NONE, RT_OFFSET_DATA, RT_OFFSET_HOLE, RT_BLOCK_STATUS = 0, 1, 2, 5
RT_ERROR, RT_ERROR_OFFSET = (1 << 15) + 1, (1 << 15) + 2

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108
ERR_NAMES = {EPERM: 'EPERM', EIO: 'EIO', ENOMEM: 'ENOMEM', EINVAL: 'EINVAL',
             ENOSPC: 'ENOSPC', EOVERFLOW: 'EOVERFLOW', ENOTSUP: 'ENOTSUP',
             ESHUTDOWN: 'ESHUTDOWN'}

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
U64 = (1 << 64) - 1

IO_TIMEOUT = 10.0       # any single read or write on a socket
CASE_TIMEOUT = 90.0     # a whole case (the storm has its own)

# --- the image ------------------------------------------------------------
# 4 GiB + 1 MiB, so that a request at offset 0 of length 0xffffffff lies
# inside the export and only its size makes it hostile.
SIZE = 4 * GiB + MiB
# (offset, length, byte, zero-write): the content written before the server
# starts; everything else reads as zeroes (unallocated).
REGIONS = [
    (0, MiB, 0xA1, False),
    (2 * MiB, MiB, 0x00, True),             # zero clusters
    (3 * MiB + 512, 4103, 0xB2, False),     # unaligned ends
    (16 * MiB, 8 * MiB, 0xC3, False),
    (4 * GiB - 4 * KiB, 8 * KiB, 0xE5, False),  # straddles 2^32
    (SIZE - 64 * KiB, 64 * KiB, 0xD4, False),   # the last bytes
]
WRITE_REGION = (8 * MiB, MiB, 0x5A)     # written by the sanity case and the storm
DISC_REGION = (10 * MiB, 64 * KiB, 0x6B)  # written by requests in flight at DISC
# Where failing writes aim: it holds data, so a write that lands shows.
SENTINEL = 0


class Model:
    """Expected content of an export: base regions then the writes made."""

    def __init__(self, size):
        self.size = size
        self.regions = [(o, n, b) for o, n, b, _ in REGIONS]
        self.lock = threading.Lock()

    def wrote(self, off, n, byte):
        with self.lock:
            self.regions.append((off, n, byte))

    def expected(self, off, n):
        out = bytearray(n)
        for o, ln, b in list(self.regions):
            s, e = max(o, off), min(o + ln, off + n)
            if s < e:
                out[s - off:e - off] = bytes([b]) * (e - s)
        return out

    def nonzero(self, off, n):
        """True if some region with a nonzero byte overlaps [off, off+n)."""
        return any(b and max(o, off) < min(o + ln, off + n) for o, ln, b in list(self.regions))


# --- errors ----------------------------------------------------------------
class Fail(Exception):
    """The server did something the spec forbids (or the case forbids)."""


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class Hang(Exception):
    """Nothing happened within IO_TIMEOUT."""


def repname(t):
    return REP_NAMES.get(t, '%#x' % t)


def errname(e):
    return ERR_NAMES.get(e, str(e))


# --- the client ------------------------------------------------------------
class Reply:
    def __init__(self, cookie):
        self.cookie = cookie
        self.error = 0
        self.covered = 0
        self.extents = {}
        self.chunks = 0


class Conn:
    def __init__(self, path, model=None, timeout=IO_TIMEOUT):
        self.path = path
        self.model = model
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        try:
            self.s.connect(path)
        except socket.timeout:
            self.s.close()
            raise Hang('connect blocked for %gs' % timeout)
        except OSError as e:
            self.s.close()
            raise Fail('cannot connect to %s: %s' % (path, e.strerror))
        self.sr = False
        self.size = None
        self.tflags = 0
        self.block = (1, 4096, 32 * MiB)
        self.meta = {}
        self.pending = {}
        self.partial = {}
        self.done = {}
        self.cookie = 0x1000
        self.hflags = None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # raw I/O
    def send(self, b):
        try:
            self.s.sendall(b)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed('send: %s' % e.strerror)
        except socket.timeout:
            raise Hang('send blocked for %gs (server not reading)' % self.s.gettimeout())

    def recv(self, n, what='data'):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.s.recv(min(n - len(buf), MiB))
            except socket.timeout:
                raise Hang('no %s and no close within %gs' % (what, self.s.gettimeout()))
            except ConnectionResetError:
                raise Closed('reset')
            if not chunk:
                raise Closed('EOF after %d of %d bytes of %s' % (len(buf), n, what))
            buf += chunk
        return bytes(buf)

    def half_close(self):
        try:
            self.s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def expect_eof(self, what='close'):
        """Read and drop until the server closes; a timeout is a hang."""
        n = 0
        while True:
            try:
                chunk = self.s.recv(MiB)
            except socket.timeout:
                raise Hang('server neither closed nor answered within %gs (%s expected)'
                           % (self.s.gettimeout(), what))
            except ConnectionResetError:
                return n
            if not chunk:
                return n
            n += len(chunk)

    def wait_some(self, secs):
        """What the server does within secs: 'eof', 'data' or 'silent'."""
        old = self.s.gettimeout()
        self.s.settimeout(secs)
        try:
            chunk = self.s.recv(65536)
            return 'data' if chunk else 'eof'
        except socket.timeout:
            return 'silent'
        except ConnectionResetError:
            return 'eof'
        finally:
            self.s.settimeout(old)

    # handshake
    def greet(self):
        magic, opt, hflags = struct.unpack('>QQH', self.recv(18, 'greeting'))
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise Fail('greeting magic %#x %#x (oldstyle or garbage)' % (magic, opt))
        if not hflags & FLAG_FIXED_NEWSTYLE:
            raise Fail('server lacks NBD_FLAG_FIXED_NEWSTYLE')
        if hflags & ~3:
            raise Fail('server sets unknown handshake flags %#x' % hflags)
        self.hflags = hflags
        return hflags

    def client_flags(self, flags=None):
        if flags is None:
            flags = C_FIXED_NEWSTYLE | (C_NO_ZEROES if self.hflags & FLAG_NO_ZEROES else 0)
        self.send(struct.pack('>I', flags))

    def send_opt(self, opt, data=b'', length=None, magic=IHAVEOPT):
        self.send(struct.pack('>QII', magic, opt, len(data) if length is None else length) + data)

    def opt_reply(self, opt):
        magic, o, typ, ln = struct.unpack('>QIII', self.recv(20, 'option reply'))
        if magic != REP_MAGIC:
            raise Fail('option reply magic %#x' % magic)
        if o != opt:
            raise Fail('reply for option %d while option %d was sent' % (o, opt))
        if ln > 16 * MiB:
            raise Fail('option reply length %d' % ln)
        return typ, (self.recv(ln, 'option reply data') if ln else b'')

    def opt_final(self, opt):
        """Replies up to the final one; returns (final type, [(type, data)])."""
        reps = []
        while True:
            typ, data = self.opt_reply(opt)
            reps.append((typ, data))
            if typ == REP_ACK or typ & REP_ERR:
                return typ, reps
            if typ not in (REP_SERVER, REP_INFO, REP_META_CONTEXT):
                raise Fail('unknown option reply type %#x' % typ)
            if len(reps) > 100000:
                raise Fail('endless option replies')

    def option(self, opt, data=b'', length=None):
        self.send_opt(opt, data, length)
        return self.opt_final(opt)

    def structured(self):
        typ, _ = self.option(OPT_STRUCTURED_REPLY)
        if typ != REP_ACK:
            raise Fail('STRUCTURED_REPLY got %s' % repname(typ))
        self.sr = True

    def set_meta(self, name=b'', queries=(b'base:allocation',), opt=OPT_SET_META_CONTEXT):
        typ, reps = self.option(opt, meta_data(name, queries))
        ctx = {}
        for t, d in reps:
            if t == REP_META_CONTEXT:
                if len(d) < 5:
                    raise Fail('META_CONTEXT reply of %d bytes' % len(d))
                ctx[struct.unpack('>I', d[:4])[0]] = d[4:]
        if typ == REP_ACK and opt == OPT_SET_META_CONTEXT:
            self.meta = ctx
        return typ, ctx

    def go(self, name=b'', infos=(INFO_BLOCK_SIZE,), opt=OPT_GO):
        typ, reps = self.option(opt, go_data(name, infos))
        if typ != REP_ACK:
            return typ
        got_export = False
        for t, d in reps:
            if t != REP_INFO:
                if t != REP_ACK:
                    raise Fail('%s in the reply to GO' % repname(t))
                continue
            if len(d) < 2:
                raise Fail('NBD_REP_INFO of %d bytes' % len(d))
            it = struct.unpack('>H', d[:2])[0]
            if it == INFO_EXPORT:
                if len(d) != 12:
                    raise Fail('NBD_INFO_EXPORT of length %d' % len(d))
                self.size, self.tflags = struct.unpack('>QH', d[2:])
                got_export = True
            elif it == INFO_BLOCK_SIZE:
                if len(d) != 14:
                    raise Fail('NBD_INFO_BLOCK_SIZE of length %d' % len(d))
                self.block = struct.unpack('>III', d[2:])
        if not got_export:
            raise Fail('GO acknowledged without NBD_INFO_EXPORT')
        if not self.tflags & TF_HAS_FLAGS:
            raise Fail('transmission flags %#x lack HAS_FLAGS' % self.tflags)
        if opt == OPT_GO and self.model is not None and self.size != self.model.size:
            raise Fail('export size %d, expected %d' % (self.size, self.model.size))
        return typ

    def start(self, name=b'', sr=True, meta=True, infos=(INFO_BLOCK_SIZE,)):
        self.greet()
        self.client_flags()
        if sr:
            self.structured()
            if meta:
                typ, ctx = self.set_meta(name)
                if typ != REP_ACK or not ctx:
                    raise Fail('SET_META_CONTEXT base:allocation: %s, %d contexts'
                               % (repname(typ), len(ctx)))
        typ = self.go(name, infos)
        if typ != REP_ACK:
            raise Fail('GO %r: %s' % (name, repname(typ)))
        return self

    # transmission
    def req(self, cmd, off, length, flags=0, data=b'', magic=REQ_MAGIC, send=True):
        self.cookie += 1
        c = self.cookie
        self.pending[c] = (cmd, off & U64, length)
        msg = struct.pack('>IHHQQI', magic, flags, cmd, c, off & U64, length) + data
        if send:
            self.send(msg)
            return c
        return c, msg

    def wait(self, cookie):
        while cookie not in self.done:
            self.read_reply()
        return self.done.pop(cookie)

    def verify(self, off, data):
        if self.model is None:
            return
        exp = self.model.expected(off, len(data))
        if data != exp:
            i = next(i for i in range(len(data)) if data[i] != exp[i])
            raise Fail('wrong data at offset %d: %#04x, expected %#04x'
                       % (off + i, data[i], exp[i]))

    def read_data(self, off, n):
        while n:
            k = min(n, MiB)
            self.verify(off, self.recv(k, 'read payload'))
            off += k
            n -= k

    def read_reply(self):
        magic = struct.unpack('>I', self.recv(4, 'reply'))[0]
        if magic == SIMPLE_MAGIC:
            err, c = struct.unpack('>IQ', self.recv(12, 'reply'))
            if c not in self.pending or c in self.partial:
                raise Fail('simple reply with unknown cookie %#x' % c)
            cmd, off, ln = self.pending.pop(c)
            r = Reply(c)
            r.error = err
            if cmd == CMD_READ and self.sr:
                raise Fail('simple reply to READ after structured replies were negotiated')
            if cmd == CMD_READ and err == 0:
                self.read_data(off, ln)
                r.covered = ln
            self.done[c] = r
            return
        if magic != STRUCT_MAGIC:
            raise Fail('reply magic %#x' % magic)
        if not self.sr:
            raise Fail('structured reply without NBD_OPT_STRUCTURED_REPLY')
        flags, typ, c, ln = struct.unpack('>HHQI', self.recv(16, 'chunk'))
        if c not in self.pending:
            raise Fail('chunk with unknown cookie %#x' % c)
        cmd, off, rlen = self.pending[c]
        r = self.partial.setdefault(c, Reply(c))
        r.chunks += 1
        if typ == RT_NONE:
            if ln:
                raise Fail('NBD_REPLY_TYPE_NONE with length %d' % ln)
            if not flags & REPLY_FLAG_DONE:
                raise Fail('NBD_REPLY_TYPE_NONE without DONE')
        elif typ in (RT_OFFSET_DATA, RT_OFFSET_HOLE):
            if cmd != CMD_READ:
                raise Fail('content chunk for %s' % CMD_NAMES.get(cmd, cmd))
            if typ == RT_OFFSET_DATA:
                if ln < 9:
                    raise Fail('OFFSET_DATA of length %d' % ln)
                o = struct.unpack('>Q', self.recv(8, 'chunk'))[0]
                n = ln - 8
            else:
                if ln != 12:
                    raise Fail('OFFSET_HOLE of length %d' % ln)
                o, n = struct.unpack('>QI', self.recv(12, 'chunk'))
                if n == 0:
                    raise Fail('OFFSET_HOLE of size 0')
            if o < off or o + n > off + rlen:
                raise Fail('chunk [%d,+%d) outside the request [%d,+%d)' % (o, n, off, rlen))
            if typ == RT_OFFSET_DATA:
                self.read_data(o, n)
            elif self.model is not None and self.model.nonzero(o, n):
                raise Fail('hole reported at [%d,+%d) which holds data' % (o, n))
            r.covered += n
        elif typ == RT_BLOCK_STATUS:
            if cmd != CMD_BLOCK_STATUS:
                raise Fail('block status chunk for %s' % CMD_NAMES.get(cmd, cmd))
            if ln < 12 or (ln - 4) % 8:
                raise Fail('BLOCK_STATUS chunk of length %d' % ln)
            d = self.recv(ln, 'chunk')
            cid = struct.unpack('>I', d[:4])[0]
            if cid not in self.meta:
                raise Fail('block status for context id %d never negotiated' % cid)
            ext = [struct.unpack('>II', d[i:i + 8]) for i in range(4, ln, 8)]
            if any(e[0] == 0 for e in ext):
                raise Fail('block status extent of length 0')
            r.extents[cid] = ext
        elif typ & 0x8000:
            if ln < 6:
                raise Fail('error chunk of length %d' % ln)
            d = self.recv(ln, 'chunk')
            err, mlen = struct.unpack('>IH', d[:6])
            if err == 0:
                raise Fail('error chunk with error 0')
            if mlen > ln - 6 or (typ == RT_ERROR_OFFSET and mlen > ln - 14):
                raise Fail('error chunk message length %d in a chunk of %d' % (mlen, ln))
            r.error = err
        else:
            raise Fail('unknown chunk type %d' % typ)
        if flags & REPLY_FLAG_DONE:
            del self.pending[c]
            del self.partial[c]
            if cmd == CMD_READ and not r.error and r.covered != rlen:
                raise Fail('read reply covered %d of %d bytes' % (r.covered, rlen))
            if cmd == CMD_BLOCK_STATUS and not r.error and len(r.extents) != len(self.meta):
                raise Fail('block status: %d chunks for %d contexts'
                           % (len(r.extents), len(self.meta)))
            self.done[c] = r

    def cmd(self, cmd, off, length, flags=0, data=b''):
        return self.wait(self.req(cmd, off, length, flags, data))

    def read_ok(self, off, n):
        r = self.cmd(CMD_READ, off, n)
        if r.error:
            raise Fail('READ %d+%d failed: %s' % (off, n, errname(r.error)))

    def disc(self):
        self.req(CMD_DISC, 0, 0)
        self.half_close()
        self.expect_eof('close after DISC')


def go_data(name, infos):
    return struct.pack('>I', len(name)) + name + struct.pack('>H', len(infos)) + \
        b''.join(struct.pack('>H', i) for i in infos)


def meta_data(name, queries):
    return struct.pack('>I', len(name)) + name + struct.pack('>I', len(queries)) + \
        b''.join(struct.pack('>I', len(q)) + q for q in queries)


# --- the run ----------------------------------------------------------------
class Run:
    def __init__(self, args):
        self.sock = args['socket']
        self.ro_sock = args.get('ro_socket')
        self.ro_name = args.get('ro_export', '').encode()
        self.pid = args.get('pid')
        self.verbose = args.get('verbose', False)
        # hold the server to the spec's SHOULDs where qemu-nbd 7.2 does not
        self.strict = args.get('strict', False)
        self.cycles = args.get('cycles', 1000)
        self.threads = args.get('threads', 64)
        self.model = Model(SIZE)
        self.ro_model = Model(SIZE)

    def conn(self, **kw):
        return Conn(self.sock, self.model, **kw)

    def session(self, sr=True, meta=True, name=b''):
        return self.conn().start(name=name, sr=sr, meta=meta)

    # process checks
    def status(self):
        if not self.pid:
            return {}
        out = {}
        try:
            with open('/proc/%d/status' % self.pid) as f:
                for line in f:
                    k, _, v = line.partition(':')
                    if k in ('VmSize', 'VmHWM', 'VmRSS', 'VmPeak'):
                        out[k] = int(v.split()[0]) * KiB
                    elif k == 'State':
                        out[k] = v.strip()
        except OSError:
            out['gone'] = True
        return out

    def reset_hwm(self):
        if self.pid:
            try:
                with open('/proc/%d/clear_refs' % self.pid, 'w') as f:
                    f.write('5')
            except OSError:
                pass

    def alive(self):
        st = self.status() if self.pid else {}
        if st.get('gone') or st.get('State', '').startswith(('Z', 'X')):
            raise Fail('server process %d is gone' % self.pid)

    def probe(self):
        """A normal client still gets the right data."""
        self.alive()
        with self.conn() as c:
            c.start(sr=False, meta=False)
            c.read_ok(0, 4096)
            c.read_ok(4 * GiB - 4096, 8192)
            c.disc()
        self.alive()

    # memory guard: the server must not allocate what a hostile length asks
    def mem_before(self):
        self.reset_hwm()
        return self.status()

    def mem_check(self, before, vm_limit=GiB, hwm_limit=48 * MiB):
        after = self.status()
        if not before or not after or after.get('gone'):
            return
        dv = after['VmSize'] - before['VmSize']
        dh = after['VmHWM'] - before['VmHWM']
        if dv > vm_limit:
            raise Fail('server address space grew by %d MiB' % (dv // MiB))
        if dh > hwm_limit:
            raise Fail('server peak RSS grew by %d MiB' % (dh // MiB))


CASES = []


def case(name, timeout=CASE_TIMEOUT, probe=True):
    def reg(fn):
        CASES.append((name, fn, timeout, probe))
        return fn
    return reg


def add(name, fn, timeout=CASE_TIMEOUT):
    CASES.append((name, fn, timeout, True))


def outcome_opt(c, opt, data=b'', ok=(REP_ACK,), length=None, disc_ok=True):
    """Send one option; the final reply must be in ok (ANY_REP_ERR: any error)."""
    try:
        c.send_opt(opt, data, length)
        typ, _ = c.opt_final(opt)
    except Closed:
        if disc_ok:
            return 'disconnect'
        raise Fail('disconnected; expected %s' % '/'.join(
            o if o == ANY_REP_ERR else repname(o) for o in ok))
    if typ in ok or (ANY_REP_ERR in ok and typ & REP_ERR):
        return repname(typ)
    raise Fail('%s; expected %s' % (repname(typ), '/'.join(
        o if o == ANY_REP_ERR else repname(o) for o in ok)))


def continue_go(run, c):
    """After an option error the session must go on: GO, read, DISC."""
    typ = c.go()
    if typ != REP_ACK:
        raise Fail('GO after the error: %s' % repname(typ))
    c.read_ok(0, 4096)
    c.disc()
    return 'session continued'


def outcome_cmd(c, cmd, off, ln, flags=0, data=b'', errs=(EINVAL,), success=False,
                disc_ok=True):
    """One request: an error in errs (None: any), success if allowed, or a
    disconnect if allowed."""
    try:
        r = c.cmd(cmd, off, ln, flags, data)
    except Closed:
        if disc_ok:
            return 'disconnect'
        raise Fail('disconnected; expected an error reply')
    if r.error == 0:
        if success:
            return 'success'
        raise Fail('%s %d+%d flags %#x succeeded; expected %s' % (
            CMD_NAMES.get(cmd, cmd), off, ln, flags,
            '/'.join(errname(e) for e in errs) if errs else 'an error'))
    if errs is not None and r.error not in errs:
        raise Fail('%s; expected %s' % (errname(r.error), '/'.join(errname(e) for e in errs)))
    return errname(r.error)


def unchanged(run, off, n):
    """The region reads back as the model says (a failed write did not land)."""
    with run.conn() as c:
        c.start(sr=False, meta=False)
        c.read_ok(off, n)
        c.disc()


# --- sanity -----------------------------------------------------------------
@case('sanity')
def c_sanity(run):
    with run.session() as c:
        if c.tflags & TF_READ_ONLY:
            raise Fail('the read-write export is read-only')
        mx = c.block[2]
        if mx < MiB:
            raise Fail('maximum payload %d below 1 MiB' % mx)
        for o, n, _, _ in REGIONS:
            a = o - o % 512
            e = min(SIZE, -(-(o + n) // 512) * 512)
            for p in range(a, e, MiB):
                c.read_ok(p, min(MiB, e - p))
        c.read_ok(SIZE - 512, 512)
        # block status: data regions must not be reported as reading zero
        r = c.cmd(CMD_BLOCK_STATUS, 0, 32 * MiB)
        if r.error:
            raise Fail('BLOCK_STATUS failed: %s' % errname(r.error))
        for ext in r.extents.values():
            p = 0
            for ln, st in ext:
                if st & 2 and run.model.nonzero(p, min(ln, 32 * MiB - p)):
                    raise Fail('block status says [%d,+%d) reads zero' % (p, ln))
                p += ln
                if p >= 32 * MiB:
                    break
        o, n, b = WRITE_REGION
        r = c.cmd(CMD_WRITE, o, n, data=bytes([b]) * n)
        if r.error:
            raise Fail('WRITE failed: %s' % errname(r.error))
        run.model.wrote(o, n, b)
        r = c.cmd(CMD_FLUSH, 0, 0)
        if r.error:
            raise Fail('FLUSH failed: %s' % errname(r.error))
        c.read_ok(o, n)
        c.disc()
    with run.session(sr=False) as c:
        c.read_ok(0, MiB)
        c.read_ok(4 * GiB - 4096, 8192)
        c.disc()
    return 'ok'


# --- huge lengths (first, so that the memory checks see a quiet server) -----
def huge_option(run, opt, length, send, full=False):
    before = run.mem_before()
    with run.conn() as c:
        c.greet()
        c.client_flags()
        data = b''
        if opt in (OPT_GO, OPT_INFO):
            data = struct.pack('>I', 16) + b'x' * 16 + struct.pack('>H', 0)
        data = (data + b'\0' * send)[:send]
        if full:
            # all of it sent: the server read and dropped it, and says so
            # (or hangs up)
            try:
                c.send_opt(opt, data, length)
                typ, _ = c.opt_final(opt)
            except Closed:
                run.mem_check(before)
                return 'disconnect'
            run.mem_check(before)
            if not typ & REP_ERR:
                raise Fail('option %d of %d bytes acknowledged' % (opt, length))
            return repname(typ) + '; ' + continue_go(run, c)
        try:
            c.send_opt(opt, data, length)
            what = c.wait_some(1.0)
        except Closed:
            what = 'eof'
        run.mem_check(before)
        return {'eof': 'disconnect', 'silent': 'waits for the data (closed by us)',
                'data': 'a reply (then closed by us)'}[what]


add('opt-len-ffffffff-unknown', lambda run: huge_option(run, 0x4242, 0xFFFFFFFF, 4096))
add('opt-len-ffffffff-go', lambda run: huge_option(run, OPT_GO, 0xFFFFFFFF, 4096))
add('opt-len-ffffffff-list', lambda run: huge_option(run, OPT_LIST, 0xFFFFFFFF, 4096))
add('opt-len-ffffffff-set-meta', lambda run: huge_option(run, OPT_SET_META_CONTEXT, 0xFFFFFFFF, 4096))
add('opt-len-64MiB-go', lambda run: huge_option(run, OPT_GO, 64 * MiB, MiB))
add('opt-len-64MiB-unknown-full',
    lambda run: huge_option(run, 0x4242, 64 * MiB, 64 * MiB, full=True))


def write_huge(run, length, send):
    before = run.mem_before()
    with run.session() as c:
        o = SENTINEL
        c.req(CMD_WRITE, o, length)
        got = 'silent'
        try:
            c.send(b'\xee' * send)
        except Closed:
            got = 'disconnect while the payload was sent'
        except Hang:
            got = 'stopped reading the payload'
        if got == 'silent':
            got = c.wait_some(1.0)
        run.mem_check(before)
        if got == 'data':
            # an error reply is allowed; success is not (the payload is short)
            try:
                c.s.settimeout(2)
                r = c.wait(max(c.pending)) if c.pending else None
            except (Closed, Hang, Fail):
                r = None
            if r is not None and r.error == 0:
                raise Fail('WRITE of %d bytes with %d sent succeeded' % (length, send))
            got = 'error reply' if r else 'data'
    unchanged(run, SENTINEL, MiB)
    return {'eof': 'disconnect', 'silent': 'waits for the payload (closed by us)'}.get(got, got)


add('write-len-ffffffff', lambda run: write_huge(run, 0xFFFFFFFF, MiB))
add('write-len-32MiB+1-partial', lambda run: write_huge(run, 32 * MiB + 1, MiB))


@case('write-len-32MiB+1-full')
def c_write_over(run):
    # The whole payload, equal to what is there: success (a server may take
    # more than it advertised), an error, or a disconnect are all fine.
    n = 32 * MiB + 1
    with run.session() as c:
        try:
            c.req(CMD_WRITE, 0, n, data=bytes(run.model.expected(0, n)))
            r = c.wait(c.cookie)
        except Closed:
            return 'disconnect'
        res = 'success' if r.error == 0 else errname(r.error)
        try:
            c.read_ok(0, 4096)
            c.disc()
        except Closed:
            res += ', then disconnect'
        return res


def read_huge(run, sr):
    before = run.mem_before()
    with run.session(sr=sr) as c:
        c.s.settimeout(60)
        res = outcome_cmd(c, CMD_READ, 0, 0xFFFFFFFF, errs=None, success=True)
        run.mem_check(before, hwm_limit=64 * MiB)
        return res


add('read-len-ffffffff-structured', lambda run: read_huge(run, True))
add('read-len-ffffffff-simple', lambda run: read_huge(run, False))


@case('read-len-32MiB+1')
def c_read_over(run):
    res = []
    for sr in (True, False):
        with run.session(sr=sr) as c:
            res.append(outcome_cmd(c, CMD_READ, 0, 32 * MiB + 1, errs=None, success=True))
    return 'structured %s, simple %s' % tuple(res)


@case('flood-without-reading')
def c_flood(run):
    # Requests keep coming while no reply is read; then the client vanishes.
    before = run.mem_before()
    with run.session() as c:
        c.s.settimeout(2)
        sent = 0
        msg = b''.join(c.req(CMD_READ, (i % 16) * 64 * KiB, 64 * KiB, send=False)[1]
                       for i in range(256))
        try:
            while sent < 20000:
                c.s.sendall(msg)
                sent += 256
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass
        run.mem_check(before, vm_limit=4 * GiB, hwm_limit=256 * MiB)
    return '%d requests queued before the server stopped reading' % sent


# --- handshake ----------------------------------------------------------------
def flags_case(flags):
    def fn(run):
        with run.conn() as c:
            c.greet()
            c.send(flags)
            c.half_close()
            c.expect_eof('disconnect')
        return 'disconnect'
    return fn


add('flags-garbage', flags_case(b'\xff\xff\xff\xff'))
add('flags-unknown-bit', flags_case(struct.pack('>I', C_FIXED_NEWSTYLE | 4)))
add('flags-high-bit', flags_case(struct.pack('>I', 0x80000001)))
add('flags-request-magic', flags_case(struct.pack('>IHHQQI', REQ_MAGIC, 0, 0, 1, 0, 512)))
add('flags-short', flags_case(b'\0\0'))


@case('flags-garbage-then-stay')
def c_flags_stay(run):
    # Unknown flags and the client keeps the socket open: the server drops it.
    with run.conn() as c:
        c.greet()
        c.send(struct.pack('>I', 0xFFFFFFFC))
        c.expect_eof('disconnect')
    return 'disconnect'


@case('close-before-greeting')
def c_close_early(run):
    for _ in range(20):
        Conn(run.sock).close()
    return 'ok'


def handshake_script(name=b''):
    """The client side of a full GO handshake, message by message:
    (bytes, option number whose final reply follows, or None)."""
    return [
        (struct.pack('>I', C_FIXED_NEWSTYLE | C_NO_ZEROES), None),
        (struct.pack('>QII', IHAVEOPT, OPT_STRUCTURED_REPLY, 0), OPT_STRUCTURED_REPLY),
        (struct.pack('>QII', IHAVEOPT, OPT_SET_META_CONTEXT, len(meta_data(name, [b'base:allocation'])))
         + meta_data(name, [b'base:allocation']), OPT_SET_META_CONTEXT),
        (struct.pack('>QII', IHAVEOPT, OPT_GO, len(go_data(name, (INFO_BLOCK_SIZE, INFO_NAME))))
         + go_data(name, (INFO_BLOCK_SIZE, INFO_NAME)), OPT_GO),
    ]


def send_handshake_prefix(c, cut):
    """Send the first cut bytes of the client side of a GO handshake,
    reading the replies to the options sent whole."""
    left = cut
    for msg, opt in handshake_script():
        part = msg[:left]
        if part:
            c.send(part)
        left -= len(part)
        if len(part) < len(msg):
            break
        if opt is not None:
            c.opt_final(opt)


def truncated_handshake(run, cut, half):
    """Send the first cut bytes of the script (replies read as they come),
    then EOF (half close: the server must close too) or a plain close."""
    with run.conn() as c:
        c.greet()
        send_handshake_prefix(c, cut)
        if half:
            c.half_close()
            c.expect_eof('close after EOF at byte %d' % cut)


@case('handshake-truncated-every-byte')
def c_trunc(run):
    total = sum(len(m) for m, _ in handshake_script())
    for cut in range(total + 1):
        for half in (True, False):
            try:
                truncated_handshake(run, cut, half)
            except (Fail, Hang) as e:
                raise Fail('cut after %d bytes%s: %s' % (cut, ' (half close)' if half else '', e))
            except Closed:
                pass
    return '%d cuts, each with EOF and with close' % (total + 1)


# --- options ----------------------------------------------------------------
def opt_session(run):
    c = run.conn()
    c.greet()
    c.client_flags()
    return c


@case('opt-bad-magic')
def c_opt_magic(run):
    with opt_session(run) as c:
        c.send_opt(OPT_GO, go_data(b'', ()), magic=IHAVEOPT ^ 1)
        c.half_close()
        c.expect_eof('disconnect')
    return 'disconnect'


@case('opt-unknown')
def c_opt_unknown(run):
    with opt_session(run) as c:
        for opt, data in ((0, b''), (OPT_PEEK, b'x'), (12, b'abc'), (0x1234, b'\0' * 100),
                          (0x7FFFFFFF, b''), (0x80000000, b'1234'), (0xFFFFFFFF, b'z' * 17)):
            r = outcome_opt(c, opt, data, ok=(REP_ERR_UNSUP,), disc_ok=False)
        return r + ' for each; ' + continue_go(run, c)


@case('opt-flood-unknown')
def c_opt_flood(run):
    # Thousands of refused options: the server answers each, or gives up on
    # the client (a denial of service may be cut short).
    with opt_session(run) as c:
        for i in range(3000):
            try:
                c.send_opt(0x5000 + i, b'')
                typ, _ = c.opt_final(0x5000 + i)
            except Closed:
                return 'disconnect after %d options' % i
            if typ != REP_ERR_UNSUP:
                raise Fail('option %d: %s' % (0x5000 + i, repname(typ)))
        return 'ERR_UNSUP x3000; ' + continue_go(run, c)


@case('opt-list-with-data')
def c_list_data(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_LIST, b'data', ok=(REP_ERR_INVALID,))
        if r == 'disconnect':
            return r
        typ, reps = c.option(OPT_LIST)
        if typ != REP_ACK:
            raise Fail('plain LIST afterwards: %s' % repname(typ))
        return r + '; ' + continue_go(run, c)


@case('opt-structured-reply-with-data')
def c_sr_data(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_STRUCTURED_REPLY, b'\0\0\0\0', ok=(REP_ERR_INVALID,))
        return r if r == 'disconnect' else r + '; ' + continue_go(run, c)


@case('opt-starttls-without-tls')
def c_starttls(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_STARTTLS, ok=(ANY_REP_ERR,), disc_ok=False)
        return r + '; ' + continue_go(run, c)


@case('opt-abort-with-data')
def c_abort(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_ABORT, b'junk', ok=(REP_ACK,))
        c.half_close()
        c.expect_eof('close after ABORT')
        return r + ', close'


@case('opt-structured-reply-twice')
def c_sr_twice(run):
    with opt_session(run) as c:
        c.structured()
        r = outcome_opt(c, OPT_STRUCTURED_REPLY, ok=(REP_ACK, REP_ERR_INVALID))
        return r if r == 'disconnect' else r + '; ' + continue_go(run, c)


def go_bad(data, opt=OPT_GO, ok=(REP_ERR_INVALID,)):
    def fn(run):
        with opt_session(run) as c:
            r = outcome_opt(c, opt, data, ok=ok)
            return r if r == 'disconnect' else r + '; ' + continue_go(run, c)
    return fn


add('go-namelen-past-end', go_bad(struct.pack('>I', 100) + b'x' * 10 + struct.pack('>H', 0)))
add('go-namelen-ffffffff', go_bad(struct.pack('>IH', 0xFFFFFFFF, 0)))
add('go-data-too-short', go_bad(b'\0\0\0'))
add('go-no-data', go_bad(b''))
add('go-info-list-truncated', go_bad(struct.pack('>IHHH', 0, 5, INFO_BLOCK_SIZE, INFO_NAME)))
add('go-info-count-ffff', go_bad(struct.pack('>IH', 0, 0xFFFF)))
add('go-trailing-byte', go_bad(go_data(b'', (INFO_BLOCK_SIZE,)) + b'\0'))
add('info-namelen-past-end', go_bad(struct.pack('>I', 7) + b'ab' + struct.pack('>H', 0), OPT_INFO))
add('go-name-4097', go_bad(go_data(b'n' * 4097, ()), ok=(ANY_REP_ERR,)))


@case('go-unknown-info-requests')
def c_go_unknown_info(run):
    # Unknown information requests MUST be ignored.
    with opt_session(run) as c:
        typ = c.go(b'', (0x7777, 0xFFFF, INFO_BLOCK_SIZE))
        if typ != REP_ACK:
            raise Fail('GO with unknown info requests: %s' % repname(typ))
        c.read_ok(0, 4096)
        c.disc()
    return 'ACK'


@case('info-unknown-export')
def c_info_unknown(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_INFO, go_data(b'no-such-export', ()),
                        ok=(REP_ERR_UNKNOWN, REP_ERR_TLS_REQD), disc_ok=False)
        return r + '; ' + continue_go(run, c)


@case('go-unknown-export')
def c_go_unknown(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_GO, go_data(b'no-such-export', (INFO_BLOCK_SIZE,)),
                        ok=(REP_ERR_UNKNOWN, REP_ERR_TLS_REQD), disc_ok=False)
        return r + '; ' + continue_go(run, c)


@case('export-name-unknown')
def c_export_name_unknown(run):
    with opt_session(run) as c:
        c.send_opt(OPT_EXPORT_NAME, b'no-such-export')
        c.expect_eof('disconnect (the server MUST terminate)')
    return 'disconnect'


@case('export-name-default')
def c_export_name_default(run):
    # The old way in still works; the zeroes are left out (NO_ZEROES).
    with opt_session(run) as c:
        c.send_opt(OPT_EXPORT_NAME, b'')
        size, tflags = struct.unpack('>QH', c.recv(10, 'export info'))
        if size != SIZE:
            raise Fail('EXPORT_NAME: size %d' % size)
        c.read_ok(0, 4096)
        c.disc()
    return 'ok'


@case('set-meta-before-structured-reply')
def c_meta_before_sr(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_SET_META_CONTEXT, meta_data(b'', [b'base:allocation']),
                        ok=(REP_ERR_INVALID,))
        if r == 'disconnect':
            return r
        c.go()
        # no context was negotiated: BLOCK_STATUS is an error (or a disconnect)
        b = outcome_cmd(c, CMD_BLOCK_STATUS, 0, 4096, errs=None)
        return '%s; then BLOCK_STATUS: %s' % (r, b)


@case('list-meta-before-structured-reply')
def c_list_meta_before_sr(run):
    with opt_session(run) as c:
        r = outcome_opt(c, OPT_LIST_META_CONTEXT, meta_data(b'', [b'base:']),
                        ok=(REP_ACK, REP_ERR_INVALID))
        return r if r == 'disconnect' else r + '; ' + continue_go(run, c)


def meta_bad(data, ok=(REP_ERR_INVALID,), opt=OPT_SET_META_CONTEXT):
    def fn(run):
        with opt_session(run) as c:
            c.structured()
            r = outcome_opt(c, opt, data, ok=ok)
            return r if r == 'disconnect' else r + '; ' + continue_go(run, c)
    return fn


add('meta-query-len-past-end',
    meta_bad(struct.pack('>II', 0, 1) + struct.pack('>I', 1000) + b'base:allocation'))
add('meta-query-len-ffffffff',
    meta_bad(struct.pack('>III', 0, 1, 0xFFFFFFFF) + b'base:allocation'))
add('meta-count-past-end',
    meta_bad(struct.pack('>II', 0, 3) + struct.pack('>I', 15) + b'base:allocation'))
add('meta-export-len-past-end', meta_bad(struct.pack('>I', 0xFFFFFFFF) + b'\0\0\0\0'))
add('meta-too-short', meta_bad(b'\0\0'))
add('list-meta-query-len-past-end',
    meta_bad(struct.pack('>III', 0, 1, 500) + b'base:', opt=OPT_LIST_META_CONTEXT))
add('meta-no-colon', meta_bad(meta_data(b'', [b'base']), ok=(REP_ACK, REP_ERR_INVALID)))
add('meta-unknown-export',
    meta_bad(meta_data(b'no-such-export', [b'base:allocation']),
             ok=(REP_ERR_UNKNOWN, REP_ERR_INVALID, REP_ACK)))
add('meta-many-queries',
    meta_bad(meta_data(b'', [b'base:allocation'] * 20000),
             ok=(REP_ACK, REP_ERR_TOO_BIG, REP_ERR_INVALID)))


@case('meta-unknown-namespace')
def c_meta_unknown_ns(run):
    # Unknown namespaces MUST be ignored: ACK and no context, both for LIST
    # and SET; BLOCK_STATUS then has no context to report.
    with opt_session(run) as c:
        c.structured()
        for opt in (OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT):
            typ, ctx = c.set_meta(b'', [b'x-no-such-namespace:foo', b'x-other:'], opt)
            if typ != REP_ACK or ctx:
                raise Fail('%s: %s with %d contexts; expected ACK with none'
                           % ('LIST' if opt == OPT_LIST_META_CONTEXT else 'SET',
                              repname(typ), len(ctx)))
        c.go()
        b = outcome_cmd(c, CMD_BLOCK_STATUS, 0, 4096, errs=None)
        return 'ACK, no context; then BLOCK_STATUS: %s' % b


# --- requests before negotiation ---------------------------------------------
@case('request-instead-of-option')
def c_req_early(run):
    with opt_session(run) as c:
        c.req(CMD_READ, 0, 4096)
        c.half_close()
        c.expect_eof('disconnect')
    return 'disconnect'


@case('request-instead-of-option-stay')
def c_req_early_stay(run):
    with opt_session(run) as c:
        c.req(CMD_WRITE, SENTINEL, 16, data=b'\xee' * 16)
        c.expect_eof('disconnect')
    unchanged(run, SENTINEL, 4096)
    return 'disconnect, nothing written'


@case('request-after-info')
def c_req_after_info(run):
    with opt_session(run) as c:
        if c.go(opt=OPT_INFO) != REP_ACK:
            raise Fail('INFO of the default export failed')
        c.req(CMD_WRITE, SENTINEL, 512, data=b'\xee' * 512)
        c.half_close()
        c.expect_eof('disconnect')
    unchanged(run, SENTINEL, 4096)
    return 'disconnect, nothing written'


@case('request-pipelined-with-go')
def c_req_pipelined(run):
    # GO and a READ in one packet: if GO succeeds the READ is a request.
    with opt_session(run) as c:
        msg = struct.pack('>QII', IHAVEOPT, OPT_GO, len(go_data(b'', ()))) + go_data(b'', ())
        c2, req = c.req(CMD_READ, 0, 4096, send=False)
        c.send(msg + req)
        try:
            typ, _ = c.opt_final(OPT_GO)
            if typ != REP_ACK:
                raise Fail('GO: %s' % repname(typ))
            r = c.wait(c2)
        except Closed:
            return 'disconnect'
        if r.error:
            raise Fail('READ: %s' % errname(r.error))
        c.disc()
    return 'READ answered'


# --- transmission -------------------------------------------------------------
@case('request-bad-magic')
def c_bad_magic(run):
    res = []
    for sr in (True, False):
        with run.session(sr=sr) as c:
            c.req(CMD_WRITE, SENTINEL, 512, data=b'\xee' * 512, magic=REQ_MAGIC ^ 0x100)
            c.expect_eof('disconnect')
        res.append('disconnect')
    unchanged(run, SENTINEL, 4096)
    return 'disconnect (structured and simple), nothing written'


@case('request-bad-magic-after-good')
def c_bad_magic_after(run):
    with run.session() as c:
        c.read_ok(0, 4096)
        c.send(b'\0' * 28)
        c.half_close()
        c.expect_eof('disconnect')
    return 'disconnect'


@case('request-truncated')
def c_req_truncated(run):
    for n in (1, 4, 8, 27):
        with run.session() as c:
            _, msg = c.req(CMD_READ, 0, 4096, send=False)
            c.send(msg[:n])
            c.half_close()
            c.expect_eof('close after EOF inside a request header')
    return 'close'


@case('cmd-unknown')
def c_cmd_unknown(run):
    res = []
    for sr in (True, False):
        with run.session(sr=sr) as c:
            for cmd in (8, 9, 12, 100, 0x7FFF, 0xFFFF):
                r = outcome_cmd(c, cmd, 0, 512, disc_ok=False)
            c.read_ok(0, 4096)
            c.disc()
            res.append(r)
    return '%s (structured), %s (simple); session continued' % tuple(res)


@case('cmd-unknown-flags')
def c_cmd_flags(run):
    res = set()
    with run.session() as c:
        for cmd in (CMD_READ, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES,
                    CMD_BLOCK_STATUS):
            for fl in (1 << 15, 1 << 8, 1 << 6):
                off, ln = (0, 0) if cmd == CMD_FLUSH else (SENTINEL, 4096)
                res.add(outcome_cmd(c, cmd, off, ln, fl, disc_ok=False))
        # a write with an unknown flag must not land
        res.add(outcome_cmd(c, CMD_WRITE, SENTINEL, 4096, 1 << 12, b'\xee' * 4096,
                            disc_ok=False))
        c.read_ok(SENTINEL, 8192)
        c.disc()
    return '/'.join(sorted(res)) + '; nothing written'


@case('cmd-misplaced-flags')
def c_cmd_misplaced(run):
    # Flags documented for another command: SHOULD be EINVAL; a server that
    # ignores them must still do the right thing.
    res = set()
    with run.session() as c:
        res.add(outcome_cmd(c, CMD_READ, 0, 4096, CMDF_REQ_ONE, success=True))
        res.add(outcome_cmd(c, CMD_READ, 0, 4096, CMDF_NO_HOLE, success=True))
        res.add(outcome_cmd(c, CMD_WRITE, SENTINEL, 4096, CMDF_DF,
                            bytes(run.model.expected(SENTINEL, 4096)), success=True))
        res.add(outcome_cmd(c, CMD_BLOCK_STATUS, 0, 4096, CMDF_DF, success=True))
        if not c.tflags & TF_SEND_DF:
            res.add(outcome_cmd(c, CMD_READ, 0, 4096, CMDF_DF, success=True))
        c.read_ok(0, 8192)
        c.disc()
    return '/'.join(sorted(res))


@case('cmd-simple-block-status')
def c_bs_simple(run):
    # BLOCK_STATUS without structured replies or without a meta context.
    res = []
    for sr, meta in ((False, False), (True, False)):
        with run.session(sr=sr, meta=meta) as c:
            res.append(outcome_cmd(c, CMD_BLOCK_STATUS, 0, 4096, errs=None))
    return 'simple: %s; structured without context: %s' % tuple(res)


OOB = [
    ('at-end', SIZE, 512),
    ('straddling-end', SIZE - 512, 1024),
    ('far-past-end', 1 << 62, 512),
    ('wrapping-2^64', U64 - 511, 1024),
    ('wrapping-2^64-by-1', U64, 2),
    ('offset-2^63', 1 << 63, 4096),
    ('huge-length', SIZE - 4096, 0xFFFFFFFF),
]


def oob_case(cmd, off, ln):
    def fn(run):
        res = []
        for sr in (True, False):
            with run.session(sr=sr, meta=sr) as c:
                data = b'\xee' * ln if cmd == CMD_WRITE else b''
                # may disconnect: the client broke a MUST (offset + length
                # past the export size)
                res.append(outcome_cmd(c, cmd, off, ln, data=data, errs=None))
                if res[-1] != 'disconnect':
                    c.read_ok(0, 4096)
                    c.disc()
        unchanged(run, SIZE - 64 * KiB, 64 * KiB)
        return 'structured %s, simple %s' % tuple(res)
    return fn


for cmd in (CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS, CMD_CACHE):
    for tag, off, ln in OOB:
        if cmd == CMD_WRITE and ln > MiB:
            continue    # the huge write has its own cases
        add('oob-%s-%s' % (CMD_NAMES[cmd], tag), oob_case(cmd, off, ln))


@case('length-zero')
def c_len_zero(run):
    # Length 0: unspecified, but the server SHOULD NOT disconnect.
    res = {}
    with run.session() as c:
        for cmd in (CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS,
                    CMD_CACHE):
            for off in (0, SENTINEL + 4096, SIZE):
                r = outcome_cmd(c, cmd, off, 0, errs=None, success=True, disc_ok=False)
                res.setdefault(CMD_NAMES[cmd], set()).add(r)
        c.read_ok(0, 8192)
        c.disc()
    return ', '.join('%s %s' % (k, '/'.join(sorted(v))) for k, v in res.items())


@case('write-header-then-close')
def c_write_close(run):
    for send in (0, 100, 32 * KiB):
        with run.session() as c:
            c.req(CMD_WRITE, SENTINEL, 64 * KiB, data=b'\xee' * send)
        time.sleep(0.05)
        unchanged(run, SENTINEL, 64 * KiB)
    return 'nothing written'


@case('write-header-then-eof')
def c_write_eof(run):
    with run.session() as c:
        c.req(CMD_WRITE, SENTINEL, 64 * KiB, data=b'\xee' * 1000)
        c.half_close()
        c.expect_eof('close after EOF inside a payload')
    unchanged(run, SENTINEL, 64 * KiB)
    return 'close, nothing written'


@case('requests-in-flight-then-close')
def c_inflight_close(run):
    for k in range(8):
        with run.session(sr=bool(k % 2)) as c:
            msg = b''.join(c.req(CMD_READ, (i % 24) * MiB, MiB, send=False)[1]
                           for i in range(32))
            c.send(msg)
            if k % 4 == 3:
                c.read_reply()
    return 'ok'


@case('disc-with-requests-in-flight')
def c_disc_inflight(run):
    # The server MUST handle every outstanding request before closing: the
    # writes land; the replies may or may not come.
    o, n, b = DISC_REGION
    got = []
    for sr in (True, False):
        with run.session(sr=sr) as c:
            msg = b''
            for i in range(n // (4 * KiB)):
                msg += c.req(CMD_WRITE, o + i * 4 * KiB, 4 * KiB, data=bytes([b]) * (4 * KiB),
                             send=False)[1]
                msg += c.req(CMD_READ, (i % 16) * 4 * KiB, 4 * KiB, send=False)[1]
            msg += c.req(CMD_DISC, 0, 0, send=False)[1]
            c.send(msg)
            c.half_close()
            k = 0
            try:
                while c.pending:
                    c.read_reply()
                    k += 1
            except Closed:
                pass
            got.append(k)
            for r in c.done.values():
                if r.error:
                    raise Fail('request before DISC failed: %s' % errname(r.error))
            c.expect_eof('close after DISC')
        run.model.wrote(o, n, b)
        time.sleep(0.05)
        unchanged(run, o, n)
    return '%d and %d of %d replies before the close; writes landed' % (
        got[0], got[1], 2 * n // (4 * KiB))


@case('disc-with-nonzero-fields')
def c_disc_fields(run):
    with run.session() as c:
        c.req(CMD_DISC, 12345, 512)
        c.half_close()
        c.expect_eof('close after DISC')
    return 'close'


@case('disc-then-more')
def c_disc_more(run):
    with run.session() as c:
        msg = c.req(CMD_DISC, 0, 0, send=False)[1]
        msg += b''.join(c.req(CMD_READ, 0, 4096, send=False)[1] for _ in range(4))
        try:
            c.send(msg)
        except Closed:
            return 'close'
        c.expect_eof('close after DISC')
    return 'close'


# --- read-only export -----------------------------------------------------------
@case('readonly-writes')
def c_readonly(run):
    if not run.ro_sock:
        return 'skipped (no --readonly-socket)'
    res = []
    with Conn(run.ro_sock, run.ro_model).start(name=run.ro_name) as c:
        if not c.tflags & TF_READ_ONLY:
            raise Fail('read-only export without NBD_FLAG_READ_ONLY')
        # the spec: the server MUST fail writes and SHOULD say EPERM
        eperm = (EPERM,) if run.strict else (EPERM, EINVAL)
        res.append('write ' + outcome_cmd(c, CMD_WRITE, 0, 4096, data=b'\xee' * 4096,
                                          errs=eperm, disc_ok=False))
        # FUA where it is not advertised is an unknown flag: EINVAL will do
        res.append('fua-write ' + outcome_cmd(
            c, CMD_WRITE, 0, 4096, CMDF_FUA, b'\xee' * 4096,
            errs=eperm if c.tflags & TF_SEND_FUA else (EPERM, EINVAL), disc_ok=False))
        # TRIM and WRITE_ZEROES: EPERM; a server that does not advertise them
        # may answer EINVAL, or drop a client that sends them anyway.
        for cmd, fl in ((CMD_TRIM, 0), (CMD_WRITE_ZEROES, 0), (CMD_WRITE_ZEROES, CMDF_NO_HOLE)):
            adv = c.tflags & (TF_SEND_TRIM if cmd == CMD_TRIM else TF_SEND_WRITE_ZEROES)
            res.append(CMD_NAMES[cmd] + ' ' + outcome_cmd(
                c, cmd, 0, 64 * KiB, fl, errs=eperm if adv else (EPERM, EINVAL)))
            if res[-1].endswith('disconnect'):
                c = Conn(run.ro_sock, run.ro_model).start(name=run.ro_name)
        res.append('flush ' + outcome_cmd(c, CMD_FLUSH, 0, 0, errs=None, success=True))
        c.read_ok(0, 64 * KiB)
        c.read_ok(SIZE - 64 * KiB, 64 * KiB)
        c.disc()
    with Conn(run.ro_sock, run.ro_model) as c:
        c.greet()
        c.client_flags()
        r = outcome_opt(c, OPT_GO, go_data(b'no-such-export', ()), ok=(REP_ERR_UNKNOWN,
                                                                      REP_ERR_TLS_REQD))
        res.append('GO unknown ' + r)
    return ', '.join(res)


# --- the storm --------------------------------------------------------------------
def storm_one(run, i, rnd, barrier=None):
    kind = i % 4
    path = run.sock
    if barrier is not None:
        # every client's first cycle: all of them connected at once
        with Conn(path, run.model, timeout=30).start(sr=False, meta=False) as c:
            try:
                barrier.wait(30)
            except threading.BrokenBarrierError:
                raise Fail('the %d clients were not all served at once' % run.threads)
            c.read_ok(0, 8192)
            c.disc()
    elif kind in (0, 1):
        # a clean session: GO, a few verified reads (and an idempotent write), DISC
        with Conn(path, run.model, timeout=30).start(sr=bool(i % 3), meta=bool(i % 3 == 1)) as c:
            for _ in range(3):
                o, n, _, _ = rnd.choice(REGIONS)
                off = max(0, min(SIZE - 8192, o + rnd.randrange(-8192, n) // 512 * 512))
                c.read_ok(off, 8192)
            if i % 8 == 1:
                wo, wn, wb = WRITE_REGION
                off = wo + rnd.randrange(wn // 4096) * 4096
                r = c.cmd(CMD_WRITE, off, 4096, data=bytes([wb]) * 4096)
                if r.error:
                    raise Fail('storm write: %s' % errname(r.error))
                c.read_ok(off, 4096)
            c.disc()
    elif kind == 2:
        # abrupt close somewhere in the handshake
        script = b''.join(m for m, _ in handshake_script())
        c = Conn(path, run.model, timeout=30)
        try:
            if rnd.random() < 0.2:
                return
            c.greet()
            send_handshake_prefix(c, rnd.randrange(len(script)))
        finally:
            c.close()
    else:
        # abrupt close in transmission with requests in flight
        with Conn(path, run.model, timeout=30).start(sr=bool(i % 2), meta=False) as c:
            msg = b''.join(c.req(CMD_READ, rnd.randrange(32) * 256 * KiB, 256 * KiB,
                                 send=False)[1] for _ in range(8))
            if rnd.random() < 0.5:
                msg += c.req(CMD_WRITE, SENTINEL, 64 * KiB, send=False)[1] + b'\xee' * 100
            c.send(msg)
            if rnd.random() < 0.5:
                c.read_reply()


def storm(run):
    lock = threading.Lock()
    state = {'next': 0, 'errors': [], 'done': 0}
    deadline = time.time() + 100

    barrier = threading.Barrier(run.threads)

    def worker(seed):
        rnd = random.Random(seed)
        first = True
        while True:
            with lock:
                i = state['next']
                if i >= run.cycles or len(state['errors']) >= 5:
                    return
                state['next'] += 1
            try:
                storm_one(run, i, rnd, barrier if first else None)
            except Closed as e:
                # only the clean sessions must not be dropped
                if i % 4 in (0, 1) or first:
                    with lock:
                        state['errors'].append('cycle %d: dropped: %s' % (i, e))
            except (Fail, Hang, OSError) as e:
                with lock:
                    state['errors'].append('cycle %d: %s' % (i, e))
            first = False
            with lock:
                state['done'] += 1

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(run.threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.1, deadline - time.time()))
    if any(t.is_alive() for t in ts):
        raise Hang('storm: %d of %d cycles done after %ds' % (state['done'], run.cycles,
                                                               int(time.time() - t0)))
    if state['errors']:
        raise Fail('; '.join(state['errors'][:3]))
    return '%d cycles, %d clients, %.1fs' % (run.cycles, run.threads, time.time() - t0)


add('storm', storm, timeout=110)


@case('final-read-back')
def c_final(run):
    with run.session() as c:
        for o, n, _, _ in REGIONS + [WRITE_REGION + (False,), DISC_REGION + (False,)]:
            a = o - o % 512
            e = min(SIZE, -(-(o + n) // 512) * 512)
            for p in range(a, e, MiB):
                c.read_ok(p, min(MiB, e - p))
        r = c.cmd(CMD_BLOCK_STATUS, 0, 2 * GiB)
        if r.error:
            raise Fail('BLOCK_STATUS: %s' % errname(r.error))
        c.disc()
    return 'ok'


# --- driver --------------------------------------------------------------------------
def run_case(run, name, fn, timeout, probe):
    box = {}

    def body():
        try:
            box['res'] = fn(run)
            if probe:
                run.probe()
        except (Fail, Hang, Closed) as e:
            kind = {'Hang': 'hang: ', 'Closed': 'unexpected disconnect: '}.get(
                type(e).__name__, '')
            box['err'] = kind + str(e)
        except Exception as e:   # a bug in the case is a failure too
            box['err'] = 'client error %s: %s' % (type(e).__name__, e)

    t = threading.Thread(target=body, daemon=True)
    t0 = time.time()
    t.start()
    t.join(timeout)
    if t.is_alive():
        return 'hang: case still running after %ds' % timeout, None, time.time() - t0
    return box.get('err'), box.get('res'), time.time() - t0


def main(argv):
    if len(argv) >= 2 and argv[1] in ('layout', 'final'):
        if argv[1] == 'layout':
            for o, n, b, z in REGIONS:
                print('write -z %d %d' % (o, n) if z else 'write -P %#x %d %d' % (b, o, n))
        else:
            for o, n, b in (WRITE_REGION, DISC_REGION):
                print('write -P %#x %d %d' % (b, o, n))
        return 0
    if len(argv) >= 2 and argv[1] == 'size':
        print(SIZE)
        return 0
    if len(argv) >= 3 and argv[1] == 'ready':
        # wait until the server answers a normal client (20 s)
        rest = argv[3:]
        pid = None
        if '--pid' in rest:
            i = rest.index('--pid')
            pid = int(rest[i + 1])
            del rest[i:i + 2]
        name = rest[0].encode() if rest else b''
        end = time.time() + 20
        while True:
            if pid is not None:
                run = Run({'socket': argv[2], 'pid': pid})
                try:
                    run.alive()
                except Fail as e:
                    print(str(e), file=sys.stderr)
                    return 1
            try:
                with Conn(argv[2], None, timeout=5).start(name=name) as c:
                    c.read_ok(0, 4096)
                    c.disc()
                return 0
            except (OSError, Closed, Hang, Fail) as e:
                if time.time() > end:
                    print('server at %s not ready: %s' % (argv[2], e), file=sys.stderr)
                    return 1
                time.sleep(0.1)
    if len(argv) < 3 or argv[1] != 'run':
        print(__doc__, file=sys.stderr)
        return 2
    args = {'socket': argv[2]}
    it = iter(argv[3:])
    for a in it:
        if a == '--readonly-socket':
            args['ro_socket'] = next(it)
        elif a == '--readonly-export':
            args['ro_export'] = next(it)
        elif a == '--pid':
            args['pid'] = int(next(it))
        elif a == '--only':
            args['only'] = next(it)
        elif a == '--cycles':
            args['cycles'] = int(next(it))
        elif a == '--threads':
            args['threads'] = int(next(it))
        elif a == '--strict':
            args['strict'] = True
        elif a == '-v':
            args['verbose'] = True
        else:
            print('unknown argument %s' % a, file=sys.stderr)
            return 2
    run = Run(args)
    failed = []
    t0 = time.time()
    for name, fn, timeout, probe in CASES:
        if 'only' in args and args['only'] not in name and name != 'sanity':
            continue
        err, res, dt = run_case(run, name, fn, timeout, probe)
        if err:
            failed.append(name)
            print('FAIL %s: %s' % (name, err), flush=True)
            if name == 'sanity':
                break
        elif run.verbose:
            print('ok   %-40s %5.1fs  %s' % (name, dt, res), flush=True)
    n = len(CASES) if 'only' not in args else None
    print('%s cases in %.0fs, %d failed%s' % (n if n else 'selected', time.time() - t0,
                                             len(failed),
                                             (': ' + ' '.join(failed)) if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
