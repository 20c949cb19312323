"""Restore onto a smaller disk: the partitions laid out again (file-level ones shrink to
what their data needs and no more than the disk spares, those after them move), and the
partition table written anew by sfdisk with the same ids, types, names and attributes."""

from __future__ import annotations

import shutil
import subprocess

from twofold.image.errors import ImageRefused
from twofold.image.manifest import Area, Manifest

MiB = 1 << 20
_TAIL = MiB  # room for the GPT's backup copy at the disk's end
_GPT_ATTRS = {0: "RequiredPartition", 1: "NoBlockIOProtocol", 2: "LegacyBIOSBootable"}


def _up(n: int) -> int:
    return -(-n // MiB) * MiB


def min_size(area: Area) -> int:
    """The smallest partition a file-level area's file system can be made in: its used
    space (statvfs at imaging time) with a tenth more and 8 MiB for the file system's own
    structures; FAT32 needs at least 65525 clusters, XFS 300 MiB, btrfs 120 MiB and room
    for the chunks it allocates ahead."""
    files = area.files or {}
    need = _up(int(int(files.get("fs_used", files.get("file_bytes", 0))) * 1.1) + 8 * MiB)
    if files.get("params", {}).get("fat_bits") == 32:
        need = max(need, 34 * MiB)
    if files.get("params", {}).get("type") == "xfs":
        need = max(need, 300 * MiB)  # mkfs.xfs makes nothing smaller
    if files.get("params", {}).get("type") == "btrfs":  # chunks allocated ahead, DUP metadata
        need = max(_up(int(files.get("fs_used", 0)) * 3 // 2 + 32 * MiB), 120 * MiB)
    return min(area.size, need)


def smaller_layout(m: Manifest, dest: str, dest_size: int) -> dict[int, tuple[int, int]]:
    """New (start, size) per partition number so that the image fits `dest_size` bytes;
    ImageRefused saying the size needed when even the data does not fit."""
    table = m.table or {}
    parts = sorted((a for a in m.areas if a.role == "partition"), key=lambda a: a.start)
    if table.get("kind") not in ("gpt", "mbr") or not parts or \
            any(p.get("container") for p in table.get("partitions", [])):
        raise ImageRefused(f"{dest} is smaller than image {m.name} ({m.size:,} bytes), and "
                           "its layout cannot be laid out again (only GPT and primary MBR "
                           "partitions can)", "restore to a disk at least that large")
    mins = {a.number: a.size if a.files is None else min_size(a) for a in parts}
    need = parts[0].start + sum(_up(n) for n in mins.values()) + _TAIL
    if need > dest_size:
        fixed = [str(a.number) for a in parts if a.files is None]
        raise ImageRefused(
            f"{dest} is too small for image {m.name}: {dest_size:,} bytes, and even with its "
            f"file-level partitions shrunk to their data it needs {need:,} "
            f"({need - dest_size:,} more)",
            "restore to a disk at least that large"
            + (f"; partition(s) {', '.join(fixed)} were imaged at block level and keep "
               "their size" if fixed else ""))
    spare = dest_size - need
    layout: dict[int, tuple[int, int]] = {}
    cursor = parts[0].start
    for a in parts:
        assert a.number is not None
        size = mins[a.number]
        if a.files is not None:
            extra = min(a.size - size, spare) // MiB * MiB
            size, spare = size + extra, spare - extra
        start = a.start if a is parts[0] else _up(cursor)
        layout[a.number] = (start, size)
        cursor = start + size
    return layout


def grown_layout(m: Manifest, dest_size: int) -> dict[int, tuple[int, int]]:
    """The image's layout with its last partition taking the rest of a larger disk."""
    table = m.table or {}
    parts = sorted((a for a in m.areas if a.role == "partition"), key=lambda a: a.start)
    if table.get("kind") not in ("gpt", "mbr") or not parts or \
            any(p.get("container") for p in table.get("partitions", [])):
        raise ImageRefused(f"--grow cannot lay out image {m.name} again (only GPT and "
                           "primary MBR partitions can)", "restore it without --grow")
    layout = {a.number: (a.start, a.size) for a in parts if a.number is not None}
    last = parts[-1]
    tail = _TAIL if table["kind"] == "gpt" else 0
    size = (dest_size - tail - last.start) // MiB * MiB
    if last.number is not None and size > last.size:
        layout[last.number] = (last.start, size)
    return layout


def write_table(m: Manifest, dest: str, layout: dict[int, tuple[int, int]]) -> None:
    """Write the image's partition table to `dest` with the partitions at `layout`
    (sfdisk puts a GPT's backup copy at the disk's end); the boot code before the first
    partition table entry (MBR bytes 0-439) is kept as restored."""
    table = m.table or {}
    sector = int(table.get("sector_size") or 512)
    gpt = table.get("kind") == "gpt"
    lines = [f"label: {'gpt' if gpt else 'dos'}", f"label-id: {table.get('disk_id')}",
             f"sector-size: {sector}", ""]
    for p in table.get("partitions", []):
        start, size = layout[int(p["number"])]
        fields = [f"start={start // sector}", f"size={size // sector}", f"type={p['type']}"]
        if gpt:
            attrs = [_GPT_ATTRS.get(b, f"GUID:{b}") for b in range(64) if p["attrs"] >> b & 1]
            fields += [f"uuid={p['uuid']}", f'name="{p["name"]}"']
            if attrs:
                fields.append(f'attrs="{" ".join(attrs)}"')
        elif p.get("attrs", 0) & 0x80:
            fields.append("bootable")
        lines.append(f"{dest}{p['number']} : " + ", ".join(fields))
    with open(dest, "rb") as f:
        boot = f.read(440)
    sfdisk = shutil.which("sfdisk")
    if sfdisk is None:
        raise ImageRefused("sfdisk is not installed; it lays out the smaller disk",
                           "install util-linux (fdisk)")
    proc = subprocess.run([sfdisk, "-q", "--no-reread", "--no-tell-kernel", "--wipe", "never",
                           dest], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise ImageRefused(f"sfdisk could not write the new partition table to {dest}: "
                           f"{proc.stderr.strip()[-300:]}")
    with open(dest, "r+b") as f:
        f.write(boot)
