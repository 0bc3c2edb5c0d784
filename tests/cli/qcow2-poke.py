# SPDX-License-Identifier: MIT
"""Edit qcow2 metadata in place, to build damaged images for the check tests.

    qcow2-poke.py refcount FILE CLUSTER VALUE   set a host cluster's refcount
    qcow2-poke.py l2 FILE GUEST_CLUSTER VALUE   set an L2 entry (its first 8 bytes)
    qcow2-poke.py bitmap FILE GUEST_CLUSTER VALUE  set an extended L2 entry's bitmap
    qcow2-poke.py l1 FILE INDEX VALUE           set an L1 entry
    qcow2-poke.py incompat FILE VALUE           set the incompatible feature bits

Numbers may be given in hex (0x...).  The L1/L2 tables that are edited must
exist; nothing is allocated.
"""
import struct
import sys

OFFSET_MASK = 0x00FFFFFFFFFFFE00


def read_u64(f, off):
    f.seek(off)
    return struct.unpack('>Q', f.read(8))[0]


def write_u64(f, off, value):
    f.seek(off)
    f.write(struct.pack('>Q', value))


def header(f):
    f.seek(0)
    h = f.read(104)
    version, = struct.unpack('>I', h[4:8])
    cluster_bits, = struct.unpack('>I', h[20:24])
    l1_offset, refcount_table = struct.unpack('>QQ', h[40:56])
    refcount_order = struct.unpack('>I', h[96:100])[0] if version >= 3 else 4
    incompat = struct.unpack('>Q', h[72:80])[0] if version >= 3 else 0
    return {
        'cluster_size': 1 << cluster_bits,
        'l1_offset': l1_offset,
        'refcount_table': refcount_table,
        'refcount_bits': 1 << refcount_order,
        'l2_entry_size': 16 if incompat & (1 << 4) else 8,
    }


def l2_entry_offset(f, h, guest_cluster):
    per_table = h['cluster_size'] // h['l2_entry_size']
    l1e = read_u64(f, h['l1_offset'] + 8 * (guest_cluster // per_table))
    if not l1e & OFFSET_MASK:
        sys.exit('no L2 table for guest cluster %d' % guest_cluster)
    return (l1e & OFFSET_MASK) + (guest_cluster % per_table) * h['l2_entry_size']


def set_refcount(f, h, cluster, value):
    bits = h['refcount_bits']
    per_block = h['cluster_size'] * 8 // bits
    block = read_u64(f, h['refcount_table'] + 8 * (cluster // per_block)) & ~0x1FF
    if not block:
        sys.exit('no refcount block for cluster %d' % cluster)
    bit = (cluster % per_block) * bits
    if bits >= 8:
        f.seek(block + bit // 8)
        f.write(value.to_bytes(bits // 8, 'big'))
        return
    # Sub-byte refcounts are packed LSB first.
    f.seek(block + bit // 8)
    byte = f.read(1)[0]
    mask = ((1 << bits) - 1) << (bit % 8)
    byte = (byte & ~mask) | ((value << (bit % 8)) & mask)
    f.seek(block + bit // 8)
    f.write(bytes([byte]))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    cmd, path = sys.argv[1], sys.argv[2]
    args = [int(a, 0) for a in sys.argv[3:]]
    with open(path, 'r+b') as f:
        h = header(f)
        if cmd == 'refcount':
            set_refcount(f, h, args[0], args[1])
        elif cmd == 'l2':
            write_u64(f, l2_entry_offset(f, h, args[0]), args[1])
        elif cmd == 'bitmap':
            if h['l2_entry_size'] != 16:
                sys.exit('not an extended L2 image')
            write_u64(f, l2_entry_offset(f, h, args[0]) + 8, args[1])
        elif cmd == 'l1':
            write_u64(f, h['l1_offset'] + 8 * args[0], args[1])
        elif cmd == 'incompat':
            write_u64(f, 72, args[0])
        else:
            sys.exit('unknown command ' + cmd)


main()
