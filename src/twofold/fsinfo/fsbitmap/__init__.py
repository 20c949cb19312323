"""Used-block maps of file systems, read from their own allocation structures.

`detect(reader)` names the file system; `used_ranges(reader)` returns a UsedMap of the
byte ranges a restore needs (metadata and allocated blocks) for ext2/3/4, FAT12/16/32,
NTFS and exFAT. Anything else is for the caller to read whole.
"""

from __future__ import annotations

from twofold.fsinfo.blockio import LayoutError, Reader
from twofold.fsinfo.fsbitmap import exfat, ext, fat, ntfs
from twofold.fsinfo.fsbitmap.detect import FS_TYPES, detect
from twofold.fsinfo.fsbitmap.usedmap import Extent, UsedMap, merge_extents

__all__ = [
    "FS_TYPES",
    "Extent",
    "LayoutError",
    "UsedMap",
    "detect",
    "merge_extents",
    "used_ranges",
]


def used_ranges(reader: Reader, fstype: str | None = None) -> UsedMap | None:
    """The UsedMap of the file system in `reader`, or None when its type is not one we read.

    `fstype` skips detection when the caller already knows it (a name from FS_TYPES).
    Raises LayoutError when the file system claims a type but its structures are damaged.
    """
    kind = fstype if fstype is not None else detect(reader)
    if kind in ("ext2", "ext3", "ext4"):
        return ext.used_ranges(reader)
    if kind in ("fat12", "fat16", "fat32"):
        return fat.used_ranges(reader)
    if kind == "ntfs":
        return ntfs.used_ranges(reader)
    if kind == "exfat":
        return exfat.used_ranges(reader)
    return None
