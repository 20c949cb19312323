"""Which file system a partition holds, by superblock and boot-sector magic."""

from __future__ import annotations

from twofold.fsinfo.blockio import LayoutError, Reader
from twofold.fsinfo.fsbitmap import exfat, ext, fat, ntfs

FS_TYPES = ("ext2", "ext3", "ext4", "fat12", "fat16", "fat32", "ntfs", "exfat")
"""Every name `detect` can return."""


def detect(reader: Reader) -> str | None:
    """The file system type at the start of `reader` (one of FS_TYPES), or None.

    None means "not one whose allocation we read": the caller reads it whole. The
    structures are sanity-checked, not only the magic, so stale signatures rarely fool it.
    """
    boot = reader.pread(0, 512)
    if len(boot) < 512:
        return None
    try:
        if boot[3:11] == exfat.OEM_ID:
            exfat.parse_boot(boot)
            return "exfat"
        if boot[3:11] == ntfs.OEM_ID:
            ntfs.parse_boot(boot)
            return "ntfs"
    except LayoutError:
        return None
    try:
        sb = ext.read_super(reader)
    except LayoutError:
        pass
    else:
        return None if sb.incompat & ext.INCOMPAT_JOURNAL_DEV else sb.kind
    try:
        return fat.parse_boot_sector(boot).kind
    except LayoutError:
        return None
