"""Checks made before a run touches anything: paths exist, source and target do not overlap,
the target is the drive the set lives on."""

from __future__ import annotations

import contextlib
import os

from twofold.core.errors import SafetyRefusal, TargetError, UsageError
from twofold.fsinfo.disk import same_disk
from twofold.fsinfo.scan import Source
from twofold.fsinfo.volume import DriveId, empty_mountpoint, on_system_disk, volume_of


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def resolve_sources(paths: list[str]) -> list[Source]:
    """Absolute, real source folders with distinct top-level names in the set."""
    if not paths:
        raise UsageError("no source folder given", "name at least one folder to back up")
    out: list[Source] = []
    names: dict[bytes, str] = {}
    for given in paths:
        real = os.path.realpath(os.path.expanduser(given))
        if not os.path.exists(real):
            raise UsageError(f"source {given} does not exist",
                             "check the path; a folder on a drive must be mounted")
        name = os.fsencode(os.path.basename(real) or "root")
        if name in names:
            raise UsageError(
                f"sources {names[name]} and {given} would both be stored as "
                f"{os.fsdecode(name)!r} in the set", "back them up in separate sets (--set)")
        names[name] = given
        out.append(Source(name, os.fsencode(real)))
    return out


def resolve_target(path: str) -> str:
    """The real path of an existing target folder."""
    real = os.path.realpath(os.path.expanduser(path))
    if not os.path.isdir(real):
        raise UsageError(f"target {path} does not exist or is not a folder",
                         "is the backup drive plugged in and mounted?")
    return real


def check_overlap(sources: list[Source], target: str) -> list[str]:
    """Refuse overlapping source and target; warn when they share a disk."""
    shared: list[str] = []
    for s in sources:
        src = os.fsdecode(s.path)
        if _inside(target, src):
            raise UsageError(f"the target {target} is inside the source {src}",
                             "the backup would copy itself; choose a target outside it")
        if _inside(src, target):
            raise UsageError(f"the source {src} is inside the target {target}",
                             "back up from outside the backup drive")
        with contextlib.suppress(OSError):
            if same_disk(src, target):
                shared.append(src)
    if not shared:
        return []
    return [f"{', '.join(shared)} and the target are on the same disk: this backup does "
            "not protect against that disk failing"]


def check_mass_delete(moves: int, current_files: int, allowed: bool) -> None:
    """Refuse a run that would move more than half of current/ to versions/."""
    if allowed or current_files == 0 or moves * 2 <= current_files:
        return
    raise SafetyRefusal(
        f"this run would move {moves} of the {current_files} files in the backup to "
        "versions/ (deleted or replaced in the source)",
        "is a source folder empty, or a drive not mounted? If the change is intended, "
        "run again with --allow-mass-delete")


def check_drive(target: str, found: bool, seen: DriveId | None, what: str,
                allow_system_disk: bool = False) -> None:
    """Refuse to start a set or store anew in a folder that is not its drive.

    `found`: the set or store is there (then this is its drive). `seen`: the drive it was
    last seen on, from this computer's memory, when it has run before. A first run into an
    empty mount point (a folder under /media, /mnt or /run/media on the system disk, or an
    fstab mount point with nothing mounted) needs `allow_system_disk`.
    """
    if found:
        return
    if seen is not None:
        here = ("an empty folder on the system disk" if on_system_disk(target) else
                f"a folder on another drive ({volume_of(target).name()})")
        raise TargetError(
            f"the drive {seen.name()} is not connected: {target} is {here}, and {what} "
            "that ran there before is not in it",
            "connect and mount the drive, then run again; to start it anew on this drive "
            "instead, pass --new-drive")
    reason = empty_mountpoint(target)
    if reason and not allow_system_disk:
        raise TargetError(
            f"no drive is connected at {target}: {reason}",
            "connect and mount the backup drive, then run again; to write to the system "
            "disk anyway, pass --allow-system-disk")
