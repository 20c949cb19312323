"""exFAT: the boot sector, the FAT, and the allocation bitmap from the root directory.

Used = the main and backup boot regions (24 sectors), every FAT copy, and every cluster
set in the active allocation bitmap (it covers the bitmap, the up-case table and the
root directory themselves).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from twofold.fsinfo.blockio import LayoutError, Reader, read_exact
from twofold.fsinfo.fsbitmap.usedmap import UsedMap, bitmap_extents, merge_extents

OEM_ID = b"EXFAT   "
BOOT_REGION_SECTORS = 24  # main (12) and backup (12) boot regions
ENTRY_BITMAP = 0x81
ENTRY_LABEL = 0x83
FLAG_ACTIVE_FAT = 0x1
FLAG_VOLUME_DIRTY = 0x2
FLAG_MEDIA_FAILURE = 0x4
_END_OF_CHAIN = 0xFFFFFFFF
_MAX_ROOT_CLUSTERS = 65536


@dataclass(frozen=True)
class ExfatBoot:
    """The geometry an exFAT boot sector describes."""

    sector_size: int
    cluster_size: int
    volume_sectors: int
    fat_offset: int
    fat_length: int
    heap_offset: int
    cluster_count: int
    root_cluster: int
    serial: int
    flags: int
    fat_count: int

    def cluster_offset(self, cluster: int) -> int:
        """Byte offset of a cluster (numbered from 2) from the volume start."""
        return self.heap_offset * self.sector_size + (cluster - 2) * self.cluster_size


def parse_boot(boot: bytes) -> ExfatBoot:
    """Parse an exFAT boot sector; LayoutError if it is not one."""
    if boot[3:11] != OEM_ID:
        raise LayoutError("no exFAT boot sector (OEM id 'EXFAT' missing)")
    if any(boot[11:64]):
        raise LayoutError("exFAT boot sector: the must-be-zero area is not zero")
    (volume_length,) = struct.unpack_from("<Q", boot, 72)
    fat_off, fat_len, heap_off, count, root, serial = struct.unpack_from("<6I", boot, 80)
    flags, bps_shift, spc_shift, nfats = struct.unpack_from("<HBBB", boot, 106)
    if not 9 <= bps_shift <= 12 or spc_shift > 25 - bps_shift or nfats not in (1, 2):
        raise LayoutError("exFAT boot sector has impossible sector or cluster size")
    if fat_off < BOOT_REGION_SECTORS or heap_off < fat_off + fat_len * nfats or root < 2:
        raise LayoutError("exFAT boot sector has an impossible layout")
    bps = 1 << bps_shift
    return ExfatBoot(
        sector_size=bps,
        cluster_size=bps << spc_shift,
        volume_sectors=volume_length,
        fat_offset=fat_off,
        fat_length=fat_len,
        heap_offset=heap_off,
        cluster_count=count,
        root_cluster=root,
        serial=serial,
        flags=flags,
        fat_count=nfats,
    )


class _Volume:
    """Reads cluster chains of an exFAT volume through its active FAT."""

    def __init__(self, reader: Reader, boot: ExfatBoot) -> None:
        self.reader = reader
        self.boot = boot
        active = 1 if boot.flags & FLAG_ACTIVE_FAT and boot.fat_count == 2 else 0
        fat_start = (boot.fat_offset + active * boot.fat_length) * boot.sector_size
        nbytes = (boot.cluster_count + 2) * 4
        if nbytes > boot.fat_length * boot.sector_size:
            raise LayoutError("exFAT FAT is too small for the cluster count")
        raw = read_exact(reader, fat_start, nbytes, "exFAT FAT")
        self.fat = raw

    def read_chain(self, first: int, length: int | None, what: str) -> bytes:
        """Read the chain from `first`: all of it, or `length` bytes.

        With a length, a free FAT entry means the stream is contiguous (NoFatChain).
        """
        boot = self.boot
        out = bytearray()
        cluster = first
        limit = _MAX_ROOT_CLUSTERS if length is None else -(-length // boot.cluster_size)
        for _ in range(limit):
            if not 2 <= cluster < boot.cluster_count + 2:
                raise LayoutError(f"{what}: cluster {cluster} is outside the heap")
            out += read_exact(self.reader, boot.cluster_offset(cluster), boot.cluster_size, what)
            (nxt,) = struct.unpack_from("<I", self.fat, cluster * 4)
            if nxt == _END_OF_CHAIN or (nxt == 0 and length is None):
                break
            cluster = cluster + 1 if nxt == 0 else nxt
        if length is not None:
            if len(out) < length:
                raise LayoutError(f"{what}: chain ends after {len(out)} of {length} bytes")
            del out[length:]
        return bytes(out)


def used_ranges(reader: Reader) -> UsedMap:
    """The used byte ranges of an exFAT file system read through `reader`."""
    boot = parse_boot(read_exact(reader, 0, 512, "exFAT boot sector"))
    vol = _Volume(reader, boot)
    root = vol.read_chain(boot.root_cluster, None, "exFAT root directory")
    want_second = 1 if boot.flags & FLAG_ACTIVE_FAT else 0
    bitmap_at: tuple[int, int] | None = None
    label = ""
    for pos in range(0, len(root), 32):
        etype = root[pos]
        if etype == 0:
            break
        if etype == ENTRY_BITMAP and (root[pos + 1] & 1) == want_second:
            first, size = struct.unpack_from("<IQ", root, pos + 20)
            bitmap_at = (first, size)
        elif etype == ENTRY_LABEL:
            chars = min(root[pos + 1], 11)
            label = root[pos + 2 : pos + 2 + 2 * chars].decode("utf-16-le", "replace")
    if bitmap_at is None:
        raise LayoutError("exFAT root directory has no allocation bitmap entry")
    nbits = boot.cluster_count
    if bitmap_at[1] * 8 < nbits:
        raise LayoutError(f"exFAT allocation bitmap holds {bitmap_at[1] * 8} bits, {nbits} wanted")
    bitmap = vol.read_chain(bitmap_at[0], (nbits + 7) // 8, "exFAT allocation bitmap")
    bps = boot.sector_size
    total_size = boot.volume_sectors * bps
    extents = bitmap_extents(bitmap, nbits, boot.cluster_size, boot.cluster_offset(2))
    extents.append((0, BOOT_REGION_SECTORS * bps))
    extents.append((boot.fat_offset * bps, boot.fat_count * boot.fat_length * bps))
    reason = ""
    if boot.flags & FLAG_VOLUME_DIRTY:
        reason = "the volume is marked dirty (not cleanly unmounted; run fsck.exfat)"
    elif boot.flags & FLAG_MEDIA_FAILURE:
        reason = "the volume recorded media failures (run fsck.exfat)"
    serial = boot.serial
    return UsedMap(
        fstype="exfat",
        block_size=boot.cluster_size,
        total_size=total_size,
        extents=merge_extents(extents, total_size),
        dirty=bool(reason),
        dirty_reason=reason,
        label=label or None,
        uuid=f"{serial >> 16:04X}-{serial & 0xFFFF:04X}",
    )
