"""Read-only snapshots of a mounted btrfs, for imaging it at file level while it runs:
the top-level subvolume is mounted aside, every subvolume is snapshotted into a hidden
folder named after this run (process id and host), the snapshots are read as one tree,
and removed afterwards; a later run removes what a killed run left (core/holders.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from twofold.core.holders import is_stale
from twofold.fsinfo.btrfs import (
    BtrfsError,
    btrfs_run,
    default_subvolume,
    delete_subvolume,
    profiles,
    snapshot_ro,
    subvolumes,
)
from twofold.fsinfo.mounts import mounts

HIDDEN = ".twofold-snapshots"
"""The folder, in the top-level subvolume, that holds the snapshots of running images."""
MOUNT_PREFIX = "twofold-btrfs-"
"""Start of the temporary folder the top-level subvolume is mounted on."""


def run_name(pid: int | None = None) -> str:
    """The name of this run's snapshot folder and top-level mount: `pid<PID>@<host>`."""
    return f"pid{os.getpid() if pid is None else pid}@{socket.gethostname()}"


def holder_of(name: str) -> dict[str, object] | None:
    """The holder (core/holders.py) a run name stands for, or None when it is not one."""
    pid, sep, host = name.partition("@")
    if not sep or not pid.startswith("pid") or not pid[3:].isdigit():
        return None
    return {"host": host, "pid": int(pid[3:])}


@dataclass
class BtrfsView:
    """The snapshots of one btrfs as a tree to image: the top level's snapshot, the
    snapshots read in place of subvolume stubs, what to leave out, the parameters."""

    root: str
    graft: dict[bytes, bytes]
    skip: set[tuple[int, int]]
    params: dict[str, Any]
    removed: list[str]  # snapshots of killed runs removed first


@contextmanager
def top_mounted(device: str) -> Iterator[str]:
    """The top-level subvolume of the btrfs on `device` mounted in a temporary folder
    (named after this run, so a run killed meanwhile is recognised)."""
    point = tempfile.mkdtemp(prefix=f"{MOUNT_PREFIX}{run_name()}-")
    try:
        btrfs_run(["mount", "-t", "btrfs", "-o", "subvolid=5", device, point],
                  f"mount the top level of the btrfs on {device}")
        try:
            yield point
        finally:
            btrfs_run(["umount", point], "unmount the btrfs top level")
    finally:
        with suppress(OSError):
            os.rmdir(point)


def remove_stale(top: str) -> list[str]:
    """Remove the snapshot folders of runs that are gone from the btrfs whose top level
    is mounted at `top`; the paths removed."""
    hidden = os.path.join(top, HIDDEN)
    try:
        names = sorted(os.listdir(hidden))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        holder = holder_of(name)
        if holder is None or not is_stale(holder):
            continue
        try:
            _remove_run(os.path.join(hidden, name))
        except (OSError, BtrfsError):
            continue  # a btrfs command the killed run started is still at work: next time
        removed.append(os.path.join(HIDDEN, name))
    with suppress(OSError):
        os.rmdir(hidden)  # only when empty: another run may be using it
    return removed


def _remove_run(folder: str) -> None:
    """Remove one run's snapshots and its folder."""
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.lstat(path).st_ino == 256:  # a subvolume's root
            delete_subvolume(path)
        else:
            os.rmdir(path)
    os.rmdir(folder)


def stale_mounts() -> list[str]:
    """Top-level mounts that runs now gone left behind."""
    found = []
    for m in mounts():
        base = os.path.basename(m.point)
        if m.fstype != "btrfs" or not base.startswith(MOUNT_PREFIX):
            continue
        holder = holder_of(base[len(MOUNT_PREFIX):].rsplit("-", 1)[0])
        if holder is not None and is_stale(holder):
            found.append(m.point)
    return found


def unmount_stale(point: str) -> None:
    """Unmount a top-level mount a killed run left, and remove its folder."""
    if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
        # a btrfs command the killed run started may still hold it: detach it now
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    with suppress(OSError):
        os.rmdir(point)


def _store_inode(store_root: str | None, device: int) -> tuple[int, int] | None:
    """(subvolume id, inode) of the image store's folder when it lies on the btrfs of
    block device `device`, else None."""
    if store_root is None:
        return None
    real = os.path.realpath(store_root)
    under = [m for m in mounts() if real == m.point or
             real.startswith(m.point.rstrip("/") + "/")]
    if not under or max(under, key=lambda m: len(m.point)).device != device:
        return None
    out = btrfs_run(["btrfs", "inspect-internal", "rootid", real], "find the store's subvolume")
    return int(out.strip()), os.stat(real).st_ino


@contextmanager
def btrfs_snapshots(device: str, rdev: int, params: dict[str, Any],
                    store_root: str | None) -> Iterator[BtrfsView]:
    """Read-only snapshots of every subvolume of the btrfs on `device` (block device
    number `rdev`), removed on leaving; the image store's folder (`store_root`), when
    on it, is left out."""
    for point in stale_mounts():
        unmount_stale(point)
    with top_mounted(device) as top:
        removed = remove_stale(top)
        hidden = os.path.join(top, HIDDEN)
        os.makedirs(hidden, mode=0o700, exist_ok=True)
        folder = os.path.join(hidden, run_name())
        os.mkdir(folder, 0o700)
        made: list[str] = []
        try:
            subs = [s for s in subvolumes(top) if not s["path"].startswith(HIDDEN + "/")]
            default = default_subvolume(top)
            root = os.path.join(folder, "top")
            snapshot_ro(top, root)
            made.append(root)
            graft: dict[bytes, bytes] = {}
            by_id = {5: root}
            for sub in subs:
                dest = os.path.join(folder, str(sub["id"]))
                snapshot_ro(os.path.join(top, sub["path"]), dest)
                made.append(dest)
                graft[os.fsencode(sub["path"])] = os.fsencode(dest)
                by_id[sub["id"]] = dest
            hid = os.lstat(os.path.join(root, HIDDEN))
            skip = {(hid.st_dev, hid.st_ino)}
            store = _store_inode(store_root, rdev)
            if store is not None and store[0] in by_id:
                skip.add((os.stat(by_id[store[0]]).st_dev, store[1]))
            full = dict(params, profiles=profiles(top),
                        subvolumes=[{"path": s["path"], "ro": s["ro"]} for s in subs],
                        default_subvolume=next((s["path"] for s in subs
                                                if s["id"] == default), None))
            yield BtrfsView(root, graft, skip, full, removed)
        finally:
            problems = []
            for path in reversed(made):
                try:
                    delete_subvolume(path)
                except BtrfsError as err:
                    problems.append(err)
            with suppress(OSError):
                os.rmdir(folder)
                os.rmdir(hidden)
            if problems:
                raise problems[0]
