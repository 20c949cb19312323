"""Partition tables (MBR with logical partitions, GPT with both copies): their partitions,
the bytes the table itself occupies, and the gaps outside partitions (boot code)."""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Literal

from twofold.fsinfo.blockio import LayoutError, Reader, read_exact, reader_size
from twofold.fsinfo.fsbitmap import exfat, fat, ntfs

Range = tuple[int, int]
"""A byte range on the disk as (offset, length)."""

GPT_SIGNATURE = b"EFI PART"
MBR_PROTECTIVE = 0xEE
MBR_EXTENDED = (0x05, 0x0F, 0x85)
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_MBR_ENTRY = struct.Struct("<B3sB3sII")
_MAX_LOGICAL = 128
_MAX_ENTRY_BYTES = 1 << 20


@dataclass(frozen=True)
class Partition:
    """One partition: where it is, its type and name."""

    index: int  # the kernel's number: GPT entry position, MBR 1-4, logical from 5
    start: int  # bytes from the disk start
    size: int  # bytes
    type: str  # GPT type GUID (upper case, as sfdisk prints it) or MBR type in hex ("83")
    uuid: str | None = None  # GPT partition GUID
    name: str = ""  # GPT partition name
    attrs: int = 0  # GPT attribute bits; MBR: 0x80 when marked bootable
    container: bool = False  # an MBR extended partition: holds logicals, not a file system

    @property
    def end(self) -> int:
        """First byte after the partition."""
        return self.start + self.size


@dataclass(frozen=True)
class GptHeader:
    """A parsed GPT header (either copy) with the raw bytes it was read from."""

    raw: bytes
    header_size: int
    current_lba: int
    backup_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: str
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int

    @property
    def entries_bytes(self) -> int:
        """Bytes of the partition entry array."""
        return self.entry_count * self.entry_size


@dataclass(frozen=True)
class PartitionTable:
    """A disk's partition table. `kind` "none" means no table: the disk is one volume.

    `table_ranges` are the bytes of the table itself (MBR and EBR sectors; for GPT the
    protective MBR and both headers and entry arrays). `gaps` are the remaining bytes
    outside every partition (boot code, free space), so partitions, table and gaps tile
    the disk. `problems` lists damage found and worked around (a bad GPT copy).
    """

    kind: Literal["gpt", "mbr", "none"]
    disk_size: int
    sector_size: int
    disk_id: str | None
    partitions: tuple[Partition, ...]
    table_ranges: tuple[Range, ...]
    gaps: tuple[Range, ...]
    gpt: GptHeader | None = None
    problems: tuple[str, ...] = ()

    @property
    def min_disk_size(self) -> int:
        """The smallest disk this table and its partitions fit on."""
        end = max((p.end for p in self.partitions), default=0)
        if self.gpt is None:
            return max(end, self.sector_size if self.kind == "mbr" else 0)
        ss = self.sector_size
        end = max(end, self.gpt.first_usable_lba * ss)  # past the primary entry array
        entry_sectors = -(-self.gpt.entries_bytes // ss)
        return -(-end // ss) * ss + (entry_sectors + 1) * ss


def _uninterrupted(ranges: list[Range], disk_size: int) -> tuple[Range, ...]:
    """The parts of [0, disk_size) no range covers."""
    gaps: list[Range] = []
    pos = 0
    for start, length in sorted(ranges):
        if start > pos:
            gaps.append((pos, min(start, disk_size) - pos))
        pos = max(pos, start + length)
        if pos >= disk_size:
            break
    if pos < disk_size:
        gaps.append((pos, disk_size - pos))
    return tuple(g for g in gaps if g[1] > 0)


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def header_crc(raw: bytes, header_size: int) -> int:
    return _crc(raw[:16] + b"\0\0\0\0" + raw[20:header_size])


def parse_gpt_header(sector: bytes, lba: int) -> GptHeader:
    """Parse and check a GPT header read from `lba`; LayoutError says what is wrong."""
    if sector[:8] != GPT_SIGNATURE:
        raise LayoutError(f"no GPT header at LBA {lba}")
    (
        _sig,
        _rev,
        hsize,
        hcrc,
        _res,
        current,
        backup,
        first,
        last,
        guid,
        entries_lba,
        count,
        esize,
        ecrc,
    ) = _HEADER.unpack_from(sector)
    if not 92 <= hsize <= len(sector):
        raise LayoutError(f"GPT header at LBA {lba} has an impossible size {hsize}")
    if header_crc(sector, hsize) != hcrc:
        raise LayoutError(f"GPT header at LBA {lba} fails its CRC32 check")
    if current != lba:
        raise LayoutError(f"GPT header at LBA {lba} says it lives at LBA {current}")
    if esize < 128 or esize % 8 or count * esize > _MAX_ENTRY_BYTES or first > last + 1:
        raise LayoutError(f"GPT header at LBA {lba} has an impossible entry array")
    return GptHeader(
        raw=bytes(sector[:hsize]),
        header_size=hsize,
        current_lba=current,
        backup_lba=backup,
        first_usable_lba=first,
        last_usable_lba=last,
        disk_guid=str(uuid.UUID(bytes_le=guid)).upper(),
        entries_lba=entries_lba,
        entry_count=count,
        entry_size=esize,
        entries_crc=ecrc,
    )


def _read_gpt_copy(reader: Reader, lba: int, ss: int) -> tuple[GptHeader, bytes]:
    header = parse_gpt_header(read_exact(reader, lba * ss, ss, "GPT header"), lba)
    entries = read_exact(reader, header.entries_lba * ss, header.entries_bytes, "GPT entries")
    if _crc(entries) != header.entries_crc:
        raise LayoutError(f"GPT entry array of the header at LBA {lba} fails its CRC32 check")
    return header, entries


@dataclass(frozen=True)
class GptCopies:
    """Both GPT copies as found: the good header and entry array, and where each copy is."""

    header: GptHeader
    entries: bytes
    primary_entries_lba: int
    backup_lba: int
    backup_entries_lba: int
    problems: tuple[str, ...]


def _backup_candidates(reader: Reader, last_lba: int, ss: int) -> list[int]:
    """Where the backup header may be: the last LBA, or where a damaged primary says."""
    out = [last_lba]
    primary = reader.pread(ss, ss)
    if primary[:8] == GPT_SIGNATURE and len(primary) >= _HEADER.size:
        said = _HEADER.unpack_from(primary)[6]
        if 1 < said < last_lba:
            out.append(said)
    return out


def read_gpt(reader: Reader, disk_size: int, ss: int) -> GptCopies:
    """The first good GPT copy (primary, else backup), where both copies are, and the
    problems met; LayoutError when neither copy is usable."""
    problems: list[str] = []
    last_lba = disk_size // ss - 1
    try:
        header, entries = _read_gpt_copy(reader, 1, ss)
    except LayoutError as primary_error:
        problems.append(f"primary GPT unusable ({primary_error}); using the backup")
        backup_error = LayoutError("no backup GPT header found")
        for lba in _backup_candidates(reader, last_lba, ss):
            try:
                header, entries = _read_gpt_copy(reader, lba, ss)
            except LayoutError as error:
                backup_error = error
                continue
            return GptCopies(header, entries, 2, lba, header.entries_lba, tuple(problems))
        raise LayoutError(
            f"both GPT copies are unusable: {primary_error}; {backup_error}"
        ) from None
    entry_sectors = -(-header.entries_bytes // ss)
    backup_entries_lba = header.backup_lba - entry_sectors
    if header.backup_lba != last_lba:
        problems.append(
            f"the backup GPT header is at LBA {header.backup_lba}, not at the disk's "
            f"last LBA {last_lba} (the disk was resized)"
        )
    try:
        backup, backup_entries = _read_gpt_copy(reader, header.backup_lba, ss)
    except LayoutError as backup_error:
        problems.append(f"backup GPT unusable ({backup_error})")
    else:
        backup_entries_lba = backup.entries_lba
        if backup_entries != entries:
            problems.append("the backup GPT entry array differs from the primary")
    return GptCopies(
        header,
        entries,
        header.entries_lba,
        header.backup_lba,
        backup_entries_lba,
        tuple(problems),
    )


def _gpt_partitions(header: GptHeader, entries: bytes, ss: int) -> list[Partition]:
    parts: list[Partition] = []
    for i in range(header.entry_count):
        raw = entries[i * header.entry_size : i * header.entry_size + 128]
        type_guid, part_guid, first, last, attrs = struct.unpack_from("<16s16sQQQ", raw)
        if type_guid == bytes(16):
            continue
        if last < first:
            raise LayoutError(f"GPT entry {i + 1} ends before it starts")
        parts.append(
            Partition(
                index=i + 1,
                start=first * ss,
                size=(last - first + 1) * ss,
                type=str(uuid.UUID(bytes_le=type_guid)).upper(),
                uuid=str(uuid.UUID(bytes_le=part_guid)).upper(),
                name=raw[56:128].decode("utf-16-le", "replace").split("\0", 1)[0],
                attrs=attrs,
            )
        )
    return parts


def mbr_entries(sector: bytes) -> list[tuple[int, int, int, int]]:
    """(status, type, first LBA, sector count) of the four MBR slots."""
    out = []
    for slot in range(4):
        status, _chs1, ptype, _chs2, first, count = _MBR_ENTRY.unpack_from(sector, 446 + 16 * slot)
        out.append((status, ptype, first, count))
    return out


def is_mbr(sector: bytes) -> bool:
    """True when sector 0 is an MBR, not a file system's boot sector."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return False
    if sector[3:11] in (ntfs.OEM_ID, exfat.OEM_ID):
        return False
    try:
        fat.parse_boot_sector(sector)
    except LayoutError:
        pass
    else:
        return False
    return all(status in (0x00, 0x80) for status, *_ in mbr_entries(sector))


def _mbr_partitions(
    reader: Reader, sector: bytes, ss: int, problems: list[str]
) -> tuple[list[Partition], list[Range]]:
    parts: list[Partition] = []
    tables: list[Range] = [(0, ss)]
    for slot, (status, ptype, first, count) in enumerate(mbr_entries(sector)):
        if ptype == 0 or count == 0:
            continue
        container = ptype in MBR_EXTENDED
        parts.append(
            Partition(
                slot + 1, first * ss, count * ss, f"{ptype:x}", attrs=status, container=container
            )
        )
        if container:
            _logicals(reader, first, ss, parts, tables, problems)
    return parts, tables


def _logicals(
    reader: Reader,
    ext_start: int,
    ss: int,
    parts: list[Partition],
    tables: list[Range],
    problems: list[str],
) -> None:
    """Follow the EBR chain of an extended partition, appending logical partitions."""
    ebr_lba, index = ext_start, 5
    seen: set[int] = set()
    while ebr_lba not in seen and len(seen) < _MAX_LOGICAL:
        seen.add(ebr_lba)
        ebr = read_exact(reader, ebr_lba * ss, ss, "extended boot record")
        if ebr[510:512] != b"\x55\xaa":
            problems.append(f"the EBR at LBA {ebr_lba} has no boot signature; chain ends")
            return
        tables.append((ebr_lba * ss, ss))
        entries = mbr_entries(ebr)
        status, ptype, first, count = entries[0]
        if ptype and count:
            parts.append(
                Partition(index, (ebr_lba + first) * ss, count * ss, f"{ptype:x}", attrs=status)
            )
            index += 1
        _s, next_type, next_first, next_count = entries[1]
        if next_type not in MBR_EXTENDED or not next_count:
            return
        ebr_lba = ext_start + next_first
    problems.append("the EBR chain loops or is too long; it was cut")


def _guess_sector_size(reader: Reader) -> int:
    known = getattr(reader, "sector_size", None)
    if isinstance(known, int) and known in (512, 1024, 2048, 4096):
        return known
    for size in (512, 4096):
        if reader.pread(size, 8) == GPT_SIGNATURE:
            return size
    return 512


def parse_table(
    reader: Reader, disk_size: int | None = None, sector_size: int | None = None
) -> PartitionTable:
    """Read the partition table of a whole disk (or disk image) through `reader`."""
    size = disk_size if disk_size is not None else reader_size(reader)
    if size is None:
        raise ValueError("the disk size is unknown: pass disk_size")
    ss = sector_size or _guess_sector_size(reader)
    sector0 = reader.pread(0, ss)
    problems: list[str] = []
    has_mbr = is_mbr(sector0)
    protective = has_mbr and any(t == MBR_PROTECTIVE for _, t, _, _ in mbr_entries(sector0))
    if protective or (not has_mbr and reader.pread(ss, 8) == GPT_SIGNATURE):
        copies = read_gpt(reader, size, ss)
        problems = list(copies.problems)
        parts = _gpt_partitions(copies.header, copies.entries, ss)
        entry_len = -(-copies.header.entries_bytes // ss) * ss
        tables = [
            (0, ss),
            (ss, ss),
            (copies.primary_entries_lba * ss, entry_len),
            (copies.backup_entries_lba * ss, entry_len),
            (copies.backup_lba * ss, ss),
        ]
        kind: Literal["gpt", "mbr", "none"] = "gpt"
        disk_id: str | None = copies.header.disk_guid
        gpt: GptHeader | None = copies.header
    elif has_mbr:
        parts, tables = _mbr_partitions(reader, sector0, ss, problems)
        kind, disk_id, gpt = "mbr", f"0x{struct.unpack_from('<I', sector0, 440)[0]:08x}", None
    else:
        parts, tables, kind, disk_id, gpt = [], [], "none", None, None
    for p in parts:
        if p.end > size:
            problems.append(f"partition {p.index} ends {p.end - size} bytes past the disk end")
    tables = [(s, min(n, size - s)) for s, n in tables if s < size]
    covered = tables + [(p.start, p.size) for p in parts if not p.container]
    return PartitionTable(
        kind=kind,
        disk_size=size,
        sector_size=ss,
        disk_id=disk_id,
        partitions=tuple(sorted(parts, key=lambda p: p.index)),
        table_ranges=tuple(sorted(set(tables))),
        gaps=_uninterrupted(covered, size),
        gpt=gpt,
        problems=tuple(problems),
    )
