"""ext2/3/4: the superblock, the group descriptors and the block bitmaps, as a UsedMap.

Used = every set bit of every initialised group's block bitmap, plus, for groups marked
BLOCK_UNINIT, the superblock backup, descriptor blocks, bitmaps and inode table the group
owns (what libext2fs marks for them, so the count equals `partclone.ext4`'s).
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import dataclass

from twofold.fsinfo.blockio import LayoutError, Reader, read_exact
from twofold.fsinfo.fsbitmap.usedmap import Extent, UsedMap, bitmap_extents, merge_extents

SUPERBLOCK_OFFSET = 1024
EXT_MAGIC = 0xEF53

COMPAT_HAS_JOURNAL = 0x4
COMPAT_SPARSE_SUPER2 = 0x200
INCOMPAT_FILETYPE = 0x2
INCOMPAT_RECOVER = 0x4
INCOMPAT_JOURNAL_DEV = 0x8
INCOMPAT_META_BG = 0x10
INCOMPAT_64BIT = 0x80
RO_COMPAT_SPARSE_SUPER = 0x1
RO_COMPAT_LARGE_FILE = 0x2
RO_COMPAT_BTREE_DIR = 0x4
RO_COMPAT_GDT_CSUM = 0x10
RO_COMPAT_BIGALLOC = 0x200
RO_COMPAT_METADATA_CSUM = 0x400

STATE_VALID = 0x1
STATE_ERROR = 0x2
BG_BLOCK_UNINIT = 0x2

_GROUPS_PER_WINDOW = 4096  # groups whose bitmaps are expanded together


@dataclass(frozen=True)
class ExtSuper:
    """The superblock fields the used-block reader needs."""

    block_size: int
    cluster_ratio: int
    blocks_count: int
    free_blocks_count: int
    first_data_block: int
    blocks_per_group: int
    clusters_per_group: int
    inodes_per_group: int
    inode_size: int
    state: int
    compat: int
    incompat: int
    ro_compat: int
    uuid: str
    label: str
    reserved_gdt_blocks: int
    desc_size: int
    first_meta_bg: int
    backup_bgs: tuple[int, int]

    @property
    def group_count(self) -> int:
        """Number of block groups."""
        span = self.blocks_count - self.first_data_block
        return -(-span // self.blocks_per_group)

    @property
    def descs_per_block(self) -> int:
        """Group descriptors held by one block."""
        return self.block_size // self.desc_size

    @property
    def desc_blocks(self) -> int:
        """Blocks holding the whole group descriptor table."""
        return -(-self.group_count // self.descs_per_block)

    @property
    def inode_table_blocks(self) -> int:
        """Blocks one group's inode table takes."""
        return -(-(self.inodes_per_group * self.inode_size) // self.block_size)

    @property
    def kind(self) -> str:
        """ext2, ext3 or ext4, by the features in use (as blkid names them)."""
        ext3_incompat = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG
        ext3_ro = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR
        if self.incompat & ~ext3_incompat or self.ro_compat & ~ext3_ro:
            return "ext4"
        return "ext3" if self.compat & COMPAT_HAS_JOURNAL else "ext2"


def read_super(reader: Reader) -> ExtSuper:
    """Parse and sanity-check the primary superblock; LayoutError if it is not ext2/3/4."""
    raw = read_exact(reader, SUPERBLOCK_OFFSET, 1024, "ext superblock")
    (magic,) = struct.unpack_from("<H", raw, 56)
    if magic != EXT_MAGIC:
        raise LayoutError("no ext2/3/4 superblock (magic 0xEF53 missing)")
    (
        inodes_count,
        blocks_lo,
        _r_lo,
        free_lo,
        _free_inodes,
        first_data,
        log_block,
        log_cluster,
        bpg,
        cpg,
        ipg,
    ) = struct.unpack_from("<11I", raw, 0)
    (state,) = struct.unpack_from("<H", raw, 58)
    (inode_size,) = struct.unpack_from("<H", raw, 88)
    (rev_level,) = struct.unpack_from("<I", raw, 76)
    compat, incompat, ro_compat = struct.unpack_from("<3I", raw, 92)
    (reserved_gdt,) = struct.unpack_from("<H", raw, 206)
    (desc_size,) = struct.unpack_from("<H", raw, 254)
    (first_meta_bg,) = struct.unpack_from("<I", raw, 260)
    blocks_hi, _r_hi, free_hi = struct.unpack_from("<3I", raw, 336)
    backup_bgs = struct.unpack_from("<2I", raw, 0x24C)
    if log_block > 6 or bpg == 0 or ipg == 0 or inodes_count == 0:
        raise LayoutError("ext superblock has impossible geometry")
    block_size = 1024 << log_block
    is64 = bool(incompat & INCOMPAT_64BIT)
    bigalloc = bool(ro_compat & RO_COMPAT_BIGALLOC)
    ratio = (1 << (log_cluster - log_block)) if bigalloc and log_cluster >= log_block else 1
    if not bigalloc:
        cpg = bpg
    if rev_level == 0:
        inode_size = 128
    dsize = desc_size if is64 and desc_size >= 64 else 32
    if dsize > block_size or dsize & (dsize - 1) or cpg % 8:
        raise LayoutError("ext superblock has impossible descriptor or group size")
    return ExtSuper(
        block_size=block_size,
        cluster_ratio=ratio,
        blocks_count=blocks_lo | ((blocks_hi << 32) if is64 else 0),
        free_blocks_count=free_lo | ((free_hi << 32) if is64 else 0),
        first_data_block=first_data,
        blocks_per_group=bpg,
        clusters_per_group=cpg,
        inodes_per_group=ipg,
        inode_size=inode_size,
        state=state,
        compat=compat,
        incompat=incompat,
        ro_compat=ro_compat,
        uuid=str(uuidlib.UUID(bytes=raw[104:120])),
        label=raw[120:136].split(b"\0", 1)[0].decode("utf-8", "replace"),
        reserved_gdt_blocks=reserved_gdt,
        desc_size=dsize,
        first_meta_bg=first_meta_bg,
        backup_bgs=(backup_bgs[0], backup_bgs[1]),
    )


def _is_power(n: int, base: int) -> bool:
    while n > 1 and n % base == 0:
        n //= base
    return n == 1


def group_has_super(sb: ExtSuper, group: int) -> bool:
    """True when `group` holds a superblock copy (sparse_super / sparse_super2 rules)."""
    if group == 0:
        return True
    if sb.compat & COMPAT_SPARSE_SUPER2:
        return group in sb.backup_bgs
    if group == 1 or not sb.ro_compat & RO_COMPAT_SPARSE_SUPER:
        return True
    if group % 2 == 0:
        return False
    return _is_power(group, 3) or _is_power(group, 5) or _is_power(group, 7)


def _group_start(sb: ExtSuper, group: int) -> int:
    """First block of a group's metadata; block 0 of a 1 KiB-block bigalloc fs is skipped."""
    start = sb.first_data_block + group * sb.blocks_per_group
    return 1 if start == 0 and sb.block_size == 1024 else start


def descriptor_block(sb: ExtSuper, index: int) -> int:
    """Block number of the index-th block of the primary group descriptor table."""
    if not sb.incompat & INCOMPAT_META_BG or index < sb.first_meta_bg:
        return _group_start(sb, 0) + 1 + index
    group = index * sb.descs_per_block
    return _group_start(sb, group) + (1 if group_has_super(sb, group) else 0)


def super_and_descriptor_blocks(sb: ExtSuper, group: int) -> list[tuple[int, int]]:
    """(first block, count) runs a group gives to its superblock and descriptor copies."""
    runs: list[tuple[int, int]] = []
    start = _group_start(sb, group)
    has_super = group_has_super(sb, group)
    meta_bg = bool(sb.incompat & INCOMPAT_META_BG)
    old_desc = sb.first_meta_bg if meta_bg else sb.desc_blocks + sb.reserved_gdt_blocks
    if has_super:
        runs.append((start, 1))
    per = sb.descs_per_block
    if not meta_bg or group // per < sb.first_meta_bg:
        if has_super and old_desc:
            runs.append((start + 1, min(old_desc, sb.blocks_count - start - 1)))
    elif group % per in (0, 1, per - 1):
        runs.append((start + (1 if has_super else 0), 1))
    return runs


@dataclass(frozen=True)
class GroupDesc:
    """One group descriptor: where its bitmaps and inode table are, and its flags."""

    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    flags: int


def read_group_descs(reader: Reader, sb: ExtSuper) -> list[GroupDesc]:
    """Read every group descriptor from the primary table (meta_bg aware)."""
    bs = sb.block_size
    blocks = [descriptor_block(sb, i) for i in range(sb.desc_blocks)]
    raw = bytearray()
    run_start = 0
    for i in range(1, len(blocks) + 1):
        if i == len(blocks) or blocks[i] != blocks[i - 1] + 1:
            count = i - run_start
            raw += read_exact(reader, blocks[run_start] * bs, count * bs, "ext group descriptors")
            run_start = i
    descs: list[GroupDesc] = []
    is64 = sb.desc_size >= 64
    for g in range(sb.group_count):
        off = g * sb.desc_size
        bb, ib, it = struct.unpack_from("<3I", raw, off)
        (flags,) = struct.unpack_from("<H", raw, off + 18)
        if is64:
            bb_hi, ib_hi, it_hi = struct.unpack_from("<3I", raw, off + 32)
            bb, ib, it = bb | bb_hi << 32, ib | ib_hi << 32, it | it_hi << 32
        descs.append(GroupDesc(bb, ib, it, flags))
    return descs


def _read_bitmaps(
    reader: Reader, sb: ExtSuper, descs: list[GroupDesc], groups: range, uninit: set[int]
) -> bytearray:
    """The packed block bitmaps of `groups`, back to back; uninitialised groups all zero."""
    per_group = sb.clusters_per_group // 8
    out = bytearray(len(groups) * per_group)
    wanted = sorted((descs[g].block_bitmap, g) for g in groups if g not in uninit)
    i = 0
    while i < len(wanted):
        j = i + 1
        while j < len(wanted) and wanted[j][0] == wanted[j - 1][0] + 1 and j - i < 1024:
            j += 1
        first = wanted[i][0]
        if first <= 0 or wanted[j - 1][0] >= sb.blocks_count:
            raise LayoutError(f"ext group {wanted[i][1]}: block bitmap at {first} is outside")
        raw = read_exact(reader, first * sb.block_size, (j - i) * sb.block_size, "ext block bitmap")
        for k in range(i, j):
            block, g = wanted[k]
            src = (block - first) * sb.block_size
            dst = (g - groups.start) * per_group
            out[dst : dst + per_group] = raw[src : src + per_group]
        i = j
    return out


def _uninit_group_blocks(sb: ExtSuper, descs: list[GroupDesc], group: int) -> list[Extent]:
    """Block runs libext2fs marks in use for a BLOCK_UNINIT group."""
    runs = super_and_descriptor_blocks(sb, group)
    d = descs[group]
    if d.inode_table:
        runs.append((d.inode_table, sb.inode_table_blocks))
    runs.extend((blk, 1) for blk in (d.block_bitmap, d.inode_bitmap) if blk)
    return runs


def dirty_reason(sb: ExtSuper) -> str:
    """Why the file system is not clean, or "" when it is."""
    if sb.state & STATE_ERROR:
        return "the file system has errors recorded (run e2fsck)"
    if sb.incompat & INCOMPAT_RECOVER:
        return "the journal needs recovery (mounted, or not cleanly unmounted)"
    if not sb.state & STATE_VALID:
        return "the file system was not cleanly unmounted"
    return ""


def used_ranges(reader: Reader) -> UsedMap:
    """The used byte ranges of an ext2/3/4 file system read through `reader`."""
    sb = read_super(reader)
    if sb.incompat & INCOMPAT_JOURNAL_DEV:
        raise LayoutError("this is an external ext journal device, not a file system")
    bs = sb.block_size
    unit = bs * sb.cluster_ratio
    total_size = sb.blocks_count * bs
    descs = read_group_descs(reader, sb)
    csum = bool(sb.ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM))
    uninit = {g for g, d in enumerate(descs) if csum and d.flags & BG_BLOCK_UNINIT}
    units_total = -(-(sb.blocks_count - sb.first_data_block) // sb.cluster_ratio)
    base = sb.first_data_block * bs
    extents: list[Extent] = [(0, max(base, 2048))]  # boot block and primary superblock
    for first in range(0, sb.group_count, _GROUPS_PER_WINDOW):
        groups = range(first, min(first + _GROUPS_PER_WINDOW, sb.group_count))
        packed = _read_bitmaps(reader, sb, descs, groups, uninit)
        first_unit = first * sb.clusters_per_group
        nbits = min(len(groups) * sb.clusters_per_group, units_total - first_unit)
        extents.extend(bitmap_extents(packed, nbits, unit, base + first_unit * unit))
    for g in sorted(uninit):
        for blk, count in _uninit_group_blocks(sb, descs, g):
            # bigalloc marks whole clusters: round the run out to cluster bounds
            lo = (blk // sb.cluster_ratio) * sb.cluster_ratio
            hi = -(-(blk + count) // sb.cluster_ratio) * sb.cluster_ratio
            extents.append((lo * bs, (hi - lo) * bs))
    reason = dirty_reason(sb)
    return UsedMap(
        fstype=sb.kind,
        block_size=unit,
        total_size=total_size,
        extents=merge_extents(extents, total_size),
        dirty=bool(reason),
        dirty_reason=reason,
        label=sb.label or None,
        uuid=sb.uuid,
    )
