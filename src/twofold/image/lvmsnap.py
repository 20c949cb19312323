"""Imaging a disk whose LVM logical volumes are mounted: each mounted volume gets a
temporary LVM snapshot (sized from the volume group's free space), its used blocks are
read from the snapshot in place of the volume's extents on the physical volume, and the
snapshots are removed afterwards; snapshots are named after their creator's pid and tagged
with its host, so a later run removes those of a run that was killed."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from twofold.core.holders import is_stale
from twofold.fsinfo.blockio import BytesReader, FileReader, Reader
from twofold.fsinfo.fsbitmap import detect, merge_extents, used_ranges
from twofold.fsinfo.fsparams import fs_type
from twofold.fsinfo.lvm import (
    LogicalVolume,
    LvmError,
    VolumeGroup,
    make_snapshot,
    remove_volume,
    snapshot_broken,
    tagged_volumes,
    volume_group,
)
from twofold.fsinfo.mounts import writable_mount
from twofold.image.errors import ImageRefused, SourceReadError
from twofold.image.manifest import Area, Extent

TAG = "twofold_host_"
_NAME = re.compile(r"twofold-pid(\d+)-")


def _tag() -> str:
    return TAG + re.sub(r"[^A-Za-z0-9_+.-]", "_", socket.gethostname())


class OverlayReader(FileReader):
    """The source disk, with some byte ranges read from elsewhere (snapshots, and the
    physical volume's metadata as it was before the snapshots were made)."""

    def __init__(self, base: FileReader, pieces: list[tuple[int, int, Reader, int]]) -> None:
        self.fd, self._owned = base.fd, False
        self.size, self.sector_size = base.size, base.sector_size
        self.pieces = sorted(pieces, key=lambda p: p[0])  # (disk offset, length, reader, at)
        self._direct, self._direct_state = None, -1  # a read may span several sources

    def read_into(self, buf: memoryview, offset: int, aligned: bool = True) -> int:
        """Fill `buf` with the bytes at `offset` (through pread: see its sources)."""
        data = self.pread(offset, len(buf))
        buf[:len(data)] = data
        return len(data)

    def pread(self, offset: int, length: int) -> bytes:
        """Read up to `length` bytes at `offset`, each byte from where it is taken."""
        out, pos, end = [], offset, min(offset + length, self.size)
        for start, n, reader, at in self.pieces:
            if start + n <= pos or start >= end:
                continue
            if start > pos:
                out.append(super().pread(pos, start - pos))
                pos = start
            take = min(end, start + n) - pos
            out.append(reader.pread(at + pos - start, take))
            pos += take
        if pos < end:
            out.append(super().pread(pos, end - pos))
        return b"".join(out)


@dataclass
class LvmView:
    """What imaging reads instead of the disk, and how the physical volumes' areas were
    taken (by area number; None: the source is the physical volume itself)."""

    reader: FileReader
    extents: dict[int | None, list[Extent]] = field(default_factory=dict)
    taken: dict[int | None, str] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)  # snapshots of killed runs removed
    made: list[tuple[str, str]] = field(default_factory=list)  # (group, snapshot) in use

    def check(self) -> None:
        """SourceReadError when a snapshot filled up while it was read (the kernel dropped
        it: what was read from it is not one moment's state); call before keeping."""
        for vg_name, name in self.made:
            if snapshot_broken(vg_name, name):
                raise SourceReadError(
                    f"the snapshot {vg_name}/{name} filled up while it was read, so the "
                    "image would not be consistent; it was not kept",
                    "make more free space in the volume group, or image it when less "
                    "is being written")

    def apply(self, areas: list[Area]) -> None:
        """Set the extents of the physical volumes' areas (label, metadata, the logical
        volumes' used blocks)."""
        for area in areas:
            key = area.number if area.role == "partition" else None
            if area.role != "disk" and key in self.extents:
                area.extents, area.fs = self.extents[key], None


def partition_number(name: str) -> int | None:
    """The partition number of block device NAME (None: not a partition)."""
    try:
        with open(f"/sys/class/block/{name}/partition") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def physical_volumes(devices: dict[int, str]) -> dict[str, int | None]:
    """Of `devices` (number -> name), the LVM physical volumes held by device mapper:
    /dev/NAME -> partition number (None for a whole device)."""
    found: dict[str, int | None] = {}
    for name in devices.values():
        try:
            holders = os.listdir(f"/sys/class/block/{name}/holders")
        except OSError:
            continue
        if holders and all(h.startswith("dm-") for h in holders) and \
                fs_type(f"/dev/{name}") == "LVM2_member":
            found[f"/dev/{name}"] = partition_number(name)
    return found


def _start(device: str) -> int:
    """Byte offset of a partition in its disk (0 for a whole device)."""
    try:
        with open(f"/sys/class/block/{os.path.basename(device)}/start") as f:
            return int(f.read().strip()) * 512
    except (OSError, ValueError):
        return 0


def _used(reader: FileReader, lv: LogicalVolume) -> list[Extent]:
    """The used byte ranges of a logical volume's file system (all of it when unknown)."""
    kind = detect(reader)
    used = used_ranges(reader, kind) if kind else None
    if used is None:
        return [(0, lv.size)]
    extents = list(used.extents)
    if used.total_size < lv.size:
        extents.append((used.total_size, lv.size - used.total_size))
    return list(merge_extents(extents, lv.size))


def _on_pv(lv: LogicalVolume, extents: list[Extent]) -> list[Extent]:
    """Logical volume byte ranges as ranges of the physical volume."""
    out = []
    for lv_at, pv_at, n in lv.pieces:
        for off, length in extents:
            lo, hi = max(off, lv_at), min(off + length, lv_at + n)
            if lo < hi:
                out.append((pv_at + lo - lv_at, hi - lo))
    return out


def _snapshot_size(vg: VolumeGroup, mounted: list[LogicalVolume]) -> int:
    extents = vg.free_extents // max(1, len(mounted))
    if extents == 0:
        names = ", ".join(f"{vg.name}/{lv.name}" for lv in mounted)
        raise ImageRefused(f"the volume group {vg.name} has no free space for a snapshot of "
                           f"{names}, which {'is' if len(mounted) == 1 else 'are'} mounted",
                           "free some extents (lvreduce a volume, or vgextend the group "
                           "with another disk), or image the system from rescue media")
    return extents


@contextmanager
def lvm_view(devices: dict[int, str], disk: FileReader) -> Iterator[LvmView]:
    """The source read with its mounted logical volumes taken from snapshots (removed on
    leaving). `devices`: the source's block devices (source.related_devices)."""
    pvs = physical_volumes(devices)
    if not pvs:
        yield LvmView(disk)
        return
    view = LvmView(disk, cleaned=remove_stale_snapshots())
    pieces: list[tuple[int, int, Reader, int]] = []
    made: list[tuple[str, str]] = []
    with ExitStack() as stack:
        try:
            for pv, number in pvs.items():
                vg = volume_group(pv)
                if vg is None:
                    continue
                base = _start(pv)
                header = disk.pread(base, vg.pe_start)  # the metadata before the snapshots
                pieces.append((base, len(header), BytesReader(header), 0))
                extents: list[Extent] = [(0, vg.pe_start)]
                mounted = [lv for lv in vg.volumes
                           if writable_mount(os.stat(lv.path).st_rdev) is not None]
                size = _snapshot_size(vg, mounted) if mounted else 0
                names = []
                for lv in vg.volumes:
                    if lv in mounted:
                        name = f"twofold-pid{os.getpid()}-{lv.name}"[:120]
                        path = make_snapshot(lv, name, size, _tag())
                        made.append((vg.name, name))
                        snap = stack.enter_context(FileReader(path))
                        for lv_at, pv_at, n in lv.pieces:
                            pieces.append((base + pv_at, n, snap, lv_at))
                        names.append(lv.name)
                    else:
                        snap = stack.enter_context(FileReader(lv.path))
                    extents += _on_pv(lv, _used(snap, lv))
                view.extents[number] = list(merge_extents(extents))
                how = f"snapshot (LVM: {', '.join(names)}), blocks" if names else "blocks"
                view.taken[number] = how
            view.reader, view.made = OverlayReader(disk, pieces), made
            yield view
        finally:
            stack.close()
            for vg_name, name in made:
                remove_volume(vg_name, name)


def remove_stale_snapshots() -> list[str]:
    """Remove the snapshots of image runs that are gone; `vg/name` of each removed."""
    removed = []
    try:
        found = tagged_volumes(TAG)
    except LvmError:
        return []
    for vg, name, tags in found:
        m = _NAME.match(name)
        host = next(t[len(TAG):] for t in tags if t.startswith(TAG))
        if m is None or host != _tag()[len(TAG):]:
            continue
        if is_stale({"host": socket.gethostname(), "pid": int(m.group(1))}):
            remove_volume(vg, name)
            removed.append(f"{vg}/{name}")
    return removed
