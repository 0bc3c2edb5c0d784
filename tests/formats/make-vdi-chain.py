#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Build a VirtualBox-style chain of VDI images, written from VirtualBox's
description of the VDI 1.1 format (not from any VDI implementation), and the
raw content each level must read as.

    make-vdi-chain.py DIR

lays out, as VirtualBox does for a VM with two snapshots:

    DIR/VM/base.vdi                 level 0: dynamic (normal) image
    DIR/VM/Snapshots/{UUID1}.vdi    level 1: differencing, parent base.vdi
    DIR/VM/Snapshots/{UUID2}.vdi    level 2: differencing, parent level 1
    DIR/expect-N.raw                what level N reads as (the child's blocks
                                    over its parents': a free block reads
                                    through, a zero block reads as zeros)

and prints one line per level, base first: "N PATH EXPECTED".  Parents are
linked by UUID only (the child stores its parent's image UUID), so a reader
must find level 1's parent in the directory above and level 2's in its own.
The data blocks of each image are stored in the data area in reverse guest
order, so that block index and position differ.
"""

import hashlib
import os
import random
import struct
import sys
import uuid

BLOCK = 1 << 20
BLOCKS = 8
DISK_SIZE = 7 * BLOCK + BLOCK // 2  # the last block is only half inside the disk
FREE, ZERO = 0xFFFFFFFF, 0xFFFFFFFE
TYPE_NORMAL, TYPE_DIFF = 1, 4

# Per level, per block: 'D' data, 'Z' zero block, '.' free block.  Every
# combination of (parent state, child state) occurs somewhere.
LAYOUT = [
    "DDZ.DD.D",  # base
    ".DDDZ..D",  # level 1
    "D.Z.DZD.",  # level 2 (top)
]


def pattern(level, block):
    """The 1 MiB of data block @block of @level: distinct for every pair."""
    seed = hashlib.sha256(b"vdi-level-%d-block-%d" % (level, block)).digest()
    data = bytearray(seed * (BLOCK // len(seed)))
    # Some zero bytes inside the data, as a real disk has.
    data[4096:8192] = bytes(4096)
    return bytes(data)


def header(image_type, uuid_image, uuid_modify, uuid_link, uuid_parent_modify,
           blocks_allocated, offset_bmap, offset_data):
    text = b"<<< Oracle VM VirtualBox Disk Image >>>\n"
    pre = text.ljust(64, b"\0") + struct.pack("<II", 0xBEDA107F, 0x00010001)
    # Header 1.1 (400 bytes: with the LCHS geometry).
    h = struct.pack("<III", 400, image_type, 0)
    h += b"test image".ljust(256, b"\0")
    h += struct.pack("<II", offset_bmap, offset_data)
    h += struct.pack("<IIII", 0, 0, 0, 512)  # legacy geometry: unknown, 512-byte sectors
    h += struct.pack("<I", 0)
    h += struct.pack("<QIIII", DISK_SIZE, BLOCK, 0, BLOCKS, blocks_allocated)
    h += uuid_image + uuid_modify + uuid_link + uuid_parent_modify
    h += struct.pack("<IIII", 0, 0, 0, 512)  # LCHS geometry
    assert len(h) == 400
    return pre + h


def write_image(path, level, image_type, ids, parent_ids):
    layout = LAYOUT[level]
    data_blocks = [b for b in range(BLOCKS) if layout[b] == "D"]
    bmap = [FREE] * BLOCKS
    # Reverse guest order in the data area.
    for index, block in enumerate(reversed(data_blocks)):
        bmap[block] = index
    for b in range(BLOCKS):
        if layout[b] == "Z":
            bmap[b] = ZERO
    offset_bmap = 512
    offset_data = 4096
    hdr = header(image_type, ids[0], ids[1], parent_ids[0], parent_ids[1],
                 len(data_blocks), offset_bmap, offset_data)
    with open(path, "wb") as f:
        f.write(hdr.ljust(offset_bmap, b"\0"))
        f.write(struct.pack("<%dI" % BLOCKS, *bmap).ljust(offset_data - offset_bmap, b"\0"))
        for block in reversed(data_blocks):
            f.write(pattern(level, block))


def expected(level):
    """What @level reads as: each level's blocks over the levels below."""
    disk = bytearray(BLOCKS * BLOCK)
    for lv in range(level + 1):
        for b in range(BLOCKS):
            state = LAYOUT[lv][b]
            if state == "D":
                disk[b * BLOCK:(b + 1) * BLOCK] = pattern(lv, b)
            elif state == "Z":
                disk[b * BLOCK:(b + 1) * BLOCK] = bytes(BLOCK)
    return bytes(disk[:DISK_SIZE])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-vdi-chain.py DIR")
    top = sys.argv[1]
    rng = random.Random(20240501)

    def new_uuid():
        return uuid.UUID(int=rng.getrandbits(128), version=4).bytes_le

    vm = os.path.join(top, "VM")
    snaps = os.path.join(vm, "Snapshots")
    os.makedirs(snaps, exist_ok=True)
    nil = (bytes(16), bytes(16))
    parent = nil
    for level in range(len(LAYOUT)):
        ids = (new_uuid(), new_uuid())
        if level == 0:
            path = os.path.join(vm, "base.vdi")
            write_image(path, level, TYPE_NORMAL, ids, nil)
        else:
            name = "{%s}.vdi" % uuid.UUID(bytes_le=ids[0])
            path = os.path.join(snaps, name)
            write_image(path, level, TYPE_DIFF, ids, parent)
        exp = os.path.join(top, "expect-%d.raw" % level)
        with open(exp, "wb") as f:
            f.write(expected(level))
        print(level, path, exp)
        parent = ids


if __name__ == "__main__":
    main()
