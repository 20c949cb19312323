"""A source in use: which of its volumes are mounted read-write (imaged at file level from
the mounted tree, or from snapshots for btrfs) and whether anything else holds it
(refused, as before)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from twofold.fsinfo.fsparams import FILE_LEVEL, SNAPSHOT, fs_type, read_params
from twofold.fsinfo.mounts import Mount, mounts, writable_mount
from twofold.image.errors import ImageRefused
from twofold.image.lvmsnap import partition_number, physical_volumes
from twofold.image.source import busy_reason, related_devices


@dataclass
class LiveVolume:
    """A volume of the source mounted read-write: where, and its file system's parameters."""

    number: int | None  # partition number (None: a whole device, not a partition)
    device: str  # /dev/NAME
    mount: Mount
    params: dict[str, Any]


def _btrfs_mount(device: int) -> Mount | None:
    """A read-write mount of a subvolume of the btrfs on `device` (its whole file system is
    imaged from snapshots, whichever subvolume is mounted)."""
    hits = [m for m in mounts() if m.device == device and m.read_write and m.fstype == "btrfs"]
    return min(hits, key=lambda m: len(m.point)) if hits else None


def live_volumes(source: str) -> dict[int | None, LiveVolume]:
    """The volumes of `source` mounted read-write, by partition number (None: a whole
    device; a source that is itself one partition has its own number). ImageRefused when
    something else holds it, or a mounted file system is of a
    type twofold cannot read at file level and make anew."""
    live: dict[int | None, LiveVolume] = {}
    pvs = physical_volumes(related_devices(source))  # imaged through LVM snapshots
    for dev, name in related_devices(source).items():
        mount = writable_mount(dev) or _btrfs_mount(dev)
        if mount is None:
            continue
        device = f"/dev/{name}"
        kind = fs_type(device) or mount.fstype
        params = read_params(device) if kind in FILE_LEVEL + SNAPSHOT else None
        if params is None:
            raise ImageRefused(
                f"cannot image {source}: {device} is mounted read-write at {mount.point}, "
                f"and its file system ({kind}) can be neither snapshotted nor read at "
                "file level by twofold",
                "unmount it, or image the system from rescue media (twofold rescue "
                "build), which images it at block level")
        number = partition_number(name)
        live[number] = LiveVolume(number, device, mount, params)
    if not live:
        reason = busy_reason(source, writable_only=True, held_ok=pvs)
        if reason is not None:
            raise ImageRefused(f"cannot image {source}: {reason}",
                               "unmount it first, or image the system from rescue media")
        return live
    for name in related_devices(source).values():
        try:
            holders = os.listdir(f"/sys/class/block/{name}/holders")
        except OSError:
            holders = []
        if holders and f"/dev/{name}" not in pvs:
            raise ImageRefused(f"cannot image {source}: /dev/{name} is in use by "
                               f"{', '.join(sorted(holders))}",
                               "image it from rescue media (a live USB)")
    return live
