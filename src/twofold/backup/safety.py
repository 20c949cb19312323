"""Checks made before a run touches anything: paths exist, source and target do not overlap."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from twofold.core.errors import SafetyRefusal, TargetFullError, UsageError
from twofold.core.text import human_bytes, plural
from twofold.fsinfo.disk import same_disk
from twofold.fsinfo.scan import Source
from twofold.sets.rows import drive_gone, not_answering


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
        for other in out:
            o = os.fsdecode(other.path)
            if _inside(real, o) or _inside(o, real):
                inner, outer = (given, names[other.name]) if _inside(real, o) else \
                    (names[other.name], given)
                raise UsageError(f"the source {inner} is inside the source {outer}",
                                 f"it is backed up with {outer} already: give only {outer}")
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
    gone_or_ok(real)
    if not os.path.isdir(real):
        raise UsageError(f"target {path} does not exist or is not a folder",
                         "is the backup drive plugged in and mounted?")
    return real


def gone_or_ok(path: str) -> None:
    """The drive-gone error when the drive of `path` no longer answers (ENOTCONN)."""
    lost = not_answering(path)
    if lost is not None:
        raise drive_gone(lost, path)


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
    """Refuse a run that would remove more than half of current/'s files (deleted in
    the source, or moved out of it; edits do not count)."""
    if allowed or current_files == 0 or moves * 2 <= current_files:
        return
    raise SafetyRefusal(
        f"this run would move {moves} of the {current_files} files in the backup to "
        "versions/ (deleted or moved out of the source folders)",
        "is a source folder empty, or a drive not mounted? If the change is intended, "
        "run again with --allow-mass-delete")



SPACE_MARGIN = 1 << 20
ENTRY_MARGIN = 512
"""Room kept for the catalog's growth and the folders a run makes: a little more than a
row of the catalog per copied file."""


def check_space(target: str | bytes, copy_bytes: int, copy_files: int,
                versions_bytes: Callable[[], int], prune_hint: str) -> None:
    """Refuse, before anything is copied, a run whose copies cannot fit on the drive: each
    file takes whole blocks, about half a block more than its size on average.

    `versions_bytes` (what prune could free: a read of the whole catalog) is asked only
    for the message."""
    st = os.statvfs(target)
    if st.f_blocks == 0:
        return  # the driver does not say (fusefat reports 0 of 0): a full drive stops cleanly
    free = st.f_bavail * st.f_frsize
    need = copy_bytes + copy_files * (st.f_frsize // 2 + ENTRY_MARGIN) + SPACE_MARGIN
    if need <= free:
        return
    kept = versions_bytes()
    room = (f"`{prune_hint}` removes old versions (versions/ holds "
            f"{human_bytes(kept)}), or " if kept else "")
    raise TargetFullError(
        f"the drive has {human_bytes(free)} free, but this run would copy "
        f"{plural(copy_files, 'file')} of {human_bytes(copy_bytes)} (about "
        f"{human_bytes(need)} on the drive)",
        f"to make room: {room}delete what you no longer need from the drive, or use a "
        "larger drive; nothing was copied")
