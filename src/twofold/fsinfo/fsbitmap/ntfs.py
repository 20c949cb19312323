"""NTFS: the boot sector, the MFT records of $MFT, $Volume and $Bitmap, as a UsedMap.

Used = every cluster set in $Bitmap (it covers all metadata files: $MFT, $MFTMirr,
$LogFile, $Boot, ...) plus the backup boot sector in the sector after the last cluster.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from twofold.fsinfo.blockio import LayoutError, Reader, read_exact
from twofold.fsinfo.fsbitmap.usedmap import UsedMap, bitmap_extents, merge_extents

OEM_ID = b"NTFS    "
ATTR_VOLUME_NAME = 0x60
ATTR_VOLUME_INFORMATION = 0x70
ATTR_DATA = 0x80
ATTR_END = 0xFFFFFFFF
MFT_RECORD_MFT = 0
MFT_RECORD_VOLUME = 3
MFT_RECORD_BITMAP = 6
VOLUME_IS_DIRTY = 0x0001

Run = tuple[int, int | None, int]
"""A data run: (first VCN, first LCN or None when sparse, cluster count)."""


@dataclass(frozen=True)
class NtfsBoot:
    """The geometry an NTFS boot sector describes."""

    sector_size: int
    cluster_size: int
    total_sectors: int
    mft_lcn: int
    record_size: int
    serial: int

    @property
    def total_clusters(self) -> int:
        """Clusters the volume has (the bits $Bitmap counts)."""
        return self.total_sectors * self.sector_size // self.cluster_size


def parse_boot(boot: bytes) -> NtfsBoot:
    """Parse an NTFS boot sector; LayoutError if it is not one."""
    if boot[3:11] != OEM_ID:
        raise LayoutError("no NTFS boot sector (OEM id 'NTFS' missing)")
    bps, spc_raw = struct.unpack_from("<HB", boot, 11)
    total, mft_lcn, _mirr = struct.unpack_from("<QQQ", boot, 40)
    (per_record,) = struct.unpack_from("<b", boot, 64)
    (serial,) = struct.unpack_from("<Q", boot, 72)
    spc = 1 << (256 - spc_raw) if spc_raw > 0x80 else spc_raw
    if bps not in (256, 512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1):
        raise LayoutError("NTFS boot sector has impossible sector or cluster size")
    cluster = bps * spc
    record = per_record * cluster if per_record > 0 else 1 << -per_record
    if not 256 <= record <= 65536 or not total or not mft_lcn:
        raise LayoutError("NTFS boot sector has impossible MFT record size or volume size")
    return NtfsBoot(bps, cluster, total, mft_lcn, record, serial)


def apply_fixups(record: bytes, what: str) -> bytearray:
    """Check a multi-sector record's update sequence and restore the bytes it replaced."""
    rec = bytearray(record)
    usa_ofs, usa_count = struct.unpack_from("<HH", rec, 4)
    if usa_count < 1 or usa_ofs + 2 * usa_count > len(rec) or (usa_count - 1) * 512 > len(rec):
        raise LayoutError(f"{what}: bad update sequence array")
    usn = rec[usa_ofs : usa_ofs + 2]
    for i in range(1, usa_count):
        end = i * 512
        if rec[end - 2 : end] != usn:
            raise LayoutError(f"{what}: torn write (update sequence mismatch in sector {i})")
        rec[end - 2 : end] = rec[usa_ofs + 2 * i : usa_ofs + 2 * i + 2]
    return rec


def attributes(record: bytes | bytearray) -> list[tuple[int, str, bytes]]:
    """The (type, name, raw attribute) triples of a fixed-up MFT record."""
    (first,) = struct.unpack_from("<H", record, 20)
    (used,) = struct.unpack_from("<I", record, 24)
    out: list[tuple[int, str, bytes]] = []
    pos = first
    while pos + 8 <= min(used, len(record)):
        atype, length = struct.unpack_from("<II", record, pos)
        if atype == ATTR_END:
            break
        if length < 16 or pos + length > len(record):
            raise LayoutError("NTFS MFT record has a malformed attribute")
        raw = bytes(record[pos : pos + length])
        name_len, name_ofs = raw[9], struct.unpack_from("<H", raw, 10)[0]
        name = raw[name_ofs : name_ofs + 2 * name_len].decode("utf-16-le", "replace")
        out.append((atype, name, raw))
        pos += length
    return out


def resident_value(attr: bytes) -> bytes:
    """The value of a resident attribute."""
    if attr[8]:
        raise LayoutError("NTFS attribute expected resident, found non-resident")
    length, offset = struct.unpack_from("<IH", attr, 16)
    return attr[offset : offset + length]


def decode_runs(attr: bytes) -> tuple[list[Run], int]:
    """The data runs and the data size of a non-resident attribute."""
    if not attr[8]:
        raise LayoutError("NTFS attribute expected non-resident, found resident")
    (start_vcn,) = struct.unpack_from("<Q", attr, 16)
    (pairs_ofs,) = struct.unpack_from("<H", attr, 32)
    (data_size,) = struct.unpack_from("<Q", attr, 48)
    runs: list[Run] = []
    pos, vcn, lcn = pairs_ofs, start_vcn, 0
    while pos < len(attr) and attr[pos]:
        head = attr[pos]
        len_size, ofs_size = head & 0xF, head >> 4
        pos += 1
        count = int.from_bytes(attr[pos : pos + len_size], "little")
        pos += len_size
        if ofs_size:
            lcn += int.from_bytes(attr[pos : pos + ofs_size], "little", signed=True)
            runs.append((vcn, lcn, count))
        else:
            runs.append((vcn, None, count))
        pos += ofs_size
        vcn += count
    return runs, data_size


def read_runs(reader: Reader, runs: list[Run], size: int, cluster: int, what: str) -> bytes:
    """Read the first `size` bytes of a non-resident stream from its runs."""
    out = bytearray()
    for _vcn, lcn, count in runs:
        if len(out) >= size:
            break
        want = min(count * cluster, size - len(out))
        out += bytes(want) if lcn is None else read_exact(reader, lcn * cluster, want, what)
    if len(out) < size:
        raise LayoutError(f"{what}: runs cover {len(out)} of {size} bytes")
    return bytes(out)


def _find(attrs: list[tuple[int, str, bytes]], atype: int, what: str) -> bytes:
    for t, name, raw in attrs:
        if t == atype and not name:
            return raw
    raise LayoutError(f"{what}: attribute {atype:#x} not in the base record (attribute list?)")


class _Mft:
    """Reads MFT records by number through the runs of $MFT's own $DATA."""

    def __init__(self, reader: Reader, boot: NtfsBoot) -> None:
        self.reader = reader
        self.boot = boot
        first = self._fixed(boot.mft_lcn * boot.cluster_size, "$MFT record 0")
        self.runs, _ = decode_runs(_find(attributes(first), ATTR_DATA, "$MFT"))

    def _fixed(self, offset: int, what: str) -> bytearray:
        raw = read_exact(self.reader, offset, self.boot.record_size, what)
        if raw[:4] != b"FILE":
            raise LayoutError(f"{what}: not an MFT record (no FILE signature)")
        return apply_fixups(raw, what)

    def record(self, number: int) -> list[tuple[int, str, bytes]]:
        """The attributes of MFT record `number`."""
        byte = number * self.boot.record_size
        cluster = self.boot.cluster_size
        for vcn, lcn, count in self.runs:
            if lcn is not None and vcn * cluster <= byte < (vcn + count) * cluster:
                offset = lcn * cluster + byte - vcn * cluster
                return attributes(self._fixed(offset, f"MFT record {number}"))
        raise LayoutError(f"MFT record {number} is outside $MFT's runs")


def used_ranges(reader: Reader) -> UsedMap:
    """The used byte ranges of an NTFS file system read through `reader`."""
    boot = parse_boot(read_exact(reader, 0, 512, "NTFS boot sector"))
    mft = _Mft(reader, boot)
    bitmap_attr = _find(mft.record(MFT_RECORD_BITMAP), ATTR_DATA, "$Bitmap")
    runs, size = decode_runs(bitmap_attr)
    nbits = boot.total_clusters
    if size * 8 < nbits:
        raise LayoutError(f"$Bitmap holds {size * 8} bits for {nbits} clusters")
    bitmap = read_runs(reader, runs, (nbits + 7) // 8, boot.cluster_size, "$Bitmap")
    volume = mft.record(MFT_RECORD_VOLUME)
    info = resident_value(_find(volume, ATTR_VOLUME_INFORMATION, "$Volume"))
    (flags,) = struct.unpack_from("<H", info, 10)
    names = [resident_value(raw) for t, _, raw in volume if t == ATTR_VOLUME_NAME]
    label = names[0].decode("utf-16-le", "replace") if names else ""
    reason = "the volume is marked dirty (run chkdsk or ntfsfix)" if flags & VOLUME_IS_DIRTY else ""
    backup_boot = boot.total_sectors * boot.sector_size
    total_size = backup_boot + boot.sector_size
    extents = bitmap_extents(bitmap, nbits, boot.cluster_size)
    extents.append((backup_boot, boot.sector_size))
    return UsedMap(
        fstype="ntfs",
        block_size=boot.cluster_size,
        total_size=total_size,
        extents=merge_extents(extents, total_size),
        dirty=bool(reason),
        dirty_reason=reason,
        label=label or None,
        uuid=f"{boot.serial:016X}",
    )
