"""FAT12/16/32: the boot sector (BPB) and the file allocation table, as a UsedMap.

Used = everything before the data area (boot sector, reserved sectors with FSInfo and the
backup boot sector, every FAT copy, the FAT12/16 root directory) plus every cluster whose
FAT entry is neither free nor marked bad.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twofold.fsinfo.blockio import LayoutError, Reader, read_exact
from twofold.fsinfo.fsbitmap.usedmap import UsedMap, mask_extents, merge_extents

if TYPE_CHECKING:  # numpy is imported when a FAT is read, not by every image run
    import numpy as np
    import numpy.typing as npt

_BAD = {"fat12": 0xFF7, "fat16": 0xFFF7, "fat32": 0x0FFFFFF7}


@dataclass(frozen=True)
class FatGeometry:
    """The layout a FAT boot sector describes."""

    kind: str
    sector_size: int
    cluster_size: int
    reserved_sectors: int
    fat_count: int
    fat_sectors: int
    root_dir_sectors: int
    total_sectors: int
    cluster_count: int
    active_fat: int
    boot_flags: int
    volume_id: int
    label: str

    @property
    def data_offset(self) -> int:
        """Byte offset of cluster 2, the first cluster of the data area."""
        sectors = self.reserved_sectors + self.fat_count * self.fat_sectors
        return (sectors + self.root_dir_sectors) * self.sector_size

    @property
    def total_size(self) -> int:
        """Bytes the file system spans."""
        return self.total_sectors * self.sector_size


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def parse_boot_sector(boot: bytes) -> FatGeometry:
    """Parse a FAT boot sector; LayoutError if it is not a plausible FAT BPB."""
    if len(boot) < 512 or boot[0] not in (0xEB, 0xE9) or boot[3:11] in (b"NTFS    ", b"EXFAT   "):
        raise LayoutError("no FAT boot sector (jump instruction missing)")
    bps, spc, rsvd, nfats, root_ents, tot16, media, fatsz16 = struct.unpack_from(
        "<HBHBHHBH", boot, 11
    )
    (tot32,) = struct.unpack_from("<I", boot, 32)
    (fatsz32,) = struct.unpack_from("<I", boot, 36)
    ok = (
        bps in (512, 1024, 2048, 4096)
        and _power_of_two(spc)
        and spc <= 128
        and rsvd >= 1
        and 1 <= nfats <= 4
        and (media == 0xF0 or media >= 0xF8)
    )
    fat_sectors = fatsz16 or fatsz32
    total = tot16 or tot32
    if not ok or not fat_sectors or not total:
        raise LayoutError("no FAT boot sector (BPB fields out of range)")
    root_dir_sectors = -(-(root_ents * 32) // bps)
    data_sectors = total - (rsvd + nfats * fat_sectors + root_dir_sectors)
    if data_sectors <= 0:
        raise LayoutError("FAT boot sector describes no data area")
    count = data_sectors // spc
    if not fatsz16:  # a FAT32 BPB, even with fewer clusters than the spec wants (as Linux)
        kind = "fat32"
    else:
        kind = "fat12" if count < 4085 else "fat16" if count < 65525 else "fat32"
    if kind == "fat32" and fatsz16:
        raise LayoutError("FAT32 cluster count but a FAT16-style FAT size")
    if kind == "fat32":
        (ext_flags,) = struct.unpack_from("<H", boot, 40)
        active = ext_flags & 0xF if ext_flags & 0x80 else 0
        flags_off, id_off = 65, 67
    else:
        active, flags_off, id_off = 0, 37, 39
    entries_room = fat_sectors * bps * 8 // {"fat12": 12, "fat16": 16, "fat32": 32}[kind]
    if entries_room < count + 2 or active >= nfats:
        raise LayoutError("FAT is too small for the clusters the boot sector declares")
    has_ids = boot[id_off - 1] == 0x29
    label = boot[id_off + 4 : id_off + 15].decode("latin-1").rstrip(" \0") if has_ids else ""
    return FatGeometry(
        kind=kind,
        sector_size=bps,
        cluster_size=bps * spc,
        reserved_sectors=rsvd,
        fat_count=nfats,
        fat_sectors=fat_sectors,
        root_dir_sectors=root_dir_sectors,
        total_sectors=total,
        cluster_count=count,
        active_fat=active,
        boot_flags=boot[flags_off],
        volume_id=struct.unpack_from("<I", boot, id_off)[0] if has_ids else 0,
        label="" if label == "NO NAME" else label,
    )


def read_geometry(reader: Reader) -> FatGeometry:
    """Read and parse the boot sector at the start of `reader`."""
    return parse_boot_sector(read_exact(reader, 0, 512, "FAT boot sector"))


def fat_entries(raw: bytes, kind: str, count: int) -> npt.NDArray[np.uint32]:
    """The first `count` entries of a FAT as integers (FAT12 unpacked, FAT32 masked)."""
    import numpy as np

    if kind == "fat16":
        return np.frombuffer(raw, "<u2", count).astype(np.uint32)
    if kind == "fat32":
        return np.frombuffer(raw, "<u4", count) & np.uint32(0x0FFFFFFF)
    need = ((count + 1) // 2) * 3
    triples = np.frombuffer(raw[:need].ljust(need, b"\0"), np.uint8).reshape(-1, 3)
    t = triples.astype(np.uint32)
    even = t[:, 0] | ((t[:, 1] & 0xF) << 8)
    odd = (t[:, 1] >> 4) | (t[:, 2] << 4)
    return np.stack([even, odd], axis=1).reshape(-1)[:count]


def dirty_reason(geo: FatGeometry, entry1: int) -> str:
    """Why the volume is not clean (boot-sector dirty bit or FAT[1] flags), or ""."""
    if geo.boot_flags & 0x01:
        return "the volume was not cleanly unmounted (boot sector dirty bit is set)"
    clean_bit, no_error_bit = {
        "fat16": (0x8000, 0x4000),
        "fat32": (0x08000000, 0x04000000),
    }.get(geo.kind, (0, 0))
    if clean_bit and not entry1 & clean_bit:
        return "the volume was not cleanly unmounted (FAT clean-shutdown bit is clear)"
    if no_error_bit and not entry1 & no_error_bit:
        return "the volume recorded disk I/O errors (FAT hard-error bit is clear)"
    return ""


def used_ranges(reader: Reader) -> UsedMap:
    """The used byte ranges of a FAT12/16/32 file system read through `reader`."""
    geo = read_geometry(reader)
    fat_bytes = geo.fat_sectors * geo.sector_size
    fat_offset = (geo.reserved_sectors + geo.active_fat * geo.fat_sectors) * geo.sector_size
    raw = read_exact(reader, fat_offset, fat_bytes, "FAT")
    entries = fat_entries(raw, geo.kind, geo.cluster_count + 2)
    clusters = entries[2:]
    used = (clusters != 0) & (clusters != _BAD[geo.kind])
    extents = [(0, geo.data_offset)]
    extents.extend(mask_extents(used, geo.cluster_size, geo.data_offset))
    reason = dirty_reason(geo, int(entries[1]))
    vid = geo.volume_id
    return UsedMap(
        fstype=geo.kind,
        block_size=geo.cluster_size,
        total_size=geo.total_size,
        extents=merge_extents(extents, geo.total_size),
        dirty=bool(reason),
        dirty_reason=reason,
        label=geo.label or None,
        uuid=f"{vid >> 16:04X}-{vid & 0xFFFF:04X}" if vid else None,
    )
