"""What an image is made of: whether a device or file is in use (mounted, held), whether
it is a whole disk or one volume, and the areas to read with their used extents."""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import dataclass

from twofold.core.models import Issue
from twofold.fsinfo.blockio import FileReader, LayoutError, SliceReader
from twofold.fsinfo.fsbitmap import detect, merge_extents, used_ranges
from twofold.fsinfo.parttable import PartitionTable, parse_table
from twofold.image.errors import ImageRefused
from twofold.image.manifest import Area

MOUNTINFO = "/proc/self/mountinfo"


def _dev_dir(dev: int) -> str | None:
    path = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    return os.path.realpath(path) if os.path.exists(path) else None


def _devnum(text: str) -> int:
    major, minor = text.strip().split(":")
    return os.makedev(int(major), int(minor))


def related_devices(path: str) -> dict[int, str]:
    """The block devices whose use makes `path` busy: the device itself and its
    partitions, or for a regular file the loop devices backed by it and theirs."""
    st = os.stat(path)
    roots: list[int] = []
    if stat.S_ISBLK(st.st_mode):
        roots.append(st.st_rdev)
    elif stat.S_ISREG(st.st_mode):
        real = os.path.realpath(path)
        try:
            loops = os.listdir("/sys/block")
        except OSError:
            loops = []
        for name in loops:
            try:
                with open(f"/sys/block/{name}/loop/backing_file") as f:
                    if f.read().strip() == real:
                        with open(f"/sys/block/{name}/dev") as g:
                            roots.append(_devnum(g.read()))
            except OSError:
                continue
    found: dict[int, str] = {}
    for dev in roots:
        base = _dev_dir(dev)
        if base is None:
            continue
        found[dev] = os.path.basename(base)
        for child in os.listdir(base):
            part = os.path.join(base, child)
            if os.path.exists(os.path.join(part, "partition")):
                with open(os.path.join(part, "dev")) as g:
                    found[_devnum(g.read())] = child
    return found


def busy_reason(path: str, writable_only: bool, held_ok: Collection[str] = ()
                ) -> str | None:
    """Why `path` must not be read (`writable_only`: mounted read-write or held) or
    written (mounted at all, or held by device mapper, RAID...), or None. `held_ok`:
    devices (/dev/NAME) whose holders are taken care of (LVM snapshots)."""
    devices = related_devices(path)
    if not devices:
        return None
    names = {f"/dev/{n}" for n in devices.values()}
    try:
        with open(MOUNTINFO) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 3:
            continue
        dev_hit = _devnum(fields[2]) in devices or os.path.realpath(tail[1]) in names
        if not dev_hit:
            continue
        read_write = "rw" in fields[5].split(",") and "rw" in tail[2].split(",")
        if read_write or not writable_only:
            how = "read-write" if read_write else "read-only"
            return f"{tail[1]} is mounted {how} at {fields[4]}"
    try:
        with open("/proc/swaps") as f:
            swaps = {os.path.realpath(line.split()[0]) for line in f.readlines()[1:] if line}
    except OSError:
        swaps = set()
    swapped = sorted(names & swaps)
    if swapped and not writable_only:
        return f"{swapped[0]} is in use as swap (swapoff it first)"
    for dev, name in devices.items():
        base = _dev_dir(dev)
        holders = os.listdir(os.path.join(base, "holders")) if base else []
        if f"/dev/{name}" in held_ok:
            continue
        if holders:
            return f"/dev/{name} is in use by {', '.join(sorted(holders))}"
    return None


def refuse_if_busy(path: str, writable_only: bool, action: str) -> None:
    """ImageRefused when `path` is in use (see busy_reason)."""
    reason = busy_reason(path, writable_only)
    if reason is not None:
        hint = ("unmount it first, or image the system from rescue media (a live USB)"
                if writable_only else "unmount it first; a restore overwrites it")
        raise ImageRefused(f"cannot {action} {path}: {reason}", hint)


@dataclass
class Plan:
    """What create reads: the layout and the areas with their used extents."""

    kind: str  # "disk" or "partition"
    size: int
    table: PartitionTable | None
    areas: list[Area]
    issues: list[Issue]


def _volume_area(reader: FileReader | SliceReader, role: str, start: int, size: int,
                 force: bool, where: str, issues: list[Issue]) -> Area:
    """An area for one file system (its used extents) or anything else (read whole)."""
    whole = [(0, size)] if size else []
    fstype = detect(reader)
    if fstype is None:
        return Area(role, start, size, whole)
    try:
        used = used_ranges(reader, fstype)
    except LayoutError as err:
        issues.append(Issue(where.encode(), "whole",
                            f"{fstype} structures unreadable ({err.message}); read whole"))
        return Area(role, start, size, whole, fs=None)
    if used is None:
        return Area(role, start, size, whole)
    if used.dirty and not force:
        raise ImageRefused(
            f"the {fstype} file system on {where} is marked dirty: {used.dirty_reason}",
            "check it with its fsck (or let Windows check an NTFS volume), or pass "
            "--force to image it as it is")
    extents = list(used.extents)
    if used.total_size < size:  # bytes past the file system's end: unknown, kept
        extents.append((used.total_size, size - used.total_size))
    return Area(role, start, size, list(merge_extents(extents, size)), fs=fstype,
                fs_label=used.label or None)


def plan_image(reader: FileReader, source: str, force: bool,
               live: Collection[int | None] = ()) -> Plan:
    """The areas to image from `reader`: a whole disk (table, gaps, partitions) when a
    partition table is found, else one volume. Partitions numbered in `live` (or the
    volume, when `live` is not empty) are mounted read-write: their areas list no blocks
    and are filled at file level (image/filelevel.py)."""
    issues: list[Issue] = []
    size = reader.size
    try:
        table = parse_table(reader, size)
    except LayoutError as err:
        raise ImageRefused(f"the partition table of {source} is damaged: {err.message}",
                           err.hint or "repair it (gdisk, testdisk) before imaging") from None
    for problem in table.problems:
        issues.append(Issue(source.encode(), "table", problem))
    if table.kind == "none":
        if live:
            return Plan("partition", size, None, [Area("volume", 0, size, [], files={})],
                        issues)
        area = _volume_area(reader, "volume", 0, size, force, source, issues)
        return Plan("partition", size, None, [area], issues)
    disk = Area("disk", 0, size, list(merge_extents([*table.table_ranges, *table.gaps],
                                                     size)))
    areas = [disk]
    for p in table.partitions:
        if p.container:
            continue
        if p.end > size:
            raise ImageRefused(f"partition {p.index} of {source} ends past the disk's end")
        where = f"{source} partition {p.index}"
        if p.index in live:
            area = Area("partition", p.start, p.size, [], files={})
        else:
            area = _volume_area(SliceReader(reader, p.start, p.size), "partition", p.start,
                                p.size, force, where, issues)
        area.number, area.type, area.name, area.uuid = p.index, p.type, p.name, p.uuid
        areas.append(area)
    return Plan("disk", size, table, areas, issues)


def table_doc(table: PartitionTable) -> dict[str, object]:
    """The manifest's description of a partition table."""
    return {"kind": table.kind, "sector_size": table.sector_size, "disk_id": table.disk_id,
            "min_disk_size": table.min_disk_size,
            "ranges": [list(r) for r in table.table_ranges],
            "gaps": [list(g) for g in table.gaps],
            "partitions": [{"number": p.index, "start": p.start, "size": p.size,
                            "type": p.type, "uuid": p.uuid, "name": p.name, "attrs": p.attrs,
                            "container": p.container} for p in table.partitions]}
