#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Write a differencing VHD, written from Microsoft's "Virtual Hard Disk Image
# Format Specification" (qemu-img cannot create one), for topcow's tests.
#
#   vhd-mkdiff.py PARENT CHILD [--locators W2ru=PATH,W2ku=PATH,MacX=URL]
#                 [--parent-name NAME] [--block-size BYTES] [--garbage]
#                 [OFFSET:LENGTH:BYTE ...]
#
# The child has the parent's size, geometry and creator (so both have the
# same virtual size), the parent's unique id, the given parent locators
# (default: W2ru ".\<parent's base name>") and the parent's base name as
# its unicode name.  Each OFFSET:LENGTH:BYTE (sector-aligned, decimal or
# 0x..) fills those guest bytes with BYTE in the child: their blocks are
# allocated and their sectors marked present in the block bitmaps.  With
# --garbage the sectors of allocated blocks that are NOT marked present hold
# 0xEE bytes, which a reader must never show (it reads the parent there).
import os
import struct
import sys
import uuid

SECTOR = 512


def checksum(buf, skip):
    s = sum(buf[:skip]) + sum(buf[skip + 4:])
    return (~s) & 0xFFFFFFFF


def read_footer(path):
    with open(path, 'rb') as f:
        head = f.read(512)
        if head[:8] == b'conectix':
            return head
        f.seek(-512, os.SEEK_END)
        return f.read(512)


def main(argv):
    args, writes = {}, []
    i = 0
    pos = []
    while i < len(argv):
        a = argv[i]
        if a in ('--locators', '--parent-name', '--block-size'):
            args[a] = argv[i + 1]
            i += 2
        elif a == '--garbage':
            args[a] = True
            i += 1
        else:
            pos.append(a)
            i += 1
    parent, child = pos[0], pos[1]
    for w in pos[2:]:
        off, length, byte = (int(x, 0) for x in w.split(':'))
        assert off % SECTOR == 0 and length % SECTOR == 0
        writes.append((off, length, byte))
    block = int(args.get('--block-size', str(2 << 20)), 0)
    pf = read_footer(parent)
    assert pf[:8] == b'conectix', 'parent is not a VHD'
    size = struct.unpack('>Q', pf[48:56])[0]
    entries = (size + block - 1) // block
    bitmap = max(SECTOR, (block // SECTOR // 8 + SECTOR - 1) // SECTOR * SECTOR)

    locs = []
    spec = args.get('--locators', 'W2ru=.\\' + os.path.basename(parent))
    for item in filter(None, spec.split(',')):
        code, path = item.split('=', 1)
        data = path.encode('utf-8') if code == 'MacX' else path.encode('utf-16-le')
        locs.append((code.encode('ascii'), data))

    # Layout: footer copy, header, BAT, locator data, blocks, footer.
    bat_off = 512 + 1024
    bat_len = (entries * 4 + SECTOR - 1) // SECTOR * SECTOR
    cur = bat_off + bat_len
    loc_entries = []
    for code, data in locs:
        space = (len(data) + SECTOR - 1) // SECTOR * SECTOR
        loc_entries.append((code, space, len(data), cur, data))
        cur += space

    # Per block: present sectors and their bytes.
    blocks = {}
    for off, length, byte in writes:
        for s in range(off // SECTOR, (off + length) // SECTOR):
            b, k = divmod(s * SECTOR, block)
            blocks.setdefault(b, {})[k // SECTOR] = byte
    bat = [0xFFFFFFFF] * entries
    body = bytearray()
    for b in sorted(blocks):
        bat[b] = cur // SECTOR
        bm = bytearray(bitmap)
        data = bytearray((b'\xee' if args.get('--garbage') else b'\0') * block)
        for k, byte in blocks[b].items():
            bm[k // 8] |= 0x80 >> (k % 8)
            data[k * SECTOR:(k + 1) * SECTOR] = bytes([byte]) * SECTOR
        body += bm + data
        cur += bitmap + block

    footer = bytearray(pf)
    footer[16:24] = struct.pack('>Q', 512)                  # data offset
    footer[60:64] = struct.pack('>I', 4)                    # differencing
    footer[68:84] = uuid.uuid4().bytes
    footer[64:68] = struct.pack('>I', checksum(footer, 64))

    hdr = bytearray(1024)
    hdr[0:8] = b'cxsparse'
    hdr[8:16] = b'\xff' * 8
    hdr[16:24] = struct.pack('>Q', bat_off)
    hdr[24:28] = struct.pack('>I', 0x00010000)
    hdr[28:32] = struct.pack('>I', entries)
    hdr[32:36] = struct.pack('>I', block)
    hdr[40:56] = pf[68:84]                                  # parent unique id
    name = args.get('--parent-name', os.path.basename(parent)).encode('utf-16-be')
    hdr[64:64 + len(name)] = name[:512]
    for n, (code, space, length, off, _) in enumerate(loc_entries):
        hdr[576 + 24 * n:576 + 24 * (n + 1)] = code + struct.pack('>IIIQ', space, length, 0, off)
    hdr[36:40] = struct.pack('>I', checksum(hdr, 36))

    with open(child, 'wb') as f:
        f.write(footer + hdr)
        f.write(b''.join(struct.pack('>I', e) for e in bat).ljust(bat_len, b'\xff'))
        for _, space, _, _, data in loc_entries:
            f.write(data.ljust(space, b'\0'))
        f.write(body)
        f.write(footer)


main(sys.argv[1:])
