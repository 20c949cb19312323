"""Removal of what killed image runs left on this machine: top-level btrfs mounts, btrfs
snapshot folders (image/btrfssnap.py) and LVM snapshots (image/lvmsnap.py) whose creating
process is gone."""

from __future__ import annotations

import os

from twofold.fsinfo.mounts import mounts
from twofold.image.btrfssnap import remove_stale, stale_mounts, top_mounted, unmount_stale
from twofold.image.lvmsnap import remove_stale_snapshots


def _device_path(rdev: int) -> str | None:
    sys_dir = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"
    if not os.path.exists(sys_dir):
        return None
    return "/dev/" + os.path.basename(os.path.realpath(sys_dir))


def cleanup_snapshots() -> list[str]:
    """Remove every snapshot and temporary mount a run now gone left on the file systems
    mounted on this machine; what was removed, one line each."""
    removed = []
    for point in stale_mounts():
        unmount_stale(point)
        removed.append(f"mount {point}")
    devices = sorted({m.device for m in mounts() if m.fstype == "btrfs" and m.read_write})
    for rdev in devices:
        device = _device_path(rdev)
        if device is None:
            continue
        with top_mounted(device) as top:
            removed.extend(f"{device}: {path}" for path in remove_stale(top))
    removed.extend(f"LVM snapshot {name}" for name in remove_stale_snapshots())
    return removed
