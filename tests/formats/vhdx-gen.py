#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Craft VHDX images that qemu-img 7.2 cannot make, written from Microsoft's
# [MS-VHDX] specification alone (no topcow code), each with the raw
# contents it must read as, computed here independently:
#
#   vhdx-gen.py sectors4k OUT EXPECTED.raw
#       a dynamic image with 4096-byte logical sectors and blocks in every
#       payload state (fully present, zero, unmapped, not present, undefined)
#   vhdx-gen.py diff OUT EXPECTED.raw PARENT.raw PARENT_NAME [--absolute PATH]
#       a differencing image whose parent (stored as relative_path
#       PARENT_NAME, with Windows backslashes, and absolute_win32_path PATH)
#       reads as PARENT.raw: blocks not present, fully present, partially
#       present (sector bitmap) and zero
#   vhdx-gen.py addlog IMG
#       append to the clean VHDX IMG a pending log of two entries that
#       rewrite guest data, zero part of a block and allocate a block, and set
#       the header's LogGuid: the image a writer leaves when it crashes
#       before replaying its log (qemu-img check -r all replays it)
#   vhdx-gen.py poke IMG OFFSET HEX [CRC_START CRC_LEN]
#       overwrite bytes at OFFSET, then optionally recompute the CRC-32C of
#       the structure [CRC_START, +CRC_LEN) (its checksum at +4): for
#       damaging images in ways only the field values reveal
import struct
import sys
import uuid

MiB = 1 << 20
KiB = 1 << 10


def crc32c(data):
    table = crc32c.table
    if table is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
        crc32c.table = table
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c.table = None


def with_crc(buf, off=4):
    buf = bytearray(buf)
    buf[off:off + 4] = b"\0\0\0\0"
    buf[off:off + 4] = struct.pack("<I", crc32c(bytes(buf)))
    return bytes(buf)


def guid(s):
    return uuid.UUID(s).bytes_le


BAT_GUID = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
META_GUID = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMS = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
DISK_SIZE = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE83 = guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
LSEC = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PSEC = guid("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOC = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
VHDX_LOCATOR = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")

NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, FULLY, PARTIAL = 0, 1, 2, 3, 6, 7
SB_PRESENT = 6


def header(seq, log_guid=b"\0" * 16, log_len=MiB, log_off=MiB):
    h = bytearray(4096)
    h[0:4] = b"head"
    struct.pack_into("<Q", h, 8, seq)
    h[16:32] = uuid.uuid4().bytes_le
    h[32:48] = uuid.uuid4().bytes_le
    h[48:64] = log_guid
    struct.pack_into("<HHIQ", h, 64, 0, 1, log_len, log_off)
    return with_crc(h)


def parent_locator(entries):
    """The parent locator item: header, key/value entries, UTF-16LE strings."""
    strings = bytearray()
    table = bytearray()
    base = 20 + 12 * len(entries)
    for k, v in entries:
        kb, vb = k.encode("utf-16-le"), v.encode("utf-16-le")
        koff = base + len(strings)
        strings += kb
        voff = base + len(strings)
        strings += vb
        table += struct.pack("<IIHH", koff, voff, len(kb), len(vb))
    return VHDX_LOCATOR + struct.pack("<HH", 0, len(entries)) + bytes(table) + bytes(strings)


class Image:
    """A VHDX laid out as 2.1 describes: header section, log, BAT, metadata, data."""

    def __init__(self, size, block_size, lsec, locator=None):
        self.size, self.bs, self.lsec = size, block_size, lsec
        self.has_parent = locator is not None
        self.cr = (1 << 23) * lsec // block_size
        self.blocks = (size + block_size - 1) // block_size
        if self.has_parent:
            chunks = (self.blocks + self.cr - 1) // self.cr
            self.entries = chunks * (self.cr + 1)
        else:
            self.entries = self.blocks + (self.blocks - 1) // self.cr
        self.bat = [0] * self.entries
        self.bat_off = 2 * MiB
        self.bat_len = max(MiB, (self.entries * 8 + MiB - 1) // MiB * MiB)
        self.meta_off = self.bat_off + self.bat_len
        self.end = self.meta_off + MiB
        self.writes = []  # (file offset, bytes)
        self.locator = locator

    def alloc(self, nbytes):
        off = self.end
        self.end += nbytes
        return off

    def set_block(self, blk, state, data=None):
        """data: bytes of the whole block (stored) for FULLY/PARTIAL."""
        off = 0
        if data is not None:
            off = self.alloc(self.bs)
            self.writes.append((off, data))
        self.bat[blk + blk // self.cr] = off | state

    def set_bitmap(self, chunk, bits):
        """bits: bytes of the chunk's sector bitmap (1 MiB or shorter)."""
        off = self.alloc(MiB)
        self.writes.append((off, bits))
        self.bat[chunk * (self.cr + 1) + self.cr] = off | SB_PRESENT

    def write(self, path):
        f = bytearray(self.end)
        f[0:8] = b"vhdxfile"
        creator = "vhdx-gen.py".encode("utf-16-le")
        f[8:8 + len(creator)] = creator
        f[64 * KiB:64 * KiB + 4096] = header(1)
        f[128 * KiB:128 * KiB + 4096] = header(2)
        rt = bytearray(64 * KiB)
        rt[0:4] = b"regi"
        struct.pack_into("<I", rt, 8, 2)
        rt[16:48] = BAT_GUID + struct.pack("<QII", self.bat_off, self.bat_len, 1)
        rt[48:80] = META_GUID + struct.pack("<QII", self.meta_off, MiB, 1)
        rt = with_crc(rt)
        f[192 * KiB:256 * KiB] = rt
        f[256 * KiB:320 * KiB] = rt
        items = [
            (FILE_PARAMS, struct.pack("<II", self.bs, 2 if self.has_parent else 0), 4),
            (DISK_SIZE, struct.pack("<Q", self.size), 6),
            (PAGE83, uuid.uuid4().bytes_le, 6),
            (LSEC, struct.pack("<I", self.lsec), 6),
            (PSEC, struct.pack("<I", 4096), 6),
        ]
        if self.has_parent:
            items.append((PARENT_LOC, parent_locator(self.locator), 6))
        m = bytearray(MiB)
        m[0:8] = b"metadata"
        struct.pack_into("<H", m, 10, len(items))
        off = 64 * KiB
        for i, (g, v, flags) in enumerate(items):
            m[32 + 32 * i:64 + 32 * i] = g + struct.pack("<IIII", off, len(v), flags, 0)
            m[off:off + len(v)] = v
            off += len(v)
        f[self.meta_off:self.meta_off + MiB] = m
        bat = struct.pack("<%dQ" % self.entries, *self.bat)
        f[self.bat_off:self.bat_off + len(bat)] = bat
        for off, data in self.writes:
            f[off:off + len(data)] = data
        with open(path, "wb") as out:
            out.write(f)


def pattern(seed, n):
    """Recognisable non-zero bytes: each 512-byte sector says where it came from."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += (b"%08x:%04d;" % (seed, i)) * 37 + b"\xA5" * (512 - 37 * 14)
        i += 1
    return bytes(out[:n])


def sectors4k(out, expected):
    bs = MiB
    img = Image(6 * MiB, bs, 4096)
    raw = bytearray(img.size)
    # block 0: data; 1: zero; 2: not present; 3: unmapped; 4: data; 5: undefined
    for blk, state in enumerate([FULLY, ZERO, NOT_PRESENT, UNMAPPED, FULLY, UNDEFINED]):
        data = pattern(blk + 1, bs) if state == FULLY else None
        img.set_block(blk, state, data)
        if data:
            raw[blk * bs:(blk + 1) * bs] = data
    img.write(out)
    open(expected, "wb").write(raw)


def diff(out, expected, parent_raw, parent_name, absolute=None):
    bs = MiB
    parent = open(parent_raw, "rb").read()
    size = len(parent)
    loc = [("parent_linkage", "{%s}" % uuid.uuid4()),
           ("relative_path", ".\\" + parent_name.replace("/", "\\"))]
    if absolute:
        loc.append(("absolute_win32_path", absolute))
    img = Image(size, bs, 512, loc)
    raw = bytearray(parent)
    nblocks = img.blocks
    # The sector bitmap of chunk 0 (the whole image: chunk ratio 4096 blocks).
    bits = bytearray(nblocks * bs // 512 // 8)
    for blk in range(nblocks):
        kind = blk % 4
        if kind == 0:
            img.set_block(blk, NOT_PRESENT)
        elif kind == 1:
            data = pattern(0x100 + blk, bs)
            img.set_block(blk, FULLY, data)
            raw[blk * bs:(blk + 1) * bs] = data
        elif kind == 2:
            # Present: sectors 0..7, 100..355, every third sector from 1000 on.
            data = pattern(0x200 + blk, bs)
            img.set_block(blk, PARTIAL, data)
            spb = bs // 512
            present = set(range(8)) | set(range(100, 356)) | set(range(1000, spb, 3))
            for s in present:
                g = blk * spb + s
                bits[g // 8] |= 1 << (g % 8)
                raw[g * 512:(g + 1) * 512] = data[s * 512:(s + 1) * 512]
        else:
            img.set_block(blk, ZERO)
            raw[blk * bs:(blk + 1) * bs] = bytes(bs)
    img.set_bitmap(0, bytes(bits))
    img.write(out)
    open(expected, "wb").write(raw)


def log_entry(seq, tail, log_guid, descs, flushed, last):
    """descs: ("data", file_offset, 4096 bytes) or ("zero", file_offset, length)."""
    n = len(descs)
    hdr_sectors = (64 + 32 * n + 4095) // 4096
    data_descs = [d for d in descs if d[0] == "data"]
    length = 4096 * (hdr_sectors + len(data_descs))
    e = bytearray(length)
    e[0:4] = b"loge"
    struct.pack_into("<IIQII", e, 8, length, tail, seq, n, 0)
    e[32:48] = log_guid
    struct.pack_into("<QQ", e, 48, flushed, last)
    sec = hdr_sectors
    for i, d in enumerate(descs):
        p = 64 + 32 * i
        if d[0] == "zero":
            e[p:p + 4] = b"zero"
            struct.pack_into("<IQQQ", e, p + 4, 0, d[2], d[1], seq)
        else:
            data = d[2]
            e[p:p + 4] = b"desc"
            e[p + 4:p + 8] = data[4092:4096]      # TrailingBytes
            e[p + 8:p + 16] = data[0:8]           # LeadingBytes
            struct.pack_into("<QQ", e, p + 16, d[1], seq)
            s = 4096 * sec
            e[s:s + 4] = b"data"
            struct.pack_into("<I", e, s + 4, seq >> 32)
            e[s + 8:s + 4092] = data[8:4092]
            struct.pack_into("<I", e, s + 4092, seq & 0xFFFFFFFF)
            sec += 1
    return with_crc(e)


def addlog(path):
    f = bytearray(open(path, "rb").read())
    h1 = f[64 * KiB:64 * KiB + 4096]
    h2 = f[128 * KiB:128 * KiB + 4096]
    cur = h1 if struct.unpack_from("<Q", h1, 8)[0] > struct.unpack_from("<Q", h2, 8)[0] else h2
    seq = struct.unpack_from("<Q", cur, 8)[0]
    log_len, log_off = struct.unpack_from("<IQ", cur, 68)
    rt = f[192 * KiB:256 * KiB]
    regions = {}
    for i in range(struct.unpack_from("<I", rt, 8)[0]):
        e = rt[16 + 32 * i:48 + 32 * i]
        regions[bytes(e[0:16])] = struct.unpack_from("<QI", e, 16)
    bat_off = regions[BAT_GUID][0]
    bat = list(struct.unpack_from("<64Q", f, bat_off))
    present = [i for i, e in enumerate(bat) if e & 7 == FULLY]
    assert present, "the image needs an allocated block"
    blk_off = bat[present[0]] & ~(MiB - 1)
    size = len(f)
    # Entry 1: new data over the first 4 KiB of the first allocated block,
    # and zeros over 8 KiB further in.  Entry 2: a BAT sector in which a
    # block that was not allocated points at a new block of data.
    new = bytes((i * 7 + 3) & 0xFF for i in range(4096))
    e1 = log_entry(seq + 10, 0, LOG_GUID, [("data", blk_off, new), ("zero", blk_off + 64 * KiB, 8 * KiB)],
                   size, size)
    bs = struct.unpack_from("<I", f, regions[META_GUID][0] + 64 * KiB)[0]
    cr = (1 << 23) * 512 // bs
    target = next(i for i in range(len(bat)) if bat[i] & 7 != FULLY and (i + 1) % (cr + 1) != 0)
    # The new block's data is already in the file (appended, unreferenced
    # until the log is replayed).
    newblk = (size + MiB - 1) // MiB * MiB
    f += bytes(newblk - size) + pattern(0x4C, bs)
    size = len(f)
    bat[target] = newblk | FULLY
    batsec = bytearray(f[bat_off:bat_off + 4096])
    struct.pack_into("<Q", batsec, 8 * target, bat[target])
    e2 = log_entry(seq + 11, 0, LOG_GUID, [("data", bat_off, bytes(batsec))], size, size)
    log = e1 + e2
    assert len(log) <= log_len
    f[log_off:log_off + len(log)] = log
    # Both headers name the log; the newer one is current.
    f[64 * KiB:64 * KiB + 4096] = header(seq + 1, LOG_GUID, log_len, log_off)
    f[128 * KiB:128 * KiB + 4096] = header(seq + 2, LOG_GUID, log_len, log_off)
    open(path, "wb").write(f)


LOG_GUID = uuid.UUID("6f2a1c3e-5b7d-4e9f-8a1b-2c3d4e5f6a7b").bytes_le

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sectors4k":
        sectors4k(*args)
    elif cmd == "diff":
        absolute = None
        if "--absolute" in args:
            i = args.index("--absolute")
            absolute = args[i + 1]
            del args[i:i + 2]
        diff(*args, absolute=absolute)
    elif cmd == "addlog":
        addlog(*args)
    elif cmd == "poke":
        f = bytearray(open(args[0], "rb").read())
        off = int(args[1], 0)
        data = bytes.fromhex(args[2])
        f[off:off + len(data)] = data
        if len(args) > 3:
            start, n = int(args[3], 0), int(args[4], 0)
            f[start:start + n] = with_crc(f[start:start + n])
        open(args[0], "wb").write(f)
    else:
        sys.exit("unknown command " + cmd)
