"""Rewriting a GPT for a larger disk: the backup copy moves to the new end."""

from __future__ import annotations

import struct

from twofold.fsinfo.blockio import LayoutError, Reader
from twofold.fsinfo.parttable import (
    MBR_PROTECTIVE,
    header_crc,
    is_mbr,
    mbr_entries,
    parse_table,
    read_gpt,
)


def grow_gpt(
    reader: Reader, new_disk_size: int, sector_size: int | None = None
) -> list[tuple[int, bytes]]:
    """The writes that move a GPT's backup copy to the end of a disk of `new_disk_size`.

    The primary header gets the new backup LBA and last usable LBA; a backup entry array
    and header are built at the new end; a pure protective MBR is stretched to the new
    size; the old backup header is zeroed. Returns (offset, bytes) pairs, by offset.
    Raises LayoutError when the partitions do not fit, naming the size needed.
    """
    table = parse_table(reader, sector_size=sector_size)
    if table.gpt is None:
        raise LayoutError("the disk has no GPT to grow")
    ss = table.sector_size
    copies = read_gpt(reader, table.disk_size, ss)
    header = copies.header
    if new_disk_size < table.min_disk_size:
        raise LayoutError(
            f"the disk is too small: {new_disk_size} bytes, {table.min_disk_size} needed"
        )
    entry_sectors = -(-header.entries_bytes // ss)
    new_last = new_disk_size // ss - 1
    backup_entries = new_last - entry_sectors
    primary_entries = copies.primary_entries_lba
    old_backup = copies.backup_lba

    def build(current: int, backup: int, entries_lba: int) -> bytes:
        raw = bytearray(header.raw)
        struct.pack_into("<QQ", raw, 24, current, backup)
        struct.pack_into("<Q", raw, 48, backup_entries - 1)
        struct.pack_into("<Q", raw, 72, entries_lba)
        struct.pack_into("<I", raw, 16, header_crc(bytes(raw), header.header_size))
        return bytes(raw).ljust(ss, b"\0")

    writes: list[tuple[int, bytes]] = []
    mbr = _stretched_protective_mbr(reader.pread(0, ss), new_last)
    if mbr is not None:
        writes.append((0, mbr))
    writes.append((ss, build(1, new_last, primary_entries)))
    if old_backup not in (1, new_last) and old_backup < backup_entries:
        writes.append((old_backup * ss, bytes(ss)))
    array = copies.entries.ljust(entry_sectors * ss, b"\0")
    if header.current_lba != 1:
        writes.append((primary_entries * ss, array))
    writes.append((backup_entries * ss, array))
    writes.append((new_last * ss, build(new_last, 1, backup_entries)))
    return sorted(writes)


def _stretched_protective_mbr(sector: bytes, last_lba: int) -> bytes | None:
    """Sector 0 with its sole 0xEE entry covering the disk up to `last_lba`, or None
    when it is not a pure protective MBR (hybrid MBRs are left alone)."""
    if not is_mbr(sector):
        return None
    used = [(slot, e) for slot, e in enumerate(mbr_entries(sector)) if e[1] or e[3]]
    if len(used) != 1 or used[0][1][1] != MBR_PROTECTIVE:
        return None
    slot, (_status, _type, first, _count) = used[0]
    out = bytearray(sector)
    struct.pack_into("<I", out, 446 + 16 * slot + 12, min(last_lba + 1 - first, 0xFFFFFFFF))
    return bytes(out)
